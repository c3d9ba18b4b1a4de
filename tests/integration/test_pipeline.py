"""`invoke pipeline` end to end, as the README's first command runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from mlci.stages import PIPELINE_STAGES

from .conftest import BASE_IMAGE, REPO_ROOT

pytestmark = pytest.mark.integration


def _env(tmp_path, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLCI_")}
    env.update(
        MLCI_PROJECT_ROOT=str(REPO_ROOT),
        MLCI_REPORTS_DIR=str(tmp_path / "reports"),
        MLCI_STATE_DIR=str(tmp_path / "state"),
        **extra,
    )
    return env


def _pipeline(env):
    return subprocess.run(
        [sys.executable, "-m", "invoke", "pipeline"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_pipeline_runs_every_stage_to_a_green_summary(tmp_path, docker_engine):
    env = _env(tmp_path, MLCI_IMAGE_BASE_IMAGE=BASE_IMAGE, MLCI_IMAGE_NETWORK="host")
    proc = _pipeline(env)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    assert "Traceback" not in output
    summary = json.loads((tmp_path / "reports" / "summary.json").read_text())
    assert [s["stage"] for s in summary["stages"]] == list(PIPELINE_STAGES)
    statuses = {s["stage"]: s["status"] for s in summary["stages"]}
    assert statuses.pop("scan") == "skipped"  # no SonarQube here: the gate runs locally
    # no deployment runs here, and the pipeline starts none (invoke deploy does)
    assert statuses.pop("deploy") == "skipped"
    assert set(statuses.values()) == {"passed"}
    by_stage = {s["stage"]: s for s in summary["stages"]}
    assert by_stage["promote"]["summary"] == "wine: champion -> v1; diabetes: champion -> v1"
    assert by_stage["release"]["summary"].endswith("uploaded, 0 already there, verified")
    assert "mlci pipeline summary" in proc.stdout

    # Nothing changed: every stage that ran is cached (the image checked on the engine), its
    # reports back in place, and no model version is added.
    (tmp_path / "reports" / "models" / "wine" / "train.json").unlink()
    again = _pipeline(env)
    assert again.returncode == 0, (again.stdout + again.stderr)[-4000:]
    rerun = json.loads((tmp_path / "reports" / "summary.json").read_text())
    statuses = {s["stage"]: s["status"] for s in rerun["stages"]}
    assert statuses.pop("scan") == "skipped"
    assert statuses.pop("deploy") == "skipped"
    assert set(statuses.values()) == {"cached"}, statuses
    promoted = {s["stage"]: s for s in rerun["stages"]}["promote"]["summary"]
    assert promoted.startswith("wine: champion -> v1 [cached ")
    assert "diabetes: champion -> v1 [cached " in promoted
    assert (tmp_path / "reports" / "models" / "wine" / "train.json").is_file()
    # the local servers were stopped with the pipeline
    leftover = [
        p for p in os.listdir("/proc") if p.isdigit() and _cmdline(p).find(str(tmp_path)) >= 0
    ]
    assert leftover == []
    assert (tmp_path / "reports" / "summary.html").is_file()


def test_pipeline_stops_at_the_first_failure(tmp_path):
    gate = tmp_path / "strict-gate.toml"
    gate.write_text('name = "strict"\n[[conditions]]\nmetric = "tests"\nop = "LT"\nerror = 1e9\n')
    env = _env(tmp_path, MLCI_GATE_FILE=str(gate))
    proc = _pipeline(env)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output[-4000:]
    assert "Traceback" not in output
    assert "QualityGateFailed: quality gate 'strict' failed" in output
    summary = json.loads((tmp_path / "reports" / "summary.json").read_text())
    statuses = [(s["stage"], s["status"]) for s in summary["stages"]]
    assert statuses == [
        ("lint", "passed"),
        ("test", "passed"),
        ("scan", "skipped"),
        ("gate", "failed"),
        ("image", "not run"),
        ("train", "not run"),
        ("promote", "not run"),
        ("deploy", "not run"),
        ("release", "not run"),
    ]
    assert not (tmp_path / "state" / "mlflow").exists()  # no server was started


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""
