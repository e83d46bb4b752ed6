"""The team deployment files (Dockerfile, compose.yaml, .dockerignore) agree with the code, with
requirements.txt and with the README's "Deploying for a team": every command they run parses with
``cli.py``'s own parser (or is the README's streamlit command), the torch pins agree, the ports
agree. Fast, no container engine needed; the image is built only where ``docker info`` answers.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml  # PyYAML: installed with transformers, datasets and accelerate

import cli

ROOT = Path(__file__).resolve().parent.parent

# The README's app replica command (its set-up command plus the address and port).
STREAMLIT = [
    "streamlit",
    "run",
    "app.py",
    "--server.address",
    "0.0.0.0",
    "--server.port",
    "8501",
]
# Team mode's commands, announced before they all exist in cli.py (issue 15).
APP_SERVICES = ("app1", "app2", "worker", "admin")


def _compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))


def _dockerfile(name: str = "Dockerfile") -> str:
    # Continuation lines joined, comments dropped.
    text = (ROOT / name).read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    return re.sub(r"\\\n\s*", " ", "\n".join(lines))


def _instructions(name: str, keyword: str) -> list[str]:
    return re.findall(rf"^{keyword}\s+(.*)$", _dockerfile(name), flags=re.M)


def _subcommands() -> dict:
    parser = cli.build_parser()
    [sub] = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    return sub.choices


def _check_cli(argv: list[str]) -> None:
    """Fails unless ``python cli.py ...`` parses with cli.py's parser."""
    assert argv[:2] == ["python", "cli.py"], argv
    assert argv[2] in _subcommands(), f"`{' '.join(argv)}`: cli.py has no `{argv[2]}` command"
    try:
        cli.build_parser().parse_args(argv[2:])
    except SystemExit as exc:  # argparse's answer to bad arguments
        pytest.fail(f"`{' '.join(argv)}` does not parse with cli.py's parser (exit {exc.code})")


def _readme_section() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "\n## Deploying for a team\n" in readme, "the README lost its team deployment section"
    return readme.split("\n## Deploying for a team\n", 1)[1].split("\n## ", 1)[0]


def _shell_commands(section: str) -> list[str]:
    """The commands of the section's bash blocks, continuation lines joined, comments dropped."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line:
                commands.append(line)
    return commands


def test_compose_wires_postgres_two_replicas_a_worker_and_the_admin_tool():
    services = _compose()["services"]
    assert set(services) == {"postgres", *APP_SERVICES}
    pg = services["postgres"]
    assert pg["image"] == "postgres:16"
    assert "pg_isready" in " ".join(pg["healthcheck"]["test"])
    assert any(v.endswith(":/var/lib/postgresql/data") for v in pg["volumes"])

    envs = [services[name]["environment"] for name in APP_SERVICES]
    home = envs[0]["SECOND_LOOK_HOME"]
    for name, env in zip(APP_SERVICES, envs, strict=True):
        service = services[name]
        assert service["image"] == services["app1"]["image"], name
        assert service["build"] == services["app1"]["build"], name
        assert env == envs[0], f"{name}: every replica and worker needs the same database and home"
        assert env["SECOND_LOOK_DATABASE_URL"].startswith("postgresql://"), name
        assert "@postgres:5432/" in env["SECOND_LOOK_DATABASE_URL"], name
        assert [v for v in service["volumes"] if v.endswith(f":{home}")], f"{name}: no shared home"
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy", name
    assert services["admin"]["profiles"] == ["tools"]
    # The image's health check asks the app's port; what serves none turns it off.
    assert services["worker"]["healthcheck"] == {"disable": True}
    # The database password is a secret of the deployment, never a default in the file.
    assert "${POSTGRES_PASSWORD:?" in pg["environment"]["POSTGRES_PASSWORD"]


def test_the_environment_names_are_the_ones_the_code_reads():
    names = set(_compose()["services"]["app1"]["environment"])
    assert names == {"SECOND_LOOK_DATABASE_URL", "SECOND_LOOK_HOME"}
    folders = [p.parent for p in ROOT.glob("*/__init__.py") if p.parent.name != "tests"]
    files = [*ROOT.glob("*.py"), *(f for d in folders for f in d.rglob("*.py"))]
    sources = "\n".join(f.read_text(encoding="utf-8") for f in files)
    for name in names:
        assert f'"{name}"' in sources, f"no code reads {name}"
    home = _compose()["services"]["app1"]["environment"]["SECOND_LOOK_HOME"]
    assert f"SECOND_LOOK_HOME={home}" in " ".join(_instructions("Dockerfile", "ENV"))


def test_app_replicas_run_the_readme_streamlit_command_on_the_exposed_port():
    services = _compose()["services"]
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "pip install -r requirements.txt && streamlit run app.py\n" in readme
    assert " ".join(STREAMLIT) in " ".join(_readme_section().split())
    for name in ("app1", "app2"):
        assert services[name]["command"] == STREAMLIT, name
    [cmd] = _instructions("Dockerfile", "CMD")
    assert yaml.safe_load(cmd) == STREAMLIT  # the exec form is a JSON (so YAML) list

    port = STREAMLIT[STREAMLIT.index("--server.port") + 1]
    assert _instructions("Dockerfile", "EXPOSE") == [port]
    [health] = _instructions("Dockerfile", "HEALTHCHECK")
    assert f"http://127.0.0.1:{port}/_stcore/health" in health
    published = {}
    for name in ("app1", "app2"):
        [mapping] = services[name]["ports"]
        host_port, container_port = mapping.rsplit(":", 2)[-2:]
        assert container_port == port, name
        published[name] = host_port
    assert published == {"app1": "8501", "app2": "8502"}


@pytest.mark.parametrize("service", ["worker", "admin"])
def test_service_commands_parse_with_the_cli(service):
    _check_cli(_compose()["services"][service]["command"])


def test_the_readme_section_runs_the_same_commands():
    section = _readme_section()
    flat = " ".join(section.split())
    commands = _shell_commands(section)
    services = _compose()["services"]
    for service in ("worker", "admin"):
        assert " ".join(services[service]["command"]) in flat, service
    for expected in (
        "docker compose build",
        "docker compose up -d",
        "docker compose run --rm -T admin",
        "docker build --build-arg VARIANT=cuda",
        "python cli.py members add",
        "python cli.py worker --gpus",
    ):
        assert any(expected in c for c in commands), expected
    cli_commands = [c[c.index("python cli.py ") :] for c in commands if "python cli.py " in c]
    assert len(cli_commands) >= 5
    for command in cli_commands:
        _check_cli(command.split())
    streamlit = [c for c in commands if c.startswith("streamlit ")]
    assert streamlit == [" ".join(STREAMLIT)]


def test_the_images_pin_the_torch_of_requirements():
    requirements = (ROOT / "requirements.txt").read_text(encoding="utf-8")
    [pinned] = re.findall(r"^torch==(\S+)$", requirements, flags=re.M)
    for name in ("Dockerfile", "Dockerfile.serve"):
        pins = re.findall(r"\btorch==(\S+)", _dockerfile(name))
        assert pins and set(pins) == {pinned}, f"{name} pins torch {pins}, requirements {pinned}"
        assert not re.search(r"\btorch(?:[<>~!]=?|\s)", _dockerfile(name).replace("torch==", "")), (
            f"{name} installs torch unpinned"
        )
    text = _dockerfile()
    assert re.search(r"^ARG VARIANT=cpu$", text, flags=re.M)
    assert "FROM torch-${VARIANT} AS app" in text
    cpu_stage = text.split("AS torch-cpu", 1)[1].split("FROM ", 1)[0]
    assert f"torch=={pinned} --index-url https://download.pytorch.org/whl/cpu" in cpu_stage
    assert "AS torch-cuda" in text
    # torch comes before requirements.txt, so that its pin is already met by the right build.
    assert text.index("pip install torch==") < text.index("pip install -r requirements.txt")


def test_the_image_runs_offline_as_a_user_that_owns_only_the_workspaces():
    text = _dockerfile()
    env = " ".join(_instructions("Dockerfile", "ENV"))
    assert "HF_HUB_OFFLINE=1" in env
    [user] = _instructions("Dockerfile", "USER")
    assert user not in ("root", "0")
    home = _compose()["services"]["app1"]["environment"]["SECOND_LOOK_HOME"]
    assert f"chown {user}:{user} {home}" in text


def _ignored(path: str, patterns: list[str]) -> bool:
    for pattern in patterns:
        bare = pattern.rstrip("/").removeprefix("**/")
        if fnmatch.fnmatch(path, bare) or fnmatch.fnmatch(Path(path).name, bare):
            return True
    return False


def test_dockerignore_keeps_state_and_secrets_out_and_the_code_in():
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    patterns = [p.strip() for p in lines if p.strip() and not p.startswith("#")]
    for path in (
        "workspaces",
        ".venv",
        "test-artifacts",
        ".device-kit",
        ".env",
        ".git",
        "data/__pycache__",
        "x.sqlite",
        "runs",
    ):
        assert _ignored(path, patterns), f"{path} would be sent to the image"
    # What the app, the CLI and the workers import, plus the app's server settings; and every
    # folder or file Dockerfile.serve copies (it builds from the same context).
    needed = {"app.py", "cli.py", "requirements.txt", ".streamlit", "app_pages"}
    needed |= {p.parent.name for p in ROOT.glob("*/__init__.py")}
    for copy in _instructions("Dockerfile.serve", "COPY"):
        needed |= {src.rstrip("/") for src in copy.split()[:-1] if not src.startswith("--")}
    for path in sorted(needed - {"tests", "bench"}):
        assert (ROOT / path).exists(), path
        assert not _ignored(path, patterns), f".dockerignore leaves {path} out of the image"


def _compose_command() -> list[str] | None:
    if (
        shutil.which("docker")
        and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0
    ):
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_compose_config_validates_and_requires_a_database_password():
    compose = _compose_command()
    if compose is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed to validate it")
    env = {k: v for k, v in os.environ.items() if k not in ("POSTGRES_PASSWORD", "VARIANT")}
    ok = subprocess.run(
        [*compose, "--profile", "tools", "config", "-q"],
        cwd=ROOT,
        env={**env, "POSTGRES_PASSWORD": "x"},
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    unset = subprocess.run(
        [*compose, "config", "-q"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert unset.returncode != 0 and "POSTGRES_PASSWORD" in unset.stderr


def _engine_problem() -> str | None:
    if not shutil.which("docker"):
        return "no docker client on PATH"
    info = subprocess.run(["docker", "info"], capture_output=True, text=True)
    if info.returncode != 0:
        lines = [line for line in info.stderr.splitlines() if line.strip()]
        return lines[-1] if lines else f"`docker info` exited {info.returncode}"
    return None


@pytest.mark.slow
def test_the_cpu_image_builds():
    problem = _engine_problem()
    if problem:
        pytest.skip(
            f"no container engine runs here ({problem}): building the image needs a Docker "
            "daemon (and network for the base image and wheels)"
        )
    build = subprocess.run(
        ["docker", "build", "--build-arg", "VARIANT=cpu", "-t", "second-look:test", "."],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    assert build.returncode == 0, build.stderr[-4000:]
    run = subprocess.run(
        ["docker", "run", "--rm", "second-look:test", "python", "cli.py", "--help"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0 and "worker" in run.stdout, run.stderr[-2000:]
