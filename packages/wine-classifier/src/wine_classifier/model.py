"""Hyper-parameter validation and construction of the (unfitted) model.

The scikit-learn estimators share :data:`DEFAULT_PARAMS`; the optional PyTorch MLP
(``estimator = "mlp_torch"``) has its own set, :data:`MLP_DEFAULT_PARAMS`. Each estimator
accepts only its own keys, so the resolved parameters describe exactly what was trained.
Nothing here imports torch unless the MLP is built.
"""

from __future__ import annotations

import difflib
import math
import numbers
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

    from .torch_mlp import TorchMLPClassifier

ESTIMATORS: tuple[str, ...] = ("logistic_regression", "random_forest", "mlp_torch")
TORCH_ESTIMATOR = "mlp_torch"
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")

DEFAULT_PARAMS: dict[str, Any] = {
    # Which classifier follows the StandardScaler.
    "estimator": "random_forest",
    # random_forest only: number of trees and their maximum depth (None = unlimited).
    "n_estimators": 200,
    "max_depth": None,
    # logistic_regression only: inverse regularisation strength.
    "C": 1.0,
    # Seeds the data split and the estimator.
    "seed": 42,
}

#: Hyper-parameters of ``estimator = "mlp_torch"``: a Linear-ReLU-Linear network on
#: standardised features, trained with Adam on the cross-entropy loss.
MLP_DEFAULT_PARAMS: dict[str, Any] = {
    "estimator": TORCH_ESTIMATOR,
    # Width of the single hidden layer.
    "hidden": 64,
    # Passes over the training split, and how many rows each optimiser step sees.
    "epochs": 200,
    "batch_size": 32,
    # Adam's learning rate.
    "lr": 0.01,
    # Where to train: "auto" picks CUDA when PyTorch sees a GPU, else the CPU.
    "device": "auto",
    # Seeds the data split, the weight initialisation and the batch order.
    "seed": 42,
}

MAX_N_ESTIMATORS = 10_000
MAX_SEED = 2**32 - 1
MAX_HIDDEN = 65_536
MAX_EPOCHS = 100_000
MAX_BATCH_SIZE = 1_000_000


def _defaults_for(estimator: str) -> dict[str, Any]:
    return MLP_DEFAULT_PARAMS if estimator == TORCH_ESTIMATOR else DEFAULT_PARAMS


def _allowed_keys(estimator: str = "random_forest") -> str:
    return ", ".join(sorted(_defaults_for(estimator)))


def _suggest(name: str, choices: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_estimator(value: object) -> str:
    if not isinstance(value, str) or value not in ESTIMATORS:
        hint = _suggest(value, ESTIMATORS) if isinstance(value, str) else ""
        raise ValueError(
            f"invalid value {value!r} for hyper-parameter 'estimator'; "
            f"allowed: {', '.join(ESTIMATORS)}{hint}"
        )
    return value


def _check_n_estimators(value: object) -> int:
    if not _is_int(value) or not 1 <= int(value) <= MAX_N_ESTIMATORS:
        raise ValueError(
            f"invalid value {value!r} for hyper-parameter 'n_estimators'; "
            f"allowed: an integer from 1 to {MAX_N_ESTIMATORS}"
        )
    return int(value)


def _check_max_depth(value: object) -> int | None:
    if value is None:
        return None
    if not _is_int(value) or int(value) < 1:
        raise ValueError(
            f"invalid value {value!r} for hyper-parameter 'max_depth'; "
            "allowed: null/None (unlimited) or an integer >= 1"
        )
    return int(value)


def _check_c(value: object) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(float(value))
        or float(value) <= 0.0
    ):
        raise ValueError(
            f"invalid value {value!r} for hyper-parameter 'C'; allowed: a finite number > 0"
        )
    return float(value)


def _check_seed(value: object) -> int:
    if not _is_int(value) or not 0 <= int(value) <= MAX_SEED:
        raise ValueError(
            f"invalid value {value!r} for hyper-parameter 'seed'; "
            f"allowed: an integer from 0 to {MAX_SEED}"
        )
    return int(value)


def _int_check(name: str, high: int):
    def check(value: object) -> int:
        if not _is_int(value) or not 1 <= int(value) <= high:
            raise ValueError(
                f"invalid value {value!r} for hyper-parameter {name!r}; "
                f"allowed: an integer from 1 to {high}"
            )
        return int(value)

    return check


def _check_lr(value: object) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(float(value))
        or float(value) <= 0.0
    ):
        raise ValueError(
            f"invalid value {value!r} for hyper-parameter 'lr'; allowed: a finite number > 0"
        )
    return float(value)


def _check_device(value: object) -> str:
    if not isinstance(value, str) or value not in DEVICES:
        raise ValueError(
            f"invalid value {value!r} for hyper-parameter 'device'; allowed: {', '.join(DEVICES)}"
        )
    return value


_CHECKS = {
    "estimator": _check_estimator,
    "n_estimators": _check_n_estimators,
    "max_depth": _check_max_depth,
    "C": _check_c,
    "seed": _check_seed,
    "hidden": _int_check("hidden", MAX_HIDDEN),
    "epochs": _int_check("epochs", MAX_EPOCHS),
    "batch_size": _int_check("batch_size", MAX_BATCH_SIZE),
    "lr": _check_lr,
    "device": _check_device,
}


def resolve_params(params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Merge ``params`` over the defaults of the chosen estimator and validate the result.

    The defaults are :data:`DEFAULT_PARAMS` for the scikit-learn estimators and
    :data:`MLP_DEFAULT_PARAMS` for ``"mlp_torch"``. Returns a new dict with every key of
    that set, values normalised to plain Python types. Raises :class:`ValueError` naming
    the offending key and value and what is allowed; a key that belongs to the other
    set is named as such.
    """
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        raise ValueError(
            f"hyper-parameters must be a mapping of name to value, "
            f"got {type(params).__name__}; allowed keys: {_allowed_keys()}"
        )

    estimator = _check_estimator(params.get("estimator", DEFAULT_PARAMS["estimator"]))
    defaults = _defaults_for(estimator)
    known = sorted(defaults)
    for key in params:
        if key in defaults:
            continue
        if key in DEFAULT_PARAMS or key in MLP_DEFAULT_PARAMS:
            owner = (
                "mlp_torch" if key in MLP_DEFAULT_PARAMS else "random_forest/logistic_regression"
            )
            raise ValueError(
                f"hyper-parameter {key!r} does not apply to estimator {estimator!r} "
                f"(it is for {owner}); allowed: {_allowed_keys(estimator)}"
            )
        hint = _suggest(key, known) if isinstance(key, str) else ""
        raise ValueError(
            f"unknown hyper-parameter {key!r}; allowed: {_allowed_keys(estimator)}{hint}"
        )

    merged = {**defaults, **params}
    return {key: _CHECKS[key](merged[key]) for key in defaults}


def validate_params(params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """:func:`resolve_params`, plus what the chosen estimator needs from this machine.

    For ``"mlp_torch"``: PyTorch installed, and a CUDA device when ``device = "cuda"``. A
    trainer calls this before it starts anything (a tracking run, a server), so a missing
    package fails first, with the command that installs it.
    """
    p = resolve_params(params)
    if p["estimator"] == TORCH_ESTIMATOR:
        from .torch_mlp import require_torch, resolve_device

        require_torch()
        resolve_device(p["device"])
    return p


def build_model(params: Mapping[str, Any] | None = None) -> Pipeline | TorchMLPClassifier:
    """Build an unfitted model.

    A ``StandardScaler`` + classifier pipeline for the scikit-learn estimators; for
    ``"mlp_torch"`` a :class:`~wine_classifier.torch_mlp.TorchMLPClassifier` (which
    standardises inside). The MLP needs PyTorch (``pip install wine-classifier[torch]``)
    and, for ``device = "cuda"``, a CUDA device: otherwise :class:`ValueError`.
    """
    p = resolve_params(params)

    if p["estimator"] == TORCH_ESTIMATOR:
        from .torch_mlp import TorchMLPClassifier, require_torch, resolve_device

        require_torch()
        resolve_device(p["device"])  # fail before any data is loaded
        return TorchMLPClassifier(
            hidden=p["hidden"],
            epochs=p["epochs"],
            batch_size=p["batch_size"],
            lr=p["lr"],
            device=p["device"],
            seed=p["seed"],
        )

    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    if p["estimator"] == "random_forest":
        from sklearn.ensemble import RandomForestClassifier

        clf = RandomForestClassifier(
            n_estimators=p["n_estimators"],
            max_depth=p["max_depth"],
            random_state=p["seed"],
        )
    else:
        from sklearn.linear_model import LogisticRegression

        clf = LogisticRegression(C=p["C"], max_iter=1000, random_state=p["seed"])

    return Pipeline([("scaler", StandardScaler()), ("classifier", clf)])
