"""How a setting is declared, and the names mlci reads its settings under.

:func:`option` and :func:`section` wrap :func:`dataclasses.field`: each setting's default,
one line of help and its validation facts live next to its type in the section classes.
"""

from __future__ import annotations

import copy
from dataclasses import field
from typing import Any

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
    """Declare a section of settings: a frozen dataclass of options, e.g. [tool.mlci.mlflow]."""
    return field(default_factory=cls, metadata={"section": True})
