"""The quality gate as code (definition file, local metrics, evaluation) and report readers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlci import qualitygate
from mlci.errors import ConfigError, StageFailed
from mlci.qualitygate import (
    ERROR,
    NO_VALUE,
    OK,
    Condition,
    GateDefinition,
    evaluate,
    load_definition,
    local_metrics,
)
from mlci.reports import (
    CoverageSummary,
    read_cobertura,
    read_json,
    read_junit,
    write_json,
)

GATE = """
name = " mlci-gate "

[[conditions]]
metric = "coverage"
op = "LT"
error = 80

[[conditions]]
metric = "test_failures"
op = "GT"
error = 0.5
"""

JUNIT_SUITES = """<?xml version="1.0" encoding="utf-8"?>
<testsuites name="pytest tests">
  <testsuite name="a" tests="3" failures="1" errors="0" skipped="1">
    <testcase classname="tests.test_a" name="test_ok"/>
    <testcase classname="tests.test_a" name="test_red"><failure message="x"/></testcase>
    <testcase classname="tests.test_a" name="test_skip"><skipped/></testcase>
  </testsuite>
  <testsuite name="b" tests="2" failures="0" errors="1" skipped="0">
    <testcase classname="tests.test_b" name="test_ok"/>
    <testcase classname="tests.test_b" name="test_broken"><error message="y"/></testcase>
  </testsuite>
</testsuites>
"""

JUNIT_BARE = """<?xml version="1.0" encoding="utf-8"?>
<testsuite name="pytest" tests="4" failures="0" errors="0" skipped="0">
  <testcase classname="t" name="a"/><testcase classname="t" name="b"/>
  <testcase classname="t" name="c"/><testcase classname="t" name="d"/>
</testsuite>
"""

COBERTURA = """<?xml version="1.0" ?>
<coverage version="7.0" lines-valid="200" lines-covered="150" line-rate="0.75"
          branches-valid="50" branches-covered="25" branch-rate="0.5">
  <packages/>
</coverage>
"""


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# ---------------------------------------------------------------------------------------------
# load_definition
# ---------------------------------------------------------------------------------------------


def test_load_definition(tmp_path):
    d = load_definition(_write(tmp_path / "gate.toml", GATE))
    assert d == GateDefinition(
        "mlci-gate",
        (Condition("coverage", "LT", 80.0), Condition("test_failures", "GT", 0.5)),
    )
    assert isinstance(d.conditions[0].error, float)


def test_the_repository_gate_file_loads(repo_root):
    d = load_definition(repo_root / "sonarqube" / "quality-gate.toml")
    assert d.name
    assert {c.op for c in d.conditions} <= {"LT", "GT"}
    assert any(c.metric == "coverage" for c in d.conditions)


def test_missing_definition_file(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_definition(tmp_path / "nope.toml")
    assert "does not exist" in info.value.what
    assert str(tmp_path / "nope.toml") in info.value.what
    assert "MLCI_GATE_FILE" in info.value.fix


def test_invalid_toml_definition(tmp_path):
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_definition(_write(tmp_path / "g.toml", "name = \n"))


@pytest.mark.parametrize("text", ["", 'name = ""', "name = 3", 'name = "  "'])
def test_definition_without_a_name(tmp_path, text):
    body = text + '\n[[conditions]]\nmetric = "coverage"\nop = "LT"\nerror = 1\n'
    with pytest.raises(ConfigError, match="has no name"):
        load_definition(_write(tmp_path / "g.toml", body))


@pytest.mark.parametrize("text", ['name = "g"', 'name = "g"\nconditions = []'])
def test_definition_without_conditions(tmp_path, text):
    with pytest.raises(ConfigError) as info:
        load_definition(_write(tmp_path / "g.toml", text))
    assert "has no [[conditions]]" in info.value.what
    assert "passes everything" in info.value.why


@pytest.mark.parametrize(
    "condition",
    [
        'metric = "coverage"\nop = "LE"\nerror = 80',
        'metric = "coverage"\nop = "lt"\nerror = 80',
        'metric = "coverage"\nerror = 80',
        'metric = "coverage"\nop = "LT"\nerror = true',
        'metric = "coverage"\nop = "LT"\nerror = "80"',
        'metric = "coverage"\nop = "LT"',
        'op = "LT"\nerror = 80',
        'metric = 3\nop = "LT"\nerror = 80',
    ],
    ids=["op-LE", "op-lowercase", "no-op", "bool", "text", "no-error", "no-metric", "int-metric"],
)
def test_invalid_condition_names_its_number(tmp_path, condition):
    good = '[[conditions]]\nmetric = "violations"\nop = "GT"\nerror = 0\n'
    text = f'name = "g"\n{good}\n[[conditions]]\n{condition}\n'
    with pytest.raises(ConfigError) as info:
        load_definition(_write(tmp_path / "g.toml", text))
    assert info.value.what.startswith("condition 2 in the quality-gate file")
    assert "LT or GT" in info.value.why


@pytest.mark.parametrize("entries", ['["coverage"]', "[1, 2]", '[["coverage", "LT", 80]]'])
def test_condition_that_is_not_a_table_is_a_config_error(tmp_path, entries):
    with pytest.raises(ConfigError) as info:
        load_definition(_write(tmp_path / "g.toml", f'name = "g"\nconditions = {entries}\n'))
    assert info.value.what.startswith("condition 1 in the quality-gate file")


# ---------------------------------------------------------------------------------------------
# Report readers and local_metrics
# ---------------------------------------------------------------------------------------------


def test_read_junit_with_testsuites_root(tmp_path):
    s = read_junit(_write(tmp_path / "junit.xml", JUNIT_SUITES))
    assert (s.tests, s.failures, s.errors, s.skipped) == (5, 1, 1, 1)
    assert s.passed == 2
    assert s.failed_names == ("tests.test_a::test_red", "tests.test_b::test_broken")


def test_read_junit_with_bare_testsuite_root(tmp_path):
    s = read_junit(_write(tmp_path / "junit.xml", JUNIT_BARE))
    assert (s.tests, s.failures, s.errors, s.skipped, s.passed) == (4, 0, 0, 0, 4)
    assert s.failed_names == ()


def test_read_junit_missing_file_says_run_invoke_test(tmp_path):
    with pytest.raises(StageFailed) as info:
        read_junit(tmp_path / "junit.xml")
    assert "does not exist" in info.value.what
    assert "invoke test" in info.value.fix


def test_read_junit_invalid_xml(tmp_path):
    with pytest.raises(StageFailed, match="not valid XML"):
        read_junit(_write(tmp_path / "junit.xml", "<testsuite"))


def test_read_cobertura(tmp_path):
    c = read_cobertura(_write(tmp_path / "coverage.xml", COBERTURA))
    assert c == CoverageSummary(200, 150, 50, 25)
    assert c.line_coverage == pytest.approx(75.0)
    assert c.branch_coverage == pytest.approx(50.0)
    # lines and branches together: (150 + 25) / (200 + 50)
    assert c.coverage == pytest.approx(70.0)


def test_coverage_of_nothing_is_complete():
    c = CoverageSummary(0, 0, 0, 0)
    assert (c.coverage, c.line_coverage, c.branch_coverage) == (100.0, 100.0, 100.0)
    assert CoverageSummary(10, 5, 0, 0).coverage == pytest.approx(50.0)


def test_local_metrics_from_all_three_reports(tmp_path):
    _write(tmp_path / "junit.xml", JUNIT_SUITES)
    _write(tmp_path / "coverage.xml", COBERTURA)
    _write(tmp_path / "lint.json", json.dumps({"findings": 3, "report": "x"}))
    m = local_metrics(tmp_path)
    assert m == {
        "tests": 5,
        "test_failures": 1,
        "test_errors": 1,
        "skipped_tests": 1,
        "test_success_density": pytest.approx(60.0),
        "coverage": pytest.approx(70.0),
        "line_coverage": pytest.approx(75.0),
        "branch_coverage": pytest.approx(50.0),
        "violations": 3.0,
    }


def test_local_metrics_from_junit_only(tmp_path):
    _write(tmp_path / "junit.xml", JUNIT_BARE)
    m = local_metrics(tmp_path)
    assert m["tests"] == 4
    assert m["test_success_density"] == 100.0
    assert "coverage" not in m
    assert "violations" not in m


def test_local_metrics_with_no_tests(tmp_path):
    _write(tmp_path / "junit.xml", '<testsuite tests="0" failures="0" errors="0" skipped="0"/>')
    assert local_metrics(tmp_path)["test_success_density"] == 100.0


def test_local_metrics_needs_the_junit_report(tmp_path):
    _write(tmp_path / "coverage.xml", COBERTURA)
    with pytest.raises(StageFailed, match="invoke test"):
        local_metrics(tmp_path)


def test_write_json_and_read_json(tmp_path):
    path = write_json(tmp_path / "deep" / "x.json", {"b": 1, "a": Path("/p")})
    assert path == tmp_path / "deep" / "x.json"
    assert read_json(path, "lint") == {"a": "/p", "b": 1}
    assert path.read_text().index('"a"') < path.read_text().index('"b"')
    assert not (tmp_path / "deep" / "x.json.tmp").exists()


def test_read_json_missing_names_the_producing_stage(tmp_path):
    with pytest.raises(StageFailed) as info:
        read_json(tmp_path / "train.json", "train")
    assert "invoke train" in info.value.fix


def test_read_json_invalid(tmp_path):
    with pytest.raises(StageFailed, match="not valid JSON") as info:
        read_json(_write(tmp_path / "lint.json", "{"), "lint")
    assert "invoke lint" in info.value.fix


# ---------------------------------------------------------------------------------------------
# evaluate
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "value", "status"),
    [
        ("LT", 79.9, ERROR),
        ("LT", 80.0, OK),
        ("LT", 80.1, OK),
        ("GT", 79.9, OK),
        ("GT", 80.0, OK),
        ("GT", 80.1, ERROR),
    ],
)
def test_evaluate_boundaries(op, value, status):
    definition = GateDefinition("g", (Condition("m", op, 80.0),))
    [result] = evaluate(definition, {"m": value})
    assert result.status == status
    assert result.actual == value
    assert result.condition == Condition("m", op, 80.0)


def test_evaluate_unknown_metric_is_no_value():
    definition = GateDefinition(
        "g", (Condition("duplicated_lines_density", "GT", 3), Condition("tests", "LT", 1))
    )
    results = evaluate(definition, {"tests": 4})
    assert [(r.status, r.actual) for r in results] == [(NO_VALUE, None), (OK, 4)]


def test_evaluate_zero_is_a_value_not_missing():
    [result] = evaluate(GateDefinition("g", (Condition("violations", "GT", 0),)), {"violations": 0})
    assert result.status == OK
    assert result.actual == 0


def test_operators_table_matches_conditions():
    assert qualitygate.OPERATORS == {"LT": "<", "GT": ">"}
    assert Condition("x", "LT", 1).fails(0.5)
    assert not Condition("x", "GT", 1).fails(0.5)


# ---- the definition is validated: nothing is dropped silently --------------------------------


def _gate_file(tmp_path: Path, condition: str, extra: str = "") -> Path:
    path = tmp_path / "gate.toml"
    path.write_text(f'name = "g"\n{extra}\n[[conditions]]\n{condition}\n')
    return path


@pytest.mark.parametrize(
    ("condition", "what", "fix"),
    [
        ('metric = "coverge"\nop = "LT"\nerror = 80', "'coverge' is not a metric", "'coverage'"),
        ('metric = "coverage"\nop = "LT"\nerror = 80\nthreshold = 2', "unknown key(s): threshold",
         "metric ="),
        ('metric = "coverage"\nop = "GT"\nerror = 80', "coverage GT 80 cannot fail", 'op = "LT"'),
        ('metric = "violations"\nop = "LT"\nerror = 1', "violations LT 1 cannot fail", 'op = "GT"'),
    ],
)  # fmt: skip
def test_a_wrong_condition_is_refused_not_dropped(tmp_path, condition, what, fix):
    with pytest.raises(ConfigError) as info:
        load_definition(_gate_file(tmp_path, condition))
    assert what in info.value.what
    assert fix in info.value.fix


def test_unknown_top_level_keys_and_twice_the_same_metric_are_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown key\(s\): condition"):
        load_definition(_gate_file(tmp_path, 'metric = "coverage"\nop = "LT"\nerror = 1',
                                   extra='[condition]\nmetric = "x"'))  # fmt: skip
    twice = 'metric = "coverage"\nop = "LT"\nerror = 1\n[[conditions]]\nmetric = "coverage"\n'
    twice += 'op = "LT"\nerror = 2'
    with pytest.raises(ConfigError, match="more than one condition on coverage"):
        load_definition(_gate_file(tmp_path, twice))


def test_sonarqube_only_metrics_are_accepted_and_named_as_such(tmp_path):
    from mlci.context import StageContext
    from mlci.settings import load_settings
    from mlci.stages import gate

    path = _gate_file(
        tmp_path, 'metric = "duplicated_lines_density"\nop = "GT"\nerror = 3',
        extra="",
    )  # fmt: skip
    definition = load_definition(path)
    assert [c.metric for c in definition.conditions] == ["duplicated_lines_density"]
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "junit.xml").write_text(JUNIT_BARE)
    lines: list[str] = []
    settings = load_settings(
        {"gate.file": str(path), "reports_dir": str(reports)}, root=tmp_path, environ={}
    )
    result = gate.run_local(StageContext(settings, log=lines.append))
    assert result.status == "passed"
    assert any("computed only by SonarQube" in line for line in lines)
