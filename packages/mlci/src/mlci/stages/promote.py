"""promote: move the champion alias to the new version only when it wins."""

from __future__ import annotations

import os

from mlci import registry, unfinished
from mlci.clients import mlflow as mlflow_client
from mlci.context import StageContext
from mlci.errors import ModelRejected, StageFailed, TrackingServerError
from mlci.promotion import Decision
from mlci.reports import read_json, write_json
from mlci.stages import PASSED, SKIPPED, StageResult
from mlci.table import format_table

REPORT = "promote.json"


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def print_decision(ctx: StageContext, decision: Decision) -> None:
    rows = [
        (r.metric, _fmt(r.candidate), _fmt(r.champion), r.threshold, r.verdict)
        for r in decision.rows
    ]
    for line in format_table(("metric", "candidate", "champion", "threshold", "verdict"), rows):
        ctx.log("  " + line)


def run(ctx: StageContext) -> StageResult:
    settings = ctx.settings
    policy = settings.promotion
    if policy.mode == "disabled":
        ctx.log("promote: skipped: promotion.mode is disabled")
        return StageResult("promote", SKIPPED, "skipped: promotion disabled")
    trained = read_json(ctx.reports / "train.json", "train")
    missing = [
        k
        for k in ("registered_model", "version", "tracking_uri")
        if not isinstance(trained, dict) or k not in trained
    ]
    if missing:
        raise StageFailed(
            f"{ctx.reports / 'train.json'} is incomplete: no {', '.join(missing)}",
            "promote reads the registered model, version and tracking server from it",
            "run `invoke train` again to write it",
        )
    name, version = str(trained["registered_model"]), str(trained["version"])
    configured = settings.mlflow.tracking_uri
    trained_local = bool(trained.get("tracking_is_local"))
    if trained_local != (not configured) or (configured and trained["tracking_uri"] != configured):
        where = "a local server" if trained_local else trained.get("tracking_uri")
        raise TrackingServerError(
            f"train.json names {where}, but promote is configured for "
            f"{configured or 'a local server'}",
            "a version can only be promoted on the server it was registered on",
            "run train and promote with the same MLCI_MLFLOW_TRACKING_URI",
        )
    uri = ctx.tracking_uri()
    client = mlflow_client.connect(uri, settings.mlflow)
    unfinished.finish(ctx, client, uri)
    ctx.log(f"promote: {name} v{version} against the {policy.alias} (mode {policy.mode})")
    with mlflow_client.server_errors(f"promoting {name} v{version}", uri):
        outcome = registry.promote_version(
            client,
            name,
            version,
            policy,
            owner=registry.new_owner(),
            build_url=os.environ.get("BUILD_URL", ""),
            log=ctx.log,
            lease_wait=policy.lease_wait,
        )
    decision, champion_version, moved = outcome.decision, outcome.champion_before, outcome.moved
    ctx.log(
        f"promote: {policy.alias} before: "
        f"{'v' + champion_version if champion_version else '(none)'}"
    )
    print_decision(ctx, decision)
    ctx.log(f"promote: {decision.reason}")

    details = {
        "registered_model": name,
        "candidate_version": version,
        "champion_before": champion_version,
        "mode": policy.mode,
        "promote": decision.promote,
        "reason": decision.reason,
    }
    details["champion_after"] = version if moved else champion_version
    write_json(ctx.reports / REPORT, details)

    if not decision.meets_thresholds and policy.mode == "enabled":
        raise ModelRejected(
            f"{name} v{version} does not meet the promotion thresholds",
            decision.reason,
            "improve the model, or change [tool.mlci.promotion] min through review",
        )
    if moved:
        summary = f"{policy.alias} -> v{version}"
    elif decision.promote:
        summary = f"dry-run: would move {policy.alias} -> v{version}"
    else:
        kept = f"v{champion_version}" if champion_version else "none"
        summary = f"{policy.alias} stays {kept}"
    return StageResult("promote", PASSED, summary, details=details)
