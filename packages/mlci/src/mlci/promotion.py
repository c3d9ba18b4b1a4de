"""The promotion decision: thresholds as data, applied to a candidate and the champion.

A pure function with no MLflow in it, so every rule is unit-tested without a server.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from mlci.settings import PromotionSettings

PASS, FAIL = "pass", "FAIL"


@dataclass(frozen=True)
class Row:
    metric: str
    candidate: float | None
    champion: float | None
    threshold: str
    verdict: str


@dataclass(frozen=True)
class Decision:
    promote: bool
    meets_thresholds: bool
    reason: str
    rows: tuple[Row, ...]


HIGHER, LOWER = "higher", "lower"


def direction(policy: PromotionSettings, metric: str) -> str:
    """Whether ``metric`` is better higher or lower: ``directions`` first, then (for the
    primary metric only) ``greater_is_better``, else higher."""
    if metric in policy.directions:
        return policy.directions[metric]
    if metric == policy.primary_metric and not policy.greater_is_better:
        return LOWER
    return HIGHER


def check_policy(policy: PromotionSettings) -> None:
    """Thresholds that contradict the metrics' directions are settings to fix."""
    from mlci.errors import ConfigError

    wrong = [(m, "min", "max") for m in policy.min if direction(policy, m) == LOWER]
    wrong += [(m, "max", "min") for m in policy.max if direction(policy, m) == HIGHER]
    if wrong:
        metric, used, other = wrong[0]
        kind = "lower" if used == "min" else "higher"
        raise ConfigError(
            f"promotion.{used} sets a bound on {metric}, a {kind}-is-better metric",
            f"promotion.{used} is for metrics that are better "
            f"{'higher' if used == 'min' else 'lower'}; a {kind}-is-better metric needs "
            f"promotion.{other}",
            f"move {metric} to promotion.{other}, or fix promotion.directions",
        )


def _better(candidate: float, champion: float, greater_is_better: bool) -> bool:
    return candidate > champion if greater_is_better else candidate < champion


def _logged(value: float | None) -> float | None:
    """``value``, or None when the metric was not logged (missing, or NaN)."""
    return None if value is None or math.isnan(value) else value


def decide(
    candidate: Mapping[str, float],
    champion: Mapping[str, float] | None,
    policy: PromotionSettings,
    *,
    candidate_version: str = "",
    champion_version: str | None = None,
) -> Decision:
    """Should ``candidate`` take the alias? Every reason is in ``rows`` and ``reason``."""
    rows: list[Row] = []
    failures: list[str] = []
    champ = champion or {}
    primary = policy.primary_metric

    bounds = [(m, b, ">=") for m, b in policy.min.items()]
    bounds += [(m, b, "<=") for m, b in policy.max.items()]
    for metric, bound, op in sorted(bounds):
        value = candidate.get(metric)
        seen = _logged(value)
        ok = seen is not None and (seen >= bound if op == ">=" else seen <= bound)
        rows.append(Row(metric, value, champ.get(metric), f"{op} {bound:g}", PASS if ok else FAIL))
        if not ok:
            failures.append(
                f"{metric} was not logged"
                if value is None
                else f"{metric} {value:.4f} {'<' if op == '>=' else '>'} {bound:g}"
            )

    if champion is not None:
        for metric, allowed in sorted(policy.max_regression.items()):
            value, held = candidate.get(metric), champ.get(metric)
            word = "drop" if direction(policy, metric) == HIGHER else "rise"
            if held is None or math.isnan(held):
                rows.append(Row(metric, value, held, f"{word} <= {allowed:g}", "-"))
                continue
            sign = 1.0 if direction(policy, metric) == HIGHER else -1.0
            seen = _logged(value)
            worse = None if seen is None else sign * (held - seen)
            ok = worse is not None and worse <= allowed + 1e-12
            rows.append(Row(metric, value, held, f"{word} <= {allowed:g}", PASS if ok else FAIL))
            if not ok:
                failures.append(
                    f"{metric} was not logged"
                    if worse is None
                    else f"{metric} {word}s {worse:.4f} against the champion (allowed {allowed:g})"
                )

    cand_primary = candidate.get(primary)
    if cand_primary is None or math.isnan(cand_primary):
        failures.append(f"the primary metric {primary} was not logged")
        rows.append(Row(primary, None, champ.get(primary), "logged", FAIL))
        return Decision(False, False, "; ".join(failures), tuple(rows))

    meets = not failures
    if champion is None:
        rows.append(Row(primary, cand_primary, None, "no champion yet", PASS))
        if meets:
            return Decision(True, True, f"no {policy.alias} yet and thresholds met", tuple(rows))
        return Decision(False, False, "; ".join(failures), tuple(rows))

    if champion_version is not None and champion_version == candidate_version:
        rows.append(Row(primary, cand_primary, champ.get(primary), "same version", "-"))
        return Decision(
            False, meets, f"v{candidate_version} already is {policy.alias}", tuple(rows)
        )

    champ_primary = champ.get(primary)
    higher = direction(policy, primary) == HIGHER
    symbol = ">" if higher else "<"
    if champ_primary is None or math.isnan(champ_primary):
        beats = True
        rows.append(Row(primary, cand_primary, None, "champion has no value", PASS))
    else:
        beats = _better(cand_primary, champ_primary, higher)
        rows.append(
            Row(
                primary,
                cand_primary,
                champ_primary,
                f"{symbol} champion",
                PASS if beats else FAIL,
            )
        )
    if not meets:
        return Decision(False, False, "; ".join(failures), tuple(rows))
    if not beats:
        return Decision(
            False,
            True,
            f"{primary} {cand_primary:.4f} does not beat the {policy.alias} "
            f"(v{champion_version}) {champ_primary:.4f}",
            tuple(rows),
        )
    return Decision(
        True, True, f"{primary} beats the {policy.alias} (v{champion_version})", tuple(rows)
    )
