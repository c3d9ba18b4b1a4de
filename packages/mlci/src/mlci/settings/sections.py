"""The sections of mlci's settings that build, check, train, promote and release a model.

Each class is one ``[tool.mlci.<section>]`` table; each field one setting, declared with
:func:`~mlci.settings.fields.option` (default, help, validation facts).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlci.settings.fields import option


@dataclass(frozen=True)
class LintSettings:
    paths: list[str] = option(["."], "files and folders that ruff checks")
    format: bool = option(True, "also run ruff format --check over the paths")
    typecheck: list[str] = option([], "files and folders that mypy checks (empty: none)")


@dataclass(frozen=True)
class TestSettings:
    __test__ = False  # not a pytest test class

    paths: list[str] = option(["tests"], "test files and folders that pytest runs")
    cov: list[str] = option([], "packages or folders measured for coverage (pytest-cov --cov)")
    args: list[str] = option([], 'extra pytest arguments, e.g. ["-m", "not slow"]')


@dataclass(frozen=True)
class GateSettings:
    file: str = option(
        "sonarqube/quality-gate.toml", "the quality-gate definition (conditions) as code"
    )


@dataclass(frozen=True)
class SonarSettings:
    host_url: str = option(
        "",
        "SonarQube server URL; empty evaluates the gate locally (else SONAR_HOST_URL)",
        url=True,
    )
    token: str = option(
        "",
        "analysis token (else SONAR_TOKEN, or SONAR_AUTH_TOKEN from withSonarQubeEnv)",
        secret=True,
    )
    project_key: str = option("", "SonarQube project key; empty uses the project folder's name")
    project_name: str = option("", "SonarQube project name; empty uses the key")
    sources: list[str] = option(["src"], "source folders analysed as main code")
    tests: list[str] = option(["tests"], "folders analysed as test code")
    scanner: list[str] = option(["pysonar"], "the scanner command (pysonar from PyPI)")
    working_dir: str = option(
        "", "scanner working folder (holds report-task.txt); empty: scannerwork in state_dir"
    )
    branch_analysis: bool = option(
        False, "send branch / pull-request parameters (needs a SonarQube edition with branches)"
    )
    gate_timeout: float = option(300.0, "seconds to wait for the analysis and the gate", minimum=1)
    poll_interval: float = option(
        2.0, "first wait between polls of the analysis; grows to 15 s", minimum=0.05
    )
    timeout: float = option(30.0, "seconds for one request to SonarQube", minimum=1)


@dataclass(frozen=True)
class ImageSettings:
    context: str = option(".", "Docker build context (holds the Dockerfile)")
    dockerfile: str = option("Dockerfile", "Dockerfile path, relative to the context")
    name: str = option("mlci/model", "image repository name; tags are the version and git sha")
    base_image: str = option("", "BASE_IMAGE build argument; empty keeps the Dockerfile's own")
    network: str = option("", "network mode for RUN steps during the build, e.g. host")
    build_args: dict[str, str] = option(
        {}, 'more build arguments, e.g. {MODEL_EXTRAS = "torch"} for a GPU image'
    )
    registry: str = option(
        "",
        "registry (host[:port], as the Docker engine reaches it) the image is pushed to; "
        "empty keeps it local",
    )
    registry_username: str = option("", "registry user (Jenkins binds it from a credential)")
    registry_password: str = option("", "registry password", secret=True)
    timeout: int = option(1800, "seconds the Docker engine may take to answer", minimum=1)


@dataclass(frozen=True)
class TrainSettings:
    in_image: str = option(
        "auto",
        "auto: train inside the pushed image (by digest) when the image stage pushed one; "
        "always: refuse to train without it; never: train in this environment",
        choices=("auto", "always", "never"),
    )
    gpus: str = option(
        "auto",
        "GPUs for training in the image: auto (all, when the engine has the NVIDIA runtime), "
        "all, or none",
        choices=("auto", "all", "none"),
    )
    timeout: int = option(
        7200, "seconds training inside the image may take before it is stopped", minimum=1
    )


@dataclass(frozen=True)
class ModelSettings:
    module: str = option("", "import name of the model package (train_and_evaluate entry point)")
    package: str = option("", "folder of the model package (its version goes into lineage)")
    params: dict[str, Any] = option({}, "hyper-parameters passed to the model package")
    data: list[str] = option(
        [], "files or folders the model reads its data from (part of train's cache key)"
    )


@dataclass(frozen=True)
class MlflowSettings:
    tracking_uri: str = option(
        "", "MLflow tracking server URL; empty starts a local server", url=True
    )
    experiment: str = option("default", "experiment that receives the training runs")
    registered_model: str = option("model", "registered model that versions are added to")
    server_port: int = option(
        5055,
        "port of the lasting local server (`mlci server`); the pipeline uses it while it runs",
        minimum=1,
        maximum=65535,
    )
    timeout: float = option(30.0, "seconds for one request to the tracking server", minimum=1)
    retries: int = option(2, "retries of one request to the tracking server", minimum=0)
    orphan_after: float = option(
        600.0,
        "seconds without a heartbeat after which a RUNNING run mlci created is marked FAILED "
        "by the next train or promote (its trainer died)",
        minimum=120,
    )


@dataclass(frozen=True)
class PromotionSettings:
    mode: str = option(
        "enabled",
        "disabled: never move aliases; dry-run: decide and report only; enabled: promote",
        choices=("disabled", "dry-run", "enabled"),
    )
    alias: str = option("champion", "alias that marks the model in production")
    primary_metric: str = option("f1_macro", "metric the candidate must beat the champion on")
    greater_is_better: bool = option(True, "whether a higher primary metric is better")
    directions: dict[str, str] = option(
        {},
        'whether each metric is better "higher" or "lower", e.g. {rmse = "lower"}; unnamed '
        "metrics are higher-is-better, an unnamed primary one follows greater_is_better",
        value_choices=("higher", "lower"),
    )
    min: dict[str, float] = option(
        {}, "lowest value per higher-is-better metric a candidate must reach"
    )
    max: dict[str, float] = option(
        {}, "highest value per lower-is-better metric a candidate may have, e.g. {rmse = 60}"
    )
    max_regression: dict[str, float] = option(
        {},
        "largest worsening per metric allowed against the champion, in the metric's direction",
    )
    lease_wait: float = option(
        300.0, "seconds to wait for another promotion of the same model", minimum=1
    )
    lease_ttl: float = option(
        120.0,
        "seconds a promotion lease lives without renewal (renewed every third of it while "
        "held); a lease past it may be broken by another promotion",
        minimum=1,
    )


@dataclass(frozen=True)
class ReleaseSettings:
    packages: list[str] = option(["."], "package folders to build and upload")
    repository_url: str = option(
        "", "upload URL of the package index; empty starts a local pypiserver", url=True
    )
    index_url: str = option(
        "", "simple-API URL of the index; empty derives <repository_url>/simple/", url=True
    )
    username: str = option("", "index user name (else TWINE_USERNAME)")
    password: str = option("", "index password or token (else TWINE_PASSWORD)", secret=True)
    timeout: float = option(60.0, "seconds for one request to the index", minimum=1)
    allow_dev: bool = option(
        False, "allow releasing untagged or uncommitted work as a .devN version"
    )
    dry_run: bool = option(False, "print the release plan and change nothing")


#: The pipeline's stages, in the order it runs them (mlci.stages.PIPELINE_STAGES is this).
STAGE_NAMES = (
    "lint",
    "test",
    "scan",
    "gate",
    "image",
    "train",
    "promote",
    "deploy",
    "release",
)


@dataclass(frozen=True)
class CacheSettings:
    enabled: bool = option(
        True, "skip a stage whose inputs are unchanged since its last success (state_dir/cache)"
    )
    force: list[str] = option(
        [],
        'stages that run even when their inputs are unchanged, e.g. ["train"]; ["all"]: each',
        value_choices=("all", *STAGE_NAMES),
    )


@dataclass(frozen=True)
class BootstrapSettings:
    requirements: list[str] = option(
        [],
        'what .ci/bootstrap installs into .venv, as pip arguments, e.g. ["mlci[all]", "-e ."]',
    )
