"""The docker-compose command for the platform, run through an injected runner.

``docker-compose`` (v1, Debian's 1.29) when it is on PATH, else the ``docker compose`` plugin.
Every command names the project, the env file and the Compose file explicitly; Compose reads
the secrets from the env file, so no secret ever appears in the argument list.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlci.errors import DockerEngineError, ToolMissing
from mlci.resources import platform_file
from mlci.settings import Settings

Runner = Callable[..., subprocess.CompletedProcess[str]]


def compose_program(which: Callable[[str], str | None] | None = None) -> list[str]:
    """``["docker-compose"]`` or ``["docker", "compose"]``, whichever is installed."""
    which = which or shutil.which
    if which("docker-compose"):
        return ["docker-compose"]
    if which("docker"):
        return ["docker", "compose"]
    raise ToolMissing(
        "Compose: neither docker-compose nor docker is installed",
        "the platform's services are started with Docker Compose",
        "install Docker Engine with the Compose plugin (or docker-compose 1.29+), then run "
        "`invoke platform.up` again",
    )


def ping_engine(timeout: float = 10.0) -> None:
    """Raise DockerEngineError unless a Docker engine answers (DOCKER_HOST or the socket)."""
    import docker
    from docker.errors import DockerException

    try:
        client = docker.from_env(timeout=int(max(timeout, 1)))
        try:
            client.ping()
        finally:
            client.close()
    except DockerException as exc:
        raise DockerEngineError(
            "Compose: no Docker engine answers",
            str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__,
            "start Docker (systemctl start docker) or set DOCKER_HOST, then run "
            "`invoke platform.up` again",
        ) from None


@dataclass
class Compose:
    """The platform's Compose project: ``argv()`` builds a command, ``run()`` runs it."""

    compose_file: Path
    env_file: Path
    project_name: str
    cwd: Path
    runner: Runner
    program: list[str] = field(default_factory=list)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        runner: Runner,
        which: Callable[[str], str | None] | None = None,
    ) -> Compose:
        platform = settings.platform
        return cls(
            compose_file=platform_file(settings, platform.compose_file),
            env_file=settings.path(platform.env_file),
            project_name=platform.project_name,
            cwd=settings.project_root,
            runner=runner,
            program=compose_program(which),
        )

    def argv(self, *args: str) -> list[str]:
        return [
            *self.program,
            "--project-name",
            self.project_name,
            "--env-file",
            str(self.env_file),
            "-f",
            str(self.compose_file),
            *args,
        ]

    def run(self, step: str, *args: str, timeout: float | None = None) -> Any:
        argv = self.argv(*args)
        try:
            result = self.runner(argv, self.cwd, timeout=timeout)
        except FileNotFoundError:
            raise ToolMissing(
                f"Compose: {argv[0]} cannot be started ({step})",
                "it was on PATH when mlci looked, but running it failed",
                "reinstall Docker Compose",
            ) from None
        except subprocess.TimeoutExpired:
            raise DockerEngineError(
                f"Compose: {step} did not finish within {timeout:g} s",
                " ".join(args),
                "look at `docker-compose ps` and the services' logs",
            ) from None
        if result.returncode != 0:
            raise DockerEngineError(
                f"Compose: {step} failed (exit {result.returncode})",
                "docker-compose printed the reason above",
                "fix what it names (a missing image, a port in use, a stopped engine) and run "
                "the task again; `docker-compose logs SERVICE` shows a service's output",
            )
        return result

    def up(self, *services: str, build: bool = True) -> None:
        args = ["up", "-d"] + (["--build"] if build else []) + list(services)
        self.run(
            "starting the services" if not services else f"recreating {', '.join(services)}", *args
        )

    def down(self, *, volumes: bool = False) -> None:
        self.run("stopping the services", "down", *(["--volumes"] if volumes else []))


def command_line(argv: Sequence[str]) -> str:
    """The command as a person would type it (for messages)."""
    import shlex

    return " ".join(shlex.quote(a) for a in argv)
