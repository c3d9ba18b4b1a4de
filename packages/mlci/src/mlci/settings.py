"""One Settings object for every stage.

Precedence, highest first (the one rule, implemented in :func:`load_settings`):

1. explicit values from the command line (task flags),
2. ``MLCI_*`` environment variables (``MLCI_<SECTION>_<KEY>``, e.g. ``MLCI_MLFLOW_TRACKING_URI``),
   then the tools' own variables mlci honours (``MLFLOW_TRACKING_URI``),
3. ``[tool.mlci]`` in the project's root ``pyproject.toml``,
4. the defaults declared below.

Everything is parsed and validated once, when the settings are loaded; nothing here
connects to a server, so ``invoke --list`` and ``--help`` work without credentials.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import json
import math
import os
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mlci.errors import ConfigError

ENV_PREFIX = "MLCI_"
ROOT_ENV = "MLCI_PROJECT_ROOT"
# Set by mlci itself for training inside the model image (what the container cannot see:
# git facts, the image digest); not a setting.
TRAINING_CONTEXT_ENV = "MLCI_TRAINING_CONTEXT"
# Picks one of [tool.mlci.models.<name>] for train, promote and the model.* tasks.
MODEL_ENV = "MLCI_MODEL"
# Set by `invoke release` for the build of mlci itself (packages/mlci/hatch_build.py).
BUILD_SOURCE_ENV = "MLCI_BUILD_SOURCE_ROOT"
RESERVED_ENV = frozenset({ROOT_ENV, TRAINING_CONTEXT_ENV, MODEL_ENV, BUILD_SOURCE_ENV})
# What a [tool.mlci.models.<name>] table may set, and the setting each key stands for; its
# [promotion] sub-table sets promotion.* for that model.
MODEL_KEYS = {
    "module": "model.module",
    "package": "model.package",
    "params": "model.params",
    "data": "model.data",
    "registered_model": "mlflow.registered_model",
    "experiment": "mlflow.experiment",
}
# The tools' own variables mlci honours, below its MLCI_* ones: an MLflow user's
# MLFLOW_TRACKING_URI names the server unless MLCI_MLFLOW_TRACKING_URI says otherwise.
PLAIN_ENV = {"mlflow.tracking_uri": "MLFLOW_TRACKING_URI"}
SOURCE_DEFAULT = "default"
SOURCE_FILE = "pyproject.toml"
SOURCE_CLI = "command line"
SECRET_MASK = "********"


def option(default: Any, help: str, **meta: Any) -> Any:
    """Declare a setting: its default, one line of help, and validation facts.

    ``meta`` keys: ``choices`` (allowed values), ``minimum``/``maximum`` (numbers),
    ``secret`` (never read from files, masked when shown), ``url`` (must be http(s) or empty),
    ``value_choices`` (allowed values of a table's or a list's entries).
    """
    metadata = {"help": help, **meta}
    if isinstance(default, list | dict):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def section(cls: type) -> Any:
    return field(default_factory=cls, metadata={"section": True})


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


@dataclass(frozen=True)
class PlatformSettings:
    kind: str = option(
        "compose",
        "where the platform runs: compose (one host, services/compose.yaml) or kubernetes "
        "(services/kubernetes/ and the Jenkins chart); wire restarts containers only on compose",
        choices=("compose", "kubernetes"),
    )
    compose_file: str = option("services/compose.yaml", "the Compose file of the platform")
    env_file: str = option(
        "services/.env", "the generated secrets (untracked, mode 0600) Compose reads"
    )
    project_name: str = option("mlci", "Compose project name (prefix of containers and volumes)")
    jenkins_url: str = option(
        "http://127.0.0.1:8080", "Jenkins as this machine reaches it", url=True
    )
    gitbucket_url: str = option(
        "http://127.0.0.1:8081", "GitBucket as this machine reaches it", url=True
    )
    sonarqube_url: str = option(
        "http://127.0.0.1:9000", "SonarQube as this machine reaches it", url=True
    )
    mlflow_url: str = option("http://127.0.0.1:5000", "MLflow as this machine reaches it", url=True)
    jenkins_internal_url: str = option(
        "http://jenkins:8080/",
        "Jenkins as GitBucket and SonarQube reach it inside the Compose network (webhooks)",
        url=True,
    )
    gitbucket_internal_url: str = option(
        "http://gitbucket:8080", "GitBucket as Jenkins reaches it (the job's clone URL)", url=True
    )
    organisation: str = option("mlci", "GitBucket organisation that owns the repository")
    repository: str = option("mlci", "GitBucket repository the project is pushed to")
    job: str = option("mlci", "name of the Jenkins Pipeline job")
    ref_filter: str = option(
        "^refs/(heads/main|tags/v.+)$", "pushed refs that start a build (anchored regex)"
    )
    ready_timeout: float = option(
        600.0, "seconds the services may take to become ready after `up`", minimum=1
    )
    timeout: float = option(30.0, "seconds for one request to a platform service", minimum=1)


@dataclass(frozen=True)
class ServingSettings:
    model: str = option(
        "",
        "the one of [tool.mlci.models] that serve, deploy and score use unless --model or "
        "MLCI_MODEL names another (a project with one model: that one)",
    )
    host: str = option(
        "127.0.0.1", "address `invoke serve` and the local deployment's proxy listen on"
    )
    port: int = option(
        8000,
        "port of `invoke serve` and of the local deployment's proxy",
        minimum=1,
        maximum=65535,
    )
    runtime: str = option(
        "auto",
        "auto: the model's image when a Docker engine answers and the image stage built one, "
        "else a local process; docker; process",
        choices=("auto", "docker", "process"),
    )
    proxy_url: str = option(
        "",
        "the deployment's proxy (compose: http://model-serving:8000); empty: the local one "
        "`invoke deploy` starts",
        url=True,
    )
    proxy_token: str = option(
        "", "token of the proxy's switch API (Jenkins binds it; local: generated)", secret=True
    )
    network: str = option(
        "",
        "Docker network the slot containers join (compose: mlci_mlci); empty: slots publish "
        "a port on loopback",
    )
    deploy: str = option(
        "auto",
        "auto: the pipeline's deploy stage updates a running deployment (proxy_url, or the "
        "local one) and skips when there is none; enabled: always; disabled: never",
        choices=("auto", "enabled", "disabled"),
    )
    smoke_requests: int = option(
        40, "requests of the smoke test (the input example, one after another)", minimum=5
    )
    smoke_p95_ms: float = option(
        500.0, "highest p95 latency (ms) of the smoke test before the switch", minimum=0
    )
    ready_timeout: float = option(
        180.0, "seconds a new slot may take to load its model and answer /ping", minimum=1
    )
    drain_timeout: float = option(
        30.0, "seconds the old slot's requests in flight may take after the switch", minimum=0
    )
    timeout: float = option(10.0, "seconds for one request to a slot or the proxy", minimum=1)


@dataclass(frozen=True)
class ScoreSettings:
    input: str = option("", "CSV or Parquet file that `invoke score` scores")
    drift_threshold: float = option(
        0.5,
        "drift score (share of features whose distribution moved) above which score fails",
        minimum=0,
        maximum=1,
    )
    drift_p_value: float = option(
        0.01,
        "a feature has drifted when the two-sample Kolmogorov-Smirnov test's p-value is below",
        minimum=0,
        maximum=1,
    )
    experiment: str = option(
        "", "experiment of the scoring runs; empty: <mlflow.experiment>-scoring"
    )


#: The pipeline's stages (mlci.stages.PIPELINE_STAGES; a test holds the two together).
STAGE_NAMES = (
    "lint", "test", "scan", "gate", "image", "train", "promote", "deploy", "release",
)  # fmt: skip


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


@dataclass(frozen=True)
class Settings:
    project_root: Path
    reports_dir: str = option("reports", "folder for reports (JUnit, Cobertura, summaries)")
    state_dir: str = option(".mlci", "folder for local servers' data and logs")
    server_start_timeout: float = option(
        90.0, "seconds a local server may take to become ready", minimum=1
    )
    lint: LintSettings = section(LintSettings)
    test: TestSettings = section(TestSettings)
    gate: GateSettings = section(GateSettings)
    sonar: SonarSettings = section(SonarSettings)
    image: ImageSettings = section(ImageSettings)
    model: ModelSettings = section(ModelSettings)
    train: TrainSettings = section(TrainSettings)
    mlflow: MlflowSettings = section(MlflowSettings)
    promotion: PromotionSettings = section(PromotionSettings)
    release: ReleaseSettings = section(ReleaseSettings)
    serving: ServingSettings = section(ServingSettings)
    score: ScoreSettings = section(ScoreSettings)
    platform: PlatformSettings = section(PlatformSettings)
    bootstrap: BootstrapSettings = section(BootstrapSettings)
    cache: CacheSettings = section(CacheSettings)
    sources: dict[str, str] = field(default_factory=dict, compare=False, repr=False)
    #: [tool.mlci.models.<name>]: per model, the settings it sets (validated keys).
    models: dict[str, dict[str, Any]] = field(default_factory=dict, compare=False, repr=False)
    #: The model these settings are for ("" for a project with one model).
    model_name: str = field(default="", compare=False)

    def for_model(self, name: str) -> Settings:
        """These settings for model ``name``: its table over the project's [tool.mlci.model],
        [tool.mlci.mlflow] and [tool.mlci.promotion]; the environment and flags still win."""
        if name not in self.models:
            close = difflib.get_close_matches(name, sorted(self.models), n=1, cutoff=0.6)
            raise ConfigError(
                f"there is no model {name!r} in [tool.mlci.models]",
                f"the models are {', '.join(sorted(self.models)) or 'none'}",
                f"did you mean {close[0]!r}?" if close else f"set {MODEL_ENV} to one of them",
            )
        values = {"mlflow.registered_model": name, "mlflow.experiment": name}
        values.update(self.models[name])
        changes: dict[str, dict[str, Any]] = {}
        for key, value in values.items():
            if self.sources.get(key, SOURCE_DEFAULT).startswith(("env ", SOURCE_CLI)):
                continue
            section, _, attr = key.partition(".")
            changes.setdefault(section, {})[attr] = value
        replaced = {
            section: dataclasses.replace(getattr(self, section), **kw)
            for section, kw in changes.items()
        }
        return dataclasses.replace(self, model_name=name, **replaced)

    def one_model(self, name: str | None = None) -> Settings:
        """These settings for one model: ``name``, the chosen one, or the only one."""
        if name:
            return self.for_model(name)
        if self.model_name or not self.models:
            return self
        if len(self.models) == 1:
            return self.for_model(next(iter(self.models)))
        raise ConfigError(
            f"this project has several models: {', '.join(self.models)}",
            "a registry task works on one registered model",
            f"choose one with --model NAME (or {MODEL_ENV}=NAME)",
        )

    def served(self) -> Settings:
        """The settings of the model serve, deploy and score work on: the one chosen
        (--model, MLCI_MODEL), else serving.model, else the project's only model."""
        if self.model_name:
            return self
        return self.one_model(self.serving.model or None)

    def each_model(self) -> list[Settings]:
        """One Settings per model to train and promote: the chosen one, or all of them."""
        if self.model_name or not self.models:
            return [self]
        if len(self.models) > 1:
            # An environment variable or flag wins over every model's table: for a name that
            # tells models apart it would make them one.
            shared = [
                SPECS[key].env
                for key in ("mlflow.registered_model", "mlflow.experiment", "model.module")
                if self.sources.get(key, SOURCE_DEFAULT).startswith(("env ", SOURCE_CLI))
            ]
            if shared:
                raise ConfigError(
                    f"{', '.join(shared)} would apply to every model of [tool.mlci.models]",
                    f"the models ({', '.join(self.models)}) would share one registered model, "
                    "experiment or module",
                    f"choose the model it is meant for: {MODEL_ENV}=NAME (or --model NAME)",
                )
        return [self.for_model(name) for name in self.models]

    @property
    def model_reports_path(self) -> Path:
        """Where train and promote write for this model: reports/, or reports/models/<name>."""
        if self.model_name:
            return self.reports_path / "models" / self.model_name
        return self.reports_path

    def path(self, relative: str | Path) -> Path:
        """A path from configuration, resolved against the project root."""
        p = Path(relative)
        return p if p.is_absolute() else self.project_root / p

    @property
    def reports_path(self) -> Path:
        return self.path(self.reports_dir)

    @property
    def state_path(self) -> Path:
        return self.path(self.state_dir)

    @property
    def scanner_work_path(self) -> Path:
        """The scanner's working folder: under the state folder unless set."""
        if self.sonar.working_dir:
            return self.path(self.sonar.working_dir)
        return self.state_path / "scannerwork"

    def get(self, key: str) -> Any:
        obj: Any = self
        for part in key.split("."):
            obj = getattr(obj, part)
        return obj

    def describe(self) -> list[tuple[str, str, str, str]]:
        """(key, shown value, source, help) for every setting; secrets masked."""
        rows = []
        for spec in SPECS.values():
            value = self.get(spec.key)
            shown = (SECRET_MASK if value else "") if spec.secret else _show(value)
            rows.append((spec.key, shown, self.sources.get(spec.key, SOURCE_DEFAULT), spec.help))
        return rows


@dataclass(frozen=True)
class _Spec:
    key: str
    section: str | None
    name: str
    type: Any
    meta: Mapping[str, Any]

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.key.replace(".", "_").replace("-", "_").upper()

    @property
    def help(self) -> str:
        return self.meta["help"]

    @property
    def secret(self) -> bool:
        return bool(self.meta.get("secret"))


def _collect_specs() -> dict[str, _Spec]:
    specs: dict[str, _Spec] = {}
    hints = typing.get_type_hints(Settings)
    for f in fields(Settings):
        if f.name in ("project_root", "sources", "models", "model_name"):
            continue
        if f.metadata.get("section"):
            cls = hints[f.name]
            sub_hints = typing.get_type_hints(cls)
            for sf in fields(cls):
                key = f"{f.name}.{sf.name}"
                specs[key] = _Spec(key, f.name, sf.name, sub_hints[sf.name], sf.metadata)
        else:
            specs[f.name] = _Spec(f.name, None, f.name, hints[f.name], f.metadata)
    return specs


SPECS: dict[str, _Spec] = _collect_specs()


def find_project_root(start: Path | None = None, environ: Mapping[str, str] | None = None) -> Path:
    """``MLCI_PROJECT_ROOT``, else the nearest folder upwards whose pyproject has [tool.mlci]."""
    env = os.environ if environ is None else environ
    if env.get(ROOT_ENV):
        root = Path(env[ROOT_ENV]).expanduser().resolve()
        if not root.is_dir():
            raise ConfigError(
                f"{ROOT_ENV}={env[ROOT_ENV]!r} is not a folder",
                "mlci reads its settings from that folder's pyproject.toml",
                f"point {ROOT_ENV} at the project's root folder, or unset it",
            )
        return root
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file() and "[tool.mlci" in candidate.read_text(errors="replace"):
            return folder
    return here


def _read_file_table(root: Path) -> dict[str, Any]:
    path = root / "pyproject.toml"
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path} is not UTF-8 text",
            f"byte {exc.start} cannot be decoded ({exc.reason}); TOML files are UTF-8",
            "save the file as UTF-8 (the byte offset above shows where)",
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"{path} is not valid TOML",
            str(exc),
            "fix the syntax at the line named above",
        ) from None
    table = data.get("tool", {}).get("mlci", {})
    if not isinstance(table, dict):
        raise ConfigError(f"[tool.mlci] in {path} must be a table", "", "see the README")
    return table


def _flatten_file_table(table: Mapping[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    sections = {s.section for s in SPECS.values() if s.section}
    for name, value in table.items():
        if name == "models":
            continue  # per-model tables: _model_entries
        if name in sections:
            if not isinstance(value, dict):
                raise ConfigError(
                    f"[tool.mlci] sets {name} = {value!r}",
                    f"{name} is a section of settings, not a value",
                    f"write its settings as a table: [tool.mlci.{name}]",
                )
            for sub, sub_value in value.items():
                flat[f"{name}.{sub}"] = sub_value
        elif isinstance(value, dict):
            # A table that is no section: [tool.mlci.mlfow] and the like.
            close = difflib.get_close_matches(name, sorted(sections), n=1, cutoff=0.6)
            raise ConfigError(
                f"unknown section [tool.mlci.{name}] in pyproject.toml",
                "mlci does not read it: none of its settings would apply",
                f"did you mean [tool.mlci.{close[0]}]?"
                if close
                else f"the sections are {', '.join(sorted(sections))}",
            )
        else:
            flat[name] = value
    return flat


def _unknown(key: str, where: str, known: list[str]) -> ConfigError:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    fix = f"did you mean {close[0]!r}?" if close else "see `invoke config` for every setting"
    return ConfigError(f"unknown setting {key!r} in {where}", "mlci does not read it", fix)


def load_settings(
    overrides: Mapping[str, Any] | None = None,
    *,
    root: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Build and validate the settings: command line > MLCI_* env > pyproject > defaults."""
    env = os.environ if environ is None else environ
    project_root = root.resolve() if root else find_project_root(environ=env)
    file_table = _read_file_table(project_root)
    file_values = _flatten_file_table(file_table)

    for key, value in file_values.items():
        if key not in SPECS:
            raise _unknown(key, "[tool.mlci] of pyproject.toml", list(SPECS))
        if SPECS[key].secret:  # refused even where the environment would win: it is committed
            raise ConfigError(
                f"{key} is set in pyproject.toml",
                "it is a secret and pyproject.toml is committed",
                f"remove it from the file and set {SPECS[key].env} in the environment instead",
            )
        # Validated even where the environment or a flag wins: the file is committed, and a
        # wrong value there must not wait for the day nothing overrides it.
        _coerce(SPECS[key], value, SOURCE_FILE, False)
    by_env = {spec.env: spec for spec in SPECS.values()}
    for name in env:
        if name.startswith(ENV_PREFIX) and name not in RESERVED_ENV and name not in by_env:
            raise _unknown(name, "the environment", list(by_env))
    for key in overrides or {}:
        if key not in SPECS:
            raise _unknown(key, "the command line", list(SPECS))

    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for key, spec in SPECS.items():
        if overrides and overrides.get(key) is not None:
            raw, source, from_text = overrides[key], SOURCE_CLI, isinstance(overrides[key], str)
        elif spec.env in env:
            raw, source, from_text = env[spec.env], f"env {spec.env}", True
        elif key in PLAIN_ENV and PLAIN_ENV[key] in env:
            raw, source, from_text = env[PLAIN_ENV[key]], f"env {PLAIN_ENV[key]}", True
        elif key in file_values:
            raw, source, from_text = file_values[key], SOURCE_FILE, False
        else:
            continue
        values[key] = _coerce(spec, raw, source, from_text)
        sources[key] = source

    models = _model_entries(file_table.get("models", {}))
    sections: dict[str, dict[str, Any]] = {}
    top: dict[str, Any] = {}
    for key, value in values.items():
        spec = SPECS[key]
        if spec.section:
            sections.setdefault(spec.section, {})[spec.name] = value
        else:
            top[key] = value
    hints = typing.get_type_hints(Settings)
    built = {name: hints[name](**kw) for name, kw in sections.items()}
    settings = Settings(project_root=project_root, sources=sources, models=models, **top, **built)
    chosen = env.get(MODEL_ENV, "").strip()
    if chosen:
        return settings.for_model(chosen)
    return settings


def _model_entries(table: Any) -> dict[str, dict[str, Any]]:
    """[tool.mlci.models.<name>] tables as {name: {setting key: validated value}}."""
    if not isinstance(table, dict) or not all(isinstance(v, dict) for v in table.values()):
        raise ConfigError(
            "[tool.mlci.models] must hold one table per model",
            "each model is a table: [tool.mlci.models.<name>] with module, params, ...",
            'write e.g. [tool.mlci.models.wine] module = "wine_classifier"',
        )
    known = [*MODEL_KEYS, "promotion"]
    promotion_keys = [s.name for s in SPECS.values() if s.section == "promotion"]
    entries: dict[str, dict[str, Any]] = {}
    for name, entry in table.items():
        where = f"[tool.mlci.models.{name}]"
        values: dict[str, Any] = {}
        for key, value in entry.items():
            if key == "promotion" and isinstance(value, dict):
                for sub, sub_value in value.items():
                    if sub not in promotion_keys:
                        raise _unknown(sub, f"{where} promotion", promotion_keys)
                    spec = SPECS[f"promotion.{sub}"]
                    values[spec.key] = _coerce(spec, sub_value, where, False)
            elif key in MODEL_KEYS:
                spec = SPECS[MODEL_KEYS[key]]
                values[spec.key] = _coerce(spec, value, where, False)
            else:
                raise _unknown(key, where, known)
        if not values.get("model.module"):
            raise ConfigError(
                f"{where} names no module",
                "each model's table says which package trains it",
                f'add module = "<import name>" to {where}',
            )
        entries[str(name)] = values
    return entries


def _coerce(spec: _Spec, raw: Any, source: str, from_text: bool) -> Any:
    where = f"{spec.key} (from {source})"
    try:
        value = _parse(spec.type, raw, from_text)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"{where} has an invalid value {_show(raw)!r}",
            str(exc),
            f"give {_type_name(spec.type)}; {spec.help}",
        ) from None
    meta = spec.meta
    if meta.get("choices") and value not in meta["choices"]:
        raise ConfigError(
            f"{where} is {value!r}",
            f"it must be one of: {', '.join(meta['choices'])}",
            f"set it to one of those ({spec.help})",
        )
    if meta.get("value_choices") and isinstance(value, dict):
        wrong = {k: v for k, v in value.items() if v not in meta["value_choices"]}
        if wrong:
            raise ConfigError(
                f"{where} has {', '.join(f'{k} = {v!r}' for k, v in sorted(wrong.items()))}",
                f"each value must be one of: {', '.join(meta['value_choices'])}",
                f"fix it ({spec.help})",
            )
    if meta.get("value_choices") and isinstance(value, list):
        wrong_items = [v for v in value if v not in meta["value_choices"]]
        if wrong_items:
            raise ConfigError(
                f"{where} has {', '.join(repr(v) for v in wrong_items)}",
                f"each entry must be one of: {', '.join(meta['value_choices'])}",
                f"fix it ({spec.help})",
            )
    if isinstance(value, int | float) and not isinstance(value, bool):
        low, high = meta.get("minimum"), meta.get("maximum")
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise ConfigError(f"{where} is {value}", f"it must be {bounds}", spec.help)
    if meta.get("url") and value:
        _check_url(spec, value, where)
    return value


def _check_url(spec: _Spec, value: str, where: str) -> None:
    if value.startswith(("http://", "https://")):
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        except ValueError as exc:
            raise ConfigError(
                f"{where} is {value!r}, not a valid URL", str(exc), f"fix {spec.env}"
            ) from None
        if parts.username or parts.password:
            # Never echo the value: it holds a password.
            login = (
                "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
                if spec.key == "mlflow.tracking_uri"
                else "the matching *_USERNAME / *_PASSWORD settings"
            )
            raise ConfigError(
                f"{where} has a user name or password in it",
                "credentials in a URL end up in logs, reports and process lists",
                f"give the URL without them ({parts.scheme}://{parts.hostname}...) and set {login}",
            )
        if not parts.hostname:
            raise ConfigError(
                f"{where} is {value!r}, which names no host",
                "mlci connects to the host a URL names",
                f"fix {spec.env}, e.g. http://mlflow.example:5000",
            )
        return
    if spec.key == "mlflow.tracking_uri" and value.startswith("databricks"):
        return
    why = "mlci talks to servers over HTTP(S)"
    if spec.key == "mlflow.tracking_uri":
        why = "mlci trains against an MLflow tracking server, not a file or database store"
    raise ConfigError(
        f"{where} is {value!r}, not an http(s) URL",
        why,
        f"set {spec.env} to a URL such as http://mlflow.example:5000, or leave it empty "
        "to let mlci start a local server",
    )


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is list:
        return "a list (TOML array, JSON array or comma-separated text)"
    if origin is dict:
        return "a table (TOML inline table, JSON object or key=value,key=value)"
    return {str: "text", int: "a whole number", float: "a number", bool: "true or false"}.get(
        tp, str(tp)
    )


def _parse(tp: Any, raw: Any, from_text: bool) -> Any:
    origin = typing.get_origin(tp)
    if origin is list:
        if from_text:
            text = raw.strip()
            if text.startswith("["):
                raw = json.loads(text)
            else:
                raw = [part.strip() for part in text.split(",") if part.strip()]
        if not isinstance(raw, list):
            raise TypeError(f"expected a list, got {type(raw).__name__}")
        return [str(item) for item in raw]
    if origin is dict:
        value_type = typing.get_args(tp)[1]
        if from_text:
            text = raw.strip()
            if text.startswith("{"):
                raw = json.loads(text)
            else:
                raw = dict(_split_pair(part) for part in text.split(",") if part.strip())
        if not isinstance(raw, dict):
            raise TypeError(f"expected a table, got {type(raw).__name__}")
        if value_type is float:
            return {str(k): _parse(float, v, from_text) for k, v in raw.items()}
        return {str(k): v for k, v in raw.items()}
    if tp is bool:
        if isinstance(raw, bool):
            return raw
        if from_text and str(raw).strip().lower() in ("1", "true", "yes", "on"):
            return True
        if from_text and str(raw).strip().lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError("expected true or false")
    if tp is int:
        if isinstance(raw, bool) or (not from_text and not isinstance(raw, int)):
            raise TypeError(f"expected a whole number, got {type(raw).__name__}")
        return int(str(raw).strip())
    if tp is float:
        if isinstance(raw, bool) or (not from_text and not isinstance(raw, int | float)):
            raise TypeError(f"expected a number, got {type(raw).__name__}")
        number = float(str(raw).strip()) if isinstance(raw, str) else float(raw)
        if not math.isfinite(number):
            raise ValueError(f"{raw!r} is not a finite number")
        return number
    if tp is str:
        if not isinstance(raw, str):
            raise TypeError(f"expected text, got {type(raw).__name__}")
        return raw.strip()
    raise TypeError(f"unsupported setting type {tp}")  # pragma: no cover - a bug in SPECS


def _split_pair(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"{text.strip()!r} is not key=value")
    value = value.strip()
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value


def _show(value: Any) -> str:
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)
