"""The pipeline's stages: one module each, pure functions of (context) -> StageResult.

No Invoke import here: the stages are importable and testable without the task layer.
A stage that fails raises an :class:`mlci.errors.MlciError`; a stage that has nothing to
do returns a result with status ``skipped`` and says why.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any

from mlci.settings.sections import STAGE_NAMES

if TYPE_CHECKING:
    from mlci.context import StageContext

PASSED = "passed"
FAILED = "failed"
SKIPPED = "skipped"
NOT_RUN = "not run"
#: Not run because its inputs are unchanged since its last success (see :mod:`mlci.cache`).
CACHED = "cached"

# The order `invoke pipeline` runs them in; the Jenkinsfile's stages follow the same order
# (tests/contract holds the two together). Settings name them too (cache.force), and settings
# are the layer below, so the list lives there.
PIPELINE_STAGES: tuple[str, ...] = STAGE_NAMES


@dataclass
class StageResult:
    stage: str
    status: str
    summary: str
    duration: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)


def stage_module(name: str) -> ModuleType:
    """A stage's module, imported on demand (heavy imports stay lazy)."""
    if name not in PIPELINE_STAGES:
        raise KeyError(name)
    return importlib.import_module(f"mlci.stages.{name}")


def stage_function(name: str) -> Callable[[StageContext], StageResult]:
    """What runs a stage in the pipeline and its task: the module's ``run``, through the
    stage cache when the module declares its ``inputs`` (train and promote: ``model_inputs``,
    one cache entry per model). A module's ``run`` called directly never consults the cache."""
    module = stage_module(name)
    if getattr(module, "model_inputs", None) is not None:

        def one_model(ctx: StageContext) -> StageResult:
            from mlci.cache import run_cached

            settings = ctx.settings
            unit = f"{name}-{settings.model_name}" if settings.model_name else name
            folder = settings.model_reports_path
            return run_cached(
                ctx, name, module.run_model, module.model_inputs, module.OUTPUTS, folder, unit
            )

        return lambda ctx: each_model(ctx, name, one_model)
    if getattr(module, "inputs", None) is not None:

        def cached(ctx: StageContext) -> StageResult:
            from mlci.cache import run_cached

            folder = ctx.settings.reports_path
            valid = getattr(module, "still_valid", None)
            return run_cached(
                ctx, name, module.run, module.inputs, module.OUTPUTS, folder, None, valid
            )

        return cached
    run: Callable[[StageContext], StageResult] = module.run
    return run


def each_model(
    ctx: StageContext, stage: str, run: Callable[[StageContext], StageResult]
) -> StageResult:
    """``run`` for each model of the project ([tool.mlci.models]: the chosen one, or all of
    them), the results combined; with one model, ``run(ctx)`` as it is."""
    chosen = ctx.settings.each_model()
    if len(chosen) == 1 and chosen[0] is ctx.settings:
        return run(ctx)
    results = []
    for settings in chosen:
        ctx.log(f"{stage}: model {settings.model_name}")
        results.append((settings.model_name, run(ctx.for_model(settings))))
    statuses = {r.status for _, r in results}
    status = next((s for s in (SKIPPED, CACHED) if statuses == {s}), PASSED)
    return StageResult(
        stage,
        status,
        "; ".join(f"{name}: {r.summary}" for name, r in results),
        details={"models": {name: r.details for name, r in results}},
        links={f"{name} {label}": url for name, r in results for label, url in r.links.items()},
    )
