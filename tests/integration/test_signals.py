"""SIGTERM and SIGHUP stop a real `invoke train` / `mlci train` as Ctrl-C does.

The stage runs against the embedded default: mlci starts a real `mlflow server` (its uvicorn
worker, job runner and huey consumers) in its own process group. The model module trains
until it is killed, so the signal always lands mid-training, with the server up. Only the
mlci process gets the signal (as from `timeout`, or a hang-up); what mlci started must be
gone afterwards, the port free, the run FAILED, and the exit one line with 143 / 129.
The same run shows that MLflow's telemetry is off in the mlci process before mlflow was
imported, and in the server's environment.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import REPO_ROOT

pytestmark = pytest.mark.integration

#: What makes MLflow turn telemetry off by itself (mlflow/telemetry/utils.py), and mlci's
#: own settings: none of it reaches the child, so only mlci can turn telemetry off there.
STRIPPED = (
    "PYTEST_CURRENT_TEST", "GITHUB_ACTIONS", "CI", "CIRCLECI", "GITLAB_CI", "JENKINS_URL",
    "TRAVIS", "TF_BUILD", "BITBUCKET_BUILD_NUMBER", "CODEBUILD_BUILD_ARN", "BUILDKITE",
    "TEAMCITY_VERSION", "CLOUD_RUN_EXECUTION", "RUNBOT_HOST_URL", "RUNBOT_BUILD_NAME",
    "RUNBOT_WORKER_ID", "MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK",
)  # fmt: skip

SLOW_MODEL = """
import json, os, sys, time

def train_and_evaluate(params):
    from mlflow.telemetry.client import get_telemetry_client
    facts = {
        "pid": os.getpid(),
        "MLFLOW_DISABLE_TELEMETRY": os.environ.get("MLFLOW_DISABLE_TELEMETRY"),
        "telemetry_client": get_telemetry_client() is not None,
    }
    with open(os.environ["SLOW_MODEL_MARKER"], "w") as out:
        json.dump(facts, out)
    time.sleep(600)  # until the signal
"""


def _stat(pid: int) -> list[str] | None:
    """Fields after the command name: [state, ppid, pgrp, ...]; None when gone or a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None if fields[0] == "Z" else fields


def _processes() -> dict[int, list[str]]:
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
            found[int(entry.name)] = fields
    return found


def _descendants(root: int) -> set[int]:
    table = _processes()
    found, frontier = set(), {root}
    while frontier:
        children = {pid for pid, f in table.items() if int(f[1]) in frontier} - found
        found |= children
        frontier = children
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def _group(pgid: int) -> set[int]:
    return {pid for pid, f in _processes().items() if int(f[2]) == pgid}


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _wait_for(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _start(tmp_path: Path, command: list[str]) -> tuple[subprocess.Popen, Path, Path]:
    """`command` (invoke or mlci train) on the embedded default, with the slow model."""
    (tmp_path / "slow_model.py").write_text(SLOW_MODEL)
    marker, errors = tmp_path / "training.json", tmp_path / "stderr.txt"
    env = {k: v for k, v in os.environ.items() if k not in STRIPPED and not k.startswith("MLCI_")}
    env.update(
        MLCI_PROJECT_ROOT=str(REPO_ROOT),
        MLCI_MODEL="wine",
        MLCI_STATE_DIR=str(tmp_path / "state"),
        MLCI_REPORTS_DIR=str(tmp_path / "reports"),
        MLCI_MODEL_MODULE="slow_model",
        MLCI_TRAIN_IN_IMAGE="never",
        MLCI_SERVER_START_TIMEOUT="240",
        PYTHONPATH=str(tmp_path),
        SLOW_MODEL_MARKER=str(marker),
    )
    with open(errors, "w") as stderr:
        proc = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,  # nothing but the signal sent here reaches it
            # as from a terminal: SIGHUP's default action, even if this runs under nohup
            preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL),
        )
    return proc, marker, errors


def _kill_leftovers(proc: subprocess.Popen, server_group: int | None) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    if server_group is not None and _group(server_group):
        os.killpg(server_group, signal.SIGKILL)


INVOKE = [sys.executable, "-m", "invoke", "train"]
MLCI = [str(Path(sys.executable).parent / "mlci"), "train"]


@pytest.mark.parametrize(
    ("sig", "code", "command"),
    [(signal.SIGTERM, 143, INVOKE), (signal.SIGHUP, 129, MLCI)],
    ids=["SIGTERM-invoke", "SIGHUP-mlci"],
)
def test_a_signal_stops_the_local_mlflow_server_and_exits_128_plus_signum(
    tmp_path, sig, code, command
):
    proc, marker, errors = _start(tmp_path, command)
    state = tmp_path / "state"
    server_group = None
    try:
        _wait_for(lambda: marker.exists() or proc.poll() is not None, 300, "training to start")
        assert proc.poll() is None, errors.read_text()
        facts = json.loads(marker.read_text())
        assert facts["pid"] == proc.pid  # the stage runs in the process that gets the signal

        # Telemetry: off in the mlci process before mlflow was imported ...
        assert facts["MLFLOW_DISABLE_TELEMETRY"] == "true"
        assert facts["telemetry_client"] is False
        descendants = _descendants(proc.pid)
        leader = next(
            p
            for p in descendants
            if _stat(p)[1] == str(proc.pid) and " mlflow server " in _cmdline(p)
        )
        server_group = int(_stat(leader)[2])
        assert server_group == leader  # its own process group, led by the server
        helpers = _group(server_group)
        assert len(helpers) >= 2, [_cmdline(p) for p in helpers]  # uvicorn, jobs, huey ...
        # ... and in the environment of every process of the server's group.
        assert {_environ(p).get("MLFLOW_DISABLE_TELEMETRY") for p in helpers} == {"true"}
        port = int(re.search(r"local mlflow server on http://127\.0\.0\.1:(\d+)",
                             errors.read_text()).group(1))  # fmt: skip
        assert not _port_free(port)

        os.kill(proc.pid, sig)  # the mlci process only
        assert proc.wait(timeout=90) == code
        lines = [line for line in errors.read_text().splitlines() if line.strip()]
        assert lines[-1] == f"interrupted by {sig.name}; local servers were stopped"
        assert "Traceback" not in errors.read_text()
        _wait_for(lambda: not _group(server_group), 5, "the server's process group to end")
        assert not {p for p in descendants if _stat(p) is not None}
        _wait_for(lambda: _port_free(port), 5, f"port {port} to be free")
        # The run was ended, as on Ctrl-C, before the server went.
        with contextlib.closing(sqlite3.connect(state / "mlflow" / "mlflow.db")) as db:
            assert [row[0] for row in db.execute("select status from runs")] == ["FAILED"]
    finally:
        _kill_leftovers(proc, server_group)


def test_a_signal_during_the_server_start_up_stops_it_too(tmp_path):
    """`timeout` may strike while mlflow server is still starting: no server is left behind."""
    proc, _, errors = _start(tmp_path, INVOKE)
    server_group = None
    try:

        def server_started():
            return next(
                (p for p in _descendants(proc.pid) if " mlflow server " in _cmdline(p)), None
            )

        leader = _wait_for(server_started, 120, "mlflow server to be started")
        server_group = int(_stat(leader)[2])
        assert "ready" not in errors.read_text()  # still starting
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=90) == 143
        lines = [line for line in errors.read_text().splitlines() if line.strip()]
        assert lines[-1] == "interrupted by SIGTERM; local servers were stopped"
        assert "Traceback" not in errors.read_text()
        _wait_for(lambda: not _group(server_group), 5, "the server's process group to end")
    finally:
        _kill_leftovers(proc, server_group)
