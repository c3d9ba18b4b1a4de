"""stages.gate: the quality gate evaluated locally from the reports of lint and test."""

from __future__ import annotations

import json
import re

import pytest

from mlci.context import StageContext
from mlci.errors import ConfigError, QualityGateFailed, StageFailed
from mlci.stages import PASSED
from mlci.stages import gate as gate_stage

GATE = """
name = "demo-gate"

[[conditions]]
metric = "coverage"
op = "LT"
error = 80

[[conditions]]
metric = "test_failures"
op = "GT"
error = 0

[[conditions]]
metric = "violations"
op = "GT"
error = 0

[[conditions]]
metric = "duplicated_lines_density"
op = "GT"
error = 3
"""


def _junit(tests: int, failures: int) -> str:
    cases = "".join(
        f'<testcase classname="t" name="c{i}">{"<failure/>" if i < failures else ""}</testcase>'
        for i in range(tests)
    )
    return (
        f'<testsuites><testsuite tests="{tests}" failures="{failures}" errors="0" skipped="0">'
        f"{cases}</testsuite></testsuites>"
    )


def _cobertura(lines_valid: int, lines_covered: int) -> str:
    return (
        f'<coverage lines-valid="{lines_valid}" lines-covered="{lines_covered}" '
        'branches-valid="0" branches-covered="0"/>'
    )


@pytest.fixture
def gate_project(write_project, load, tmp_path):
    """A project with the gate file at gate/gate.toml and reports under out/."""
    write_project('reports_dir = "out"\n[tool.mlci.gate]\nfile = "gate/gate.toml"')
    (tmp_path / "gate").mkdir()
    (tmp_path / "gate" / "gate.toml").write_text(GATE)
    reports = tmp_path / "out"
    reports.mkdir()

    def make(*, coverage=(200, 175), tests=(10, 0), findings=0):
        (reports / "junit.xml").write_text(_junit(*tests))
        (reports / "coverage.xml").write_text(_cobertura(*coverage))
        (reports / "lint.json").write_text(json.dumps({"findings": findings}))
        lines: list[str] = []
        return StageContext(load(), log=lines.append), lines

    return make


def _table(lines: list[str]) -> dict[str, list[str]]:
    """The printed condition table, as {metric: [actual, op, (sym), threshold, status...]}."""
    rows = {}
    for line in lines:
        parts = line.split()
        if len(parts) >= 5 and parts[0] != "metric" and parts[2] in ("LT", "GT"):
            rows[parts[0]] = parts[1:]
    return rows


def test_passing_gate(gate_project):
    ctx, _ = gate_project()
    result = gate_stage.run(ctx)
    assert result.stage == "gate"
    assert result.status == PASSED
    assert result.summary == "OK (3/4 conditions, local)"
    assert result.details["gate"] == "demo-gate"
    assert result.details["mode"] == "local"
    by_metric = {c["metric"]: c for c in result.details["conditions"]}
    assert by_metric["coverage"] == {
        "metric": "coverage",
        "op": "LT",
        "error": 80.0,
        "actual": pytest.approx(87.5),
        "status": "OK",
    }
    assert by_metric["duplicated_lines_density"]["status"] == "NO_VALUE"
    assert by_metric["duplicated_lines_density"]["actual"] is None


def test_passing_gate_prints_every_condition_with_value_and_threshold(gate_project):
    ctx, lines = gate_project()
    gate_stage.run(ctx)
    assert any("evaluating gate 'demo-gate' locally" in line for line in lines)
    header = next(line for line in lines if line.split()[:1] == ["metric"])
    assert header.split() == ["metric", "actual", "fails", "if", "threshold", "status"]
    table = _table(lines)
    assert table["coverage"] == ["87.5", "LT", "(<)", "80", "OK"]
    assert table["test_failures"] == ["0", "GT", "(>)", "0", "OK"]
    assert table["violations"] == ["0", "GT", "(>)", "0", "OK"]
    assert table["duplicated_lines_density"] == [
        "-", "GT", "(>)", "3", "computed", "only", "by", "SonarQube"
    ]  # fmt: skip


def test_failing_gate_lists_failing_metrics_with_value_and_threshold(gate_project):
    ctx, lines = gate_project(coverage=(200, 145), tests=(10, 2))
    with pytest.raises(QualityGateFailed) as info:
        gate_stage.run(ctx)
    err = info.value
    assert err.what == "quality gate 'demo-gate' failed: 2 of 4 conditions in ERROR"
    assert err.why == "coverage is 72.5 (< 80); test_failures is 2 (> 0)"
    assert "violations" not in err.why
    assert "gate/gate.toml" in err.fix
    assert err.exit_code == 1
    # the table was printed before the failure, with the ERROR rows
    table = _table(lines)
    assert table["coverage"] == ["72.5", "LT", "(<)", "80", "ERROR"]
    assert table["test_failures"] == ["2", "GT", "(>)", "0", "ERROR"]
    assert table["violations"][-1] == "OK"


def test_lint_findings_fail_the_gate(gate_project):
    ctx, _ = gate_project(findings=4)
    with pytest.raises(QualityGateFailed) as info:
        gate_stage.run(ctx)
    assert info.value.why == "violations is 4 (> 0)"


def test_coverage_equal_to_the_threshold_passes(gate_project):
    ctx, lines = gate_project(coverage=(200, 160))
    assert gate_stage.run(ctx).status == PASSED
    assert _table(lines)["coverage"] == ["80", "LT", "(<)", "80", "OK"]


def test_missing_junit_report_tells_to_run_invoke_test(gate_project, tmp_path):
    ctx, _ = gate_project()
    (tmp_path / "out" / "junit.xml").unlink()
    with pytest.raises(StageFailed) as info:
        gate_stage.run(ctx)
    assert not isinstance(info.value, QualityGateFailed)
    assert "junit.xml" in info.value.what
    assert "does not exist" in info.value.what
    assert "run `invoke test`" in info.value.fix


def test_missing_gate_file_is_a_config_error(gate_project, tmp_path):
    ctx, _ = gate_project()
    (tmp_path / "gate" / "gate.toml").unlink()
    with pytest.raises(ConfigError, match="does not exist"):
        gate_stage.run(ctx)


def test_gate_file_from_the_command_line(gate_project, load, tmp_path):
    gate_project()
    (tmp_path / "strict.toml").write_text(
        'name = "strict"\n[[conditions]]\nmetric = "coverage"\nop = "LT"\nerror = 95\n'
    )
    ctx = StageContext(load({"gate.file": "strict.toml"}), log=lambda _: None)
    with pytest.raises(QualityGateFailed, match="'strict'") as info:
        gate_stage.run(ctx)
    assert info.value.why == "coverage is 87.5 (< 95)"


def test_failing_value_is_not_rounded_onto_the_threshold(gate_project, tmp_path):
    (tmp_path / "gate" / "gate.toml").write_text(
        'name = "g"\n[[conditions]]\nmetric = "coverage"\nop = "LT"\nerror = 60\n'
    )
    ctx, _ = gate_project(coverage=(2500, 1499))  # 59.96 %
    with pytest.raises(QualityGateFailed) as info:
        gate_stage.run(ctx)
    shown, threshold = re.fullmatch(r"coverage is ([\d.]+) \(< ([\d.]+)\)", info.value.why).groups()
    assert float(shown) < float(threshold)


def test_findings_pass_lint_and_fail_the_gate_that_decides(write_project, load, tmp_path):
    """One place decides each limit: lint reports, the test stage passes (its tests pass),
    and the local gate fails the build on the findings and the coverage."""
    from mlci.context import StageContext
    from mlci.stages import lint, test

    write_project(
        """
        [tool.mlci.lint]
        paths = ["src"]
        [tool.mlci.test]
        paths = ["tests"]
        cov = ["src"]
        [tool.mlci.gate]
        file = "gate.toml"
        """,
        extra='[tool.ruff.lint]\nselect = ["F"]\n',
    )
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "calc.py").write_text(
        "import os\n\n\ndef add(a, b):\n    return a + b\n\n\ndef unused(x):\n"
        "    if x:\n        return 1\n    return 2\n"
    )
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_calc.py").write_text(
        "import sys\nsys.path.insert(0, 'src')\nfrom calc import add\n\n\n"
        "def test_add():\n    assert add(1, 2) == 3\n"
    )
    (tmp_path / "gate.toml").write_text(
        'name = "g"\n[[conditions]]\nmetric = "violations"\nop = "GT"\nerror = 0\n'
        '[[conditions]]\nmetric = "coverage"\nop = "LT"\nerror = 90\n'
    )
    lines: list[str] = []
    ctx = StageContext(load(), log=lines.append)
    assert lint.run(ctx).summary == "1 finding(s): 1 ruff, 0 format (the gate decides)"
    assert test.run(ctx).status == "passed"  # its one test passes; coverage is the gate's
    with pytest.raises(QualityGateFailed) as info:
        gate_stage.run(ctx)
    assert info.value.what.startswith("quality gate 'g' failed: 2 of 2 conditions in ERROR")
    assert "violations is 1 (> 0)" in info.value.why
    assert "coverage is" in info.value.why
