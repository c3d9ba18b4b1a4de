"""Training in this process: one MLflow run on the tracking server, the model package's fit
with its per-step metrics sent in batches, then the model, its card, its plots and the data
promotion and `invoke score` compare against, ending in a registered model version.

The train stage (:mod:`mlci.stages.train`) decides where training runs and writes the
report; it comes here to train in this environment, and so does the mlci inside the model
image when the stage trains there.
"""

from __future__ import annotations

import inspect
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from mlci import orphans
from mlci.clients import mlflow as mlflow_client
from mlci.context import StageContext
from mlci.contract import HELDOUT, TARGET_COLUMN, TRAIN_INPUTS, check_result
from mlci.errors import ConfigError
from mlci.lineage import Lineage
from mlci.metric_buffer import MetricBuffer

#: The lineage of this training given the hash of its data (the stage knows git and the
#: package; the data hash is known only once the model package has trained).
LineageOf = Callable[[str], Lineage]


@dataclass(frozen=True)
class Fitted:
    """One logged training. ``result`` is what the model package returned: any object with
    the fields of :class:`mlci.contract.TrainResult`, checked by ``check_result``."""

    result: Any
    version: str
    fit_seconds: float
    buffer: MetricBuffer


def train_and_register(
    ctx: StageContext, module: ModuleType, lineage_of: LineageOf
) -> dict[str, Any]:
    """Train ``module`` with the model settings of ``ctx`` in one new run, register the model
    as a new version, and return what the train report holds."""
    settings = ctx.settings
    uri = ctx.tracking_uri()
    client = mlflow_client.connect(uri, settings.mlflow)
    orphans.close_orphans(ctx, client, "train")
    import mlflow

    name = settings.mlflow.registered_model
    lineage = lineage_of("pending")
    with mlflow_client.server_errors("starting the training run", uri):
        experiment = mlflow.set_experiment(settings.mlflow.experiment)
        run_name = f"{lineage.package}-{lineage.package_version}-{lineage.git_sha[:8]}"
        # Tagged findable as mlci's from the start: a kill right after leaves no untagged run.
        tags = {**lineage.tags(), **orphans.created_by_tags()}
        created = client.create_run(experiment.experiment_id, run_name=run_name, tags=tags)
    run_id: str = created.info.run_id
    heartbeat = orphans.start_heartbeat(ctx, client, run_id)
    try:
        fitted = fit_and_log(ctx, module, client, uri, run_id, name, lineage_of)
    except BaseException as exc:
        heartbeat.fail()
        if isinstance(exc, ValueError):
            raise ConfigError(
                "the model package refused its hyper-parameters",
                str(exc),
                "fix [tool.mlci.model] params (or MLCI_MODEL_PARAMS)",
            ) from None
        raise
    heartbeat.stop()
    result, buffer = fitted.result, fitted.buffer
    base = ctx.browse_url()
    run_url = f"{base}/#/experiments/{experiment.experiment_id}/runs/{run_id}"
    version_url = f"{base}/#/models/{name}/versions/{fitted.version}"
    return {
        "tracking_uri": uri,
        "tracking_is_local": ctx.tracking_is_local,
        "experiment_id": experiment.experiment_id,
        "run_id": run_id,
        "registered_model": name,
        "version": fitted.version,
        "metrics": result.metrics,
        "params": result.params,
        "device": getattr(result, "device", "cpu"),
        "fit_seconds": round(fitted.fit_seconds, 3),
        "logging": {
            "requests": buffer.requests,
            "values": buffer.values,
            "seconds": round(buffer.seconds, 3),
        },
        "lineage": lineage.tags(),
        "links": {"MLflow run": run_url, "model version": version_url},
    }


def _accepts_on_step(fn: Callable[..., Any]) -> bool:
    try:
        return "on_step" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def fit_and_log(
    ctx: StageContext,
    module: ModuleType,
    client: Any,
    uri: str,
    run_id: str,
    name: str,
    lineage_of: LineageOf,
) -> Fitted:
    """Fit with per-step metrics sent in batches, then log model, artefacts and card."""
    import mlflow

    settings = ctx.settings
    buffer = MetricBuffer(client, run_id)
    ctx.log(f"train: {settings.model.module} with {settings.model.params}")
    started = time.monotonic()
    with mlflow_client.server_errors("logging the training run", uri):
        if _accepts_on_step(module.train_and_evaluate):
            result = module.train_and_evaluate(settings.model.params, on_step=buffer.add)
        else:
            result = module.train_and_evaluate(settings.model.params)
        fit_seconds = time.monotonic() - started
        buffer.flush()
        check_result(result, settings.model.module)
        ctx.log(
            f"train: fitted in {fit_seconds:.1f} s on {getattr(result, 'device', 'cpu')}; "
            + ", ".join(f"{k}={v:.4f}" for k, v in sorted(result.metrics.items()))
        )
        final = lineage_of(result.data_hash)
        lineage_tags = {**final.tags(), "mlci.device": getattr(result, "device", "cpu")}
        thresholds = {
            "min": settings.promotion.min,
            "max_regression": settings.promotion.max_regression,
        }
        with mlflow.start_run(run_id=run_id):
            mlflow.set_tags(lineage_tags)
            mlflow.log_params({k: str(v) for k, v in result.params.items()})
            mlflow.log_metrics({**result.metrics, "fit_seconds": fit_seconds})
            model_info = log_model(result, name)
            version = str(model_info.registered_model_version)
            card = model_card(name, version, run_id, result, lineage_tags, thresholds)
            log_artefacts(result, card)
            log_heldout(result)
            log_train_inputs(result)
        (ctx.model_reports / "model_card.md").write_text(card)
        for filename, data in (getattr(result, "extra_artifacts", None) or {}).items():
            (ctx.model_reports / filename).write_bytes(data)  # for summary.html and Jenkins
        for key, value in {**lineage_tags, "mlci.run_id": run_id}.items():
            client.set_model_version_tag(name, version, key, value)
        client.update_model_version(name, version, description=card.split("\n\n", 1)[0])
        client.set_terminated(run_id, "FINISHED")
    return Fitted(result, version, fit_seconds, buffer)


def log_artefacts(result: Any, card: str) -> None:
    """The model card and the model package's extra files, under ``report/`` in the run."""
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for filename, data in (getattr(result, "extra_artifacts", None) or {}).items():
            (folder / filename).write_bytes(data)
        (folder / "model_card.md").write_text(card)
        mlflow.log_artifacts(tmp, artifact_path="report")


def log_heldout(result: Any) -> None:
    """The held-out inputs and targets, so that promotion scores the champion on them too."""
    if getattr(result, "eval_inputs", None) is None:
        return
    import mlflow
    import pandas as pd

    frame = pd.DataFrame(result.eval_inputs, columns=list(result.feature_names))
    frame[TARGET_COLUMN] = list(result.eval_targets)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(HELDOUT).name
        frame.to_csv(path, index=False)
        mlflow.log_artifact(str(path), artifact_path=str(Path(HELDOUT).parent))


def log_train_inputs(result: Any) -> None:
    """The training inputs, the reference `invoke score` measures each batch's drift from."""
    if getattr(result, "train_inputs", None) is None:
        return
    import mlflow
    import pandas as pd

    frame = pd.DataFrame(result.train_inputs, columns=list(result.feature_names))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(TRAIN_INPUTS).name
        frame.to_parquet(path, index=False)
        mlflow.log_artifact(str(path), artifact_path=str(Path(TRAIN_INPUTS).parent))


def model_card(
    name: str,
    version: str,
    run_id: str,
    result: Any,
    tags: Mapping[str, str],
    thresholds: Mapping[str, Mapping[str, float]],
) -> str:
    """A short markdown card: what the model is, how good, where it came from."""
    lines = [
        f"{name} v{version}: {tags.get('mlci.package')} {tags.get('mlci.package_version')} "
        f"trained at commit {tags.get('mlci.git_sha', '')[:12]} on {tags.get('mlci.device')}.",
        "",
        f"# Model card: {name} v{version}",
        "",
        "## Metrics (held-out split)",
        "",
        "| metric | value |",
        "|---|---|",
        *[f"| {k} | {v:.4f} |" for k, v in sorted(result.metrics.items())],
        "",
        "## Hyper-parameters",
        "",
        *[f"- `{k}` = `{v}`" for k, v in sorted(result.params.items())],
        "",
        "## Lineage",
        "",
        *[f"- {k.removeprefix('mlci.')}: `{v}`" for k, v in sorted(tags.items()) if v],
        f"- run: `{run_id}`",
        "",
        "## Promotion thresholds in force",
        "",
        f"- minimum: {thresholds['min'] or 'none'}",
        f"- largest drop against the champion: {thresholds['max_regression'] or 'none'}",
    ]
    plots = sorted((getattr(result, "extra_artifacts", None) or {}).keys())
    if plots:
        lines += ["", "## Plots", "", *[f"![{p}]({p})" for p in plots]]
    return "\n".join(lines) + "\n"


def log_model(result: Any, registered_name: str) -> Any:
    """Log the fitted model (skops for scikit-learn, else a pyfunc wrapper) and register it;
    MLflow's ModelInfo."""
    import pandas as pd
    from mlflow.models import infer_signature

    example = pd.DataFrame(result.input_example, columns=list(result.feature_names))
    signature = infer_signature(example, result.model.predict(example.to_numpy()))
    flavor = getattr(result, "flavor", "sklearn")
    if flavor == "sklearn":
        import mlflow.sklearn

        return mlflow.sklearn.log_model(
            result.model,
            name="model",
            signature=signature,
            input_example=example,
            registered_model_name=registered_name,
            serialization_format="skops",
            skops_trusted_types=list(getattr(result, "trusted_types", ())) or None,
        )
    import mlflow.pyfunc

    from mlci.pyfunc_model import PredictorModel

    return mlflow.pyfunc.log_model(
        name="model",
        python_model=PredictorModel(result.model),
        signature=signature,
        input_example=example,
        registered_model_name=registered_name,
    )
