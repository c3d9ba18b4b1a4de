import numpy as np
import pytest

from wine_classifier import DEFAULT_PARAMS, TrainingResult, load_split, train_and_evaluate

METRIC_KEYS = {"accuracy", "f1_macro", "precision_macro", "recall_macro"}


@pytest.fixture(scope="module")
def default_result() -> TrainingResult:
    """The default model, trained once for this module."""
    return train_and_evaluate()


def test_result_fields(default_result):
    r = default_result
    assert isinstance(r, TrainingResult)
    assert r.flavor == "sklearn"
    assert set(r.extra_artifacts) == {"confusion_matrix.png", "feature_importance.png"}
    assert r.device == "cpu"
    assert r.torch_module is None
    assert r.trusted_types == ("sklearn.tree._tree.Tree",)
    assert r.params == DEFAULT_PARAMS
    assert r.data_hash == load_split().digest
    assert len(r.feature_names) == 13
    assert isinstance(r.input_example, np.ndarray)
    assert r.input_example.shape == (5, 13)
    np.testing.assert_array_equal(r.input_example, load_split().X_test[:5])


def test_metrics_are_plain_floats_in_range(default_result):
    metrics = default_result.metrics
    assert set(metrics) == METRIC_KEYS
    for value in metrics.values():
        assert type(value) is float
        assert 0.0 <= value <= 1.0


def test_default_model_quality(default_result):
    assert default_result.metrics["accuracy"] >= 0.9
    assert default_result.metrics["f1_macro"] >= 0.9


def test_model_is_fitted_and_predicts(default_result):
    pred = default_result.model.predict(default_result.input_example)
    assert pred.shape == (5,)
    assert set(pred.tolist()) <= {0, 1, 2}


def test_metrics_use_held_out_part_only(default_result):
    split = load_split()
    acc = float(np.mean(default_result.model.predict(split.X_test) == split.y_test))
    assert default_result.metrics["accuracy"] == pytest.approx(acc)


def test_deterministic_for_fixed_seed():
    params = {"n_estimators": 25, "seed": 5}
    a = train_and_evaluate(params)
    b = train_and_evaluate(params)
    assert a.metrics == b.metrics
    split = load_split(seed=5)
    np.testing.assert_array_equal(
        a.model.predict_proba(split.X_test), b.model.predict_proba(split.X_test)
    )


def test_seed_drives_the_split():
    a = train_and_evaluate({"n_estimators": 10, "seed": 1})
    b = train_and_evaluate({"n_estimators": 10, "seed": 2})
    assert not np.array_equal(a.input_example, b.input_example)
    assert a.data_hash == b.data_hash


def test_logistic_regression_variant():
    r = train_and_evaluate({"estimator": "logistic_regression", "C": 1.0})
    assert r.params["estimator"] == "logistic_regression"
    assert r.metrics["accuracy"] >= 0.9
    assert r.metrics["f1_macro"] >= 0.9


def test_test_size_is_respected():
    r = train_and_evaluate({"n_estimators": 10}, test_size=0.5)
    assert r.metrics["accuracy"] > 0.8


def test_bad_params_raise_before_training():
    with pytest.raises(ValueError, match="unknown hyper-parameter 'sed'"):
        train_and_evaluate({"sed": 1})


def test_bad_test_size_raises():
    with pytest.raises(ValueError, match="test_size"):
        train_and_evaluate(test_size=1.0)
