"""The diabetes regressor: reproducible, honest about its split, strict about its params."""

from __future__ import annotations

import pytest

from diabetes_regressor import load_split, score, train_and_evaluate, validate_params
from mlci.contract import check_result


def test_training_is_reproducible_and_follows_the_contract():
    first = train_and_evaluate({"estimator": "ridge", "alpha": 0.5})
    second = train_and_evaluate({"estimator": "ridge", "alpha": 0.5})
    check_result(first, "diabetes_regressor")
    assert first.metrics == second.metrics
    assert set(first.metrics) == {"rmse", "mae", "r2"}
    assert 40 < first.metrics["rmse"] < 70  # the data set's known range for linear models
    assert first.data_hash == second.data_hash


def test_a_smaller_train_fraction_changes_the_data_hash_but_not_the_held_out_rows():
    full, older = load_split(seed=7), load_split(seed=7, train_fraction=0.5)
    assert full.digest != older.digest
    assert (full.X_test == older.X_test).all()
    assert len(older.X_train) == round(len(full.X_train) * 0.5)


def test_score_is_lower_for_better_predictions():
    y = [1.0, 2.0, 3.0]
    assert score(y, y) == {"rmse": 0.0, "mae": 0.0, "r2": 1.0}
    assert score(y, [1.5, 2.5, 3.5])["rmse"] == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"alpah": 1.0}, "did you mean 'alpha'"),
        ({"estimator": "svm"}, "unknown estimator 'svm'"),
        ({"train_fraction": 0}, "train_fraction must be a number from 0.1 to 1"),
        ({"n_estimators": -1}, "n_estimators must be a whole number"),
        ({"alpha": 0}, "alpha must be a positive number"),
    ],
)
def test_bad_hyper_parameters_are_refused_with_the_reason(params, message):
    with pytest.raises(ValueError, match=message):
        validate_params(params)


@pytest.mark.parametrize("estimator", ["gradient_boosting", "random_forest"])
def test_the_ensembles_train_too(estimator):
    result = train_and_evaluate({"estimator": estimator, "n_estimators": 20, "seed": 1})
    assert result.metrics["r2"] > 0.2
