"""PNG figures of a trained model: the held-out confusion matrix and feature importances.

Drawn with matplotlib's Agg canvas on a bare ``Figure`` (no pyplot, so no global backend
or figure registry is touched). matplotlib is optional (``wine-classifier[plots]``);
without it :func:`render_figures` returns no figures and warns once per call.
"""

from __future__ import annotations

import io
import warnings
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from .data import Split

CONFUSION_MATRIX = "confusion_matrix.png"
FEATURE_IMPORTANCE = "feature_importance.png"

#: Repeats per feature of the permutation importance of the MLP.
PERMUTATION_REPEATS = 10

_DPI = 100
#: Width of one character of a tick label (10 pt DejaVu Sans), in inches.
_CHAR_IN = 0.085


def _png(fig: Any) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    # No "Software" entry: the same figure gives the same bytes on every run.
    fig.savefig(buffer, format="png", dpi=_DPI, metadata={"Software": None})
    return buffer.getvalue()


def confusion_matrix_png(
    y_true: np.ndarray, y_pred: np.ndarray, class_names: tuple[str, ...], title: str
) -> bytes:
    """A labelled confusion matrix (rows: true class, columns: predicted) as PNG bytes."""
    import numpy as np
    from matplotlib.figure import Figure

    k = len(class_names)
    matrix = np.zeros((k, k), dtype=np.int64)
    np.add.at(matrix, (np.asarray(y_true), np.asarray(y_pred)), 1)

    # Fixed margins (no layout engine, which would cost an extra draw), wide enough
    # for the class names.
    longest = max(len(name) for name in class_names)
    width = 6.0
    fig = Figure(figsize=(width, 5.2))
    fig.subplots_adjust(
        left=min(0.45, (0.55 + _CHAR_IN * longest) / width), right=0.98, bottom=0.11, top=0.88
    )
    ax = fig.add_subplot()
    image = ax.imshow(matrix, cmap="Blues", vmin=0)
    fig.colorbar(image, ax=ax, label="samples")
    threshold = matrix.max() / 2 if matrix.max() else 0.5
    for i in range(k):
        for j in range(k):
            ax.text(
                j,
                i,
                str(matrix[i, j]),
                ha="center",
                va="center",
                fontsize=14,
                fontweight="bold" if i == j else "normal",
                color="white" if matrix[i, j] > threshold else "black",
            )
    ax.set_xticks(range(k), labels=class_names)
    ax.set_yticks(range(k), labels=class_names)
    ax.set_xlabel("Predicted class")
    ax.set_ylabel("True class")
    accuracy = np.trace(matrix) / max(matrix.sum(), 1)
    ax.set_title(f"{title}\nheld-out split: {matrix.sum()} samples, accuracy {accuracy:.3f}")
    return _png(fig)


def feature_importance_png(
    feature_names: tuple[str, ...],
    importances: np.ndarray,
    title: str,
    xlabel: str,
    errors: np.ndarray | None = None,
) -> bytes:
    """Horizontal bars of ``importances``, most important at the top, as PNG bytes."""
    import numpy as np
    from matplotlib.figure import Figure

    values = np.asarray(importances, dtype=np.float64)
    order = np.argsort(values, kind="stable")  # ascending: barh draws bottom-up
    names = [feature_names[i] for i in order]
    height = max(3.0, 1.2 + 0.32 * len(names))
    width = 8.0
    longest = max(len(name) for name in names)
    fig = Figure(figsize=(width, height))
    fig.subplots_adjust(
        left=min(0.5, (0.2 + _CHAR_IN * longest) / width),
        right=0.97,
        bottom=0.6 / height,
        top=1 - 0.45 / height,
    )
    ax = fig.add_subplot()
    ax.barh(
        range(len(names)),
        values[order],
        xerr=None if errors is None else np.asarray(errors)[order],
        color="tab:blue",
        ecolor="dimgray",
        capsize=2,
    )
    ax.set_yticks(range(len(names)), labels=names)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.grid(axis="x", alpha=0.3)
    # Each value is written just beyond its bar (and its error bar, if any).
    reach = np.zeros_like(values) if errors is None else np.abs(np.asarray(errors, float))
    span = float(np.max(np.abs(values) + reach)) or 1.0
    for y, i in enumerate(order):
        v, pad = values[i], reach[i] + 0.015 * span
        ax.text(
            v + pad if v >= 0 else v - pad,
            y,
            f"{v:.3f}",
            va="center",
            ha="left" if v >= 0 else "right",
            fontsize=8,
        )
    ax.margins(x=0.15)
    return _png(fig)


def permutation_importance(
    model: Any, X: np.ndarray, y: np.ndarray, *, seed: int, repeats: int = PERMUTATION_REPEATS
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of the accuracy lost when one column is shuffled.

    All shuffled copies are scored in one ``predict`` call, so it stays fast for a model
    with per-call overhead. Deterministic for a fixed ``seed``.
    """
    import numpy as np

    x = np.asarray(X, dtype=np.float64)
    n, d = x.shape
    rng = np.random.default_rng(seed)
    copies = np.repeat(x[np.newaxis], d * repeats, axis=0)  # (d * repeats, n, d)
    for j in range(d):
        for r in range(repeats):
            copies[j * repeats + r, :, j] = x[rng.permutation(n), j]
    baseline = np.mean(model.predict(x) == y)
    predicted = model.predict(copies.reshape(-1, d)).reshape(d, repeats, n)
    drops = baseline - np.mean(predicted == y, axis=2)
    return drops.mean(axis=1), drops.std(axis=1)


def _importances(model: Any, split: Split, estimator: str, seed: int):
    import numpy as np

    if estimator == "random_forest":
        forest = model.named_steps["classifier"]
        return (
            forest.feature_importances_,
            None,
            f"Feature importance: random forest ({forest.n_estimators} trees)",
            "mean decrease in impurity (sums to 1)",
        )
    if estimator == "logistic_regression":
        coef = model.named_steps["classifier"].coef_
        return (
            np.abs(coef).mean(axis=0),
            None,
            "Feature importance: logistic regression",
            "mean |coefficient| over classes (standardised features)",
        )
    mean, std = permutation_importance(model, split.X_test, split.y_test, seed=seed)
    return (
        mean,
        std,
        "Feature importance: PyTorch MLP (permutation, held-out split)",
        f"accuracy lost when the feature is shuffled (mean ± sd of {PERMUTATION_REPEATS})",
    )


def render_figures(model: Any, split: Split, estimator: str, seed: int) -> dict[str, bytes]:
    """``{"confusion_matrix.png": ..., "feature_importance.png": ...}`` for a fitted model.

    Returns ``{}`` (with a :class:`RuntimeWarning`) when matplotlib is not installed.
    """
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        warnings.warn(
            "matplotlib is not installed, so no figures are drawn; "
            "install wine-classifier[plots] to get them",
            RuntimeWarning,
            stacklevel=3,
        )
        return {}

    label = estimator.replace("_", " ")
    if estimator == "mlp_torch":
        label = "PyTorch MLP"
    values, errors, title, xlabel = _importances(model, split, estimator, seed)
    return {
        CONFUSION_MATRIX: confusion_matrix_png(
            split.y_test,
            model.predict(split.X_test),
            split.target_names,
            f"Confusion matrix: {label}",
        ),
        FEATURE_IMPORTANCE: feature_importance_png(
            split.feature_names, values, title, xlabel, errors
        ),
    }
