"""Alias moves in the MLflow model registry that two pipelines cannot get wrong.

MLflow has no compare-and-set for aliases, so promotions of one registered model are
serialised by a lease held in the registry itself. The one atomic operation every MLflow
backend has is creating a registered model (the name is unique), and the protocol is built
on it alone:

1. **Acquire.** Create ``<model>.mlci-lock`` with the tags ``mlci.lock_owner`` (unique per
   lease) and ``mlci.lock_expires`` (now + ``promotion.lease_ttl``). Whoever creates it holds
   it; the holder re-reads it, and from the moment the create succeeded every error path
   (the re-read included) removes it again. A create whose answer was lost (a timeout) is
   looked up and removed if it turns out to be ours.
2. **Renew.** While held, a background thread sets a new expiry every third of the TTL, only
   after reading that the lock still is ours and unexpired. A renewal that fails, or finds
   the lock gone, taken or expired, marks the lease lost; it is never re-taken silently.
3. **Check before writing.** Right before each alias write and each history write the holder
   reads the lock again: still its owner, more than a sixth of the TTL (at most 10 s) left,
   and no lost renewal. Otherwise it stops with :class:`LeaseLost` and writes nothing more.
4. **Release.** Stop the renewal, then delete the lock if it is still ours and unexpired. The
   release never raises: if it fails, the failure is logged with the time the lock expires,
   and the error of the promotion itself (if any) stays the error raised.
5. **Break.** A lock past its expiry belongs to a holder that died or stalled. The right to
   break *that instance* (its owner and expiry, exactly as read) is the creation of a second
   registered model ``<lock>.break.<hash of owner and expiry>.<n>``, so one breaker per
   expired instance wins. The winner re-reads the lock and deletes it only if it still is
   that exact instance (a renewal in between makes it another instance) and its own right
   has not expired. A marker whose breaker died expires after the TTL as well; the next
   breaker then takes generation ``n + 1``. Markers are deleted once the instance is gone.

What remains, since nothing here is a compare-and-set: a check and the write after it are
two requests, and the window between them is closed only by time. Each check leaves at
least the margin (a sixth of the TTL, at most 10 s) before the expiry, so a holder that
stalls longer than that between its last check and its write (or its release's delete) can
act after its lease expired and another pipeline broke it; a breaker that stalls as long
between its last check and its delete can delete the next holder's lock; a renewal that
stalls between its read and its write can set its expiry on the next holder's lock (the
owner tag, which decides, is never rewritten). Clocks of the machines involved must agree to
well within the margin. Keep ``promotion.lease_ttl`` far above any pause a healthy pipeline
has. The alias is read back after each move, so a move that did not stay is reported; a
lease lost between the alias write and the history write leaves that move unrecorded, and a
rollback then refuses because alias and history disagree.

Every alias move is recorded as a registered-model tag ``mlci.history.NNNNNN`` (JSON, with
``kind`` promotion or rollback), and the champion a move replaces gets the alias
``previous``. A rollback replays that history as a stack (a promotion pushes the champion it
replaced, a rollback pops it), so rollbacks walk back one promotion at a time.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mlci.errors import LeaseLost, StageFailed, TrackingServerError
from mlci.promotion import Decision, decide
from mlci.settings import PromotionSettings

LOCK_SUFFIX = ".mlci-lock"
BREAK_INFIX = ".break."
OWNER_TAG, EXPIRES_TAG = "mlci.lock_owner", "mlci.lock_expires"
HISTORY_PREFIX = "mlci.history."
PREVIOUS = "previous"
PROMOTION, ROLLBACK = "promotion", "rollback"
# Under contention a create may also answer RESOURCE_DOES_NOT_EXIST (a create racing a
# delete of the same name): both mean "read who holds it and go on from there".
CONTENDED = ("RESOURCE_ALREADY_EXISTS", "RESOURCE_DOES_NOT_EXIST")


def new_owner() -> str:
    """Who holds a lease: host, process and a random part, readable in the registry UI."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _code(exc: BaseException) -> str:
    return getattr(exc, "error_code", "") or ""


def _stamp(when: float) -> str:
    return f"{when:.3f}"


def _utc(when: float) -> str:
    return f"{datetime.fromtimestamp(when, UTC):%H:%M:%S}"


def _owner(holder: Any) -> str | None:
    return None if holder is None else holder.tags.get(OWNER_TAG)


def _expiry(holder: Any) -> float:
    try:
        return float(holder.tags.get(EXPIRES_TAG, "0") or 0)
    except ValueError:
        return 0.0


def _short(exc: BaseException) -> str:
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return " ".join(str(text).split())[:300]


def _read_lock(client: Any, lock: str) -> Any | None:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_registered_model(lock)
    except MlflowException as exc:
        if _code(exc) == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise


def _delete(client: Any, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.delete_registered_model(name)
    except MlflowException as exc:
        if _code(exc) != "RESOURCE_DOES_NOT_EXIST":
            raise


def break_marker(lock: str, owner: str, expires: str, generation: int) -> str:
    """The registered model whose creation is the right to break one lease instance: the
    lock held by ``owner`` with the expiry tag ``expires`` (as read), ``generation`` 1, 2, ...
    (a next generation once a marker's own breaker died)."""
    key = hashlib.sha256(f"{owner}\n{expires}".encode()).hexdigest()[:16]
    return f"{lock}{BREAK_INFIX}{key}.{generation}"


def _no_pause() -> None:
    return None


class Lease:
    """One promotion lease of one registered model; see the module docstring for the protocol.

    ``pause_before_break`` is a test hook: called by a breaker between its re-check of the
    expired lock and its delete, the window a stalled breaker would widen.
    """

    def __init__(
        self,
        client: Any,
        model: str,
        owner: str,
        *,
        ttl: float = 120.0,
        wait: float = 300.0,
        log: Callable[[str], None] = lambda _line: None,
        clock: Callable[[], float] = time.time,
        pause_before_break: Callable[[], None] = _no_pause,
    ) -> None:
        self.client, self.model, self.owner = client, model, owner
        self.lock = model + LOCK_SUFFIX
        self.ttl, self.wait = float(ttl), float(wait)
        self.margin = min(self.ttl / 6, 10.0)
        self.log, self.clock, self.pause_before_break = log, clock, pause_before_break
        self.expires = 0.0  # the expiry we last wrote
        self._lost: str | None = None
        self._guard = threading.Lock()
        self._stop = threading.Event()
        self._renewal: threading.Thread | None = None
        self._announced: set[str] = set()

    # -- acquire -------------------------------------------------------------------------

    def acquire(self) -> None:
        """Hold the lease, or raise; whatever this call created is removed when it raises."""
        deadline = self.clock() + self.wait
        while True:
            expires = self.clock() + self.ttl
            try:
                self.client.create_registered_model(
                    self.lock,
                    tags={OWNER_TAG: self.owner, EXPIRES_TAG: _stamp(expires)},
                    description=f"mlci promotion lease for {self.model}; deleted when the "
                    "promotion ends",
                )
            except Exception as exc:
                if _code(exc) not in CONTENDED:
                    self.expires = expires
                    self._abandon()  # the create may have gone through before it failed
                    raise
            else:
                self.expires = expires
                try:
                    holder = _read_lock(self.client, self.lock)  # re-read after write
                except BaseException:
                    self.release()
                    raise
                if _owner(holder) == self.owner:
                    break
                continue
            try:
                holder = _read_lock(self.client, self.lock)
            except Exception:
                self.expires = expires
                self._abandon()  # a create answered "does not exist" may still have gone through
                raise
            if holder is None:
                time.sleep(random.random() * 0.05)
                continue  # released between our attempt and our read
            if _owner(holder) == self.owner:
                self.expires = _expiry(holder)
                break  # our create went through after all (a retried request)
            if _expiry(holder) >= self.clock():
                self._once(f"promote: waiting for {_owner(holder)} to finish promoting")
            elif self._break(holder):
                continue
            if self.clock() > deadline:
                raise TrackingServerError(
                    f"another promotion of {self.model} held the lease for more than "
                    f"{self.wait:.0f} s",
                    f"held by {_owner(holder)} until {_utc(_expiry(holder))} UTC",
                    f"wait for it to finish, or delete the registered model {self.lock} if its "
                    "pipeline is dead",
                ) from None
            time.sleep(0.05 + random.random() * 0.15)
        self._renewal = threading.Thread(
            target=self._renew, name=f"mlci-lease-renewal {self.lock}", daemon=True
        )
        self._renewal.start()

    def _once(self, line: str) -> None:
        if line not in self._announced:
            self._announced.add(line)
            self.log(line)

    def _break(self, holder: Any) -> bool:
        """Break this expired instance of the lock if we win the right to; True if we tried.

        False: another breaker holds the right (or just finished); wait and read again.
        """
        from mlflow.exceptions import MlflowException

        seen = (holder.tags.get(OWNER_TAG, ""), holder.tags.get(EXPIRES_TAG, ""))
        generation = 0
        while True:
            generation += 1
            right_until = self.clock() + self.ttl
            try:
                self.client.create_registered_model(
                    break_marker(self.lock, *seen, generation),
                    tags={OWNER_TAG: self.owner, EXPIRES_TAG: _stamp(right_until)},
                    description=f"mlci: the right to break the expired promotion lease of "
                    f"{seen[0]}; deleted once broken",
                )
                break
            except MlflowException as exc:
                if _code(exc) not in CONTENDED:
                    raise
            other = _read_lock(self.client, break_marker(self.lock, *seen, generation))
            if other is None:
                return False  # its breaker is done: read the lock again
            if _expiry(other) >= self.clock():
                self._once(
                    f"promote: waiting: {_owner(other)} is breaking the expired lease of {seen[0]}"
                )
                return False
            # a stale marker: its breaker died or stalled past its own expiry; next generation
        gone = False
        try:
            current = _read_lock(self.client, self.lock)
            if current is None or (_owner(current), current.tags.get(EXPIRES_TAG, "")) != seen:
                gone = True  # released, renewed or broken meanwhile: not that instance any more
                return True
            self.pause_before_break()
            if self.clock() >= right_until - self.margin:
                self.log(
                    f"promote: breaking the expired lease of {seen[0]} took too long; retrying"
                )
                return True
            self.log(
                f"promote: breaking an expired lease of {seen[0]} "
                f"(expired at {_utc(_expiry(current))} UTC)"
            )
            _delete(self.client, self.lock)
            gone = True
            return True
        finally:
            if gone:  # no marker can give the right to break that instance any more
                for n in range(generation, 0, -1):
                    with contextlib.suppress(Exception):
                        _delete(self.client, break_marker(self.lock, *seen, n))

    # -- hold ----------------------------------------------------------------------------

    def _mark_lost(self, why: str) -> None:
        with self._guard:
            if self._lost is None:
                self._lost = why

    @property
    def lost(self) -> str | None:
        """Why the lease was lost, or None while it is held."""
        return self._lost

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                holder = _read_lock(self.client, self.lock)
                if holder is None or _owner(holder) != self.owner:
                    taken = f"taken by {_owner(holder)}" if holder is not None else "gone"
                    self._mark_lost(f"at its renewal the lease was {taken}")
                    return
                if _expiry(holder) <= self.clock():
                    self._mark_lost("it expired before it could be renewed")
                    return
                if self._stop.is_set():
                    return
                new = self.clock() + self.ttl
                self.client.set_registered_model_tag(self.lock, EXPIRES_TAG, _stamp(new))
                self.expires = new
            except Exception as exc:
                self._mark_lost(f"renewing it failed: {_short(exc)}")
                return

    def check(self, before: str) -> None:
        """Raise LeaseLost unless the lock still is ours with time left; call right before
        a write. Errors reading it propagate (the write would not have worked either)."""
        if self._lost is None:
            holder = _read_lock(self.client, self.lock)
            if holder is None:
                self._mark_lost("it no longer exists: it expired and another promotion broke it")
            elif _owner(holder) != self.owner:
                self._mark_lost(f"it is now held by {_owner(holder)}")
            elif (left := _expiry(holder) - self.clock()) <= self.margin:
                self._mark_lost(f"only {left:.1f} s of it were left: its renewal is behind")
        if self._lost is not None:
            raise LeaseLost(
                f"the promotion lease of {self.model} was lost before {before}",
                f"{self._lost}; nothing was written after that",
                "run the stage again; if promotions take longer than promotion.lease_ttl "
                f"({self.ttl:.0f} s) even with renewal, check the tracking server, or raise it",
            )

    # -- release -------------------------------------------------------------------------

    def _stop_renewal(self) -> None:
        self._stop.set()
        if self._renewal is not None:
            self._renewal.join(timeout=max(1.0, self.ttl / 3))

    def release(self) -> None:
        """Delete the lock if it still is ours and unexpired. Never raises: a failure is
        logged with the lock's expiry, so that the promotion's own error stays the error."""
        self._stop_renewal()
        try:
            holder = _read_lock(self.client, self.lock)
            if holder is None or _owner(holder) != self.owner:
                if self._lost is None:
                    self.log(f"promote: the lease of {self.model} was no longer ours at release")
                return
            if _expiry(holder) - self.clock() <= self.margin:
                # a breaker may be deleting it right now; deleting it too could hit the next
                # holder's lock, so it is left to the breakers
                self.log(
                    f"promote: the lease of {self.model} expired before the end "
                    f"({_utc(_expiry(holder))} UTC); the next promotion breaks it"
                )
                return
            _delete(self.client, self.lock)
        except Exception as exc:
            self.log(
                f"promote: the lease {self.lock} could not be removed ({_short(exc)}); "
                f"it expires at {_utc(self.expires)} UTC"
            )

    def _abandon(self) -> None:
        """After a create that failed without saying why: remove the lock if it is ours."""
        self._stop_renewal()
        try:
            holder = _read_lock(self.client, self.lock)
            if _owner(holder) == self.owner:
                _delete(self.client, self.lock)
        except Exception as exc:
            self.log(
                f"promote: the lease {self.lock} may have been created and could not be "
                f"checked ({_short(exc)}); if it was, it expires at {_utc(self.expires)} UTC"
            )


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
    pause_before_break: Callable[[], None] = _no_pause,
) -> Iterator[Lease]:
    """Hold the promotion lease of ``model`` for the body; call ``lease.check`` before writes.

    An error of the body is the error raised, even when the release fails too (logged).
    """
    lease = Lease(
        client, model, owner, ttl=ttl, wait=wait, log=log, clock=clock,
        pause_before_break=pause_before_break,
    )  # fmt: skip
    lease.acquire()
    try:
        yield lease
    finally:
        lease.release()


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


def _is_rollback(entry: dict[str, Any]) -> bool:
    # entries written before "kind" existed mark a rollback by its reason
    return entry.get("kind", ROLLBACK if entry.get("reason") == "rollback" else "") == ROLLBACK


def replay(entries: list[dict[str, Any]], alias: str) -> tuple[str | None, list[str]]:
    """The holder of ``alias`` per its history, and the stack of champions to go back to.

    A promotion pushes the version it replaced; a rollback pops it. A rollback that does
    not go to the top of the stack (the one-step toggle of older mlci versions) counts as
    a plain move.
    """
    current: str | None = None
    stack: list[str] = []
    for entry in entries:
        if entry.get("alias") != alias:
            continue
        before = None if entry.get("from") is None else str(entry["from"])
        after = str(entry.get("to"))
        if _is_rollback(entry) and stack and stack[-1] == after:
            stack.pop()
        elif before is not None and before != after:
            stack.append(before)
        current = after
    return current, stack


def alias_version(client: Any, model: str, alias: str) -> Any | None:
    from mlci.clients.mlflow import alias_version as read

    return read(client, model, alias)


def _move(
    client: Any, lease: Lease, model: str, alias: str, version: str, old: str | None, entry: dict
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


# -- promotion and rollback ------------------------------------------------------------------


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
    are judged on the same rows; see :mod:`mlci.evaluation`.
    """
    candidate_mv = client.get_model_version(model, version)
    candidate = dict(client.get_run(candidate_mv.run_id).data.metrics)
    if candidate_metrics is not None:
        candidate = {**candidate, **candidate_metrics}
    with promotion_lease(client, model, owner, log=log, wait=lease_wait, ttl=lease_ttl) as lease:
        champion_mv = alias_version(client, model, policy.alias)
        logged = dict(client.get_run(champion_mv.run_id).data.metrics) if champion_mv else None
        champion, notes = logged, []
        before = str(champion_mv.version) if champion_mv else None
        if champion_mv is not None and rescore is not None and before != str(version):
            figures, notes = rescore(champion_mv)
            if figures is not None:
                champion = {**(logged or {}), **figures}
        decision = decide(
            candidate, champion, policy, candidate_version=version, champion_version=before
        )
        extra = {"champion_logged": logged if champion is not logged else None,
                 "notes": tuple(notes)}  # fmt: skip
        if policy.mode == "dry-run":
            return Outcome(decision, before, False, **extra)
        lease.check(f"tagging {model} v{version} with the decision")
        client.set_model_version_tag(
            model,
            version,
            "mlci.thresholds",
            json.dumps(
                {
                    "mode": policy.mode,
                    "primary_metric": policy.primary_metric,
                    "directions": policy.directions,
                    "min": policy.min,
                    "max": policy.max,
                    "max_regression": policy.max_regression,
                    "decision": "promoted" if decision.promote else "kept champion",
                    "reason": decision.reason,
                },
                sort_keys=True,
            ),
        )
        if not decision.promote:
            return Outcome(decision, before, False, **extra)
        _move(client, lease, model, policy.alias, version, before,
              {"kind": PROMOTION, "reason": decision.reason, "by": owner,
               "build_url": build_url})  # fmt: skip
        return Outcome(decision, before, True, **extra)


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
        _move(client, lease, model, alias, target, current,
              {"kind": ROLLBACK, "reason": reason, "by": owner,
               "build_url": build_url})  # fmt: skip
        return current, target


# -- "where did the champion come from?" -----------------------------------------------------


def _named_version(client: Any, model: str, version: str, purpose: str = "describe") -> Any:
    """The version the user named (``7`` or ``v7``), or a clear error naming the ones there are."""
    from mlflow.exceptions import MlflowException

    number = str(version).strip().removeprefix("v")
    if not number.isdigit():
        raise StageFailed(
            f"--version {version!r} is not a version number",
            "registered model versions are whole numbers (1, 2, 3 ...)",
            "pass e.g. --version 7 (or v7)",
        )
    try:
        return client.get_model_version(model, number)
    except MlflowException as exc:
        if _code(exc) != "RESOURCE_DOES_NOT_EXIST":
            raise
    known = sorted(
        (int(mv.version) for mv in client.search_model_versions(f"name='{model}'")), reverse=True
    )
    shown = ", ".join(f"v{n}" for n in known[:10]) + (" ..." if len(known) > 10 else "")
    raise StageFailed(
        f"{model} has no version {number}",
        f"its versions: {shown or 'none'}",
        f"pass one of those to --version, or leave --version out to {purpose} the champion",
    )


def resolve_version(
    client: Any, model: str, alias: str, version: str | None = None, purpose: str = "describe"
) -> Any:
    """The model version behind ``alias``, or ``version`` when given (``7`` or ``v7``); a
    clear error when the model, the alias or the version does not exist. ``purpose`` (what
    the caller does with it) completes the advice of that error."""
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
    if version is not None:
        return _named_version(client, model, version, purpose)
    mv = alias_version(client, model, alias)
    if mv is None:
        raise StageFailed(
            f"{model} has no alias {alias!r}",
            f"aliases now: {', '.join(sorted(registered.aliases)) or 'none'}",
            "promote a version first (invoke promote), or pass --version",
        )
    return mv


def describe(client: Any, model: str, alias: str, version: str | None = None) -> dict[str, Any]:
    """The version behind ``alias`` (or ``version``): run, metrics, lineage, history."""
    mv = resolve_version(client, model, alias, version)
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
