"""End-to-end training: load the split, build, fit and evaluate the model."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .data import load_split
from .evaluate import evaluate
from .model import TORCH_ESTIMATOR, build_model, resolve_params

TREE_TYPES = ("sklearn.tree._tree.Tree",)

#: The random forest is grown in this many stages when progress is reported.
FOREST_STAGES = 10

if TYPE_CHECKING:
    import numpy as np

    from .data import Split

#: ``on_step(step, metrics)``: progress during training (see :func:`train_and_evaluate`).
StepCallback = Callable[[int, dict[str, float]], None]


@dataclass
class TrainingResult:
    """Everything a caller needs to log or package a trained model."""

    model: Any
    metrics: dict[str, float]
    params: dict[str, Any]
    data_hash: str
    input_example: np.ndarray
    feature_names: tuple[str, ...]
    #: "sklearn" for the scikit-learn pipelines, "pytorch" for the MLP (whose ``model``
    #: is a :class:`~wine_classifier.torch_mlp.TorchMLPClassifier`: ``predict`` and
    #: ``predict_proba`` on a 2-D float array, returning numpy).
    flavor: str = "sklearn"
    #: Types beyond scikit-learn's safe defaults that this model's saved form holds; a
    #: loader (MLflow's skops format) must be told to trust them. Reviewed: the tree
    #: storage of the random forest we fit ourselves. Empty for the MLP.
    trusted_types: tuple[str, ...] = ()
    #: Files to keep next to the model: ``confusion_matrix.png`` and
    #: ``feature_importance.png`` (PNG bytes), when matplotlib is installed.
    extra_artifacts: dict[str, bytes] = field(default_factory=dict)
    #: Where the training ran: "cpu" or "cuda".
    device: str = "cpu"
    #: The MLP's ``torch.nn.Module`` on the CPU (raw features in, logits out; it includes
    #: the standardisation), for logging with ``mlflow.pytorch``. ``None`` otherwise.
    torch_module: Any = None
    #: The held-out inputs and targets the metrics come from (mlci re-scores the
    #: champion on them at promotion, with :func:`~wine_classifier.evaluate.score`).
    eval_inputs: np.ndarray | None = None
    eval_targets: np.ndarray | None = None
    #: The inputs the model was fitted on: mlci keeps them with the model as the reference
    #: its batch scoring compares new data with (drift).
    train_inputs: np.ndarray | None = None


def _scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "f1_macro": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
    }


def forest_stages(n_estimators: int, stages: int = FOREST_STAGES) -> list[int]:
    """Forest sizes after each stage: about ``n_estimators / stages`` trees per stage."""
    sizes = sorted({n_estimators * i // stages for i in range(1, stages + 1)} - {0})
    return sizes


def _fit_forest_in_stages(model: Any, split: Split, on_step: StepCallback) -> None:
    """Grow the pipeline's forest with ``warm_start``, reporting held-out scores per stage.

    scikit-learn draws the seeds of the added trees as if the forest had been fitted in
    one go, so the final forest equals a one-shot fit with the same ``random_state``.
    """
    scaler = model.named_steps["scaler"]
    forest = model.named_steps["classifier"]
    x_train = scaler.fit_transform(split.X_train)
    x_test = scaler.transform(split.X_test)
    total = forest.n_estimators
    forest.set_params(warm_start=True)
    for size in forest_stages(total):
        forest.set_params(n_estimators=size)
        forest.fit(x_train, split.y_train)
        on_step(size, _scores(split.y_test, forest.predict(x_test)))
    # Leave the estimator configured exactly like one built for a one-shot fit.
    forest.set_params(warm_start=False)


def train_and_evaluate(
    params: Mapping[str, Any] | None = None,
    *,
    test_size: float = 0.25,
    on_step: StepCallback | None = None,
) -> TrainingResult:
    """Train on the fixed split and score on its held-out part.

    ``params`` are merged over the estimator's defaults
    (:data:`~wine_classifier.DEFAULT_PARAMS`, or
    :data:`~wine_classifier.MLP_DEFAULT_PARAMS` for ``"mlp_torch"``); ``seed`` drives
    both the split and the estimator, so a fixed seed gives identical results (for the
    MLP: on the CPU).

    ``on_step(step, metrics)``, if given, reports progress with plain floats:

    * ``random_forest``: grown in about 10 stages; ``step`` is the number of trees so
      far, ``metrics`` the held-out ``accuracy`` and ``f1_macro``. The final forest is
      the same as without ``on_step``.
    * ``logistic_regression``: one call, ``step`` 1, held-out ``accuracy``, ``f1_macro``.
    * ``mlp_torch``: one call per epoch, ``step`` the epoch (from 1), ``loss`` (mean
      training cross-entropy), held-out ``accuracy`` and ``f1_macro``.
    """
    effective = resolve_params(params)
    split = load_split(test_size=test_size, seed=effective["seed"])
    model = build_model(effective)
    estimator = effective["estimator"]

    if estimator == TORCH_ESTIMATOR:
        model.fit(
            split.X_train,
            split.y_train,
            eval_set=(split.X_test, split.y_test),
            on_epoch=on_step,
        )
    elif estimator == "random_forest" and on_step is not None:
        _fit_forest_in_stages(model, split, on_step)
    else:
        model.fit(split.X_train, split.y_train)
        if on_step is not None:
            on_step(1, _scores(split.y_test, model.predict(split.X_test)))

    metrics = evaluate(model, split)

    from .figures import render_figures

    torch_model = estimator == TORCH_ESTIMATOR
    return TrainingResult(
        model=model,
        metrics=metrics,
        params=effective,
        data_hash=split.digest,
        input_example=split.X_test[:5].copy(),
        feature_names=split.feature_names,
        flavor="pytorch" if torch_model else "sklearn",
        trusted_types=TREE_TYPES if estimator == "random_forest" else (),
        extra_artifacts=render_figures(model, split, estimator, effective["seed"]),
        device=model.device_ if torch_model else "cpu",
        torch_module=model.module_ if torch_model else None,
        eval_inputs=split.X_test,
        eval_targets=split.y_test,
        train_inputs=split.X_train,
    )
