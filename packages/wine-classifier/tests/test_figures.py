"""The PNG figures in ``TrainingResult.extra_artifacts``."""

import io
import sys

import numpy as np
import pytest

from wine_classifier import load_split, train_and_evaluate
from wine_classifier.figures import (
    confusion_matrix_png,
    feature_importance_png,
    permutation_importance,
    render_figures,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
NAMES = ("confusion_matrix.png", "feature_importance.png")

pytest.importorskip("matplotlib", reason="matplotlib is not installed (wine-classifier[plots])")


def _decode(data: bytes) -> np.ndarray:
    from matplotlib.image import imread

    assert data.startswith(PNG_SIGNATURE)
    return imread(io.BytesIO(data), format="png")


def _check_png(data: bytes) -> None:
    image = _decode(data)
    height, width = image.shape[:2]
    assert 300 <= height <= 1500 and 400 <= width <= 1500
    assert image.ndim == 3 and image.shape[2] in (3, 4)
    # Not blank: a drawn figure has many distinct colours.
    assert len(np.unique(image.reshape(-1, image.shape[2]), axis=0)) > 20


@pytest.mark.parametrize(
    "params", [{"n_estimators": 10}, {"estimator": "logistic_regression"}], ids=["rf", "lr"]
)
def test_sklearn_results_carry_valid_pngs(params):
    result = train_and_evaluate(params)
    assert set(result.extra_artifacts) == set(NAMES)
    for data in result.extra_artifacts.values():
        _check_png(data)


def test_figures_are_reproducible():
    a = train_and_evaluate({"n_estimators": 10, "seed": 4}).extra_artifacts
    b = train_and_evaluate({"n_estimators": 10, "seed": 4}).extra_artifacts
    assert a == b


def test_confusion_matrix_png_direct():
    data = confusion_matrix_png(
        np.array([0, 1, 2, 2]), np.array([0, 2, 2, 2]), ("a", "b", "c"), "title"
    )
    _check_png(data)


def test_importance_png_handles_negative_values_and_errors():
    data = feature_importance_png(
        ("x", "y", "z"), np.array([0.2, -0.05, 0.0]), "t", "drop", errors=np.array([0.1, 0.02, 0])
    )
    _check_png(data)


def test_permutation_importance_is_seeded_and_finds_the_signal():
    class FirstColumn:
        def predict(self, X):
            return (np.asarray(X)[:, 0] > 0).astype(int)

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    y = (X[:, 0] > 0).astype(int)
    mean, std = permutation_importance(FirstColumn(), X, y, seed=1)
    again, _ = permutation_importance(FirstColumn(), X, y, seed=1)
    np.testing.assert_array_equal(mean, again)
    assert mean[0] > 0.3
    assert mean[1] == mean[2] == 0.0
    assert std.shape == (3,)


def test_without_matplotlib_no_figures_and_a_warning(monkeypatch):
    split = load_split()
    model = train_and_evaluate({"n_estimators": 5}).model
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.warns(RuntimeWarning, match=r"wine-classifier\[plots\]"):
        assert render_figures(model, split, "random_forest", 42) == {}
