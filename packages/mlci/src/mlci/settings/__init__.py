"""One Settings object for every stage.

Precedence, highest first (the one rule, implemented in :func:`load_settings`):

1. explicit values from the command line (task flags),
2. ``MLCI_*`` environment variables (``MLCI_<SECTION>_<KEY>``, e.g. ``MLCI_MLFLOW_TRACKING_URI``),
   then the tools' own variables mlci honours (``MLFLOW_TRACKING_URI``),
3. ``[tool.mlci]`` in the project's root ``pyproject.toml``,
4. the defaults declared in the section classes.

Everything is parsed and validated once, when the settings are loaded; nothing here
connects to a server, so ``invoke --list`` and ``--help`` work without credentials.

The modules: :mod:`~mlci.settings.fields` (declaring a setting, variable names),
:mod:`~mlci.settings.sections` and :mod:`~mlci.settings.service_sections` (the settings),
:mod:`~mlci.settings.core` (the Settings object), :mod:`~mlci.settings.specs` (the table of
settings), :mod:`~mlci.settings.loading` (the layers) and :mod:`~mlci.settings.coercion`
(parsing and validating one value). Every name is importable from ``mlci.settings``.
"""

from __future__ import annotations

from mlci.settings.coercion import _coerce
from mlci.settings.core import Settings
from mlci.settings.fields import (
    BUILD_SOURCE_ENV,
    ENV_PREFIX,
    MODEL_ENV,
    MODEL_KEYS,
    PLAIN_ENV,
    RESERVED_ENV,
    ROOT_ENV,
    SECRET_MASK,
    SOURCE_CLI,
    SOURCE_DEFAULT,
    SOURCE_FILE,
    TRAINING_CONTEXT_ENV,
    option,
    section,
)
from mlci.settings.loading import find_project_root, load_settings
from mlci.settings.sections import (
    STAGE_NAMES,
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
from mlci.settings.specs import SPECS, _Spec

__all__ = [
    "BUILD_SOURCE_ENV",
    "ENV_PREFIX",
    "MODEL_ENV",
    "MODEL_KEYS",
    "PLAIN_ENV",
    "RESERVED_ENV",
    "ROOT_ENV",
    "SECRET_MASK",
    "SOURCE_CLI",
    "SOURCE_DEFAULT",
    "SOURCE_FILE",
    "SPECS",
    "STAGE_NAMES",
    "TRAINING_CONTEXT_ENV",
    "BootstrapSettings",
    "CacheSettings",
    "GateSettings",
    "ImageSettings",
    "LintSettings",
    "MlflowSettings",
    "ModelSettings",
    "PlatformSettings",
    "PromotionSettings",
    "ReleaseSettings",
    "ScoreSettings",
    "ServingSettings",
    "Settings",
    "SonarSettings",
    "TestSettings",
    "TrainSettings",
    "_Spec",
    "_coerce",
    "find_project_root",
    "load_settings",
    "option",
    "section",
]
