"""Progress reporting through ``on_step`` for the scikit-learn estimators."""

import numpy as np
import pytest

from wine_classifier import build_model, load_split, train_and_evaluate
from wine_classifier.train import forest_stages


def _record(params):
    steps = []
    result = train_and_evaluate(params, on_step=lambda step, metrics: steps.append((step, metrics)))
    return result, steps


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (200, [20, 40, 60, 80, 100, 120, 140, 160, 180, 200]),
        (25, [2, 5, 7, 10, 12, 15, 17, 20, 22, 25]),
        (5, [1, 2, 3, 4, 5]),
        (1, [1]),
    ],
)
def test_forest_stages(n, expected):
    assert forest_stages(n) == expected


def test_random_forest_reports_each_stage():
    result, steps = _record({"n_estimators": 30, "seed": 3})
    assert [step for step, _ in steps] == [3, 6, 9, 12, 15, 18, 21, 24, 27, 30]
    for _, metrics in steps:
        assert set(metrics) == {"accuracy", "f1_macro"}
        assert all(type(v) is float and 0.0 <= v <= 1.0 for v in metrics.values())
    # The last stage is the final model.
    final = steps[-1][1]
    assert final["accuracy"] == result.metrics["accuracy"]
    assert final["f1_macro"] == pytest.approx(result.metrics["f1_macro"])


def test_staged_forest_equals_one_shot_fit():
    params = {"n_estimators": 37, "max_depth": 4, "seed": 11}
    staged, steps = _record(params)
    plain = train_and_evaluate(params)
    assert len(steps) == 10
    split = load_split(seed=11)
    one_shot = build_model(params).fit(split.X_train, split.y_train)

    staged_forest = staged.model.named_steps["classifier"]
    assert len(staged_forest.estimators_) == 37
    assert staged_forest.get_params() == one_shot.named_steps["classifier"].get_params()
    for other in (plain.model, one_shot):
        np.testing.assert_array_equal(
            staged.model.predict(split.X_test), other.predict(split.X_test)
        )
        np.testing.assert_array_equal(
            staged.model.predict_proba(split.X_test), other.predict_proba(split.X_test)
        )
    assert staged.metrics == plain.metrics


def test_logistic_regression_reports_one_step():
    result, steps = _record({"estimator": "logistic_regression"})
    assert [step for step, _ in steps] == [1]
    assert set(steps[0][1]) == {"accuracy", "f1_macro"}
    assert steps[0][1]["accuracy"] == result.metrics["accuracy"]


def test_on_step_is_optional_and_errors_propagate():
    assert train_and_evaluate({"n_estimators": 5}, on_step=None).metrics["accuracy"] > 0.8

    def boom(step, metrics):
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        train_and_evaluate({"n_estimators": 5}, on_step=boom)
