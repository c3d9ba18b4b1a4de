"""train: fit the model package, log it to the MLflow tracking server, register a version."""

from __future__ import annotations

import importlib
import os
import time
from typing import Any

from mlci.clients import mlflow as mlflow_client
from mlci.context import StageContext
from mlci.errors import ConfigError, StageFailed
from mlci.lineage import Lineage, git_info, package_metadata
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


def run(ctx: StageContext) -> StageResult:
    settings = ctx.settings
    module = load_model_module(settings.model.module)
    ctx.log(f"train: {settings.model.module} with {settings.model.params}")
    started = time.monotonic()
    try:
        result = module.train_and_evaluate(settings.model.params)
    except ValueError as exc:
        raise ConfigError(
            "the model package refused its hyper-parameters",
            str(exc),
            "fix [tool.mlci.model] params (or MLCI_MODEL_PARAMS)",
        ) from None
    fit_seconds = time.monotonic() - started
    ctx.log(
        f"train: fitted in {fit_seconds:.1f} s; "
        + ", ".join(f"{k}={v:.4f}" for k, v in sorted(result.metrics.items()))
    )
    lineage = build_lineage(ctx, result.data_hash)
    name = settings.mlflow.registered_model
    # Fit first: a bad hyper-parameter fails in a second, before any server is started.
    uri = ctx.tracking_uri()
    client = mlflow_client.connect(uri, settings.mlflow)
    import mlflow

    with mlflow_client.server_errors("logging the training run", uri):
        experiment = mlflow.set_experiment(settings.mlflow.experiment)
        run_name = f"{lineage.package}-{lineage.package_version}-{lineage.git_sha[:8]}"
        with mlflow.start_run(run_name=run_name, tags=lineage.tags()) as active:
            mlflow.log_params({k: str(v) for k, v in result.params.items()})
            mlflow.log_metrics({**result.metrics, "fit_seconds": fit_seconds})
            model_info = _log_model(result, name)
            version = str(model_info.registered_model_version)
            for key, value in lineage.tags().items():
                client.set_model_version_tag(name, version, key, value)
            client.set_model_version_tag(name, version, "mlci.run_id", active.info.run_id)
    run_id = active.info.run_id
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
        "lineage": lineage.tags(),
    }
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


def _log_model(result: Any, registered_name: str) -> Any:
    import pandas as pd
    from mlflow.models import infer_signature

    example = pd.DataFrame(result.input_example, columns=list(result.feature_names))
    signature = infer_signature(example, result.model.predict(example.to_numpy()))
    if getattr(result, "flavor", "sklearn") != "sklearn":
        raise StageFailed(
            f"the model flavor {result.flavor!r} is not supported yet",
            "the train stage logs scikit-learn models",
            "return flavor='sklearn' from train_and_evaluate()",
        )
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
