"""The scan stage as Jenkins runs it: the real pysonar, a PATH without the virtual
environment, and an unreachable server.

Jenkins calls ``.venv/bin/invoke scan`` with the agent's own PATH. The scanner installed in
that environment must still be found, and pysonar's own argument parser must accept what
mlci gives it: the failure left is the one the situation calls for ("cannot be reached").
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlci import servers
from mlci.stages import scan

from .conftest import REPO_ROOT, make_context

pytestmark = pytest.mark.integration

VENV_BIN = Path(sys.executable).parent


def _reports(tmp_path: Path) -> Path:
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "junit.xml").write_text("<testsuites/>")
    (reports / "coverage.xml").write_text("<coverage/>")
    (reports / "ruff.json").write_text("[]")
    return reports


def _bare_env(**extra: str) -> dict[str, str]:
    """What a Jenkins agent gives a stage: no virtual environment on PATH, no MLCI_* of ours."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLCI_", "SONAR_"))}
    env.pop("VIRTUAL_ENV", None)
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
    env.update(extra)
    return env


def test_pysonar_is_not_on_path_here() -> None:
    # The premise of the test below: only the venv has pysonar.
    assert (VENV_BIN / "pysonar").is_file()
    found = subprocess.run(
        ["sh", "-c", "command -v pysonar"], env=_bare_env(), capture_output=True, text=True
    )
    assert found.returncode != 0, f"pysonar is on the bare PATH: {found.stdout}"


def test_invoke_scan_without_the_venv_on_path_reaches_for_the_server(tmp_path: Path) -> None:
    reports = _reports(tmp_path)
    url = f"http://127.0.0.1:{servers.free_port()}"  # nothing listens there
    env = _bare_env(
        MLCI_PROJECT_ROOT=str(REPO_ROOT),
        MLCI_REPORTS_DIR=str(reports),
        MLCI_STATE_DIR=str(tmp_path / "state"),
        MLCI_SONAR_HOST_URL=url,
        MLCI_SONAR_TOKEN="not-a-real-token",
        MLCI_SONAR_WORKING_DIR=str(tmp_path / ".scannerwork"),
    )
    done = subprocess.run(
        [str(VENV_BIN / "invoke"), "scan"], cwd=REPO_ROOT, env=env, capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 3, output
    assert f"SonarQube at {url} cannot be reached" in output
    assert "not installed" not in output
    assert "Traceback" not in output
    assert "not-a-real-token" not in output


def test_real_pysonar_accepts_every_argument_mlci_gives_it(tmp_path: Path) -> None:
    reports = _reports(tmp_path)
    url = f"http://127.0.0.1:{servers.free_port()}"
    ctx, _ = make_context(
        tmp_path,
        **{"sonar.host_url": url, "sonar.token": "x", "reports_dir": str(reports)},
    )
    props = scan.scan_properties(ctx, url)
    props["sonar.links.ci"] = "http://jenkins:8080/job/mlci/7/"
    # A bare program name is found beside this interpreter, not on PATH.
    argv = scan.scanner_argv(scan.resolve_scanner(["pysonar"]), props)
    assert argv[0] == str(VENV_BIN / "pysonar")
    done = subprocess.run(
        argv, cwd=REPO_ROOT, env=_bare_env(SONAR_TOKEN="x", HOME=str(tmp_path)),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    output = done.stdout + done.stderr
    # argparse refuses with exit 2 and "usage:"; an unreachable server is pysonar's exit 1.
    assert done.returncode == 1, output
    assert "usage:" not in output and "error: argument" not in output, output
    assert "Unexpected argument" not in output, output
    assert "Error while fetching the analysis version" in output, output


def test_pysonar_refuses_the_argument_form_mlci_used_before(tmp_path: Path) -> None:
    # Why the -D form: the long option is a flag there and takes no value.
    done = subprocess.run(
        [str(VENV_BIN / "pysonar"), "--sonar-qualitygate-wait=false"],
        env=_bare_env(HOME=str(tmp_path)), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert "ignored explicit argument 'false'" in done.stderr


def test_a_missing_scanner_names_where_it_was_looked_for(tmp_path: Path) -> None:
    from mlci.errors import ToolMissing

    with pytest.raises(ToolMissing) as info:
        scan.resolve_scanner(["pysonar-that-does-not-exist"])
    assert str(VENV_BIN) in info.value.why
    assert "PATH" in info.value.why
