"""test: pytest with pytest-cov; JUnit XML and Cobertura XML under the reports folder.

The stage fails on failing tests only. Coverage is measured and reported here, and judged
by the quality gate's coverage condition (sonarqube/quality-gate.toml, locally or in
SonarQube): one place decides each limit.
"""

from __future__ import annotations

import os
from typing import Any

from mlci import cache
from mlci.context import StageContext, require_paths
from mlci.errors import TestsFailed
from mlci.reports import read_cobertura, read_junit, write_json
from mlci.stages import PASSED, StageResult
from mlci.tools import python_module_command, require_module
from mlci.tools import run as run_tool

JUNIT = "junit.xml"
COBERTURA = "coverage.xml"
#: What the stage leaves in the reports folder, kept with its cache entry.
OUTPUTS = (JUNIT, COBERTURA, "test.json")

# pytest's exit codes (pytest.ExitCode), without importing pytest into this process.
_TESTS_FAILED, _INTERRUPTED, _INTERNAL, _USAGE, _NO_TESTS = 1, 2, 3, 4, 5


def pytest_argv(ctx: StageContext) -> list[str]:
    settings = ctx.settings
    junit, cobertura = ctx.reports / JUNIT, ctx.reports / COBERTURA
    cov = [f"--cov={target}" for target in settings.test.cov]
    cov_reports = [f"--cov-report=xml:{cobertura}", "--cov-report=term"] if cov else []
    return python_module_command(
        "pytest",
        *settings.test.paths,
        f"--junitxml={junit}",
        "-o",
        "junit_family=xunit2",
        # pytest's cache goes to the state folder: a stage writes nothing into the tree it
        # may release (see also COVERAGE_FILE in run()).
        "-o",
        f"cache_dir={ctx.state / 'pytest-cache'}",
        *cov,
        *cov_reports,
        *settings.test.args,
    )


def inputs(ctx: StageContext) -> dict[str, Any]:
    """Tests may read any file of the project: all of them count, with the test settings
    and the installed distributions (pytest, its plugins, what the code imports)."""
    return {
        "files": cache.files_digest(ctx, ["."]),
        "settings": cache.settings_values(ctx, "test.paths", "test.cov", "test.args"),
        "environment": cache.environment(),
    }


def run(ctx: StageContext) -> StageResult:
    settings = ctx.settings
    require_paths(settings, "test.paths", "[tool.mlci.test] paths")
    argv = pytest_argv(ctx)
    if settings.test.cov:
        require_module("pytest_cov", "test.cov asks pytest-cov for coverage")
    ctx.log(f"test: pytest {' '.join(settings.test.paths)}")
    # coverage.py's data file (.coverage) likewise, instead of the project root.
    # and Python's bytecode caches (__pycache__ of the tests pytest imports and rewrites).
    env = {
        **os.environ,
        "COVERAGE_FILE": str(ctx.state / "coverage" / ".coverage"),
        "PYTHONPYCACHEPREFIX": str(ctx.state / "pycache"),
    }
    (ctx.state / "coverage").mkdir(exist_ok=True)
    proc = run_tool(argv, settings.project_root, env=env)
    if proc.returncode in (_INTERRUPTED, _INTERNAL, _USAGE):
        raise TestsFailed(
            f"pytest could not run the tests (exit code {proc.returncode})",
            "a collection error, a bad argument or an interruption; pytest's output is above",
            "fix the error pytest printed, then run `invoke test` again",
        )
    if proc.returncode == _NO_TESTS:
        raise TestsFailed(
            "pytest collected no tests",
            f"nothing under {', '.join(settings.test.paths)} matched",
            "check [tool.mlci.test] paths and the test file names (test_*.py)",
        )
    junit = read_junit(ctx.reports / JUNIT)
    details: dict[str, Any] = {
        "tests": junit.tests,
        "failures": junit.failures,
        "errors": junit.errors,
        "skipped": junit.skipped,
        "junit": str(ctx.reports / JUNIT),
    }
    if proc.returncode == _TESTS_FAILED or junit.failures or junit.errors:
        shown = "\n    ".join(junit.failed_names[:10])
        raise TestsFailed(
            f"{junit.failures + junit.errors} of {junit.tests} tests failed",
            f"failing:\n    {shown}" if shown else "see pytest's output above",
            "fix the failing tests; the JUnit report is " + str(ctx.reports / JUNIT),
        )
    summary = f"{junit.passed} passed"
    if settings.test.cov:
        coverage = read_cobertura(ctx.reports / COBERTURA)
        details.update(
            coverage=round(coverage.coverage, 2),
            line_coverage=round(coverage.line_coverage, 2),
            branch_coverage=round(coverage.branch_coverage, 2),
            cobertura=str(ctx.reports / COBERTURA),
        )
        summary += f", coverage {coverage.coverage:.1f}%"
    write_json(ctx.reports / "test.json", details)
    return StageResult("test", PASSED, summary, details=details)
