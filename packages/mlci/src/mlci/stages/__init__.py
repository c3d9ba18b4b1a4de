"""The pipeline's stages: one module each, pure functions of (context) -> StageResult.

No Invoke import here: the stages are importable and testable without the task layer.
A stage that fails raises an :class:`mlci.errors.MlciError`; a stage that has nothing to
do returns a result with status ``skipped`` and says why.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlci.context import StageContext

PASSED = "passed"
FAILED = "failed"
SKIPPED = "skipped"
NOT_RUN = "not run"

# The order `invoke pipeline` runs them in; the Jenkinsfile's stages follow the same order
# (tests/contract holds the two together).
PIPELINE_STAGES: tuple[str, ...] = (
    "lint",
    "test",
    "scan",
    "gate",
    "image",
    "train",
    "promote",
    "release",
)


@dataclass
class StageResult:
    stage: str
    status: str
    summary: str
    duration: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)


def stage_function(name: str) -> Callable[[StageContext], StageResult]:
    """The ``run`` function of a stage module, imported on demand (heavy imports stay lazy)."""
    if name not in PIPELINE_STAGES:
        raise KeyError(name)
    return importlib.import_module(f"mlci.stages.{name}").run


def each_model(
    ctx: StageContext, stage: str, run: Callable[[StageContext], StageResult]
) -> StageResult | None:
    """For a project with several models ([tool.mlci.models]), run ``run`` once per model
    and combine the results; None when the settings are for one model (run it as it is)."""
    chosen = ctx.settings.each_model()
    if len(chosen) == 1 and chosen[0] is ctx.settings:
        return None
    results = []
    for settings in chosen:
        ctx.log(f"{stage}: model {settings.model_name}")
        results.append((settings.model_name, run(ctx.for_model(settings))))
    statuses = {r.status for _, r in results}
    return StageResult(
        stage,
        SKIPPED if statuses == {SKIPPED} else PASSED,
        "; ".join(f"{name}: {r.summary}" for name, r in results),
        details={"models": {name: r.details for name, r in results}},
        links={f"{name} {label}": url for name, r in results for label, url in r.links.items()},
    )
