"""gate: the quality gate, evaluated locally from the reports (SonarQube comes later)."""

from __future__ import annotations

from mlci import qualitygate
from mlci.context import StageContext
from mlci.errors import QualityGateFailed
from mlci.stages import PASSED, StageResult
from mlci.table import format_table


def _fmt(value: float | None, threshold: float | None = None) -> str:
    """A short form of ``value`` that never rounds it onto ``threshold``."""
    if value is None:
        return "-"
    if value == int(value):
        return f"{value:.0f}"
    for digits in range(1, 7):
        text = f"{value:.{digits}f}"
        if threshold is None or float(text) != threshold:
            return text
    return repr(value)


def run(ctx: StageContext) -> StageResult:
    settings = ctx.settings
    definition = qualitygate.load_definition(settings.path(settings.gate.file))
    ctx.log(
        f"gate: no SonarQube configured; evaluating gate {definition.name!r} locally "
        f"from {settings.reports_dir}/ ({settings.gate.file})"
    )
    metrics = qualitygate.local_metrics(ctx.reports)
    results = qualitygate.evaluate(definition, metrics)
    rows = [
        (
            r.condition.metric,
            _fmt(r.actual, r.condition.error),
            f"{r.condition.op} ({qualitygate.OPERATORS[r.condition.op]})",
            _fmt(r.condition.error),
            "not evaluated locally" if r.status == qualitygate.NO_VALUE else r.status,
        )
        for r in results
    ]
    for line in format_table(("metric", "actual", "fails if", "threshold", "status"), rows):
        ctx.log("  " + line)
    failing = [r for r in results if r.status == qualitygate.ERROR]
    details = {
        "gate": definition.name,
        "mode": "local",
        "conditions": [
            {
                "metric": r.condition.metric,
                "op": r.condition.op,
                "error": r.condition.error,
                "actual": r.actual,
                "status": r.status,
            }
            for r in results
        ],
    }
    if failing:
        listed = "; ".join(
            f"{r.condition.metric} is {_fmt(r.actual, r.condition.error)} "
            f"({qualitygate.OPERATORS[r.condition.op]} {_fmt(r.condition.error)})"
            for r in failing
        )
        raise QualityGateFailed(
            f"quality gate {definition.name!r} failed: {len(failing)} of "
            f"{len(results)} conditions in ERROR",
            listed,
            "improve the code until the conditions hold, or change the gate in "
            f"{settings.gate.file} through review",
        )
    evaluated = sum(1 for r in results if r.status == qualitygate.OK)
    return StageResult(
        "gate", PASSED, f"OK ({evaluated}/{len(results)} conditions, local)", details=details
    )
