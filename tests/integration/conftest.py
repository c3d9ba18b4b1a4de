"""Real servers on 127.0.0.1 for the integration tests, started once per session.

They are started by the same helper the embedded default uses (mlci.servers), so the
tests exercise the code path users run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mlci import servers
from mlci.context import StageContext
from mlci.settings import load_settings
from tests.doubles.fixtures import sonarqube  # noqa: F401 - the SonarQube double
from tests.integration import tracking_tier as tracking_tier_module
from tests.integration.tracking_tier import TrackingTier

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
        env=servers.MLFLOW_SERVER_ENV,  # as mlci starts it: no job runner (8 processes fewer)
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
    tmp_path: Path, root: Path = REPO_ROOT, model: str = "wine", **overrides: Any
) -> tuple[StageContext, list[str]]:
    """A StageContext on ``root`` with reports and state under ``tmp_path``; logs captured."""
    values = {
        "reports_dir": str(tmp_path / "reports"),
        "state_dir": str(tmp_path / "state"),
        **overrides,
    }
    # This repository has two models; a test of one stage works on one of them, the wine
    # classifier unless it says otherwise (its overrides, from the "command line", still win
    # over the model's table). Its reports go to reports/models/<model>/.
    environ = {"MLCI_MODEL": model} if root == REPO_ROOT else {}
    settings = load_settings(values, root=root, environ=environ)
    lines: list[str] = []
    return StageContext(settings, log=lines.append), lines


def train_and_promote(
    tmp_path: Path, uri: str, model: str, params: dict, of: str = "wine", **extra: Any
):
    """train.run then promote.run of this repository's model ``of``, registered as ``model``:
    (train result, promote result, log lines)."""
    from mlci.stages import promote, train

    ctx, lines = make_context(
        tmp_path,
        model=of,
        **{
            "mlflow.tracking_uri": uri,
            "mlflow.registered_model": model,
            "mlflow.experiment": model,
            "model.params": params,
            **extra,
        },
    )
    with ctx:
        trained = train.run(ctx)
        promoted = promote.run(ctx)
    return trained, promoted, lines


def invoke_model_task(
    args: list[str], uri: str, model: str, tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    """`invoke <args>` in a subprocess against ``uri`` and ``model``, only mlci's own env."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLCI_")}
    env.update(
        MLCI_PROJECT_ROOT=str(REPO_ROOT),
        MLCI_MODEL="wine",
        MLCI_MLFLOW_TRACKING_URI=uri,
        MLCI_MLFLOW_REGISTERED_MODEL=model,
        MLCI_REPORTS_DIR=str(tmp_path / "reports"),
        MLCI_STATE_DIR=str(tmp_path / "state"),
    )
    return subprocess.run(
        [sys.executable, "-m", "invoke", *args], cwd=REPO_ROOT, env=env,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


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


_postgres_running = tracking_tier_module.postgres_online


def _needs(what: str) -> None:
    """CI must have ``what``; elsewhere its absence skips the test."""
    if os.environ.get("CI"):
        pytest.fail(f"CI must provide {what} (.ci/provision installs it)")
    pytest.skip(f"{what} is missing here (run .ci/provision)")


@pytest.fixture(scope="session")
def postgres_mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `mlflow server` on a real PostgreSQL (Debian's, started by .ci/provision).

    A throw-away role and database with a random password; the password reaches the server
    through PGPASSWORD, never its command line.
    """
    if not _postgres_running():
        _needs("a PostgreSQL cluster online")
    state = tmp_path_factory.mktemp("mlflow-pg")
    artifacts = state / "artifacts"
    artifacts.mkdir()

    with tracking_tier_module.throwaway_database() as db:

        def command(port: int) -> list[str]:
            return [
                sys.executable, "-m", "mlflow", "server", "--backend-store-uri", db.uri,
                "--artifacts-destination", str(artifacts), "--serve-artifacts",
                "--host", "127.0.0.1", "--port", str(port), "--workers", "2",
            ]  # fmt: skip

        with servers.local_server(
            "mlflow server (PostgreSQL)", command, "/health", state / "server.log",
            start_timeout=180, env={"PGPASSWORD": db.password},
        ) as server:  # fmt: skip
            yield server.url


@pytest.fixture(scope="module")
def tracking_tier(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TrackingTier]:
    """N `mlflow server` replicas on one PostgreSQL database behind HAProxy (see
    tests/integration/tracking_tier.py); N is 3 unless a test parametrises it indirectly.
    Per module: the tier's processes and database connections are gone once its tests ran."""
    replicas = getattr(request, "param", 3)
    why = tracking_tier_module.missing_prerequisites()
    if why:
        _needs(f"HAProxy and PostgreSQL for the tracking tier: {why}")
    with tracking_tier_module.tracking_tier(
        replicas, tmp_path_factory.mktemp(f"tracking-tier-{replicas}")
    ) as tier:
        yield tier


@dataclass(frozen=True)
class ImageRegistry:
    """A real Docker registry (Debian's docker-registry, distribution 2.8) with htpasswd."""

    address: str  # host:port, as the Docker engine reaches it
    username: str
    password: str


@pytest.fixture(scope="session")
def image_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ImageRegistry]:
    """``docker-registry serve`` on 127.0.0.1 (plain HTTP: the engine allows it on loopback),
    demanding a login from an htpasswd file of bcrypt entries; .ci/provision installs it."""
    import secrets
    import shutil
    import subprocess

    program, htpasswd = shutil.which("docker-registry"), shutil.which("htpasswd")
    if program is None or htpasswd is None:
        if os.environ.get("CI"):
            pytest.fail("CI must provide docker-registry and htpasswd (.ci/provision)")
        pytest.skip("no docker-registry / htpasswd (apt-get install docker-registry apache2-utils)")
    state = tmp_path_factory.mktemp("registry")
    username, password = "mlci-test", secrets.token_urlsafe(18)
    # -i: the password comes from stdin, never the command line; -B: bcrypt, as required.
    entry = subprocess.run(
        [htpasswd, "-niB", username], input=password, capture_output=True, text=True,
        check=True, timeout=60,
    ).stdout.strip()  # fmt: skip
    (state / "htpasswd").write_text(entry + "\n")

    def command(port: int) -> list[str]:
        config = state / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log: {level: warn}\n"
            f"storage: {{filesystem: {{rootdirectory: {state / 'data'}}}}}\n"
            f"http: {{addr: '127.0.0.1:{port}', secret: '{secrets.token_hex(16)}'}}\n"
            f"auth: {{htpasswd: {{realm: mlci-test, path: {state / 'htpasswd'}}}}}\n"
        )
        return [program, "serve", str(config)]

    # The registry answers GET / with 200 without authentication; /v2/ needs the login.
    with servers.local_server(
        "image registry", command, "/", state / "registry.log", start_timeout=60
    ) as server:
        yield ImageRegistry(server.url.removeprefix("http://"), username, password)


@dataclass(frozen=True)
class AuthServer:
    """A real `mlflow server` with its basic-auth app, and its admin's password."""

    url: str
    admin_password: str


@pytest.fixture(scope="session")
def mlflow_auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    """``mlflow server --app-name basic-auth`` on SQLite, default permission READ, as the
    platform runs it; the admin password reaches it through its environment only."""
    import secrets

    pytest.importorskip("flask_wtf", reason="mlflow's basic-auth app needs Flask-WTF")
    state = tmp_path_factory.mktemp("mlflow-auth")
    password = secrets.token_urlsafe(16)
    ini = state / "basic_auth.ini"
    ini.write_text(
        "[mlflow]\ndefault_permission = READ\n"
        f"database_uri = sqlite:///{state / 'auth.db'}\n"
        "admin_username = admin\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    base = servers.mlflow_server_command(state)

    def command(port: int) -> list[str]:
        return [*base(port), "--app-name", "basic-auth"]

    env = {
        "MLFLOW_AUTH_CONFIG_PATH": str(ini),
        "MLFLOW_AUTH_ADMIN_PASSWORD": password,
        "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16),
    }
    with servers.local_server(
        "mlflow server (basic auth)", command, "/health", state / "server.log",
        start_timeout=180, env=env,
    ) as server:  # fmt: skip
        yield AuthServer(server.url, password)
