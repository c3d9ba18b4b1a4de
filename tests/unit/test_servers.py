"""mlci.servers with tiny real processes: MLflow telemetry off in every server's environment,
and a process group that is stopped whole, even when its leader is gone or a signal cuts the
graceful stop short. (The real mlflow server: tests/integration/test_signals.py.)
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlci import servers

#: What makes MLflow turn its telemetry off by itself (mlflow/telemetry/utils.py): removed
#: from a child's environment, so that only mlci's own setting can turn it off there.
CI_MARKERS = (
    "PYTEST_CURRENT_TEST",
    "GITHUB_ACTIONS",
    "CI",
    "CIRCLECI",
    "GITLAB_CI",
    "JENKINS_URL",
    "TRAVIS",
    "TF_BUILD",
    "BITBUCKET_BUILD_NUMBER",
    "CODEBUILD_BUILD_ARN",
    "BUILDKITE",
    "TEAMCITY_VERSION",
    "CLOUD_RUN_EXECUTION",
    "RUNBOT_HOST_URL",
    "RUNBOT_BUILD_NAME",
    "RUNBOT_WORKER_ID",
    "MLFLOW_DISABLE_TELEMETRY",
    "DO_NOT_TRACK",
)


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def _running(pid: int) -> bool:
    """Alive and not a zombie (a zombie holds no port; reaping it is its parent's job)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _wait_until(check, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


def _http_server_with_a_helper(port: int) -> list[str]:
    """A leader (the HTTP server) that leaves a helper in its group, as mlflow server does."""
    return [
        "sh",
        "-c",
        f"sleep 300 & exec {sys.executable} -m http.server --bind 127.0.0.1 {port}",
    ]


def test_a_local_server_runs_with_mlflow_telemetry_off(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "false")  # mlci's setting wins
    with servers.local_server(
        "http",
        _http_server_with_a_helper,
        "/",
        tmp_path / "http.log",
        start_timeout=30,
        env={"MLFLOW_DISABLE_TELEMETRY": "false"},
    ) as server:
        assert _environ(server.pid)["MLFLOW_DISABLE_TELEMETRY"] == "true"
        helpers = _children(server.pid)
        assert helpers and all(
            _environ(pid)["MLFLOW_DISABLE_TELEMETRY"] == "true" for pid in helpers
        )


def test_helpers_are_stopped_even_when_the_leader_died_first(tmp_path):
    with servers.local_server(
        "http", _http_server_with_a_helper, "/", tmp_path / "http.log", start_timeout=30
    ) as server:
        helpers = _children(server.pid)
        assert helpers
        os.kill(server.pid, 9)  # the leader dies; its helper stays in the group
        assert _wait_until(lambda: not _running(server.pid))
        assert all(_running(pid) for pid in helpers)
    assert _wait_until(lambda: not any(_running(pid) for pid in helpers), 5)


def test_a_signal_during_the_graceful_stop_still_kills_the_group():
    proc = subprocess.Popen(
        ["sh", "-c", "trap '' TERM; sleep 300 & wait"],  # ignores SIGTERM, as a stuck server
        start_new_session=True,
    )
    assert _wait_until(lambda: bool(_children(proc.pid)))
    helpers = _children(proc.pid)
    real_wait = proc.wait
    calls = []

    def wait(timeout=None):
        calls.append(timeout)
        if len(calls) == 1:
            raise KeyboardInterrupt  # Ctrl-C, or SIGTERM through mlci.tasks._signals
        return real_wait(timeout)

    proc.wait = wait
    with pytest.raises(KeyboardInterrupt):
        servers.stop_process_group(proc, grace=30)
    assert proc.returncode is not None
    assert _wait_until(lambda: not any(_running(pid) for pid in helpers), 5)


def _import_and_report(first_import: str) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k not in CI_MARKERS}
    code = (
        f"{first_import}\n"
        "import os, mlflow\n"
        "from mlflow.telemetry.client import get_telemetry_client\n"
        "print(get_telemetry_client() is None, os.environ.get('MLFLOW_DISABLE_TELEMETRY'))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_mlci_turns_mlflow_telemetry_off_before_mlflow_is_imported():
    # Control: in this environment, MLflow alone would start its telemetry client.
    assert _import_and_report("") == ["False", "None"]
    # `invoke <task>` imports mlci.tasks through tasks.py; `mlci` runs cli.main first.
    assert _import_and_report("import mlci.tasks") == ["True", "true"]
    # cli.main on its own (mlci.tasks replaced by an empty stand-in):
    main_first = (
        "import sys, types\nfrom unittest import mock\n"
        "sys.modules['mlci.tasks'] = types.SimpleNamespace(namespace=None)\n"
        "import mlci.cli\n"
        "with mock.patch('invoke.Program.run'): mlci.cli.main()"
    )
    assert _import_and_report(main_first) == ["True", "true"]
