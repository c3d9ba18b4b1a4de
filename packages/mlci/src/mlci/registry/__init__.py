"""Alias moves in the MLflow model registry that two pipelines cannot get wrong.

:func:`promote_version` and :func:`rollback` move an alias under the promotion lease of
:mod:`mlci.registry.lease` (the protocol is described there), record each move in the
history of :mod:`mlci.registry.history`, and give the champion a move replaces the alias
``previous``. The alias is read back after each move, so a move that did not stay is
reported; a lease lost between the alias write and the history write leaves that move
unrecorded, and a rollback then refuses because alias and history disagree. Looking versions
up by alias or number is :mod:`mlci.registry.versions`.

Every name mlci used from the former single module is importable from here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mlci.errors import LeaseLost, StageFailed, TrackingServerError
from mlci.promotion import Decision, decide
from mlci.registry.contention import break_expired
from mlci.registry.history import (
    HISTORY_PREFIX,
    PREVIOUS,
    PROMOTION,
    ROLLBACK,
    history,
    record_move,
    replay,
)
from mlci.registry.lease import Lease, promotion_lease
from mlci.registry.lock import (
    BREAK_INFIX,
    CONTENDED,
    EXPIRES_TAG,
    LOCK_SUFFIX,
    OWNER_TAG,
    break_marker,
    new_owner,
)
from mlci.registry.lock import read_lock as _read_lock
from mlci.registry.versions import alias_version, describe, named_version, resolve_version
from mlci.settings import PromotionSettings

__all__ = [
    "BREAK_INFIX",
    "CONTENDED",
    "EXPIRES_TAG",
    "HISTORY_PREFIX",
    "LOCK_SUFFIX",
    "OWNER_TAG",
    "PREVIOUS",
    "PROMOTION",
    "ROLLBACK",
    "Lease",
    "LeaseLost",
    "Outcome",
    "_read_lock",
    "alias_version",
    "break_expired",
    "break_marker",
    "describe",
    "history",
    "named_version",
    "new_owner",
    "promote_version",
    "promotion_lease",
    "record_move",
    "replay",
    "resolve_version",
    "rollback",
]


def _move(
    client: Any,
    lease: Lease,
    model: str,
    alias: str,
    version: str,
    old: str | None,
    entry: dict[str, Any],
) -> None:
    """Move ``alias`` to ``version`` (``previous`` to ``old``) and record it; the lease is
    re-checked right before each of the writes."""
    if old is not None:
        lease.check(f"setting the alias {PREVIOUS} of {model} to v{old}")
        client.set_registered_model_alias(model, PREVIOUS, old)
    lease.check(f"moving the alias {alias} of {model} to v{version}")
    client.set_registered_model_alias(model, alias, version)
    lease.check(
        f"recording the move in the history of {model} (the alias {alias} already points to "
        f"v{version}; that move is not recorded)"
    )
    record_move(client, model, {"alias": alias, "from": old, "to": version, **entry})
    now = alias_version(client, model, alias)
    if now is None or str(now.version) != version:
        raise TrackingServerError(
            f"the alias {alias} of {model} did not stay on v{version}",
            f"read back: {'v' + str(now.version) if now else 'no alias'}",
            "something moved it outside mlci's lease; check the registry's history",
        )


@dataclass(frozen=True)
class Outcome:
    decision: Decision
    champion_before: str | None
    moved: bool
    #: The champion's logged metrics, when the decision used other (re-scored) figures.
    champion_logged: dict[str, float] | None = None
    notes: tuple[str, ...] = ()


def promote_version(
    client: Any,
    model: str,
    version: str,
    policy: PromotionSettings,
    *,
    owner: str,
    build_url: str = "",
    log: Callable[[str], None] = lambda _line: None,
    lease_wait: float = 300.0,
    lease_ttl: float = 120.0,
    candidate_metrics: dict[str, float] | None = None,
    rescore: Callable[[Any], tuple[dict[str, float] | None, list[str]]] | None = None,
) -> Outcome:
    """Decide and move under the lease: a loser of a race re-reads the new champion first.

    ``candidate_metrics`` replace the candidate's logged metrics and ``rescore(champion_mv)``
    gives the champion's figures on the same data (None: use its logged ones), so that both
    are judged on the same rows; see :mod:`mlci.evaluation`. The lease is looked up in this
    module at each call (``promotion_lease``), so a wrapper put there sees every promotion.
    """
    candidate_mv = client.get_model_version(model, version)
    candidate = dict(client.get_run(candidate_mv.run_id).data.metrics)
    if candidate_metrics is not None:
        candidate = {**candidate, **candidate_metrics}
    with promotion_lease(client, model, owner, log=log, wait=lease_wait, ttl=lease_ttl) as lease:
        champion_mv = alias_version(client, model, policy.alias)
        logged = dict(client.get_run(champion_mv.run_id).data.metrics) if champion_mv else None
        champion, notes = logged, list[str]()
        before = str(champion_mv.version) if champion_mv else None
        if champion_mv is not None and rescore is not None and before != str(version):
            figures, notes = rescore(champion_mv)
            if figures is not None:
                champion = {**(logged or {}), **figures}
        decision = decide(
            candidate, champion, policy, candidate_version=version, champion_version=before
        )

        def outcome(moved: bool) -> Outcome:
            rescored = logged if champion is not logged else None
            return Outcome(decision, before, moved, rescored, tuple(notes))

        if policy.mode == "dry-run":
            return outcome(False)
        lease.check(f"tagging {model} v{version} with the decision")
        applied = {
            "mode": policy.mode,
            "primary_metric": policy.primary_metric,
            "directions": policy.directions,
            "min": policy.min,
            "max": policy.max,
            "max_regression": policy.max_regression,
            "decision": "promoted" if decision.promote else "kept champion",
            "reason": decision.reason,
        }
        client.set_model_version_tag(
            model, version, "mlci.thresholds", json.dumps(applied, sort_keys=True)
        )
        if not decision.promote:
            return outcome(False)
        entry = {"kind": PROMOTION, "reason": decision.reason, "by": owner, "build_url": build_url}
        _move(client, lease, model, policy.alias, version, before, entry)
        return outcome(True)


def _version_label(version: str | None) -> str:
    return f"v{version}" if version is not None else "not set"


def rollback(
    client: Any,
    model: str,
    alias: str,
    *,
    owner: str,
    build_url: str = "",
    expect: str | None = None,
    log: Callable[[str], None] = lambda _line: None,
    lease_wait: float = 300.0,
    lease_ttl: float = 120.0,
    reason: str = "rollback",
) -> tuple[str | None, str]:
    """Give ``alias`` back to the champion the last unreverted promotion replaced.

    ``expect``: the version the caller believes holds ``alias`` now; when another holds it
    (someone promoted meanwhile), nothing is changed. ``reason`` goes into the history entry
    (a deploy whose smoke test failed says why). Returns (from, to).
    """
    expect = None if expect is None else str(expect).strip().removeprefix("v")
    with promotion_lease(client, model, owner, log=log, wait=lease_wait, ttl=lease_ttl) as lease:
        current_mv = alias_version(client, model, alias)
        current = str(current_mv.version) if current_mv else None
        if expect is not None and current != expect:
            raise StageFailed(
                f"the {alias} of {model} is {_version_label(current)}, not v{expect}: "
                "nothing was rolled back",
                "it moved since you looked (another promotion or rollback)",
                f"look at it (invoke model.info), then roll back with --expect {current}"
                if current
                else "look at it with invoke model.info",
            )
        recorded, stack = replay(history(client, model), alias)
        if not stack:
            raise StageFailed(
                f"{model} has no previous version of {alias} to roll back to",
                f"its history holds no promotion of {alias} that has not been rolled back",
                "promote a version instead (invoke promote), or set the alias by hand",
            )
        if recorded != current:
            raise StageFailed(
                f"the {alias} of {model} is {_version_label(current)}, but its history ends "
                f"at {_version_label(recorded)}",
                "the alias was moved outside mlci, so the history cannot say what came before",
                "set the alias by hand in the MLflow UI, or promote a version (invoke promote)",
            )
        target = stack[-1]
        entry = {"kind": ROLLBACK, "reason": reason, "by": owner, "build_url": build_url}
        _move(client, lease, model, alias, target, current, entry)
        return current, target
