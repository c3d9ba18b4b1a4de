"""scan, gate and gate-as-code against the SonarQube double (a real HTTP server).

pysonar itself needs a real SonarQube to download its engine from, so the scan stage runs a
stand-in scanner (fake_scanner.py) that records its arguments and environment and writes
report-task.txt for an analysis queued on the double.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import requests

from mlci.clients.sonarqube import SonarQube, SonarServer
from mlci.errors import QualityGateFailed, SonarQubeError, StageFailed
from mlci.qualitygate import load_definition
from mlci.sonar_gate import apply_gate
from mlci.stages import gate, scan

from .conftest import REPO_ROOT, make_context

pytestmark = pytest.mark.integration

FAKE_SCANNER = str(Path(__file__).with_name("fake_scanner.py"))
GATE_FILE = REPO_ROOT / "sonarqube" / "quality-gate.toml"


def _token(double) -> str:
    resp = requests.post(
        double.url + "/api/user_tokens/generate",
        data={"name": "mlci-ci", "type": "USER_TOKEN"},
        auth=("admin", "admin"),
        timeout=10,
    )
    resp.raise_for_status()
    return resp.json()["token"]


@pytest.fixture
def sonar(sonarqube, tmp_path, monkeypatch):
    """The double, a user token, and a context whose reports look like `invoke test`'s."""
    token = _token(sonarqube)
    reports = tmp_path / "reports"
    reports.mkdir()
    for name in ("junit.xml", "coverage.xml"):
        (reports / name).write_text("<testsuites/>" if name == "junit.xml" else "<coverage/>")
    (reports / "ruff.json").write_text("[]")
    record = tmp_path / "scanner.json"
    monkeypatch.setenv("FAKE_SCANNER_RECORD", str(record))
    for var in ("SONAR_HOST_URL", "SONAR_TOKEN", "SONAR_AUTH_TOKEN"):
        monkeypatch.delenv(var, raising=False)

    def context(**overrides):
        return make_context(
            tmp_path,
            **{
                "sonar.host_url": sonarqube.url,
                "sonar.token": token,
                "sonar.project_key": "mlci-test",
                "sonar.scanner": [sys.executable, FAKE_SCANNER],
                "sonar.working_dir": str(tmp_path / ".scannerwork"),
                "sonar.poll_interval": 0.05,
                **overrides,
            },
        )

    return sonarqube, token, context, record


def _scan(sonar, monkeypatch, scenario=None, **fields):
    double, _, context, _ = sonar
    task_id = double.submit_analysis("mlci-test", scenario, **fields)
    monkeypatch.setenv("FAKE_SCANNER_TASK_ID", task_id)
    ctx, lines = context()
    with ctx:
        result = scan.run(ctx)
    return ctx, lines, result, task_id


def test_scan_passes_relative_reports_and_keeps_the_token_off_the_command_line(sonar, monkeypatch):
    _, token, _, record = sonar
    _, lines, result, task_id = _scan(sonar, monkeypatch)
    assert result.status == "passed"
    assert result.details["ce_task_id"] == task_id
    seen = json.loads(record.read_text())
    # Every property as -Dkey=value: the one form pysonar's parser takes for all of them.
    assert all(a.startswith("-D") for a in seen["argv"]), seen["argv"]
    args = dict(a[2:].split("=", 1) for a in seen["argv"])
    assert args["sonar.projectKey"] == "mlci-test"
    for key in ("coverage.reportPaths", "xunit.reportPath", "ruff.reportPaths"):
        path = args[f"sonar.python.{key}"]
        assert not Path(path).is_absolute(), path
        assert (REPO_ROOT / path).is_file(), path  # relative to the project root, and real
    assert args["sonar.qualitygate.wait"] == "false"
    assert seen["env_token"] == token  # the scanner gets it from its environment ...
    assert all(token not in a for a in seen["argv"])  # ... never from its arguments
    assert all(token not in line for line in lines)


def test_gate_waits_for_the_analysis_and_passes_on_ok(sonar, monkeypatch):
    ctx, _, _, _ = _scan(
        sonar, monkeypatch, ["PENDING", "IN_PROGRESS", "IN_PROGRESS", "SUCCESS"],
        gate_status="OK",
        conditions=[{"metric": "coverage", "op": "LT", "error": "60", "value": "82.5"}],
    )  # fmt: skip
    _, _, context, _ = sonar
    ctx, lines = context()
    with ctx:
        result = gate.run(ctx)
    assert result.status == "passed"
    assert result.summary == "OK (1 conditions, SonarQube)"
    assert any("is IN_PROGRESS" in line for line in lines)
    assert any(line.split()[:2] == ["coverage", "82.5"] for line in lines)


def test_gate_error_fails_with_the_failing_conditions(sonar, monkeypatch):
    _scan(
        sonar, monkeypatch, None,
        gate_status="ERROR",
        conditions=[
            {"metric": "coverage", "op": "LT", "error": "60", "value": "41.2"},
            {"metric": "violations", "op": "GT", "error": "0", "value": "0"},
        ],
    )  # fmt: skip
    _, _, context, _ = sonar
    ctx, _ = context()
    with ctx, pytest.raises(QualityGateFailed) as err:
        gate.run(ctx)
    text = str(err.value)
    assert "1 of 2 conditions in ERROR" in text
    assert "coverage is 41.2 (LT 60)" in text
    assert "violations" not in text.split("why:")[1].split("fix:")[0]


def test_failed_analysis_fails_with_its_reason(sonar, monkeypatch):
    from tests.doubles.sonarqube import AnalysisScenario

    _scan(sonar, monkeypatch, AnalysisScenario.failing("Unsupported Python version"))
    _, _, context, _ = sonar
    ctx, _ = context()
    with ctx, pytest.raises(StageFailed, match="ended FAILED") as err:
        gate.run(ctx)
    assert "Unsupported Python version" in str(err.value)


def test_never_finishing_analysis_fails_at_the_timeout(sonar, monkeypatch):
    from tests.doubles.sonarqube import AnalysisScenario

    _scan(sonar, monkeypatch, AnalysisScenario.never_finishing())
    _, _, context, _ = sonar
    ctx, _ = context(**{"sonar.gate_timeout": 1.0})
    with ctx, pytest.raises(SonarQubeError, match="did not finish within 1 s"):
        gate.run(ctx)


def test_rejected_token_is_a_clear_error(sonar, monkeypatch):
    double = sonar[0]
    _scan(sonar, monkeypatch)
    double.reject_all_requests = True
    _, _, context, _ = sonar
    ctx, _ = context()
    with ctx, pytest.raises(SonarQubeError, match="rejected the token"):
        gate.run(ctx)


def test_scanner_failure_stops_the_stage(sonar, monkeypatch):
    monkeypatch.setenv("FAKE_SCANNER_EXIT", "2")
    with pytest.raises(StageFailed, match="scan failed"):
        _scan(sonar, monkeypatch)


def test_gate_as_code_creates_then_changes_nothing_then_updates_one(sonarqube, tmp_path):
    client = SonarQube(SonarServer(sonarqube.url, _token(sonarqube)), timeout=10)
    definition = load_definition(GATE_FILE)

    first = apply_gate(client, definition, "mlci-gate", "mlci gate")
    actions = [c.action for c in first]
    assert actions[:2] == ["create project", "create gate"]
    assert actions.count("create condition") == len(definition.conditions)
    assert actions[-1] == "select gate"
    assert sonarqube.project_gate("mlci-gate")[0] == definition.name

    before = sonarqube.snapshot()
    sonarqube.reset_counters()
    assert apply_gate(client, definition, "mlci-gate", "mlci gate") == []
    assert sonarqube.mutation_count() == 0
    assert sonarqube.snapshot() == before

    edited = tmp_path / "gate.toml"
    edited.write_text(GATE_FILE.read_text().replace("error = 60", "error = 75"))
    changes = apply_gate(client, load_definition(edited), "mlci-gate", "mlci gate")
    assert [(c.action, c.detail) for c in changes] == [
        ("update condition", "coverage: LT 60 -> LT 75")
    ]
    assert sonarqube.mutation_count() == 1


def test_gate_as_code_dry_run_changes_nothing(sonarqube):
    client = SonarQube(SonarServer(sonarqube.url, _token(sonarqube)), timeout=10)
    before = sonarqube.snapshot()
    changes = apply_gate(client, load_definition(GATE_FILE), "dry", "dry", dry_run=True)
    assert "create gate" in [c.action for c in changes]
    assert sonarqube.snapshot() == before


def test_pipeline_stops_at_a_failing_sonarqube_gate(sonar, monkeypatch):
    from mlci.pipeline import run_pipeline

    double, _, context, _ = sonar
    task_id = double.submit_analysis(
        "mlci-test", None, gate_status="ERROR",
        conditions=[{"metric": "coverage", "op": "LT", "error": "60", "value": "12.0"}],
    )  # fmt: skip
    monkeypatch.setenv("FAKE_SCANNER_TASK_ID", task_id)
    ctx, lines = context()
    with ctx:
        results, error = run_pipeline(ctx, stages=("scan", "gate", "image", "train"))
    assert [(r.stage, r.status) for r in results] == [
        ("scan", "passed"), ("gate", "failed"), ("image", "not run"), ("train", "not run"),
    ]  # fmt: skip
    assert isinstance(error, QualityGateFailed)
    assert any("coverage is 12.0 (LT 60)" in line for line in lines)


def test_no_sonarqube_means_scan_skipped_and_local_gate(tmp_path, monkeypatch):
    for var in ("SONAR_HOST_URL", "SONAR_TOKEN", "SONAR_AUTH_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    ctx, lines = make_context(tmp_path, **{"sonar.scanner": ["no-such-scanner"]})
    with ctx:
        result = scan.run(ctx)
    assert result.summary == "skipped: no SonarQube configured"  # no scanner was needed
    assert lines == ["scan: skipped: no SonarQube configured (the gate is evaluated locally)"]
