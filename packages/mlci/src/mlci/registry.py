"""Alias moves in the MLflow model registry that two pipelines cannot get wrong.

MLflow has no compare-and-set for aliases, so promotions of one registered model are
serialised by a lease held in the registry itself: a registered model named
``<model>.mlci-lock`` whose tags carry the owner and an expiry. Creating a registered model
is atomic on every MLflow backend (the name is unique), so exactly one pipeline gets it;
the holder re-reads it after writing, does its read-decide-move under it, and deletes it on
every path. A lease past its expiry (a pipeline that died) is broken by the next one; two
pipelines that find the same expired lease at the same moment could both break it (each
re-checks the owner before deleting, which narrows but does not close that window), so the
expiry (120 s) is kept well above the time a promotion takes.

Every alias move is recorded as a registered-model tag ``mlci.history.NNNNNN`` (JSON), and
the champion it replaces keeps the alias ``previous``, so a rollback is one step.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mlci.errors import StageFailed, TrackingServerError
from mlci.promotion import Decision, decide
from mlci.settings import PromotionSettings

LOCK_SUFFIX = ".mlci-lock"
OWNER_TAG, EXPIRES_TAG = "mlci.lock_owner", "mlci.lock_expires"
HISTORY_PREFIX = "mlci.history."
PREVIOUS = "previous"


def new_owner() -> str:
    """Who holds a lease: host, process and a random part, readable in the registry UI."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _code(exc: Exception) -> str:
    return getattr(exc, "error_code", "") or ""


@contextlib.contextmanager
def promotion_lease(
    client: Any,
    model: str,
    owner: str,
    *,
    ttl: float = 120.0,
    wait: float = 300.0,
    log: Callable[[str], None] = lambda _line: None,
    clock: Callable[[], float] = time.time,
) -> Iterator[None]:
    from mlflow.exceptions import MlflowException

    lock = model + LOCK_SUFFIX
    deadline = clock() + wait
    announced = False
    while True:
        try:
            client.create_registered_model(
                lock,
                tags={OWNER_TAG: owner, EXPIRES_TAG: f"{clock() + ttl:.3f}"},
                description=f"mlci promotion lease for {model}; deleted when the promotion ends",
            )
        except MlflowException as exc:
            # Under contention the server may also answer RESOURCE_DOES_NOT_EXIST (a create
            # racing a delete of the same name): read who holds the lease and go on from there.
            if _code(exc) not in ("RESOURCE_ALREADY_EXISTS", "RESOURCE_DOES_NOT_EXIST"):
                raise
            holder = _read_lock(client, lock)
            if holder is None:
                time.sleep(random.random() * 0.05)
                continue  # released between our attempt and our read
            if holder.tags.get(OWNER_TAG) == owner:
                break  # our create went through after all
            expires = float(holder.tags.get(EXPIRES_TAG, "0") or 0)
            if expires < clock():
                log(f"promote: breaking an expired lease of {holder.tags.get(OWNER_TAG)}")
                _delete_lock(client, lock, holder.tags.get(OWNER_TAG))
                continue
            if clock() > deadline:
                raise TrackingServerError(
                    f"another promotion of {model} held the lease for more than {wait:.0f} s",
                    f"held by {holder.tags.get(OWNER_TAG)} until "
                    f"{datetime.fromtimestamp(expires, UTC):%H:%M:%S} UTC",
                    f"wait for it to finish, or delete the registered model {lock} if its "
                    "pipeline is dead",
                ) from None
            if not announced:
                log(f"promote: waiting for {holder.tags.get(OWNER_TAG)} to finish promoting")
                announced = True
            time.sleep(0.05 + random.random() * 0.15)
            continue
        holder = _read_lock(client, lock)  # re-read after write
        if holder is not None and holder.tags.get(OWNER_TAG) == owner:
            break
    try:
        yield
    finally:
        _delete_lock(client, lock, owner)


def _read_lock(client: Any, lock: str) -> Any | None:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_registered_model(lock)
    except MlflowException as exc:
        if _code(exc) == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise


def _delete_lock(client: Any, lock: str, owner: str | None) -> None:
    """Delete the lease only while it is still the one we mean (owner re-checked)."""
    from mlflow.exceptions import MlflowException

    holder = _read_lock(client, lock)
    if holder is None or holder.tags.get(OWNER_TAG) != owner:
        return
    with contextlib.suppress(MlflowException):
        client.delete_registered_model(lock)


# -- history ---------------------------------------------------------------------------------


def history(client: Any, model: str) -> list[dict[str, Any]]:
    tags = client.get_registered_model(model).tags
    entries = []
    for key in sorted(k for k in tags if k.startswith(HISTORY_PREFIX)):
        with contextlib.suppress(ValueError):
            entries.append(json.loads(tags[key]))
    return entries


def record_move(client: Any, model: str, entry: dict[str, Any]) -> None:
    """Append one alias move; called under the lease, so the sequence number is safe."""
    tags = client.get_registered_model(model).tags
    seq = 1 + sum(1 for k in tags if k.startswith(HISTORY_PREFIX))
    entry = {"at": datetime.now(UTC).isoformat(timespec="seconds"), **entry}
    client.set_registered_model_tag(model, f"{HISTORY_PREFIX}{seq:06d}", json.dumps(entry))


def alias_version(client: Any, model: str, alias: str) -> Any | None:
    from mlci.clients.mlflow import alias_version as read

    return read(client, model, alias)


def _move(client: Any, model: str, alias: str, version: str, old: str | None, entry: dict) -> None:
    if old is not None:
        client.set_registered_model_alias(model, PREVIOUS, old)
    client.set_registered_model_alias(model, alias, version)
    record_move(client, model, {"alias": alias, "from": old, "to": version, **entry})
    now = alias_version(client, model, alias)
    if now is None or str(now.version) != version:
        raise TrackingServerError(
            f"the alias {alias} of {model} did not stay on v{version}",
            f"read back: {'v' + str(now.version) if now else 'no alias'}",
            "something moved it outside mlci's lease; check the registry's history",
        )


# -- promotion and rollback ------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    decision: Decision
    champion_before: str | None
    moved: bool


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
) -> Outcome:
    """Decide and move under the lease: a loser of a race re-reads the new champion first."""
    candidate_mv = client.get_model_version(model, version)
    candidate = dict(client.get_run(candidate_mv.run_id).data.metrics)
    with promotion_lease(client, model, owner, log=log, wait=lease_wait):
        champion_mv = alias_version(client, model, policy.alias)
        champion = dict(client.get_run(champion_mv.run_id).data.metrics) if champion_mv else None
        before = str(champion_mv.version) if champion_mv else None
        decision = decide(
            candidate, champion, policy, candidate_version=version, champion_version=before
        )
        if policy.mode == "dry-run":
            return Outcome(decision, before, False)
        client.set_model_version_tag(
            model,
            version,
            "mlci.thresholds",
            json.dumps(
                {
                    "mode": policy.mode,
                    "primary_metric": policy.primary_metric,
                    "min": policy.min,
                    "max_regression": policy.max_regression,
                    "decision": "promoted" if decision.promote else "kept champion",
                    "reason": decision.reason,
                },
                sort_keys=True,
            ),
        )
        if not decision.promote:
            return Outcome(decision, before, False)
        _move(client, model, policy.alias, version, before,
              {"reason": decision.reason, "by": owner, "build_url": build_url})  # fmt: skip
        return Outcome(decision, before, True)


def rollback(
    client: Any, model: str, alias: str, *, owner: str, build_url: str = "",
    log: Callable[[str], None] = lambda _line: None,
) -> tuple[str | None, str]:  # fmt: skip
    """Give ``alias`` back to the version behind ``previous``; returns (from, to)."""
    with promotion_lease(client, model, owner, log=log):
        previous = alias_version(client, model, PREVIOUS)
        current = alias_version(client, model, alias)
        if previous is None:
            raise StageFailed(
                f"{model} has no {PREVIOUS} version to roll back to",
                f"the alias {PREVIOUS} is set when a promotion replaces the {alias}",
                "promote a version instead (invoke promote), or set the alias by hand",
            )
        old = str(current.version) if current else None
        target = str(previous.version)
        if old == target:
            raise StageFailed(
                f"v{target} already is the {alias} of {model}", "nothing to roll back", ""
            )
        _move(client, model, alias, target, old,
              {"reason": "rollback", "by": owner, "build_url": build_url})  # fmt: skip
        return old, target


# -- "where did the champion come from?" -----------------------------------------------------


def describe(client: Any, model: str, alias: str, version: str | None = None) -> dict[str, Any]:
    """The version behind ``alias`` (or ``version``): run, metrics, lineage, history."""
    from mlflow.exceptions import MlflowException

    try:
        registered = client.get_registered_model(model)
    except MlflowException as exc:
        if _code(exc) == "RESOURCE_DOES_NOT_EXIST":
            raise StageFailed(
                f"the registered model {model!r} does not exist on this tracking server",
                "nothing has been trained and registered under that name here",
                "check MLCI_MLFLOW_REGISTERED_MODEL and MLCI_MLFLOW_TRACKING_URI",
            ) from None
        raise
    if version is None:
        mv = alias_version(client, model, alias)
        if mv is None:
            raise StageFailed(
                f"{model} has no alias {alias!r}",
                f"aliases now: {', '.join(sorted(registered.aliases)) or 'none'}",
                "promote a version first (invoke promote), or pass --version",
            )
    else:
        mv = client.get_model_version(model, version)
    run = client.get_run(mv.run_id)
    return {
        "model": model,
        "alias": alias if version is None else None,
        "version": str(mv.version),
        "aliases": sorted(mv.aliases or []),
        "run_id": mv.run_id,
        "created": datetime.fromtimestamp(mv.creation_timestamp / 1000, UTC).isoformat(
            timespec="seconds"
        ),
        "metrics": dict(sorted(run.data.metrics.items())),
        "params": dict(sorted(run.data.params.items())),
        "lineage": {k: v for k, v in sorted(mv.tags.items()) if k.startswith("mlci.")},
        "history": history(client, model),
    }
