"""The Compose command: which program, the explicit files, no secret in the argument list."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from mlci.errors import DockerEngineError, ToolMissing
from mlci.platform.compose import Compose, compose_program
from mlci.platform.secrets import ensure_for_compose
from mlci.settings import load_settings

REPO_ROOT = Path(__file__).resolve().parents[2]


class FakeRunner:
    def __init__(self, returncode: int = 0) -> None:
        self.calls: list[tuple[list[str], Path, dict[str, Any]]] = []
        self.returncode = returncode

    def __call__(self, argv: list[str], cwd: Path, **kwargs: Any) -> subprocess.CompletedProcess:
        self.calls.append((list(argv), cwd, kwargs))
        return subprocess.CompletedProcess(argv, self.returncode, "", "")


def which_of(*present: str):
    return lambda name: f"/usr/bin/{name}" if name in present else None


def test_docker_compose_v1_wins_then_the_plugin_then_a_clear_error() -> None:
    assert compose_program(which_of("docker-compose", "docker")) == ["docker-compose"]
    assert compose_program(which_of("docker")) == ["docker", "compose"]
    with pytest.raises(ToolMissing, match="neither docker-compose nor docker") as caught:
        compose_program(which_of())
    assert "Compose" in caught.value.what and "install" in caught.value.fix


def compose(tmp_path: Path, runner: FakeRunner, *present: str) -> Compose:
    settings = load_settings(
        {"platform.env_file": str(tmp_path / "platform.env")}, root=REPO_ROOT, environ={}
    )
    return Compose.from_settings(settings, runner, which_of(*present))


def test_up_names_project_env_file_and_compose_file_and_no_secret(tmp_path: Path) -> None:
    env = ensure_for_compose(tmp_path / "platform.env", REPO_ROOT / "services" / "compose.yaml")
    runner = FakeRunner()
    compose(tmp_path, runner, "docker-compose").up()
    ((argv, cwd, _),) = runner.calls
    assert argv == [
        "docker-compose", "--project-name", "mlci",
        "--env-file", str(tmp_path / "platform.env"),
        "-f", str(REPO_ROOT / "services" / "compose.yaml"),
        "up", "-d", "--build",
    ]  # fmt: skip
    assert cwd == REPO_ROOT
    assert not any(value in " ".join(argv) for value in env.secrets())


def test_plugin_form_down_and_recreate(tmp_path: Path) -> None:
    runner = FakeRunner()
    project = compose(tmp_path, runner, "docker")
    project.down()
    project.down(volumes=True)
    project.up("jenkins", build=False)
    argvs = [call[0] for call in runner.calls]
    assert [a[:2] for a in argvs] == [["docker", "compose"]] * 3
    assert argvs[0][-1:] == ["down"] and argvs[1][-2:] == ["down", "--volumes"]
    assert argvs[2][-3:] == ["up", "-d", "jenkins"]


def test_a_failing_compose_command_is_a_docker_engine_error(tmp_path: Path) -> None:
    with pytest.raises(
        DockerEngineError, match=r"Compose: starting the services failed \(exit 1\)"
    ):
        compose(tmp_path, FakeRunner(returncode=1), "docker-compose").up()
