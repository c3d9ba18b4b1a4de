"""train: fit the model package, log it to the MLflow tracking server, register a version.

This module decides where one model trains and writes its report: inside the model image
the image stage pushed (:mod:`mlci.image_run`), or in this environment
(:mod:`mlci.training`, which runs the fit and logs it).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
from pathlib import Path
from types import ModuleType
from typing import Any

from mlci import cache, training
from mlci.clients import mlflow as mlflow_client
from mlci.context import StageContext, require_paths
from mlci.contract import check_module
from mlci.errors import ConfigError, DockerEngineError, StageFailed
from mlci.lineage import Lineage, git_info, package_metadata
from mlci.reports import read_json, write_json
from mlci.settings import TRAINING_CONTEXT_ENV, Settings
from mlci.stages import PASSED, StageResult, each_model

REPORT = "train.json"
#: What train leaves in the model's reports folder, kept with its cache entry.
OUTPUTS = (REPORT, "model_card.md", "*.png")


def load_model_module(name: str) -> ModuleType:
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
    check_module(module, name)
    return module


def lineage_facts(ctx: StageContext) -> dict[str, Any]:
    """What lineage records besides the data: git, the model package, the image.

    Inside the model image (``MLCI_TRAINING_CONTEXT``, set by the train stage that started
    the container) these come from outside: the image has no git, and the package version
    is the one the image was built with.
    """
    passed_in = os.environ.get(TRAINING_CONTEXT_ENV)
    if passed_in:
        try:
            facts = json.loads(passed_in)
            return {key: facts[key] for key in LINEAGE_FACTS}
        except (ValueError, KeyError, TypeError):
            raise ConfigError(
                f"{TRAINING_CONTEXT_ENV} is not what mlci writes",
                "mlci sets it for training inside the model image, with git and image facts",
                f"unset {TRAINING_CONTEXT_ENV}; mlci sets it itself",
            ) from None
    settings = ctx.settings
    git = git_info(settings.project_root)
    package_dir = settings.path(settings.model.package) if settings.model.package else None
    if package_dir and (package_dir / "pyproject.toml").is_file():
        package, version = package_metadata(package_dir)
    else:
        package, version = settings.model.module, "unknown"
    return {
        "git_sha": git.sha,
        "git_branch": git.branch,
        "git_dirty": git.dirty,
        "package": package,
        "package_version": version,
        "image_digest": "none",
    }


LINEAGE_FACTS = ("git_sha", "git_branch", "git_dirty", "package", "package_version", "image_digest")


def build_lineage(ctx: StageContext, data_hash: str) -> Lineage:
    facts = lineage_facts(ctx)
    return Lineage(data_hash=data_hash, build_url=os.environ.get("BUILD_URL", ""), **facts)


def validate_params(module: ModuleType, params: dict[str, Any]) -> None:
    """A bad hyper-parameter fails before any server is started or container pulled."""
    validate = getattr(module, "validate_params", None)
    if callable(validate):
        try:
            validate(params)
        except ValueError as exc:
            raise ConfigError(
                "the model package cannot train with these hyper-parameters here",
                str(exc),
                "fix [tool.mlci.model] params (or MLCI_MODEL_PARAMS), or install what the "
                "message names",
            ) from None


def training_image(ctx: StageContext) -> str | None:
    """The pushed image to train in (``name@sha256:...``), or None to train here."""
    mode = ctx.settings.train.in_image
    if mode == "never":
        return None
    report = ctx.settings.reports_path / "image.json"
    pushed = read_json(report, "image").get("pushed") if report.is_file() else None
    if pushed:
        return str(pushed)
    if mode == "always":
        raise StageFailed(
            f"no pushed image to train in ({report} names none)",
            "train.in_image is always: training runs only inside the image the image stage pushed",
            "run `invoke image` with MLCI_IMAGE_REGISTRY set first (in Jenkins: the Image "
            "stage, its report unstashed here), or set MLCI_TRAIN_IN_IMAGE=auto",
        )
    return None


#: The settings one model's training reads (its cache key has their values).
MODEL_SETTINGS = (
    "model.module",
    "model.params",
    "mlflow.registered_model",
    "mlflow.experiment",
    "train.in_image",
    "train.gpus",
)


def model_inputs(ctx: StageContext) -> dict[str, Any]:
    """What one model's training depends on: its code, its data, its parameters, the
    installed distributions, the image it trains in and the tracking server it logs to.
    Unchanged, the last success stands: no new run, no new model version."""
    settings = ctx.settings
    data = require_paths(settings, "model.data", "data in [tool.mlci.model] (or the model's table)")
    code = _code_folder(settings)
    return {
        "settings": cache.settings_values(ctx, *MODEL_SETTINGS),
        "code": cache.files_digest(ctx, [code]) if code else None,
        "data": cache.files_digest(ctx, data) if data else None,
        "image": training_image(ctx),
        "tracking_server": cache.tracking_server(ctx),
        "environment": cache.environment(),
    }


def _code_folder(settings: Settings) -> str | None:
    """The model package's folder in this project (model.package, else where the module
    lives when that is inside the project); None for a package installed from elsewhere,
    whose version the installed distributions already name."""
    if settings.model.package:
        return settings.model.package
    from importlib.util import find_spec

    try:
        spec = find_spec(settings.model.module) if settings.model.module else None
    except (ImportError, ValueError):
        return None
    locations = list(spec.submodule_search_locations or []) if spec else []
    origin = Path(locations[0] if locations else (spec.origin if spec else "") or "")
    root = settings.project_root.resolve()
    if origin.is_absolute() and origin.resolve().is_relative_to(root):
        return str(origin.resolve().relative_to(root))
    return None


def run(ctx: StageContext) -> StageResult:
    """Train each model of the project (the pipeline's stage adds the cache per model)."""
    return each_model(ctx, "train", run_model)


def run_model(ctx: StageContext) -> StageResult:
    """Train one model: the settings of ``ctx`` are one model's."""
    settings = ctx.settings
    ref = training_image(ctx)
    if ref is not None:
        return run_in_image(ctx, ref)
    module = load_model_module(settings.model.module)
    validate_params(module, settings.model.params)
    # Everything that can be wrong with the inputs fails here, before a server starts or a
    # run exists: the reports folder, git and the package's version.
    ctx.model_reports  # noqa: B018 - creates it, or says why it cannot be written
    lineage_facts(ctx)
    details = training.train_and_register(ctx, module, lambda data: build_lineage(ctx, data))
    write_json(ctx.model_reports / REPORT, details)
    return _result(ctx, details)


def _result(ctx: StageContext, details: dict[str, Any], where: str = "") -> StageResult:
    primary = ctx.settings.promotion.primary_metric
    metrics = details.get("metrics") or {}
    figure = f"{primary}={metrics[primary]:.4f}" if primary in metrics else ""
    summary = f"{details['registered_model']} v{details['version']} {figure}".strip()
    return StageResult(
        "train",
        PASSED,
        f"{summary}{where}",
        details=details,
        links=dict(details.get("links") or {}),
    )


def run_in_image(ctx: StageContext, ref: str) -> StageResult:
    """Train inside the pushed model image, by digest (see :mod:`mlci.image_run`)."""
    from mlci import image_run
    from mlci.stages.image import docker_client, registry_auth

    settings = ctx.settings
    with contextlib.suppress(ConfigError):  # the module may live only in the image
        validate_params(load_model_module(settings.model.module), settings.model.params)
    ctx.model_reports  # noqa: B018 - creates it, or says why it cannot be written
    client = docker_client(settings.image.timeout)
    if client is None:
        raise DockerEngineError(
            f"no Docker engine answers, and training runs inside {ref}",
            "the image stage pushed an image, so train.in_image (auto) trains inside it",
            "run this stage on an agent with a Docker engine, or set MLCI_TRAIN_IN_IMAGE=never "
            "to train in this environment",
        )
    uri = ctx.tracking_uri()
    mlflow_client.check_reachable(uri, settings.mlflow.timeout)
    facts = {**lineage_facts(ctx), "image_digest": ref}
    auth = registry_auth(settings.image)
    image_run.pull(client, ref, auth, ctx.log)
    report = ctx.model_reports / REPORT
    report.unlink(missing_ok=True)  # never mistake an earlier run's report for this one
    env = image_run.container_env(settings, uri, facts)
    image_run.run_training(client, settings, ref, env, ctx.log)
    if not report.is_file():
        raise StageFailed(
            f"training in {ref} ended without writing {report}",
            "the container's mlci did not see the same project folder",
            "check MLCI_REPORTS_DIR and that the agent's workspace is mounted (see the log)",
        )
    details = read_json(report, "train")
    return _result(ctx, details, " (in image)")
