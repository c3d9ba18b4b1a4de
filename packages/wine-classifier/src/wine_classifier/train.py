"""End-to-end training: load the split, build, fit and evaluate the model."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .data import load_split
from .evaluate import evaluate
from .model import build_model, resolve_params

TREE_TYPES = ("sklearn.tree._tree.Tree",)

if TYPE_CHECKING:
    import numpy as np


@dataclass
class TrainingResult:
    """Everything a caller needs to log or package a trained model."""

    model: Any
    metrics: dict[str, float]
    params: dict[str, Any]
    data_hash: str
    input_example: np.ndarray
    feature_names: tuple[str, ...]
    flavor: str = "sklearn"
    #: Types beyond scikit-learn's safe defaults that this model's saved form holds; a
    #: loader (MLflow's skops format) must be told to trust them. Reviewed: the tree
    #: storage of the random forest we fit ourselves.
    trusted_types: tuple[str, ...] = ()
    extra_artifacts: dict[str, bytes] = field(default_factory=dict)


def train_and_evaluate(
    params: Mapping[str, Any] | None = None, *, test_size: float = 0.25
) -> TrainingResult:
    """Train on the fixed split and score on its held-out part.

    ``params`` are merged over :data:`~wine_classifier.DEFAULT_PARAMS`; its
    ``seed`` drives both the split and the estimator, so a fixed seed gives
    identical results.
    """
    effective = resolve_params(params)
    split = load_split(test_size=test_size, seed=effective["seed"])
    model = build_model(effective)
    model.fit(split.X_train, split.y_train)
    metrics = evaluate(model, split)
    return TrainingResult(
        model=model,
        metrics=metrics,
        params=effective,
        data_hash=split.digest,
        input_example=split.X_test[:5].copy(),
        feature_names=split.feature_names,
        trusted_types=TREE_TYPES if effective["estimator"] == "random_forest" else (),
    )
