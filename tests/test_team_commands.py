"""The team deployment's own commands, run directly (no container engine runs here): the
compose file's first admin, members, two app replicas and a worker against one PostgreSQL
database and one SECOND_LOOK_HOME, as README "Deploying for a team" lists them."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.conftest import NEGATIVE, POSITIVE, ROOT
from tests.pg import fresh_database

PASSWORD = "correct horse battery"


@pytest.fixture
def team_env(tmp_path):
    databases = fresh_database()
    url = next(databases)
    env = {
        **os.environ,
        "SECOND_LOOK_DATABASE_URL": url,
        "SECOND_LOOK_HOME": str(tmp_path / "home"),
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    yield env
    databases.close()


def run(env, *args, stdin: str = "", timeout: float = 240) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "cli.py", *args],
        cwd=ROOT,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(port: int, deadline: float) -> bool:
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2):
                return True
        except OSError:
            time.sleep(0.5)
    return False


def test_the_deployment_commands_work_directly(team_env, tmp_path):
    env = team_env
    home = tmp_path / "home"
    # The compose file's one-off admin service, then the README's members command.
    run(env, "users", "add", "admin", "--role", "admin", "--password-stdin", stdin=PASSWORD)
    run(env, "users", "add", "ana", "--password-stdin", stdin=PASSWORD)
    data = tmp_path / "reviews.csv"
    rows = [(t, "positive") for t in POSITIVE] + [(t, "negative") for t in NEGATIVE]
    data.write_text("text,label\n" + "".join(f'"{t}",{lab}\n' for t, lab in rows))
    run(
        env,
        "import",
        str(data),
        "--name",
        "team-a",
        "--text-column",
        "text",
        "--label-column",
        "label",
    )
    assert (home / "team-a" / "store.postgresql.json").is_file()  # the workspace is in PostgreSQL
    assert not (home / "team-a" / "store.sqlite").exists()
    run(env, "members", "add", "team-a", "ana", "--role", "reviewer")
    assert "ana  reviewer" in run(env, "members", "list", "team-a").stdout

    # Two app replicas (compose's command, on the loopback address for the test).
    ports = [free_port(), free_port()]
    replicas = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamlit",
                "run",
                "app.py",
                "--server.address",
                "127.0.0.1",
                "--server.port",
                str(port),
                "--server.headless",
                "true",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        for port in ports
    ]
    try:
        deadline = time.monotonic() + 90
        assert all(healthy(port, deadline) for port in ports)

        # A page queues an analysis (team mode: no child process); the worker runs it.
        probe = (
            "import jobs; from data.store import Workspace; "
            f"ws = Workspace({str(home / 'team-a')!r}); "
            "print(jobs.launch(ws, 'analyze', {'n_folds': 3, 'seed': 0}), ws.jobs()[0].status)"
        )
        queued = subprocess.run(
            [sys.executable, "-c", probe],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert queued.returncode == 0, queued.stderr
        job_id, status = queued.stdout.split()
        assert status == "queued"
        worked = run(env, "worker", "--once", "--poll", "0.5")
        assert f"job {job_id} (analyze) in team-a: done" in worked.stdout
    finally:
        for replica in replicas:
            os.killpg(replica.pid, 15)
            replica.wait(timeout=30)
