"""gate: the quality gate, from SonarQube when one is configured, else evaluated locally.

With SonarQube it reads the task of `invoke scan`, polls the compute engine until the
analysis finishes (backoff, deadline), then reads the gate for that analysis. Without, it
applies the same conditions (sonarqube/quality-gate.toml) to the local reports and says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mlci import cache, qualitygate
from mlci.clients.sonarqube import SonarQube, SonarServer, configured_server, read_report_task
from mlci.context import StageContext
from mlci.errors import QualityGateFailed, StageFailed
from mlci.resources import gate_file
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


def _print_conditions(ctx: StageContext, rows: Sequence[tuple[str, ...]]) -> None:
    for line in format_table(("metric", "actual", "fails if", "threshold", "status"), rows):
        ctx.log("  " + line)


#: The gate writes no report of its own; its result is the summary's.
OUTPUTS: tuple[str, ...] = ()
#: The reports the local gate reads (qualitygate.local_metrics).
READS = ("junit.xml", "coverage.xml", "lint.json")


def inputs(ctx: StageContext) -> dict[str, Any] | None:
    """The local gate: its definition and the reports it reads. With SonarQube, None: the
    server decides each time (its gate may have changed), so that gate is never cached."""
    if configured_server(ctx.settings) is not None:
        return None
    return {
        "definition": cache.file_hash(gate_file(ctx.settings)),
        "reports": cache.reports_digest(ctx.settings.reports_path, READS),
        "environment": cache.environment(),
    }


def run(ctx: StageContext) -> StageResult:
    server = configured_server(ctx.settings)
    if server is None:
        return run_local(ctx)
    return run_sonarqube(ctx, server)


def run_sonarqube(ctx: StageContext, server: SonarServer) -> StageResult:
    """The gate SonarQube computed for the analysis `invoke scan` submitted."""
    settings = ctx.settings
    task_file = settings.scanner_work_path / "report-task.txt"
    task_info = read_report_task(task_file)
    client = SonarQube(server, settings.sonar.timeout)
    task = client.wait_for_task(
        task_info["ceTaskId"], settings.sonar.gate_timeout, settings.sonar.poll_interval, ctx.log
    )
    if task["status"] != "SUCCESS":
        raise StageFailed(
            f"the SonarQube analysis {task_info['ceTaskId']} ended {task['status']}",
            task.get("errorMessage") or "SonarQube gave no reason",
            "fix the cause above (see Administration > Background Tasks) and scan again",
        )
    status = client.project_status(task["analysisId"])
    conditions = status.get("conditions") or []
    rows = [
        (
            c.get("metricKey", "?"),
            str(c.get("actualValue", "-")),
            c.get("comparator", "?"),
            str(c.get("errorThreshold", "-")),
            c.get("status", "?"),
        )
        for c in conditions
    ]
    ctx.log(
        f"gate: SonarQube quality gate for {task_info.get('projectKey', '?')}: "
        f"{status.get('status')}"
    )
    _print_conditions(ctx, rows)
    dashboard = task_info.get("dashboardUrl", "")
    details = {
        "mode": "sonarqube",
        "status": status.get("status"),
        "dashboard": dashboard,
        "conditions": conditions,
    }
    links = {"SonarQube dashboard": dashboard} if dashboard else {}
    if status.get("status") == "ERROR":
        failing = [r for r in rows if r[4] == "ERROR"]
        raise QualityGateFailed(
            f"the SonarQube quality gate failed: {len(failing)} of {len(rows)} conditions in ERROR",
            "; ".join(f"{m} is {a} ({op} {t})" for m, a, op, t, _ in failing),
            f"improve the code until the conditions hold; details: {dashboard or server.url}",
        )
    if status.get("status") != "OK":
        raise QualityGateFailed(
            f"SonarQube reports gate status {status.get('status')!r} for this analysis",
            "the project has no quality gate, so nothing was checked",
            "apply the gate from sonarqube/quality-gate.toml (invoke sonar.apply-gate)",
        )
    return StageResult(
        "gate", PASSED, f"OK ({len(rows)} conditions, SonarQube)", details=details, links=links
    )


def _local_status(result: qualitygate.ConditionResult) -> str:
    if result.status != qualitygate.NO_VALUE:
        return result.status
    if result.condition.metric not in qualitygate.LOCAL_METRICS:
        return "computed only by SonarQube"
    return "no value (its report is missing)"


def run_local(ctx: StageContext) -> StageResult:
    settings = ctx.settings
    path = gate_file(settings)
    definition = qualitygate.load_definition(path)
    source = (
        settings.gate.file
        if path == settings.path(settings.gate.file)
        else ("mlci's default gate; `mlci init` writes an editable copy")
    )
    ctx.log(
        f"gate: no SonarQube configured; evaluating gate {definition.name!r} locally "
        f"from {settings.reports_dir}/ ({source})"
    )
    metrics = qualitygate.local_metrics(ctx.reports)
    results = qualitygate.evaluate(definition, metrics)
    rows = [
        (
            r.condition.metric,
            _fmt(r.actual, r.condition.error),
            f"{r.condition.op} ({qualitygate.OPERATORS[r.condition.op]})",
            _fmt(r.condition.error),
            _local_status(r),
        )
        for r in results
    ]
    _print_conditions(ctx, rows)
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
