"""promote: move the champion alias to the new version only when it wins."""

from __future__ import annotations

import os
from typing import Any

from mlci import cache, evaluation, orphans, registry
from mlci.clients import mlflow as mlflow_client
from mlci.context import StageContext
from mlci.errors import ConfigError, ModelRejected, StageFailed, TrackingServerError
from mlci.promotion import Decision, check_policy
from mlci.reports import read_json, write_json
from mlci.stages import PASSED, SKIPPED, StageResult, each_model
from mlci.table import format_table

REPORT = "promote.json"
#: What promote leaves in the model's reports folder, kept with its cache entry.
OUTPUTS = (REPORT,)
MISSING = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")
#: The settings of [tool.mlci.promotion] a decision depends on (part of the cache key).
DECIDING = (
    "mode",
    "alias",
    "primary_metric",
    "greater_is_better",
    "directions",
    "min",
    "max",
    "max_regression",
)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def print_decision(
    ctx: StageContext,
    decision: Decision,
    champion_logged: dict[str, float] | None = None,
    data: tuple[str, str] | None = None,
) -> list[str]:
    """The decision as a table; with re-scored figures, the champion's logged ones beside."""
    headers: tuple[str, ...] = ("metric", "candidate", "champion", "threshold", "verdict")
    rows: list[tuple[str, ...]] = []
    for r in decision.rows:
        row = [r.metric, _fmt(r.candidate), _fmt(r.champion), r.threshold, r.verdict]
        if champion_logged is not None:
            row.insert(3, _fmt(champion_logged.get(r.metric)))
        rows.append(tuple(row))
    if champion_logged is not None:
        headers = ("metric", "candidate", "champion", "champion (logged)", "threshold", "verdict")
    if data is not None:
        cand, champ = data
        same = cand == champ
        row = ["data", cand[:12], champ[:12], "same data" if same else "differs", "-"]
        if champion_logged is not None:
            row.insert(3, "")
        rows.append(tuple(row))
    lines = format_table(headers, rows)
    for line in lines:
        ctx.log("  " + line)
    return lines


def check_same_server(client: Any, uri: str, trained: dict[str, Any]) -> None:
    """The version train.json names exists here and was made by train.json's run.

    Train and promote may reach one server by different URLs (a GPU agent through a tunnel,
    the others by service name), so the URL proves nothing; the run id does: run ids are
    random, so a version with that run behind it is the version train registered.
    """
    from mlflow.exceptions import MlflowException

    name, version, run_id = trained["registered_model"], str(trained["version"]), trained["run_id"]
    where = (
        f"train.json names {name} v{version} (run {run_id}, trained against "
        f"{trained.get('tracking_uri', '?')})"
    )
    try:
        mv = client.get_model_version(name, version)
    except MlflowException as exc:
        if getattr(exc, "error_code", "") not in MISSING:
            raise
        mv = None
    if mv is None or mv.run_id != run_id:
        found = "has no such version" if mv is None else f"has it from run {mv.run_id}"
        raise TrackingServerError(
            f"{where}, but the tracking server {uri} {found}",
            "a version can only be promoted on the server it was registered on",
            "run train and promote against the same tracking server (MLCI_MLFLOW_TRACKING_URI "
            "may differ in its host name, not in the server)",
        )


def check_metrics_logged(client: Any, trained: dict[str, Any], policy: Any) -> None:
    """Every metric the policy names was logged by the model: a name that is not is a
    setting to fix, not a model to improve."""
    metrics = client.get_run(str(trained["run_id"])).data.metrics
    named = {policy.primary_metric: "promotion.primary_metric"}
    named.update({m: "promotion.min" for m in policy.min})
    named.update({m: "promotion.max" for m in policy.max})
    named.update({m: "promotion.max_regression" for m in policy.max_regression})
    unknown = {metric: setting for metric, setting in named.items() if metric not in metrics}
    if unknown:
        listed = ", ".join(f"{metric} ({setting})" for metric, setting in sorted(unknown.items()))
        raise ConfigError(
            f"the promotion policy names metrics the model does not log: {listed}",
            f"{trained['registered_model']} v{trained['version']} logged: "
            f"{', '.join(sorted(metrics)) or 'no metrics'}",
            "name logged metrics in [tool.mlci.promotion] (or MLCI_PROMOTION_*), or make the "
            "model package report them",
        )


def _model_module(ctx: StageContext) -> Any | None:
    """The model package, for its score(); None when it is not installed here."""
    from mlci.stages.train import load_model_module

    try:
        return load_model_module(ctx.settings.model.module)
    except ConfigError as exc:
        ctx.log(f"promote: the model package cannot be imported here ({exc.what})")
        return None


def _data_hashes(client: Any, name: str, version: str, champion_mv: Any) -> tuple[str, str] | None:
    """(candidate's, champion's) training-data hash, when both versions record one."""
    if champion_mv is None:
        return None
    candidate = client.get_model_version(name, version).tags.get("mlci.data_hash")
    champion = (champion_mv.tags or {}).get("mlci.data_hash")
    return (candidate, champion) if candidate and champion else None


def model_inputs(ctx: StageContext) -> dict[str, Any]:
    """What one model's promotion depends on: the candidate train recorded, the promotion
    policy, and the registry it changes. Unchanged, the decision stands and nothing moves."""
    promotion = [f"promotion.{name}" for name in DECIDING]
    return {
        "candidate": cache.reports_digest(ctx.model_reports, ["train.json"]),
        "settings": cache.settings_values(ctx, "model.module", *promotion),
        "tracking_server": cache.tracking_server(ctx),
        "environment": cache.environment(),
    }


def run(ctx: StageContext) -> StageResult:
    """Promote each model of the project (the pipeline's stage adds the cache per model)."""
    return each_model(ctx, "promote", run_model)


def run_model(ctx: StageContext) -> StageResult:
    """Decide on one model's candidate: the settings of ``ctx`` are one model's."""
    settings = ctx.settings
    policy = settings.promotion
    if policy.mode == "disabled":
        ctx.log("promote: skipped: promotion.mode is disabled")
        return StageResult("promote", SKIPPED, "skipped: promotion disabled")
    trained = read_json(ctx.model_reports / "train.json", "train")
    missing = [
        k
        for k in ("registered_model", "version", "run_id")
        if not isinstance(trained, dict) or k not in trained
    ]
    if missing:
        raise StageFailed(
            f"{ctx.model_reports / 'train.json'} is incomplete: no {', '.join(missing)}",
            "promote reads the registered model, version and run from it",
            "run `invoke train` again to write it",
        )
    name, version = str(trained["registered_model"]), str(trained["version"])
    check_policy(policy)
    uri = ctx.tracking_uri()
    client = mlflow_client.connect(uri, settings.mlflow)
    orphans.fail_orphaned_runs(ctx, client, "promote")
    with mlflow_client.server_errors(f"reading {name} v{version}", uri):
        check_same_server(client, uri, trained)
        check_metrics_logged(client, trained, policy)
    ctx.log(f"promote: {name} v{version} against the {policy.alias} (mode {policy.mode})")
    # The candidate must load and predict as serving will, before any lease or tag.
    with mlflow_client.server_errors(f"loading {name} v{version}", uri):
        model, validation = evaluation.validate(name, version, ctx.log)
        scorer = evaluation.HeldoutScorer(_model_module(ctx), str(trained["run_id"]))
        candidate_metrics = scorer.scores(model) if scorer.usable else None
    seen: dict[str, Any] = {}

    def rescore(champion_mv: Any) -> tuple[dict[str, float] | None, list[str]]:
        seen["champion"] = champion_mv
        return scorer.champion(name, str(champion_mv.version), model)

    how = (
        "candidate and champion scored on the candidate's held-out data"
        if scorer.usable
        else f"logged metrics compared ({scorer.why_not})"
    )
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
            lease_ttl=policy.lease_ttl,
            candidate_metrics=candidate_metrics,
            rescore=rescore if scorer.usable else None,
        )
        data = _data_hashes(client, name, version, seen.get("champion"))
    decision, champion_version, moved = outcome.decision, outcome.champion_before, outcome.moved
    ctx.log(
        f"promote: {policy.alias} before: "
        f"{'v' + champion_version if champion_version else '(none)'}; {how}"
    )
    table = print_decision(ctx, decision, outcome.champion_logged, data)
    for note in outcome.notes:
        ctx.log(f"promote: note: {note}")
    if data and data[0] != data[1]:
        ctx.log(
            "promote: note: the champion was trained on other data "
            f"({data[1][:12]}); both were scored on the candidate's held-out split"
            if scorer.usable
            else "promote: note: the champion was trained on other data; its logged figures "
            "come from its own split"
        )
    ctx.log(f"promote: {decision.reason}")

    details = {
        "registered_model": name,
        "candidate_version": version,
        "champion_before": champion_version,
        "mode": policy.mode,
        "promote": decision.promote,
        "reason": decision.reason,
        "compared": how,
        "validation": {"rows": validation.rows, "signature": validation.signature},
        "notes": list(outcome.notes),
        "table": table,
    }
    details["champion_after"] = version if moved else champion_version
    write_json(ctx.model_reports / REPORT, details)

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
