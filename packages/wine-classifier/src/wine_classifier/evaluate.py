"""Held-out evaluation of a fitted model."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .data import Split


def evaluate(model: Any, split: Split) -> dict[str, float]:
    """Score ``model`` on the test part of ``split`` only.

    Returns accuracy and macro-averaged F1, precision and recall as plain
    Python floats.
    """
    from sklearn.metrics import (
        accuracy_score,
        f1_score,
        precision_score,
        recall_score,
    )

    y_true = split.y_test
    y_pred = model.predict(split.X_test)
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "f1_macro": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "precision_macro": float(precision_score(y_true, y_pred, average="macro", zero_division=0)),
        "recall_macro": float(recall_score(y_true, y_pred, average="macro", zero_division=0)),
    }
