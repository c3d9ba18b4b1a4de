"""Real servers on 127.0.0.1 for the integration tests, started once per session.

They are started by the same helper the embedded default uses (mlci.servers), so the
tests exercise the code path users run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlci import servers
from mlci.context import StageContext
from mlci.settings import load_settings
from tests.doubles.fixtures import sonarqube  # noqa: F401 - the SonarQube double

REPO_ROOT = Path(__file__).resolve().parents[2]
BASE_IMAGE = "local/python:3.11-bookworm"


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    state = tmp_path_factory.mktemp("mlflow-state")
    with servers.local_server(
        "mlflow server",
        servers.mlflow_server_command(state),
        "/health",
        state / "mlflow-server.log",
        start_timeout=180,
    ) as server:
        yield server.url


@pytest.fixture(scope="session")
def pypi_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    packages = tmp_path_factory.mktemp("pypi-packages")
    with servers.local_server(
        "pypiserver",
        servers.pypi_server_command(packages),
        "/health",
        packages.parent / f"{packages.name}.log",
        start_timeout=60,
    ) as server:
        yield server.url, packages


def make_context(
    tmp_path: Path, root: Path = REPO_ROOT, **overrides: Any
) -> tuple[StageContext, list[str]]:
    """A StageContext on ``root`` with reports and state under ``tmp_path``; logs captured."""
    values = {
        "reports_dir": str(tmp_path / "reports"),
        "state_dir": str(tmp_path / "state"),
        **overrides,
    }
    settings = load_settings(values, root=root, environ={})
    lines: list[str] = []
    return StageContext(settings, log=lines.append), lines


@pytest.fixture(scope="session")
def docker_engine() -> None:
    """The Docker engine and the local base image; CI must have them, elsewhere skip."""
    import docker
    from docker.errors import DockerException, ImageNotFound

    try:
        client = docker.from_env(timeout=10)
        client.ping()
        client.images.get(BASE_IMAGE)
    except (DockerException, ImageNotFound) as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI must provide a Docker engine and {BASE_IMAGE}: {exc}")
        pytest.skip(f"no Docker engine or no {BASE_IMAGE} (run .ci/provision): {exc}")


def _postgres_running() -> bool:
    import shutil
    import subprocess

    if not shutil.which("pg_lsclusters"):
        return False
    out = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True, check=False)
    return " online " in f" {out.stdout} "


@pytest.fixture(scope="session")
def postgres_mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `mlflow server` on a real PostgreSQL (Debian's, started by .ci/provision).

    A throw-away role and database with a random password; the password reaches the server
    through PGPASSWORD, never its command line.
    """
    import secrets
    import subprocess
    import sys

    if not _postgres_running():
        if os.environ.get("CI"):
            pytest.fail("CI must provide PostgreSQL (.ci/provision starts it)")
        pytest.skip("no PostgreSQL cluster online (run .ci/provision)")
    suffix = secrets.token_hex(4)
    role, database, password = f"mlci_{suffix}", f"mlflow_{suffix}", secrets.token_urlsafe(18)
    sql = [
        f"create role {role} login password '{password}'",
        f"create database {database} owner {role}",
    ]
    for statement in sql:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", "psql", "-q", "-c", statement],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
    state = tmp_path_factory.mktemp("mlflow-pg")
    artifacts = state / "artifacts"
    artifacts.mkdir()

    def command(port: int) -> list[str]:
        return [
            sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", f"postgresql+psycopg://{role}@127.0.0.1:5432/{database}",
            "--artifacts-destination", str(artifacts), "--serve-artifacts",
            "--host", "127.0.0.1", "--port", str(port), "--workers", "2",
        ]  # fmt: skip

    try:
        with servers.local_server(
            "mlflow server (PostgreSQL)", command, "/health", state / "server.log",
            start_timeout=180, env={"PGPASSWORD": password},
        ) as server:  # fmt: skip
            yield server.url
    finally:
        for statement in (f"drop database if exists {database}", f"drop role if exists {role}"):
            subprocess.run(
                ["runuser", "-u", "postgres", "--", "psql", "-q", "-c", statement],
                check=False, capture_output=True, timeout=60,
            )  # fmt: skip
