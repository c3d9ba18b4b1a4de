"""The one exception hierarchy of mlci.

Every error a user can cause says three things: what failed, why, and what to do next.
The Invoke layer (``mlci.tasks._signals.ends_cleanly``) turns these into a message and an
exit code; a traceback is shown only for real bugs (anything that is not an ``MlciError``),
or for any error when asked (``mlci --verbose``, ``MLCI_VERBOSE=1``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlci.platform.wire import Change

#: Set to 1 (``mlci --verbose`` does) to see the full traceback of any error a task ends with.
VERBOSE_ENV = "MLCI_VERBOSE"


class MlciError(Exception):
    """Root of every error mlci raises on purpose."""

    exit_code = 1
    title = "error"

    def __init__(self, what: str, why: str = "", fix: str = "") -> None:
        super().__init__(what)
        self.what = what
        self.why = why
        self.fix = fix

    def __str__(self) -> str:
        lines = [self.what]
        if self.why:
            lines.append(f"  why: {self.why}")
        if self.fix:
            lines.append(f"  fix: {self.fix}")
        return "\n".join(lines)

    def render(self) -> str:
        """The message as the command line prints it: ``ClassName: what`` plus why/fix."""
        return f"{type(self).__name__}: {self}"


class ConfigError(MlciError):
    """A setting is missing, misspelt or has a value mlci cannot use."""

    exit_code = 2


class StageFailed(MlciError):
    """A stage ran and its check said no (lint findings, red tests, gate, thresholds)."""


class LintFailed(StageFailed):
    pass


class TestsFailed(StageFailed):
    __test__ = False  # not a pytest test class


class QualityGateFailed(StageFailed):
    pass


class ModelRejected(StageFailed):
    """The candidate model does not meet the promotion thresholds."""


class ReleaseRefused(StageFailed):
    """The release would overwrite, or could not be checked; nothing was uploaded."""


class DataDrifted(StageFailed):
    """A scored batch moved further from the training data than score.drift_threshold."""


class ServiceError(MlciError):
    """A server mlci talks to could not be reached or answered with an error."""

    exit_code = 3


class TrackingServerError(ServiceError):
    pass


class LeaseLost(TrackingServerError):
    """The promotion lease stopped being ours before a write; nothing more was written.

    A ServiceError (exit code 3), not a StageFailed (1): nothing was judged about the model,
    the coordination through the tracking server failed (a renewal could not reach it, or
    the pipeline was slower than the TTL), and running the stage again is the remedy, as
    for the other tracking-server failures.
    """


class PackageIndexError(ServiceError):
    pass


class SonarQubeError(ServiceError):
    pass


class DockerEngineError(ServiceError):
    pass


class ServingError(ServiceError):
    """The deployment's machinery (the serving proxy) failed: traffic and aliases untouched."""


class JenkinsError(ServiceError):
    """Jenkins could not be reached or answered with an error."""


class GitBucketError(ServiceError):
    """GitBucket could not be reached or answered with an error."""


class PlatformNotReady(ServiceError):
    """A platform service did not become ready before the deadline."""


class WiringFailed(ServiceError):
    """A step of `invoke platform.wire` failed; ``changes`` holds what was done before it."""

    def __init__(
        self,
        what: str,
        why: str = "",
        fix: str = "",
        *,
        service: str = "",
        step: str = "",
        changes: Iterable[Change] = (),
    ) -> None:
        super().__init__(what, why, fix)
        self.service = service
        self.step = step
        self.changes: list[Change] = list(changes)


class LocalServerError(ServiceError):
    """A server mlci starts itself (mlflow, pypiserver) did not come up."""


class ToolMissing(MlciError):
    """A program a stage runs is not installed."""

    exit_code = 4
