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


def _better(candidate: float, champion: float, greater_is_better: bool) -> bool:
    return candidate > champion if greater_is_better else candidate < champion


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

    for metric, minimum in sorted(policy.min.items()):
        value = candidate.get(metric)
        ok = value is not None and not math.isnan(value) and value >= minimum
        rows.append(Row(metric, value, champ.get(metric), f">= {minimum:g}", PASS if ok else FAIL))
        if not ok:
            failures.append(
                f"{metric} was not logged"
                if value is None
                else f"{metric} {value:.4f} < {minimum:g}"
            )

    if champion is not None:
        sign = 1.0 if policy.greater_is_better else -1.0
        for metric, allowed in sorted(policy.max_regression.items()):
            value, held = candidate.get(metric), champ.get(metric)
            if held is None or math.isnan(held):
                rows.append(Row(metric, value, held, f"drop <= {allowed:g}", "-"))
                continue
            drop = None if value is None or math.isnan(value) else sign * (held - value)
            ok = drop is not None and drop <= allowed + 1e-12
            rows.append(Row(metric, value, held, f"drop <= {allowed:g}", PASS if ok else FAIL))
            if not ok:
                failures.append(
                    f"{metric} was not logged"
                    if drop is None
                    else f"{metric} drops {drop:.4f} against the champion (allowed {allowed:g})"
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
    direction = ">" if policy.greater_is_better else "<"
    if champ_primary is None or math.isnan(champ_primary):
        beats = True
        rows.append(Row(primary, cand_primary, None, "champion has no value", PASS))
    else:
        beats = _better(cand_primary, champ_primary, policy.greater_is_better)
        rows.append(
            Row(
                primary,
                cand_primary,
                champ_primary,
                f"{direction} champion",
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
