"""The PyTorch MLP variant (``estimator = "mlp_torch"``), on the CPU."""

import pickle

import numpy as np
import pytest

torch = pytest.importorskip(
    "torch",
    reason="PyTorch is not installed: pip install 'wine-classifier[torch]' to test mlp_torch",
)

from wine_classifier import TrainingResult, build_model, load_split, train_and_evaluate  # noqa: E402
from wine_classifier.torch_mlp import TorchMLPClassifier, macro_f1, resolve_device  # noqa: E402

FAST = {"estimator": "mlp_torch", "epochs": 25, "device": "cpu", "seed": 7}


@pytest.fixture(scope="module")
def run():
    """One small CPU training with every epoch recorded."""
    steps = []
    result = train_and_evaluate(FAST, on_step=lambda step, metrics: steps.append((step, metrics)))
    return result, steps


def test_result_describes_a_pytorch_model(run):
    result, _ = run
    assert isinstance(result, TrainingResult)
    assert result.flavor == "pytorch"
    assert result.device == "cpu"
    assert result.trusted_types == ()
    assert result.params == {**FAST, "hidden": 64, "batch_size": 32, "lr": 0.01}
    assert isinstance(result.model, TorchMLPClassifier)
    assert isinstance(result.torch_module, torch.nn.Module)
    assert set(result.extra_artifacts) <= {"confusion_matrix.png", "feature_importance.png"}


def test_trains_to_good_accuracy(run):
    result, _ = run
    assert result.metrics["accuracy"] >= 0.9
    assert result.metrics["f1_macro"] >= 0.9


def test_on_step_once_per_epoch_with_loss_and_held_out_scores(run):
    result, steps = run
    assert [step for step, _ in steps] == list(range(1, FAST["epochs"] + 1))
    for _, metrics in steps:
        assert set(metrics) == {"loss", "accuracy", "f1_macro"}
        assert all(type(v) is float for v in metrics.values())
    losses = [m["loss"] for _, m in steps]
    assert losses == result.model.loss_curve_
    assert losses[-1] < losses[0] / 5
    assert steps[-1][1]["accuracy"] == result.metrics["accuracy"]
    assert steps[-1][1]["f1_macro"] == pytest.approx(result.metrics["f1_macro"])


def test_predict_shapes_and_dtypes(run):
    result, _ = run
    X = load_split(seed=7).X_test
    pred = result.model.predict(X)
    assert pred.shape == (len(X),) and pred.dtype == np.int64
    assert set(pred.tolist()) <= {0, 1, 2}
    proba = result.model.predict_proba(X)
    assert proba.shape == (len(X), 3) and proba.dtype == np.float64
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(pred, proba.argmax(axis=1))
    assert result.model.predict(result.input_example).shape == (5,)
    # float32 and list input are accepted as well.
    np.testing.assert_array_equal(result.model.predict(X.astype(np.float32)), pred)
    np.testing.assert_array_equal(result.model.predict(X.tolist()), pred)


def test_bad_prediction_input(run):
    model = run[0].model
    with pytest.raises(ValueError, match="2-D"):
        model.predict(np.zeros(13))
    with pytest.raises(ValueError, match="13"):
        model.predict(np.zeros((2, 12)))


def test_torch_module_alone_is_the_whole_model(run):
    result, _ = run
    module = result.torch_module
    assert next(module.parameters()).device.type == "cpu"
    assert not module.training
    X = load_split(seed=7).X_test
    with torch.no_grad():
        logits = module(torch.tensor(X, dtype=torch.float32))
    np.testing.assert_array_equal(logits.argmax(dim=1).numpy(), result.model.predict(X))
    # Only stock torch layers: loadable without this package.
    assert all(type(m).__module__.startswith("torch.") for m in module.modules())


def test_normalisation_matches_standard_scaler(run):
    from sklearn.preprocessing import StandardScaler

    model = run[0].model
    scaler = StandardScaler().fit(load_split(seed=7).X_train)
    np.testing.assert_allclose(model.mean_, scaler.mean_)
    np.testing.assert_allclose(model.scale_, scaler.scale_)


def test_deterministic_on_cpu_for_a_fixed_seed(run):
    again = train_and_evaluate(FAST)
    first = run[0]
    assert again.metrics == first.metrics
    assert again.model.loss_curve_ == first.model.loss_curve_
    X = load_split(seed=7).X_test
    np.testing.assert_array_equal(again.model.predict_proba(X), first.model.predict_proba(X))
    split = load_split(seed=7)
    other = build_model({**FAST, "seed": 8}).fit(split.X_train, split.y_train)
    assert other.loss_curve_ != first.model.loss_curve_


def test_training_leaves_the_global_torch_state_alone():
    threads = torch.get_num_threads()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    split = load_split()
    build_model({**FAST, "epochs": 2}).fit(split.X_train, split.y_train)
    assert torch.equal(torch.rand(3), expected)
    assert torch.get_num_threads() == threads


def test_pickles_round_trip(run):
    model = run[0].model
    clone = pickle.loads(pickle.dumps(model))
    X = load_split(seed=7).X_test
    np.testing.assert_array_equal(clone.predict_proba(X), model.predict_proba(X))


def test_auto_device_without_cuda_is_cpu_and_cuda_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(ValueError, match=r"'cuda'.*use device 'auto'"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match="hyper-parameter 'device'"):
        train_and_evaluate({"estimator": "mlp_torch", "device": "cuda"})
    result = train_and_evaluate({"estimator": "mlp_torch", "epochs": 1, "device": "auto"})
    assert result.device == "cpu"


def test_bad_device_value_is_refused():
    with pytest.raises(ValueError, match="allowed: auto, cpu, cuda"):
        train_and_evaluate({"estimator": "mlp_torch", "device": "tpu"})


def test_build_model_and_fit_directly():
    model = build_model({"estimator": "mlp_torch", "hidden": 8, "epochs": 3, "seed": 1})
    assert isinstance(model, TorchMLPClassifier)
    assert model.get_params() == {
        "hidden": 8,
        "epochs": 3,
        "batch_size": 32,
        "lr": 0.01,
        "device": "auto",
        "seed": 1,
    }
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        model.predict(np.zeros((1, 13)))
    split = load_split(seed=1)
    model.set_params(device="cpu").fit(split.X_train, split.y_train)
    assert len(model.loss_curve_) == 3
    assert model.module_[1].out_features == 8


def test_macro_f1_matches_scikit_learn():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    for _ in range(20):
        y_true = rng.integers(0, 4, size=30)
        y_pred = rng.integers(0, 5, size=30)
        assert macro_f1(y_true, y_pred) == pytest.approx(
            f1_score(y_true, y_pred, average="macro", zero_division=0)
        )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_trains_on_cuda():
    result = train_and_evaluate({**FAST, "device": "cuda"})
    assert result.device == "cuda"
    assert result.metrics["accuracy"] >= 0.9
    assert next(result.torch_module.parameters()).device.type == "cpu"
