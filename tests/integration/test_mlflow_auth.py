"""A tracking server with basic auth: wrong credentials end in one clear message."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys

import pytest

from mlci import servers

from .conftest import REPO_ROOT

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
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

    def command(port):
        return [*base(port), "--app-name", "basic-auth"]

    env = {
        "MLFLOW_AUTH_CONFIG_PATH": str(ini),
        "MLFLOW_AUTH_ADMIN_PASSWORD": password,  # read by the server, never on its argv
        "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16),
    }
    with servers.local_server(
        "mlflow server (basic auth)", command, "/health", state / "server.log",
        start_timeout=180, env=env,
    ) as server:  # fmt: skip
        yield server.url, password


def _promote(tmp_path, url, username, password):
    reports = tmp_path / "reports"
    reports.mkdir(exist_ok=True)
    (reports / "train.json").write_text(json.dumps(
        {"registered_model": "guarded", "version": "1", "tracking_uri": url,
         "tracking_is_local": False}
    ))  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLCI_", "MLFLOW_"))}
    env.update(
        MLCI_PROJECT_ROOT=str(REPO_ROOT),
        MLCI_REPORTS_DIR=str(reports),
        MLCI_STATE_DIR=str(tmp_path / "state"),
        MLCI_MLFLOW_TRACKING_URI=url,
        MLCI_MLFLOW_RETRIES="0",
        MLFLOW_TRACKING_USERNAME=username,
        MLFLOW_TRACKING_PASSWORD=password,
    )
    return subprocess.run(
        [sys.executable, "-m", "invoke", "promote"], cwd=REPO_ROOT, env=env,
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip


def test_wrong_credentials_are_a_clear_error(tmp_path, auth_server):
    url, _ = auth_server
    wrong = "not-the-password-" + secrets.token_hex(4)
    proc = _promote(tmp_path, url, "admin", wrong)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 3, output
    assert "TrackingServerError" in output
    assert "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD" in output
    assert "Traceback" not in output
    assert wrong not in output


def test_right_credentials_get_past_authentication(tmp_path, auth_server):
    url, password = auth_server
    proc = _promote(tmp_path, url, "admin", password)
    output = proc.stdout + proc.stderr
    # authenticated: now the honest answer is that the model does not exist
    assert proc.returncode == 3, output
    assert "RESOURCE_DOES_NOT_EXIST" in output or "not found" in output.lower()
    assert "MLFLOW_TRACKING_USERNAME" not in output
    assert password not in output
