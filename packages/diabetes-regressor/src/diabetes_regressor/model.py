"""Hyper-parameters and the estimators they build."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

ESTIMATORS = ("ridge", "gradient_boosting", "random_forest")

DEFAULT_PARAMS: dict[str, Any] = {
    "estimator": "ridge",
    "alpha": 1.0,
    "n_estimators": 200,
    "max_depth": 3,
    "learning_rate": 0.05,
    "train_fraction": 1.0,
    "seed": 42,
}


def resolve_params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    """``params`` over the defaults, checked: a ValueError names what is wrong."""
    validate_params(params or {})
    return {**DEFAULT_PARAMS, **(params or {})}


def validate_params(params: Mapping[str, Any]) -> None:
    unknown = sorted(set(params) - set(DEFAULT_PARAMS))
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(DEFAULT_PARAMS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown hyper-parameter {unknown[0]!r}{hint}")
    estimator = params.get("estimator", DEFAULT_PARAMS["estimator"])
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; choose one of {', '.join(ESTIMATORS)}")
    fraction = params.get("train_fraction", 1.0)
    number = isinstance(fraction, int | float) and not isinstance(fraction, bool)
    if not number or not 0.1 <= fraction <= 1:
        raise ValueError(f"train_fraction must be a number from 0.1 to 1, not {fraction!r}")
    for name in ("n_estimators", "seed", "max_depth"):
        value = params.get(name, DEFAULT_PARAMS[name])
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a whole number >= 0, not {value!r}")
    for name in ("alpha", "learning_rate"):
        value = params.get(name, DEFAULT_PARAMS[name])
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ValueError(f"{name} must be a positive number, not {value!r}")


def build_model(params: Mapping[str, Any]) -> Any:
    """An unfitted scikit-learn pipeline for the resolved ``params``."""
    from sklearn.ensemble import GradientBoostingRegressor, RandomForestRegressor
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    estimator = params["estimator"]
    if estimator == "ridge":
        return make_pipeline(StandardScaler(), Ridge(alpha=float(params["alpha"])))
    if estimator == "gradient_boosting":
        return GradientBoostingRegressor(
            n_estimators=params["n_estimators"],
            max_depth=params["max_depth"] or None,
            learning_rate=float(params["learning_rate"]),
            random_state=params["seed"],
        )
    return RandomForestRegressor(
        n_estimators=params["n_estimators"],
        max_depth=params["max_depth"] or None,
        random_state=params["seed"],
        n_jobs=1,
    )
