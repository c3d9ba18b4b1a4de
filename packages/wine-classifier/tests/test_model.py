import subprocess
import sys

import pytest

from wine_classifier import DEFAULT_PARAMS, build_model
from wine_classifier.model import resolve_params


def test_default_params_contract():
    assert DEFAULT_PARAMS == {
        "estimator": "random_forest",
        "n_estimators": 200,
        "max_depth": None,
        "C": 1.0,
        "seed": 42,
    }


def test_build_default_pipeline():
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    pipe = build_model({})
    assert isinstance(pipe, Pipeline)
    scaler, clf = (step for _, step in pipe.steps)
    assert isinstance(scaler, StandardScaler)
    assert isinstance(clf, RandomForestClassifier)
    assert clf.n_estimators == 200
    assert clf.max_depth is None
    assert clf.random_state == 42


def test_build_logistic_regression():
    from sklearn.linear_model import LogisticRegression

    pipe = build_model({"estimator": "logistic_regression", "C": 0.5, "seed": 3})
    clf = pipe.steps[-1][1]
    assert isinstance(clf, LogisticRegression)
    assert clf.C == 0.5
    assert clf.random_state == 3


def test_params_override_defaults_without_mutating_them():
    before = dict(DEFAULT_PARAMS)
    p = resolve_params({"n_estimators": 10, "max_depth": 3})
    assert p == {**before, "n_estimators": 10, "max_depth": 3}
    assert before == DEFAULT_PARAMS
    clf = build_model({"n_estimators": 10, "max_depth": 3}).steps[-1][1]
    assert (clf.n_estimators, clf.max_depth) == (10, 3)


def test_none_params_means_defaults():
    assert resolve_params(None) == DEFAULT_PARAMS


def test_int_c_is_normalised_to_float():
    p = resolve_params({"C": 2})
    assert p["C"] == 2.0 and isinstance(p["C"], float)


def test_unknown_param_names_key_allowed_and_suggestion():
    with pytest.raises(ValueError) as info:
        build_model({"n_estimator": 10})
    msg = str(info.value)
    assert "unknown hyper-parameter 'n_estimator'" in msg
    assert "allowed: C, estimator, max_depth, n_estimators, seed" in msg
    assert "did you mean 'n_estimators'?" in msg


def test_unknown_param_without_close_match():
    with pytest.raises(ValueError) as info:
        build_model({"learning_rate": 0.1})
    msg = str(info.value)
    assert "'learning_rate'" in msg
    assert "did you mean" not in msg


def test_bad_estimator_lists_choices_and_suggests():
    with pytest.raises(ValueError) as info:
        build_model({"estimator": "random_forrest"})
    msg = str(info.value)
    assert "'estimator'" in msg
    assert "'random_forrest'" in msg
    assert "logistic_regression, random_forest" in msg
    assert "did you mean 'random_forest'?" in msg


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("n_estimators", 0),
        ("n_estimators", -5),
        ("n_estimators", 10.0),
        ("n_estimators", "100"),
        ("n_estimators", True),
        ("n_estimators", 10_001),
        ("max_depth", 0),
        ("max_depth", 2.5),
        ("max_depth", "3"),
        ("C", 0),
        ("C", -1.0),
        ("C", float("inf")),
        ("C", float("nan")),
        ("C", "1.0"),
        ("C", False),
        ("seed", -1),
        ("seed", 2**32),
        ("seed", 1.0),
        ("seed", None),
        ("estimator", None),
        ("estimator", 3),
    ],
)
def test_invalid_values_are_rejected_with_key_and_value(key, value):
    with pytest.raises(ValueError) as info:
        build_model({key: value})
    msg = str(info.value)
    assert f"hyper-parameter '{key}'" in msg
    assert repr(value) in msg
    assert "allowed:" in msg


def test_non_mapping_params_rejected():
    with pytest.raises(ValueError, match="mapping"):
        build_model([("seed", 1)])


def test_import_is_lightweight():
    code = (
        "import sys, wine_classifier; "
        "heavy = [m for m in ('sklearn', 'numpy') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
