"""The split, the metrics and training: what mlci calls."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .model import build_model, resolve_params

#: The one type a saved tree ensemble holds beyond skops' safe defaults (checked with
#: skops.io.get_untrusted_types on both ensembles).
TREE_TYPES = ("sklearn.tree._tree.Tree",)


@dataclass(frozen=True)
class Split:
    X_train: Any
    X_test: Any
    y_train: Any
    y_test: Any
    feature_names: tuple[str, ...]
    digest: str


def load_split(*, seed: int = 42, train_fraction: float = 1.0, test_size: float = 0.25) -> Split:
    """The bundled diabetes data, a held-out quarter fixed by ``seed``, and the first
    ``train_fraction`` of the remaining rows to train on. ``digest`` hashes the rows trained
    on, so a smaller fraction (older data) has another hash but the same held-out rows."""
    import numpy as np
    from sklearn.datasets import load_diabetes
    from sklearn.model_selection import train_test_split

    data = load_diabetes()
    X_train, X_test, y_train, y_test = train_test_split(
        data.data, data.target, test_size=test_size, random_state=seed
    )
    keep = max(1, round(len(X_train) * train_fraction))
    X_train, y_train = X_train[:keep], y_train[:keep]
    digest = hashlib.sha256(
        np.ascontiguousarray(X_train).tobytes() + np.ascontiguousarray(y_train).tobytes()
    ).hexdigest()
    return Split(X_train, X_test, y_train, y_test, tuple(data.feature_names), f"sha256:{digest}")


def score(y_true: Any, y_pred: Any) -> dict[str, float]:
    """rmse and mae (lower is better) and r2 (higher is better), as plain floats."""
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    return {
        "rmse": float(mean_squared_error(y_true, y_pred) ** 0.5),
        "mae": float(mean_absolute_error(y_true, y_pred)),
        "r2": float(r2_score(y_true, y_pred)),
    }


def train_and_evaluate(params: Mapping[str, Any] | None = None) -> Any:
    """Fit on the training rows, score on the held-out ones; an :class:`mlci.TrainResult`."""
    from mlci import TrainResult

    effective = resolve_params(params)
    split = load_split(seed=effective["seed"], train_fraction=effective["train_fraction"])
    model = build_model(effective)
    model.fit(split.X_train, split.y_train)
    return TrainResult(
        model=model,
        metrics=score(split.y_test, model.predict(split.X_test)),
        params=effective,
        data_hash=split.digest,
        input_example=split.X_test[:5].copy(),
        feature_names=split.feature_names,
        flavor="sklearn",
        trusted_types=TREE_TYPES if effective["estimator"] != "ridge" else (),
        eval_inputs=split.X_test,
        eval_targets=split.y_test,
        train_inputs=split.X_train,
    )
