"""PyTorch is optional: the package and its scikit-learn paths work without it."""

import subprocess
import sys

import pytest

# scikit-learn's scipy looks torch up in sys.modules when it is first imported: import what
# the tests below use now, before they hide torch (otherwise the result depends on test order).
import sklearn.datasets
import sklearn.ensemble
import sklearn.model_selection
import sklearn.pipeline
import sklearn.preprocessing  # noqa: F401

import wine_classifier.torch_mlp  # noqa: F401
from wine_classifier import MLP_DEFAULT_PARAMS, build_model, train_and_evaluate, validate_params
from wine_classifier.model import resolve_params


def test_import_and_sklearn_training_do_not_import_torch_or_matplotlib():
    code = (
        "import sys, wine_classifier; "
        "print(','.join(m for m in ('torch', 'matplotlib') if m in sys.modules)); "
        "r = wine_classifier.train_and_evaluate({'n_estimators': 5}, on_step=lambda s, m: None); "
        "print(','.join(m for m in ('torch',) if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == ["", ""]


def test_missing_torch_is_a_value_error_naming_the_extra(monkeypatch):
    # An entry of None in sys.modules makes `import torch` fail as if it were absent.
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ValueError, match=r"install wine-classifier\[torch\]"):
        train_and_evaluate({"estimator": "mlp_torch", "epochs": 1})
    with pytest.raises(ValueError, match=r"wine-classifier\[torch\]"):
        build_model({"estimator": "mlp_torch"})


def test_validate_params_fails_without_torch_before_anything_runs(monkeypatch):
    # What a trainer calls first: it must not pass parameters the machine cannot run.
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ValueError, match=r"needs PyTorch, which is not installed"):
        validate_params({"estimator": "mlp_torch"})
    assert validate_params({"estimator": "random_forest"})["estimator"] == "random_forest"


def test_mlp_params_resolve_without_torch(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    assert resolve_params({"estimator": "mlp_torch"}) == MLP_DEFAULT_PARAMS
    assert MLP_DEFAULT_PARAMS == {
        "estimator": "mlp_torch",
        "hidden": 64,
        "epochs": 200,
        "batch_size": 32,
        "lr": 0.01,
        "device": "auto",
        "seed": 42,
    }


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("hidden", 0),
        ("hidden", 1.5),
        ("epochs", 0),
        ("epochs", "10"),
        ("batch_size", -1),
        ("batch_size", True),
        ("lr", 0),
        ("lr", float("nan")),
        ("lr", "0.1"),
        ("device", "gpu"),
        ("device", None),
        ("seed", -1),
    ],
)
def test_invalid_mlp_values(key, value):
    with pytest.raises(ValueError) as info:
        resolve_params({"estimator": "mlp_torch", key: value})
    msg = str(info.value)
    assert f"hyper-parameter '{key}'" in msg
    assert repr(value) in msg
    assert "allowed:" in msg


def test_keys_of_the_other_estimator_are_named_as_such():
    with pytest.raises(ValueError, match="'hidden' does not apply to estimator 'random_forest'"):
        resolve_params({"hidden": 32})
    with pytest.raises(ValueError, match="'n_estimators' does not apply to estimator 'mlp_torch'"):
        resolve_params({"estimator": "mlp_torch", "n_estimators": 10})
    with pytest.raises(ValueError) as info:
        resolve_params({"estimator": "mlp_torch", "epoch": 3})
    assert "unknown hyper-parameter 'epoch'" in str(info.value)
    assert "allowed: batch_size, device, epochs, estimator, hidden, lr, seed" in str(info.value)
    assert "did you mean 'epochs'?" in str(info.value)
