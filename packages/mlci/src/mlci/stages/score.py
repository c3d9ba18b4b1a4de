"""score: batch predictions of one registered model version, with a data drift report.

Not one of the pipeline's stages: `invoke score` (and the nightly Jenkins job,
jenkins/score.Jenkinsfile) runs it on a batch of new inputs. In order:

1. read the batch (CSV or Parquet, by suffix); a missing, empty or unreadable file is an
   error before any server is asked;
2. resolve the version once: the champion alias (``promotion.alias``), or the version
   ``--version`` pins;
3. load ``models:/<name>/<N>`` through ``mlflow.pyfunc`` and check the batch's columns
   against its signature;
4. predict, one prediction per row;
5. compare the batch with the version's training inputs (the run artifact
   ``reference/train_inputs.parquet``; versions trained before mlci logged it fall back to
   their held-out inputs, and say so) in :mod:`mlci.drift`;
6. write ``<stem>.predictions.csv``, ``<stem>.drift.json`` and ``<stem>.drift.png`` under
   reports/score/ (reports/models/<name>/score/ in a project with several models), and log
   one MLflow run with them in ``score.experiment`` (default ``<experiment>-scoring``).

Until step 6 nothing is written and no run exists, so a bad batch leaves no trace. A drift
score above ``score.drift_threshold`` fails the stage after step 6: the predictions, the
report and the run (tagged ``mlci.outcome = drifted``) stay as the evidence.

Steps 1 to 5 read and compute only (:mod:`mlci.scoring`, :mod:`mlci.drift`); this module
runs them in order and does step 6.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

from mlci import drift, registry
from mlci.clients import mlflow as mlflow_client
from mlci.context import StageContext, writable_folder
from mlci.errors import DataDrifted, StageFailed
from mlci.scoring import (
    FORMATS,
    INPUT_FIX,
    PREDICTION,
    file_sha256,
    input_columns,
    load_model,
    load_reference,
    predict,
    read_batch,
    with_predictions,
)
from mlci.settings import Settings
from mlci.stages import PASSED, StageResult

# The reading and predicting now live in mlci.scoring; their names stay importable here.
__all__ = [
    "DRIFTED_OUTCOME",
    "FORMATS",
    "INPUT_FIX",
    "OUTCOME_TAG",
    "PASSED_OUTCOME",
    "PREDICTION",
    "experiment_name",
    "file_sha256",
    "input_columns",
    "load_model",
    "load_reference",
    "predict",
    "read_batch",
    "run",
    "with_predictions",
]

OUTCOME_TAG = "mlci.outcome"
PASSED_OUTCOME, DRIFTED_OUTCOME = "passed", "drifted"


def experiment_name(settings: Settings) -> str:
    return settings.score.experiment or f"{settings.mlflow.experiment}-scoring"


def run(ctx: StageContext, input_path: str, version: str | None = None) -> StageResult:
    """Score the batch at ``input_path`` with the champion, or with ``version``."""
    settings = ctx.settings.served()
    if settings is not ctx.settings:
        ctx = ctx.for_model(settings)
    path = settings.path(input_path)
    batch = read_batch(path)
    sha256 = file_sha256(path)
    folder = ctx.model_reports / "score"  # created, or a clear error why it cannot be
    name, alias = settings.mlflow.registered_model, settings.promotion.alias
    uri = ctx.tracking_uri()
    client = mlflow_client.connect(uri, settings.mlflow)
    with mlflow_client.server_errors(f"reading {name}", uri):
        mv = registry.resolve_version(client, name, alias, version, purpose="score with")
    number = str(mv.version)
    label = f"{name} v{number}"
    chosen = "pinned by --version" if version is not None else f"the {alias}"
    ctx.log(f"score: {path.name} ({len(batch)} rows) with {label} ({chosen})")
    with mlflow_client.server_errors(f"loading {label}", uri):
        model = load_model(name, number)
        columns = input_columns(model)
        reference, reference_source = load_reference(client, mv.run_id, ctx.log)
    columns = columns or [str(c) for c in reference.columns]
    drift.check_columns(columns, list(batch.columns), f"the batch {path.name}", INPUT_FIX)
    if sorted(map(str, reference.columns)) != sorted(columns):
        raise StageFailed(
            f"the drift reference of {label} does not have the model's input columns",
            f"reference: {', '.join(map(str, reference.columns))}; model: {', '.join(columns)}",
            "train a new version (train logs a matching reference), promote it, score again",
        )
    inputs = batch[columns]
    values = predict(model, inputs, label)
    report = drift.compare(reference[columns], inputs, settings.score.drift_p_value, path.name)
    threshold = settings.score.drift_threshold
    drifted = report.score > threshold
    ctx.log(
        f"score: drift {report.score:.3f} ({len(report.drifted)} of {len(report.tested)} "
        f"features, KS p < {report.p_value:g}; threshold {threshold:g}) against the "
        f"{reference_source}"
    )
    stem = path.stem
    paths = {
        "predictions": folder / f"{stem}.predictions.csv",
        "drift_json": folder / f"{stem}.drift.json",
        "drift_png": folder / f"{stem}.drift.png",
    }
    facts = {
        "registered_model": name,
        "version": number,
        "version_chosen": "pinned" if version is not None else alias,
        "input": str(path),
        "input_sha256": sha256,
        "rows": len(batch),
        "reference": reference_source,
        "drift_threshold": threshold,
        "outcome": DRIFTED_OUTCOME if drifted else PASSED_OUTCOME,
    }
    run_id, experiment_id = _record(
        ctx, client, uri, facts, report, paths, batch, values, reference[columns], inputs
    )
    run_url = f"{ctx.browse_url()}/#/experiments/{experiment_id}/runs/{run_id}"
    figure = f"drift {report.score:.2f} ({len(report.drifted)}/{len(report.tested)} features)"
    if drifted:
        raise DataDrifted(
            f"{path.name}: drift score {report.score:.3f} is above score.drift_threshold "
            f"{threshold:g}",
            f"{len(report.drifted)} of {len(report.tested)} features drifted from the "
            f"{reference_source} of {label} (KS p < {report.p_value:g}): "
            + ", ".join(report.drifted),
            f"look at {paths['drift_png']} (run {run_url}); retrain on data like this batch, "
            "or raise MLCI_SCORE_DRIFT_THRESHOLD if the change is expected. The predictions "
            f"are in {paths['predictions']}",
        )
    details = {
        **facts,
        "drift_score": report.score,
        "drifted_features": report.drifted,
        "run_id": run_id,
        "experiment_id": experiment_id,
        "reports": {key: str(value) for key, value in paths.items()},
    }
    return StageResult(
        "score",
        PASSED,
        f"{label}: {len(batch)} rows scored; {figure} <= {threshold:g}",
        details=details,
        links={"MLflow run": run_url},
    )


def _record(
    ctx: StageContext,
    client: Any,
    uri: str,
    facts: dict[str, Any],
    report: drift.DriftReport,
    paths: dict[str, Path],
    batch: Any,
    values: Any,
    reference: Any,
    inputs: Any,
) -> tuple[str, str]:
    """Write the three report files and log them with one run; (run id, experiment id).

    ``batch``, ``reference`` and ``inputs`` are pandas data frames, ``values`` what
    :func:`mlci.scoring.predict` returned."""
    import mlflow
    from mlflow.entities import Metric, Param

    from mlci.orphans import CREATED_BY, CREATED_BY_TAG

    settings = ctx.settings
    name, number = facts["registered_model"], facts["version"]
    experiment = experiment_name(settings)
    tags = {
        CREATED_BY_TAG: CREATED_BY,
        OUTCOME_TAG: facts["outcome"],
        "mlci.registered_model": name,
        "mlci.version": number,
        "mlci.input_sha256": facts["input_sha256"],
    }
    if os.environ.get("BUILD_URL"):
        tags["mlci.build_url"] = os.environ["BUILD_URL"]
    writable_folder(paths["predictions"].parent, "reports_dir")
    with mlflow_client.server_errors("starting the scoring run", uri):
        experiment_id = mlflow.set_experiment(experiment).experiment_id
        created = client.create_run(
            experiment_id, run_name=f"{name}-v{number}-{Path(facts['input']).stem}", tags=tags
        )
    run_id = created.info.run_id
    try:
        with_predictions(batch, values).to_csv(paths["predictions"], index=False)
        document = {
            **facts,
            "run_id": run_id,
            "experiment": experiment,
            **drift.report_dict(report),
        }
        paths["drift_json"].write_text(json.dumps(document, indent=2) + "\n")
        title = f"{name} v{number}: {Path(facts['input']).name} against its {facts['reference']}"
        paths["drift_png"].write_bytes(drift.draw_png(report, reference, inputs, title))
        with mlflow_client.server_errors("logging the scoring run", uri):
            params = {
                "registered_model": name,
                "version": number,
                "input": Path(facts["input"]).name,
                "input_sha256": facts["input_sha256"],
                "rows": str(facts["rows"]),
                "reference": facts["reference"][:500],
            }
            now = int(time.time() * 1000)
            metrics = {
                "drift_score": report.score,
                "drifted_features": float(len(report.drifted)),
                "rows": float(facts["rows"]),
            }
            client.log_batch(
                run_id,
                metrics=[Metric(k, v, now, 0) for k, v in metrics.items()],
                params=[Param(k, v) for k, v in params.items()],
            )
            for key in ("drift_json", "drift_png"):
                client.log_artifact(run_id, str(paths[key]), artifact_path="drift")
            client.set_terminated(run_id, "FINISHED")
    except BaseException:
        with contextlib.suppress(Exception):  # the error that stopped it stays the error
            client.set_terminated(run_id, "FAILED")
        raise
    for key, value in paths.items():
        ctx.log(f"score: wrote {value}" if key != "drift_png" else f"score: drew {value}")
    return run_id, experiment_id
