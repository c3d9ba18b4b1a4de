"""The Settings object: every section, where each value came from, and the per-model views.

:func:`mlci.settings.load_settings` builds it; stages only read it (it is frozen).
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlci.errors import ConfigError
from mlci.settings.coercion import show
from mlci.settings.fields import MODEL_ENV, SECRET_MASK, SOURCE_CLI, SOURCE_DEFAULT, option, section
from mlci.settings.sections import (
    BootstrapSettings,
    CacheSettings,
    GateSettings,
    ImageSettings,
    LintSettings,
    MlflowSettings,
    ModelSettings,
    PromotionSettings,
    ReleaseSettings,
    SonarSettings,
    TestSettings,
    TrainSettings,
)
from mlci.settings.service_sections import PlatformSettings, ScoreSettings, ServingSettings


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
            from mlci.settings.specs import SPECS  # built from this class

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
        from mlci.settings.specs import SPECS  # built from this class

        rows = []
        for spec in SPECS.values():
            value = self.get(spec.key)
            shown = (SECRET_MASK if value else "") if spec.secret else show(value)
            rows.append((spec.key, shown, self.sources.get(spec.key, SOURCE_DEFAULT), spec.help))
        return rows
