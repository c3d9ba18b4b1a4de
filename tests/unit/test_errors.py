"""The error hierarchy: what / why / fix rendering and the exit code of every class."""

from __future__ import annotations

import pytest

from mlci import errors
from mlci.errors import MlciError


def _all_error_classes() -> list[type[MlciError]]:
    found, todo = [], [MlciError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return sorted(found, key=lambda c: c.__name__)


ALL = _all_error_classes()

EXPECTED_EXIT_CODES = {
    "MlciError": 1,
    "ConfigError": 2,
    "StageFailed": 1,
    "LintFailed": 1,
    "TestsFailed": 1,
    "QualityGateFailed": 1,
    "ModelRejected": 1,
    "ReleaseRefused": 1,
    "DataDrifted": 1,
    "ServiceError": 3,
    "TrackingServerError": 3,
    "ServingError": 3,
    "LeaseLost": 3,
    "PackageIndexError": 3,
    "SonarQubeError": 3,
    "DockerEngineError": 3,
    "JenkinsError": 3,
    "GitBucketError": 3,
    "PlatformNotReady": 3,
    "WiringFailed": 3,
    "LocalServerError": 3,
    "ToolMissing": 4,
}


def test_every_error_class_has_a_decided_exit_code():
    # A new error class must be added to the table above, with its exit code.
    assert {cls.__name__ for cls in ALL} == set(EXPECTED_EXIT_CODES)


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_render_what_why_fix(cls):
    err = cls("the thing failed", "because of a reason", "do this next")
    assert err.render() == (
        f"{cls.__name__}: the thing failed\n  why: because of a reason\n  fix: do this next"
    )
    assert str(err) == "the thing failed\n  why: because of a reason\n  fix: do this next"
    assert (err.what, err.why, err.fix) == (
        "the thing failed",
        "because of a reason",
        "do this next",
    )
    assert err.args == ("the thing failed",)


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_exit_code(cls):
    assert cls.exit_code == EXPECTED_EXIT_CODES[cls.__name__]
    assert cls("x").exit_code == EXPECTED_EXIT_CODES[cls.__name__]


def test_empty_why_or_fix_lines_are_left_out():
    assert errors.ConfigError("only what").render() == "ConfigError: only what"
    assert errors.StageFailed("w", fix="f").render() == "StageFailed: w\n  fix: f"
    assert errors.StageFailed("w", "y").render() == "StageFailed: w\n  why: y"


def test_multi_line_why_is_kept():
    err = errors.TestsFailed("2 of 3 tests failed", "failing:\n    a::b\n    c::d", "fix them")
    assert err.render().splitlines() == [
        "TestsFailed: 2 of 3 tests failed",
        "  why: failing:",
        "    a::b",
        "    c::d",
        "  fix: fix them",
    ]


def test_service_errors_share_exit_code_3():
    service = [c for c in ALL if issubclass(c, errors.ServiceError)]
    assert {c.__name__ for c in service} == {
        "ServiceError",
        "TrackingServerError",
        "LeaseLost",
        "PackageIndexError",
        "SonarQubeError",
        "DockerEngineError",
        "LocalServerError",
        "ServingError",
        "JenkinsError",
        "GitBucketError",
        "PlatformNotReady",
        "WiringFailed",
    }
    assert {c.exit_code for c in service} == {3}


def test_stage_failures_are_catchable_as_stage_failed():
    for cls in (
        errors.LintFailed,
        errors.TestsFailed,
        errors.QualityGateFailed,
        errors.ModelRejected,
        errors.ReleaseRefused,
        errors.DataDrifted,
    ):
        with pytest.raises(errors.StageFailed):
            raise cls("x")


def test_errors_are_exceptions_but_not_each_other():
    assert issubclass(MlciError, Exception)
    assert not issubclass(errors.ConfigError, errors.StageFailed)
    assert not issubclass(errors.ToolMissing, errors.ServiceError)
