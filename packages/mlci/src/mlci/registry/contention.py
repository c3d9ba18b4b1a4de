"""Taking the lock of a promotion lease while other pipelines want it too.

:func:`take` tries to create the lock until it holds it; the tries are paced by tenacity,
and give up once ``promotion.lease_wait`` has passed while a live holder kept the lock.

A lock past its expiry belongs to a holder that died or stalled: :func:`break_expired`
breaks it. The right to break *that instance* (its owner and expiry, exactly as read) is the
creation of a second registered model, the break marker, so of several pipelines that find
the same expired lock one wins. The winner re-reads the lock and deletes it only if it still
is that exact instance (a renewal in between makes it another instance) and its own right
has not expired. The marker generations (1, 2, ...) are a plain count, not a retry: a marker
whose breaker died expires after the TTL, and the next breaker takes the next generation.
"""

from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

from mlci.errors import TrackingServerError
from mlci.registry.lock import (
    CONTENDED,
    EXPIRES_TAG,
    OWNER_TAG,
    break_marker,
    delete,
    error_code,
    expiry_of,
    owner_of,
    read_lock,
    stamp,
    utc,
)

if TYPE_CHECKING:
    from tenacity import RetryCallState

    from mlci.registry.lease import Lease


@dataclass(frozen=True)
class _Try:
    """What one try at the lock found: held, or how long to pause before the next try."""

    held: bool = False
    pause: tuple[float, float] = (0.0, 0.0)  # a random pause between these, in seconds
    holder: Any = None  # a live holder we wait for: only this counts toward lease_wait


_HELD = _Try(held=True)
_AGAIN = _Try()  # our create lost to another, or we broke an expired lock: try at once
_RELEASED = _Try(pause=(0.0, 0.05))  # released between our create and our read


def _found(state: RetryCallState) -> _Try:
    assert state.outcome is not None  # tenacity stops and waits only after a try
    found: _Try = state.outcome.result()
    return found


def _pause(state: RetryCallState) -> float:
    low, high = _found(state).pause
    return low + random.random() * (high - low)


def _waiting_on_holder(state: RetryCallState) -> bool:
    return _found(state).holder is not None


def take(lease: Lease) -> None:
    """Create ``lease``'s lock, or raise; whatever this call created is removed when it
    raises. A live holder is waited for at most ``lease.wait`` seconds."""
    from tenacity import Retrying, retry_if_result, stop_after_delay

    def waited_too_long(state: RetryCallState) -> NoReturn:
        holder = _found(state).holder
        raise TrackingServerError(
            f"another promotion of {lease.model} held the lease for more than {lease.wait:.0f} s",
            f"held by {owner_of(holder)} until {utc(expiry_of(holder))} UTC",
            f"wait for it to finish, or delete the registered model {lease.lock} if its "
            "pipeline is dead",
        ) from None

    deadline = stop_after_delay(lease.wait)
    tries = Retrying(
        retry=retry_if_result(lambda found: not found.held),
        # only a try that found a live holder may end the wait: after a release or a break
        # the next try comes at once, whatever the time
        stop=lambda state: _waiting_on_holder(state) and deadline(state),
        wait=_pause,
        retry_error_callback=waited_too_long,
        reraise=True,
    )
    tries(_try_once, lease)


def _try_once(lease: Lease) -> _Try:
    client = lease.client
    expires = lease.clock() + lease.ttl
    try:
        client.create_registered_model(
            lease.lock,
            tags={OWNER_TAG: lease.owner, EXPIRES_TAG: stamp(expires)},
            description=f"mlci promotion lease for {lease.model}; deleted when the promotion ends",
        )
    except Exception as exc:
        if error_code(exc) not in CONTENDED:
            lease.expires = expires
            lease.abandon()  # the create may have gone through before it failed
            raise
    else:
        lease.expires = expires
        try:
            holder = read_lock(client, lease.lock)  # re-read after write
        except BaseException:
            lease.release()
            raise
        return _HELD if owner_of(holder) == lease.owner else _AGAIN
    try:
        holder = read_lock(client, lease.lock)
    except Exception:
        lease.expires = expires
        lease.abandon()  # a create answered "does not exist" may still have gone through
        raise
    if holder is None:
        return _RELEASED
    if owner_of(holder) == lease.owner:
        lease.expires = expiry_of(holder)
        return _HELD  # our create went through after all (a retried request)
    if expiry_of(holder) >= lease.clock():
        lease.announce(f"promote: waiting for {owner_of(holder)} to finish promoting")
    elif break_expired(lease, holder):
        return _AGAIN
    return _Try(pause=(0.05, 0.2), holder=holder)


def break_expired(lease: Lease, holder: Any) -> bool:
    """Break this expired instance of ``lease``'s lock if we win the right to; True if we
    tried (read the lock again at once). False: another breaker holds the right (or just
    finished); wait and read again."""
    from mlflow.exceptions import MlflowException

    seen = (holder.tags.get(OWNER_TAG, ""), holder.tags.get(EXPIRES_TAG, ""))
    generation = 0
    while True:
        generation += 1
        right_until = lease.clock() + lease.ttl
        try:
            lease.client.create_registered_model(
                break_marker(lease.lock, *seen, generation),
                tags={OWNER_TAG: lease.owner, EXPIRES_TAG: stamp(right_until)},
                description=f"mlci: the right to break the expired promotion lease of "
                f"{seen[0]}; deleted once broken",
            )
            break
        except MlflowException as exc:
            if error_code(exc) not in CONTENDED:
                raise
        other = read_lock(lease.client, break_marker(lease.lock, *seen, generation))
        if other is None:
            return False  # its breaker is done: read the lock again
        if expiry_of(other) >= lease.clock():
            lease.announce(
                f"promote: waiting: {owner_of(other)} is breaking the expired lease of {seen[0]}"
            )
            return False
        # a stale marker: its breaker died or stalled past its own expiry; next generation
    gone = False
    try:
        current = read_lock(lease.client, lease.lock)
        if current is None or (owner_of(current), current.tags.get(EXPIRES_TAG, "")) != seen:
            gone = True  # released, renewed or broken meanwhile: not that instance any more
            return True
        lease.pause_before_break()
        if lease.clock() >= right_until - lease.margin:
            lease.log(f"promote: breaking the expired lease of {seen[0]} took too long; retrying")
            return True
        lease.log(
            f"promote: breaking an expired lease of {seen[0]} "
            f"(expired at {utc(expiry_of(current))} UTC)"
        )
        delete(lease.client, lease.lock)
        gone = True
        return True
    finally:
        if gone:  # no marker can give the right to break that instance any more
            for n in range(generation, 0, -1):
                with contextlib.suppress(Exception):
                    delete(lease.client, break_marker(lease.lock, *seen, n))
