"""The wiring's bookkeeping: the outcome of each step, the failure that names the step, and
the state every product's steps share (settings, secrets, injected runner and printer)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlci import tools
from mlci.errors import MlciError, WiringFailed
from mlci.platform.secrets import EnvFile
from mlci.settings import Settings
from mlci.table import format_table

if TYPE_CHECKING:
    from mlci.settings import PlatformSettings

CREATED, UPDATED, UNCHANGED = "created", "updated", "unchanged"
BRANCH = "main"


@dataclass(frozen=True)
class Change:
    service: str
    step: str
    outcome: str
    detail: str


def _failed(service: str, step: str, cause: MlciError, changes: list[Change]) -> WiringFailed:
    fix = cause.fix or "see the message above"
    failure = WiringFailed(
        f"wiring stopped at {service} / {step}: {cause.what}",
        cause.why,
        f"{fix}. The changes made before this step are listed above; run "
        "`invoke platform.wire` again once it is fixed (it only does what is missing)",
        service=service,
        step=step,
        changes=tuple(changes),
    )
    failure.exit_code = cause.exit_code
    return failure


def change_table(changes: list[Change]) -> list[str]:
    return format_table(
        ("service", "step", "outcome", "detail"),
        [(c.service, c.step, c.outcome, c.detail) for c in changes],
    )


@dataclass
class WiringBase:
    """One run of the wiring: what every product's steps read and record into."""

    settings: Settings
    env: EnvFile
    source: Path
    runner: Callable[..., Any] = tools.run
    log: Callable[[str], None] = print
    recreate_jenkins: Callable[[], None] | None = None
    recreate_agent: Callable[[], None] | None = None
    build: bool = False
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    changes: list[Change] = field(default_factory=list)
    _pushed_commit: str | None = None
    _job_created: bool = False

    @contextlib.contextmanager
    def step(self, service: str, step: str) -> Iterator[None]:
        """Turn an mlci error inside the step into a WiringFailed naming service and step."""
        try:
            yield
        except WiringFailed:
            raise
        except MlciError as exc:
            raise _failed(service, step, exc, self.changes) from exc

    def record(self, service: str, step: str, outcome: str, detail: str) -> None:
        change = Change(service, step, outcome, detail)
        self.changes.append(change)
        self.log(f"wire: {service} / {step}: {outcome}: {detail}")

    @property
    def platform(self) -> PlatformSettings:
        return self.settings.platform

    def _repo_http_url(self, base: str) -> str:
        return f"{base.rstrip('/')}/git/{self.platform.organisation}/{self.platform.repository}.git"
