"""`mlci server`: a local MLflow server that outlives the command, used by the stages while it
runs, so that the links they report keep opening after the run."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.request

import pytest

from mlci import servers

from .conftest import REPO_ROOT

pytestmark = pytest.mark.integration


def _invoke(tmp_path, port, *args):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLCI_")}
    env.update(
        MLCI_PROJECT_ROOT=str(REPO_ROOT),
        MLCI_MODEL="wine",
        MLCI_REPORTS_DIR=str(tmp_path / "reports"),
        MLCI_STATE_DIR=str(tmp_path / "state"),
        MLCI_MLFLOW_SERVER_PORT=str(port),
    )
    return subprocess.run(
        [sys.executable, "-m", "invoke", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _health(url):
    try:
        with urllib.request.urlopen(url + "/health", timeout=5) as resp:
            return resp.status == 200
    except OSError:
        return False


def test_the_server_outlives_the_command_and_serves_the_stages(tmp_path):
    port = servers.free_port()
    url = f"http://127.0.0.1:{port}"
    try:
        started = _invoke(tmp_path, port, "server")
        assert started.returncode == 0, started.stderr
        assert f"MLflow: {url}" in started.stdout
        assert _health(url)  # the command has returned; the server runs on
        again = _invoke(tmp_path, port, "ui")  # the alias; finds it running
        assert again.returncode == 0 and "already runs" in again.stderr

        trained = _invoke(tmp_path, port, "train")
        assert trained.returncode == 0, trained.stderr[-3000:]
        assert f"using the local mlflow server at {url}" in trained.stderr
        report = json.loads((tmp_path / "reports" / "models" / "wine" / "train.json").read_text())
        assert report["tracking_uri"] == url
        assert report["links"]["model version"].startswith(
            f"{url}/#/models/wine-classifier/versions/"
        )
        assert _health(url)  # the stage did not stop a server it did not start
    finally:
        stopped = _invoke(tmp_path, port, "server", "--stop")
    assert "local mlflow server stopped" in stopped.stdout
    assert not _health(url)
    assert not (tmp_path / "state" / "mlflow" / "server.json").exists()
    assert (
        "no local mlflow server was running" in _invoke(tmp_path, port, "server", "--stop").stdout
    )


def test_a_taken_port_is_a_clear_error(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        proc = _invoke(tmp_path, port, "server")
    assert proc.returncode == 3
    assert f"port {port} on 127.0.0.1 is taken by another program" in proc.stderr
    assert f"MLCI_MLFLOW_SERVER_PORT={port + 1}" in proc.stderr
    assert "Traceback" not in proc.stderr
