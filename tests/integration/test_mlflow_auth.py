"""A tracking server with basic auth: wrong credentials end in one clear message."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys

import pytest

from .conftest import REPO_ROOT

pytestmark = pytest.mark.integration


@pytest.fixture
def auth_server(mlflow_auth_server):
    return mlflow_auth_server.url, mlflow_auth_server.admin_password


def _promote(tmp_path, url, username, password):
    reports = tmp_path / "reports"
    (reports / "models" / "wine").mkdir(parents=True, exist_ok=True)
    (reports / "models" / "wine" / "train.json").write_text(json.dumps(
        {"registered_model": "guarded", "version": "1", "run_id": "r" * 32,
         "tracking_uri": url, "tracking_is_local": False}
    ))  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLCI_", "MLFLOW_"))}
    env.update(
        MLCI_PROJECT_ROOT=str(REPO_ROOT),
        MLCI_MODEL="wine",
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
    # They are set, so the message says which login was refused, not "set them".
    assert "refused the login of 'admin'" in output
    assert "check MLFLOW_TRACKING_PASSWORD" in output
    assert "Traceback" not in output
    assert wrong not in output


def test_no_credentials_say_which_to_set(tmp_path, auth_server):
    url, _ = auth_server
    proc = _promote(tmp_path, url, "", "")
    output = proc.stdout + proc.stderr
    assert proc.returncode == 3, output
    assert "this server needs a login: set MLFLOW_TRACKING_USERNAME and" in output
    assert "Traceback" not in output


def test_right_credentials_get_past_authentication(tmp_path, auth_server):
    url, password = auth_server
    proc = _promote(tmp_path, url, "admin", password)
    output = proc.stdout + proc.stderr
    # authenticated: now the honest answer is that the model does not exist
    assert proc.returncode == 3, output
    assert "has no such version" in output
    assert "MLFLOW_TRACKING_USERNAME" not in output
    assert password not in output
