"""Hyper-parameter validation and construction of the scikit-learn pipeline."""

from __future__ import annotations

import difflib
import math
import numbers
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

ESTIMATORS: tuple[str, ...] = ("logistic_regression", "random_forest")

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

MAX_N_ESTIMATORS = 10_000
MAX_SEED = 2**32 - 1


def _allowed_keys() -> str:
    return ", ".join(sorted(DEFAULT_PARAMS))


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


_CHECKS = {
    "estimator": _check_estimator,
    "n_estimators": _check_n_estimators,
    "max_depth": _check_max_depth,
    "C": _check_c,
    "seed": _check_seed,
}


def resolve_params(params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Merge ``params`` over :data:`DEFAULT_PARAMS` and validate the result.

    Returns a new dict with every known key, values normalised to plain
    Python types. Raises :class:`ValueError` naming the offending key and
    value and what is allowed.
    """
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        raise ValueError(
            f"hyper-parameters must be a mapping of name to value, "
            f"got {type(params).__name__}; allowed keys: {_allowed_keys()}"
        )

    known = sorted(DEFAULT_PARAMS)
    for key in params:
        if key not in DEFAULT_PARAMS:
            hint = _suggest(key, known) if isinstance(key, str) else ""
            raise ValueError(f"unknown hyper-parameter {key!r}; allowed: {_allowed_keys()}{hint}")

    merged = {**DEFAULT_PARAMS, **params}
    return {key: _CHECKS[key](merged[key]) for key in DEFAULT_PARAMS}


def build_model(params: Mapping[str, Any] | None = None) -> Pipeline:
    """Build an unfitted ``StandardScaler`` + classifier pipeline."""
    p = resolve_params(params)

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
