"""train: fit the model package, log it to the MLflow tracking server, register a version."""

from __future__ import annotations

import importlib
import inspect
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from mlci import unfinished
from mlci.clients import mlflow as mlflow_client
from mlci.context import StageContext
from mlci.errors import ConfigError
from mlci.lineage import Lineage, git_info, package_metadata
from mlci.metric_buffer import MetricBuffer
from mlci.reports import write_json
from mlci.stages import PASSED, StageResult

REPORT = "train.json"


def load_model_module(name: str) -> Any:
    if not name:
        raise ConfigError(
            "model.module is not set",
            "the train stage imports the model package to call its train_and_evaluate()",
            'set module under [tool.mlci.model] (e.g. module = "wine_classifier")',
        )
    try:
        module = importlib.import_module(name)
    except ImportError as exc:
        raise ConfigError(
            f"the model package {name!r} cannot be imported",
            str(exc),
            "install it into this environment (pip install -e packages/<model>) or fix "
            "MLCI_MODEL_MODULE",
        ) from None
    if not callable(getattr(module, "train_and_evaluate", None)):
        raise ConfigError(
            f"the model package {name!r} has no train_and_evaluate()",
            "mlci calls train_and_evaluate(params) and expects a result with model, metrics, "
            "params, data_hash, input_example and feature_names",
            "add that function to the package",
        )
    return module


def build_lineage(ctx: StageContext, data_hash: str) -> Lineage:
    settings = ctx.settings
    git = git_info(settings.project_root)
    package_dir = settings.path(settings.model.package) if settings.model.package else None
    if package_dir and (package_dir / "pyproject.toml").is_file():
        package, version = package_metadata(package_dir)
    else:
        package, version = settings.model.module, "unknown"
    image_report = ctx.reports / "image.json"
    image_digest = ""
    if image_report.is_file():
        from mlci.reports import read_json

        image = read_json(image_report, "image")
        image_digest = (image.get("repo_digests") or [image.get("image_id", "")])[0]
    return Lineage(
        git_sha=git.sha,
        git_branch=git.branch,
        git_dirty=git.dirty,
        data_hash=data_hash,
        package=package,
        package_version=version,
        build_url=os.environ.get("BUILD_URL", ""),
        image_digest=image_digest or "none",
    )


def _accepts_on_step(fn: Any) -> bool:
    try:
        return "on_step" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def run(ctx: StageContext) -> StageResult:
    settings = ctx.settings
    module = load_model_module(settings.model.module)
    validate = getattr(module, "validate_params", None)
    if callable(validate):  # a bad hyper-parameter fails before any server is started
        try:
            validate(settings.model.params)
        except ValueError as exc:
            raise ConfigError(
                "the model package refused its hyper-parameters",
                str(exc),
                "fix [tool.mlci.model] params (or MLCI_MODEL_PARAMS)",
            ) from None
    uri = ctx.tracking_uri()
    client = mlflow_client.connect(uri, settings.mlflow)
    unfinished.finish(ctx, client, uri)
    import mlflow

    name = settings.mlflow.registered_model
    lineage = build_lineage(ctx, "pending")
    with mlflow_client.server_errors("starting the training run", uri):
        experiment = mlflow.set_experiment(settings.mlflow.experiment)
        run_name = f"{lineage.package}-{lineage.package_version}-{lineage.git_sha[:8]}"
        run = client.create_run(experiment.experiment_id, run_name=run_name, tags=lineage.tags())
    run_id = run.info.run_id
    unfinished.remember(ctx, run_id, uri)
    try:
        result, version, fit_seconds, buffer = _train_and_log(
            ctx, module, client, uri, run_id, lineage, name
        )
    except BaseException as exc:
        unfinished.try_to_end(ctx, client, run_id)
        if isinstance(exc, ValueError):
            raise ConfigError(
                "the model package refused its hyper-parameters",
                str(exc),
                "fix [tool.mlci.model] params (or MLCI_MODEL_PARAMS)",
            ) from None
        raise
    unfinished.forget(ctx, run_id)
    run_url = f"{uri.rstrip('/')}/#/experiments/{experiment.experiment_id}/runs/{run_id}"
    version_url = f"{uri.rstrip('/')}/#/models/{name}/versions/{version}"
    details = {
        "tracking_uri": uri,
        "tracking_is_local": ctx.tracking_is_local,
        "experiment_id": experiment.experiment_id,
        "run_id": run_id,
        "registered_model": name,
        "version": version,
        "metrics": result.metrics,
        "params": result.params,
        "device": getattr(result, "device", "cpu"),
        "fit_seconds": round(fit_seconds, 3),
        "logging": {"requests": buffer.requests, "values": buffer.values,
                    "seconds": round(buffer.seconds, 3)},
        "lineage": lineage.tags(),
    }  # fmt: skip
    write_json(ctx.reports / REPORT, details)
    primary = settings.promotion.primary_metric
    figure = f"{primary}={result.metrics[primary]:.4f}" if primary in result.metrics else ""
    return StageResult(
        "train",
        PASSED,
        f"{name} v{version} {figure}".strip(),
        details=details,
        links={"MLflow run": run_url, "model version": version_url},
    )


def _train_and_log(ctx, module, client, uri, run_id, lineage, name):
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
        ctx.log(
            f"train: fitted in {fit_seconds:.1f} s on {getattr(result, 'device', 'cpu')}; "
            + ", ".join(f"{k}={v:.4f}" for k, v in sorted(result.metrics.items()))
        )
        final = build_lineage(ctx, result.data_hash)
        lineage_tags = {**final.tags(), "mlci.device": getattr(result, "device", "cpu")}
        thresholds = {"min": settings.promotion.min,
                      "max_regression": settings.promotion.max_regression}  # fmt: skip
        with mlflow.start_run(run_id=run_id):
            mlflow.set_tags(lineage_tags)
            mlflow.log_params({k: str(v) for k, v in result.params.items()})
            mlflow.log_metrics({**result.metrics, "fit_seconds": fit_seconds})
            model_info = _log_model(result, name)
            version = str(model_info.registered_model_version)
            card = model_card(name, version, run_id, result, lineage_tags, thresholds)
            _log_artefacts(result, card)
        (ctx.reports / "model_card.md").write_text(card)
        for filename, data in (getattr(result, "extra_artifacts", None) or {}).items():
            (ctx.reports / filename).write_bytes(data)  # for summary.html and Jenkins
        for key, value in {**lineage_tags, "mlci.run_id": run_id}.items():
            client.set_model_version_tag(name, version, key, value)
        client.update_model_version(name, version, description=card.split("\n\n", 1)[0])
        client.set_terminated(run_id, "FINISHED")
    return result, version, fit_seconds, buffer


def _log_artefacts(result: Any, card: str) -> None:
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for filename, data in (getattr(result, "extra_artifacts", None) or {}).items():
            (folder / filename).write_bytes(data)
        (folder / "model_card.md").write_text(card)
        mlflow.log_artifacts(tmp, artifact_path="report")


def model_card(name, version, run_id, result, tags, thresholds) -> str:
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


def _log_model(result: Any, registered_name: str) -> Any:
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
