"""Held-out evaluation of a fitted model."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .data import Split


def score(y_true: Any, y_pred: Any) -> dict[str, float]:
    """Accuracy and macro-averaged F1, precision and recall of ``y_pred``, as plain floats.

    mlci calls this at promotion to score the candidate and the champion on the same
    held-out data (the model contract's optional ``score``).
    """
    from sklearn.metrics import (
        accuracy_score,
        f1_score,
        precision_score,
        recall_score,
    )

    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "f1_macro": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "precision_macro": float(precision_score(y_true, y_pred, average="macro", zero_division=0)),
        "recall_macro": float(recall_score(y_true, y_pred, average="macro", zero_division=0)),
    }


def evaluate(model: Any, split: Split) -> dict[str, float]:
    """Score ``model`` on the test part of ``split`` only (see :func:`score`)."""
    return score(split.y_test, model.predict(split.X_test))
