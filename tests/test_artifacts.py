"""A trained model's folder is checked against the checksums taken when training saved it: a
missing or changed file is reported on Export instead of downloaded or served."""

from __future__ import annotations

from data.artifacts import artifact_problems, folder_checksums
from tests.conftest import app


def saved_model(folder):
    folder.mkdir(parents=True)
    (folder / "config.json").write_text('{"architectures": ["BertForSequenceClassification"]}')
    (folder / "model.safetensors").write_bytes(b"weights" * 1000)
    return folder


def test_missing_changed_and_added_files(tmp_path):
    folder = saved_model(tmp_path / "model")
    sums = folder_checksums(folder)
    assert set(sums) == {"config.json", "model.safetensors"}
    (folder / "notes.txt").write_text("added later")  # adds nothing to what was saved
    assert artifact_problems(folder, sums) == []
    (folder / "model.safetensors").write_bytes(b"other weights")
    (folder / "config.json").unlink()
    assert artifact_problems(folder, sums) == [
        "config.json is missing",
        "model.safetensors has changed since it was saved",
    ]
    assert artifact_problems(tmp_path / "gone", sums) == [
        f"the folder {tmp_path / 'gone'} is missing"
    ]


def test_export_refuses_a_changed_model_and_says_what_to_do(analysed):
    run = analysed.create_run(name="full", config={}, data={"experiment": "single"}, job_id=None)
    folder = saved_model(analysed.run_dir(run) / "model")
    data = {"experiment": "single", "model_files": folder_checksums(folder)}
    analysed.update_run(
        run, status="done", metrics={"accuracy": 0.8, "n": 5}, model_dir=str(folder), data=data
    )
    at = app("app_pages/export.py")
    assert at.button(key="prepare_model")  # intact: offered
    (folder / "model.safetensors").write_bytes(b"tampered")
    at.run()
    assert not at.exception
    [error] = [e.value.replace("\\", "") for e in at.error]  # (plain() escapes markdown)
    assert "model.safetensors has changed since it was saved" in error and "Train it again" in error
    assert "prepare_model" not in [b.key for b in at.button]
    assert not [c for c in at.code if "cli.py serve" in c.value]


def test_cached_arrays_are_checked_against_the_store_and_recomputed_when_changed(workspace):
    import numpy as np

    matrix = np.arange(12, dtype=np.float32).reshape(4, 3)
    workspace.put_array("feat", matrix)
    assert workspace.get_array("feat").tolist() == matrix.tolist()
    with workspace.array_writer("rows", rows=4) as writer:
        writer.write(matrix)
    assert np.asarray(workspace.open_array("rows")).tolist() == matrix.tolist()

    path = workspace.folder / "cache" / "feat.npy"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # one flipped byte, same size (on a shared folder, say)
    path.write_bytes(bytes(data))
    assert workspace.get_array("feat") is None  # never used: the caller recomputes it

    (workspace.folder / "cache" / "rows.npy").unlink()
    assert workspace.open_array("rows") is None
    with workspace.array_writer("rows", rows=4) as writer:  # recomputed: recorded again
        writer.write(matrix)
    assert workspace.open_array("rows") is not None
    workspace.set_info("artifact:rows", None)  # a file the store has no record of
    assert workspace.open_array("rows") is None
