"""The model contract: one clear message per missing or wrong field."""

from __future__ import annotations

import types
import typing
from collections.abc import Sized
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

import mlci
from mlci.contract import ModelPackage, TrainResult, check_module, check_result
from mlci.errors import ConfigError


class _Model:
    def predict(self, x: Sized) -> object:
        return np.zeros(len(x))


def _good(**changes: Any) -> TrainResult:
    # Any: the cases put values of every wrong type into the result on purpose.
    fields: dict[str, Any] = dict(
        model=_Model(),
        metrics={"rmse": 3.5, "r2": 0.4},
        params={"alpha": 1.0},
        data_hash="abc123",
        input_example=np.zeros((3, 2)),
        feature_names=("a", "b"),
        eval_inputs=np.zeros((10, 2)),
        eval_targets=np.zeros(10),
    )
    fields.update(changes)
    return TrainResult(**fields)


def test_a_complete_result_passes_and_a_look_alike_class_is_fine() -> None:
    check_result(_good(), "m")

    @dataclass
    class Own:  # a package's own result type, without importing mlci
        model: object
        metrics: dict[str, float]
        params: dict[str, object]
        data_hash: str
        input_example: object
        feature_names: tuple[str, ...]

    check_result(Own(_Model(), {"acc": 1.0}, {}, "h", [[1.0, 2.0]], ("a", "b")), "m")


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"model": object()}, "model has no predict() method"),
        ({"metrics": {}}, "metrics must be a non-empty dict"),
        ({"metrics": {"rmse": float("nan"), "r2": "high"}}, "metrics r2, rmse must be finite"),
        ({"metrics": {"ok": True}}, "metrics ok must be finite numbers"),
        ({"params": [1]}, "params must be a dict, not list"),
        ({"data_hash": ""}, "data_hash must be a non-empty string"),
        ({"feature_names": "ab"}, "feature_names must be a non-empty list of strings"),
        ({"input_example": np.zeros(3)}, "input_example must be a 2-D array"),
        ({"input_example": np.zeros((3, 5))}, "input_example has 5 columns but feature_names"),
        ({"eval_targets": None}, "eval_inputs and eval_targets come together"),
        ({"eval_targets": np.zeros(9)}, "eval_inputs has 10 rows but eval_targets has 9"),
        ({"eval_inputs": np.zeros((10, 3))}, "eval_inputs has 3 columns"),
        ({"train_inputs": np.zeros(10)}, "train_inputs must be a 2-D array"),
        ({"train_inputs": np.zeros((10, 3))}, "train_inputs has 3 columns but feature_names"),
        ({"extra_artifacts": {"a/b.png": b""}}, "extra_artifacts must map plain file names"),
    ],
)
def test_each_wrong_field_is_named(changes: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        check_result(_good(**changes), "my_model")
    assert info.value.what == "train_and_evaluate() of 'my_model' returned a result mlci cannot log"
    assert problem in info.value.why
    assert "mlci.TrainResult" in info.value.fix


def test_every_problem_is_in_one_message() -> None:
    class Partial:
        model = object()
        metrics: typing.ClassVar[dict[str, float]] = {}

    with pytest.raises(ConfigError) as info:
        check_result(Partial(), "m")
    why = info.value.why
    assert "it has no params, data_hash, input_example, feature_names" in why
    assert "model has no predict() method" in why
    assert "metrics must be a non-empty dict" in why


def test_the_module_needs_train_and_evaluate_and_callable_optional_functions() -> None:
    module = types.ModuleType("m")
    vars(module)["score"] = 3
    with pytest.raises(ConfigError) as info:
        check_module(module, "m")
    assert info.value.why.startswith(
        "it has no train_and_evaluate() function; score is a int, not a function."
    )
    vars(module).update(train_and_evaluate=lambda params: None, score=lambda y, p: {})
    check_module(module, "m")
    assert isinstance(module, ModelPackage)


def test_the_contract_types_are_exported_by_mlci() -> None:
    # Model packages import them from the top-level package (a lazy attribute there).
    assert (mlci.TrainResult, mlci.ModelPackage) == (TrainResult, ModelPackage)
