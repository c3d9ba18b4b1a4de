"""stages.test on tiny temporary projects (runs pytest as a subprocess, as the stage does)."""

from __future__ import annotations

import json
import sys

import pytest

from mlci.context import StageContext
from mlci.errors import ConfigError, TestsFailed
from mlci.stages import PASSED
from mlci.stages import test as test_stage

# Six statements, one of them (return -1) never run by the tests below: 5/6 = 83.33 %.
CALC = """\
def add(a, b):
    return a + b


def sign(x):
    if x < 0:
        return -1
    return 1
"""

TESTS = """\
from calc import add, sign


def test_add():
    assert add(1, 2) == 3


def test_sign():
    assert sign(5) == 1
"""

FAILING = """\
from calc import add


def test_add_is_wrong():
    assert add(1, 2) == 4
"""

PYTEST_CONFIG = """
[tool.pytest.ini_options]
addopts = "-p no:cacheprovider"
"""


@pytest.fixture(autouse=True)
def _clean_pytest_env(monkeypatch):
    # The inner pytest inherits the environment; keep the outer run's options out of it.
    for name in ("PYTEST_ADDOPTS", "PYTEST_PLUGINS", "COVERAGE_PROCESS_START"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def test_project(write_project, load, tmp_path):
    def make(mlci: str, files: dict[str, str]):
        write_project(mlci, extra=PYTEST_CONFIG)
        for name, text in files.items():
            (tmp_path / name).write_text(text)
        lines: list[str] = []
        return StageContext(load(), log=lines.append), lines

    return make


def test_a_failing_test_is_listed_by_name(test_project, tmp_path):
    ctx, _ = test_project(
        '[tool.mlci.test]\npaths = ["test_calc.py", "test_wrong.py"]',
        {"calc.py": CALC, "test_calc.py": TESTS, "test_wrong.py": FAILING},
    )
    with pytest.raises(TestsFailed) as info:
        test_stage.run(ctx)
    err = info.value
    assert err.what == "1 of 3 tests failed"
    assert "test_wrong::test_add_is_wrong" in err.why
    assert "test_calc::" not in err.why  # passing tests are not listed
    assert str(tmp_path / "reports" / "junit.xml") in err.fix
    assert err.exit_code == 1


def test_all_passing_with_coverage(test_project, tmp_path):
    ctx, lines = test_project(
        '[tool.mlci.test]\npaths = ["test_calc.py"]\ncov = ["calc"]',
        {"calc.py": CALC, "test_calc.py": TESTS},
    )
    result = test_stage.run(ctx)
    assert result.status == PASSED
    assert result.summary == "2 passed, coverage 83.3%"
    assert result.details["tests"] == 2
    assert result.details["failures"] == 0
    assert result.details["coverage"] == pytest.approx(83.33)
    assert result.details["line_coverage"] == pytest.approx(83.33)
    assert lines == ["test: pytest test_calc.py"]
    reports = tmp_path / "reports"
    assert json.loads((reports / "test.json").read_text())["coverage"] == pytest.approx(83.33)
    assert (reports / "junit.xml").is_file()
    assert (reports / "coverage.xml").is_file()


def test_low_coverage_is_reported_and_left_to_the_gate(test_project, tmp_path):
    ctx, _ = test_project(
        '[tool.mlci.test]\npaths = ["test_calc.py"]\ncov = ["calc"]',
        {"calc.py": CALC, "test_calc.py": TESTS},
    )
    result = test_stage.run(ctx)
    # The gate's coverage condition decides; the test stage fails on failing tests only.
    assert result.status == "passed"
    assert result.summary.endswith("coverage 83.3%")
    assert json.loads((tmp_path / "reports" / "test.json").read_text())["coverage"] > 80


def test_no_tests_collected(test_project):
    ctx, _ = test_project(
        '[tool.mlci.test]\npaths = ["calc.py"]',
        {"calc.py": CALC},
    )
    with pytest.raises(TestsFailed, match="collected no tests") as info:
        test_stage.run(ctx)
    assert "calc.py" in info.value.why


def test_paths_that_do_not_exist_are_a_config_error(write_project, load, tmp_path):
    write_project('[tool.mlci.test]\npaths = ["tests", "more_tests"]')
    (tmp_path / "tests").mkdir()
    ctx = StageContext(load(), log=lambda _: None)
    with pytest.raises(ConfigError) as info:
        test_stage.run(ctx)
    assert info.value.what == "test.paths names paths that do not exist: more_tests"
    assert "MLCI_TEST_PATHS" in info.value.fix


def test_pytest_argv_with_coverage(write_project, load, tmp_path):
    write_project(
        '[tool.mlci.test]\npaths = ["a", "b"]\ncov = ["pkg", "other"]\nargs = ["-m", "not slow"]'
    )
    ctx = StageContext(load(), log=lambda _: None)
    reports = tmp_path.resolve() / "reports"
    assert test_stage.pytest_argv(ctx) == [
        sys.executable,
        "-m",
        "pytest",
        "a",
        "b",
        f"--junitxml={reports / 'junit.xml'}",
        "-o",
        "junit_family=xunit2",
        "-o",
        f"cache_dir={tmp_path.resolve() / '.mlci' / 'pytest-cache'}",
        "--cov=pkg",
        "--cov=other",
        f"--cov-report=xml:{reports / 'coverage.xml'}",
        "--cov-report=term",
        "-m",
        "not slow",
    ]


def test_pytest_argv_without_coverage_has_no_cov_reports(write_project, load):
    write_project('[tool.mlci.test]\npaths = ["t"]')
    argv = test_stage.pytest_argv(StageContext(load(), log=lambda _: None))
    assert not [a for a in argv if a.startswith("--cov")]
    assert argv[3] == "t"


def test_the_stage_writes_nothing_into_the_project_but_reports_and_state(test_project, tmp_path):
    # A pipeline must never dirty the tree it releases: no .coverage, no .pytest_cache.
    ctx, _ = test_project(
        '[tool.mlci.test]\npaths = ["test_calc.py"]\ncov = ["calc"]',
        {"calc.py": CALC, "test_calc.py": TESTS},
    )
    before = {p.name for p in tmp_path.iterdir()}
    test_stage.run(ctx)
    assert {p.name for p in tmp_path.iterdir()} - before <= {"reports", ".mlci"}
    assert (tmp_path / ".mlci" / "coverage" / ".coverage").is_file()
