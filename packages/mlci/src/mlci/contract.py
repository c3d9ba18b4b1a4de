"""The model package contract: what mlci imports, calls and expects back, as types.

A model package is any importable module with ``train_and_evaluate(params)`` returning a
result shaped like :class:`TrainResult`. Packages may return mlci's class or their own
(a dataclass with the same fields is fine: the check is structural), so a model package
does not have to depend on mlci. :func:`check_module` runs when the train stage imports
the module, :func:`check_result` on what ``train_and_evaluate`` returns; each names every
missing or wrong field in one message.

Optional functions of the module:

- ``validate_params(params)``: raise ``ValueError`` for hyper-parameters it cannot train
  with; called before any server starts.
- ``score(y_true, y_pred) -> dict[str, float]``: the metrics of predictions against
  targets. With it (and ``eval_inputs``/``eval_targets`` in the result), promotion scores
  the candidate and the champion on the same held-out data.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from mlci.errors import ConfigError

#: Where train logs ``eval_inputs``/``eval_targets`` in the run (one CSV, the targets in
#: TARGET_COLUMN), for promotion to score the champion on the same rows.
HELDOUT = "heldout/heldout.csv"
TARGET_COLUMN = "__target__"
#: Where train logs ``train_inputs`` in the run (Parquet, one column per feature name): the
#: reference that `invoke score` compares each batch's distributions with.
TRAIN_INPUTS = "reference/train_inputs.parquet"


@dataclass
class TrainResult:
    """What ``train_and_evaluate`` returns."""

    #: The fitted model: ``predict`` on a 2-D array of ``feature_names`` columns.
    model: Any
    #: Held-out metrics, plain floats (e.g. ``{"rmse": 53.1}``).
    metrics: dict[str, float]
    #: The hyper-parameters in force, defaults included.
    params: dict[str, Any]
    #: A hash of the training data (recorded as lineage; compared at promotion).
    data_hash: str
    #: A few rows of inputs (2-D), saved with the model and predicted before promotion.
    input_example: Any
    #: The input columns, in order.
    feature_names: Sequence[str]
    #: How the model is saved: "sklearn" (skops), anything else as an MLflow pyfunc model.
    flavor: str = "sklearn"
    #: Types beyond scikit-learn's safe defaults that the saved model holds (skops).
    trusted_types: tuple[str, ...] = ()
    #: Files kept with the model and in the reports (e.g. PNG plots).
    extra_artifacts: dict[str, bytes] = field(default_factory=dict)
    #: Where training ran: "cpu" or "cuda".
    device: str = "cpu"
    #: The held-out inputs (2-D) and targets (1-D) the metrics come from: with them and a
    #: ``score`` function, promotion re-scores the champion on the candidate's data.
    eval_inputs: Any = None
    eval_targets: Any = None
    #: The training inputs (2-D, ``feature_names`` columns), logged as the drift reference
    #: that `invoke score` compares the batches it scores against.
    train_inputs: Any = None


@runtime_checkable
class ModelPackage(Protocol):
    """The module mlci trains (``[tool.mlci.model] module``)."""

    def train_and_evaluate(self, params: Mapping[str, Any], /) -> TrainResult: ...


def _callable_or_absent(module: Any, name: str) -> str | None:
    value = getattr(module, name, None)
    if value is not None and not callable(value):
        return f"{name} is a {type(value).__name__}, not a function"
    return None


def check_module(module: Any, name: str) -> None:
    """The module has what the train stage calls; one message for everything wrong."""
    problems = []
    if not callable(getattr(module, "train_and_evaluate", None)):
        problems.append("it has no train_and_evaluate() function")
    problems += [p for n in ("validate_params", "score") if (p := _callable_or_absent(module, n))]
    if problems:
        raise ConfigError(
            f"the model package {name!r} does not follow mlci's model contract",
            "; ".join(problems)
            + ". mlci calls train_and_evaluate(params) and expects a result with model, "
            "metrics, params, data_hash, input_example and feature_names (mlci.TrainResult)",
            "add the function (see mlci.contract.ModelPackage), or point [tool.mlci.model] "
            "module at the right package",
        )


def _rows(value: Any) -> tuple[int, int | None] | None:
    """(rows, columns) of a 2-D array-like, (rows, None) of a 1-D one, None otherwise."""
    shape = getattr(value, "shape", None)
    if shape is None:
        if isinstance(value, list | tuple):
            if value and all(isinstance(row, list | tuple) for row in value):
                return len(value), len(value[0])
            return len(value), None
        return None
    if len(shape) == 2:
        return int(shape[0]), int(shape[1])
    if len(shape) == 1:
        return int(shape[0]), None
    return None


def _metric_problems(metrics: Any) -> list[str]:
    if not isinstance(metrics, Mapping) or not metrics:
        return ["metrics must be a non-empty dict of metric name to number"]
    bad = [
        str(k)
        for k, v in metrics.items()
        if not isinstance(k, str)
        or isinstance(v, bool)
        or not isinstance(v, int | float)
        or not math.isfinite(float(v))
    ]
    return [f"metrics {', '.join(sorted(bad))} must be finite numbers"] if bad else []


def check_result(result: Any, name: str) -> None:
    """What ``train_and_evaluate`` returned has every field, each of the right kind."""
    missing = [
        f
        for f in ("model", "metrics", "params", "data_hash", "input_example", "feature_names")
        if not hasattr(result, f)
    ]
    problems: list[str] = []
    if missing:
        problems.append(f"it has no {', '.join(missing)}")
    get: Callable[[str], Any] = lambda f: getattr(result, f, None)  # noqa: E731
    if "model" not in missing and not callable(getattr(get("model"), "predict", None)):
        problems.append("model has no predict() method")
    if "metrics" not in missing:
        problems += _metric_problems(get("metrics"))
    if "params" not in missing and not isinstance(get("params"), Mapping):
        problems.append(f"params must be a dict, not {type(get('params')).__name__}")
    if "data_hash" not in missing and not (isinstance(get("data_hash"), str) and get("data_hash")):
        problems.append("data_hash must be a non-empty string")
    names = get("feature_names")
    if "feature_names" not in missing and (
        isinstance(names, str)
        or not isinstance(names, Sequence)
        or not names
        or not all(isinstance(n, str) for n in names)
    ):
        problems.append("feature_names must be a non-empty list of strings")
        names = None
    if "input_example" not in missing:
        shape = _rows(get("input_example"))
        if shape is None or shape[1] is None or shape[0] < 1:
            problems.append("input_example must be a 2-D array with at least one row")
        elif names and shape[1] != len(names):
            problems.append(
                f"input_example has {shape[1]} columns but feature_names names {len(names)}"
            )
    problems += _eval_problems(get("eval_inputs"), get("eval_targets"), names)
    problems += _train_inputs_problems(get("train_inputs"), names)
    artefacts = getattr(result, "extra_artifacts", None) or {}
    if not isinstance(artefacts, Mapping) or not all(
        isinstance(k, str) and "/" not in k and isinstance(v, bytes) for k, v in artefacts.items()
    ):
        problems.append("extra_artifacts must map plain file names to bytes")
    if problems:
        raise ConfigError(
            f"train_and_evaluate() of {name!r} returned a result mlci cannot log",
            "; ".join(problems),
            "return an mlci.TrainResult (or an object with the same fields); see "
            "mlci.contract for what each field holds",
        )


def _train_inputs_problems(inputs: Any, names: Sequence[str] | None) -> list[str]:
    if inputs is None:
        return []
    shape = _rows(inputs)
    if shape is None or shape[1] is None or shape[0] < 1:
        return ["train_inputs must be a 2-D array with at least one row"]
    if names and shape[1] != len(names):
        return [f"train_inputs has {shape[1]} columns but feature_names names {len(names)}"]
    return []


def _eval_problems(inputs: Any, targets: Any, names: Sequence[str] | None) -> list[str]:
    if inputs is None and targets is None:
        return []
    if inputs is None or targets is None:
        return ["eval_inputs and eval_targets come together: give both or neither"]
    shape, target_shape = _rows(inputs), _rows(targets)
    problems = []
    if shape is None or shape[1] is None:
        problems.append("eval_inputs must be a 2-D array")
    elif names and shape[1] != len(names):
        problems.append(f"eval_inputs has {shape[1]} columns but feature_names names {len(names)}")
    if target_shape is None or target_shape[1] is not None:
        problems.append("eval_targets must be a 1-D array")
    elif shape is not None and target_shape[0] != shape[0]:
        problems.append(f"eval_inputs has {shape[0]} rows but eval_targets has {target_shape[0]}")
    return problems
