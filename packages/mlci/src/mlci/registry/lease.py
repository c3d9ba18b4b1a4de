"""The promotion lease: one pipeline at a time moves the aliases of a registered model.

MLflow has no compare-and-set for aliases, so promotions of one registered model are
serialised by a lease held in the registry itself. The one atomic operation every MLflow
backend has is creating a registered model (the name is unique), and the protocol is built
on it alone:

1. **Acquire.** Create ``<model>.mlci-lock`` with the tags ``mlci.lock_owner`` (unique per
   lease) and ``mlci.lock_expires`` (now + ``promotion.lease_ttl``). Whoever creates it holds
   it; the holder re-reads it, and from the moment the create succeeded every error path
   (the re-read included) removes it again. A create whose answer was lost (a timeout) is
   looked up and removed if it turns out to be ours. Tries repeat (tenacity) until
   ``promotion.lease_wait`` has passed while a live holder kept it.
2. **Renew.** While held, a background thread sets a new expiry every third of the TTL, only
   after reading that the lock still is ours and unexpired. A renewal that fails, or finds
   the lock gone, taken or expired, marks the lease lost; it is never re-taken silently.
3. **Check before writing.** Right before each alias write and each history write the holder
   reads the lock again: still its owner, more than a sixth of the TTL (at most 10 s) left,
   and no lost renewal. Otherwise it stops with :class:`LeaseLost` and writes nothing more.
4. **Release.** Stop the renewal, then delete the lock if it is still ours and unexpired. The
   release never raises: if it fails, the failure is logged with the time the lock expires,
   and the error of the promotion itself (if any) stays the error raised.
5. **Break.** A lock past its expiry is broken by one winner per expired instance; see
   :mod:`mlci.registry.contention`. Markers are deleted once the instance is gone.

What remains, since nothing here is a compare-and-set: a check and the write after it are
two requests, and the window between them is closed only by time. Each check leaves at
least the margin (a sixth of the TTL, at most 10 s) before the expiry, so a holder that
stalls longer than that between its last check and its write (or its release's delete) can
act after its lease expired and another pipeline broke it; a breaker that stalls as long
between its last check and its delete can delete the next holder's lock; a renewal that
stalls between its read and its write can set its expiry on the next holder's lock (the
owner tag, which decides, is never rewritten). Clocks of the machines involved must agree to
well within the margin. Keep ``promotion.lease_ttl`` far above any pause a healthy pipeline
has.

The renewal stays a hand-written timer thread: it is not a retry (one failed renewal loses
the lease on purpose), so a retry library has nothing to add there.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from mlci.errors import LeaseLost
from mlci.registry.contention import take
from mlci.registry.lock import (
    EXPIRES_TAG,
    LOCK_SUFFIX,
    delete,
    expiry_of,
    owner_of,
    read_lock,
    short,
    stamp,
    utc,
)


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
        take(self)
        self._renewal = threading.Thread(
            target=self._renew, name=f"mlci-lease-renewal {self.lock}", daemon=True
        )
        self._renewal.start()

    def announce(self, line: str) -> None:
        """Log ``line`` once per lease (a waiter reads the lock many times)."""
        if line not in self._announced:
            self._announced.add(line)
            self.log(line)

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
                holder = read_lock(self.client, self.lock)
                if holder is None or owner_of(holder) != self.owner:
                    taken = f"taken by {owner_of(holder)}" if holder is not None else "gone"
                    self._mark_lost(f"at its renewal the lease was {taken}")
                    return
                if expiry_of(holder) <= self.clock():
                    self._mark_lost("it expired before it could be renewed")
                    return
                if self._stop.is_set():
                    return
                new = self.clock() + self.ttl
                self.client.set_registered_model_tag(self.lock, EXPIRES_TAG, stamp(new))
                self.expires = new
            except Exception as exc:
                self._mark_lost(f"renewing it failed: {short(exc)}")
                return

    def check(self, before: str) -> None:
        """Raise LeaseLost unless the lock still is ours with time left; call right before
        a write. Errors reading it propagate (the write would not have worked either)."""
        if self._lost is None:
            holder = read_lock(self.client, self.lock)
            if holder is None:
                self._mark_lost("it no longer exists: it expired and another promotion broke it")
            elif owner_of(holder) != self.owner:
                self._mark_lost(f"it is now held by {owner_of(holder)}")
            elif (left := expiry_of(holder) - self.clock()) <= self.margin:
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
            holder = read_lock(self.client, self.lock)
            if holder is None or owner_of(holder) != self.owner:
                if self._lost is None:
                    self.log(f"promote: the lease of {self.model} was no longer ours at release")
                return
            if expiry_of(holder) - self.clock() <= self.margin:
                # a breaker may be deleting it right now; deleting it too could hit the next
                # holder's lock, so it is left to the breakers
                self.log(
                    f"promote: the lease of {self.model} expired before the end "
                    f"({utc(expiry_of(holder))} UTC); the next promotion breaks it"
                )
                return
            delete(self.client, self.lock)
        except Exception as exc:
            self.log(
                f"promote: the lease {self.lock} could not be removed ({short(exc)}); "
                f"it expires at {utc(self.expires)} UTC"
            )

    def abandon(self) -> None:
        """After a create that failed without saying why: remove the lock if it is ours."""
        self._stop_renewal()
        try:
            holder = read_lock(self.client, self.lock)
            if owner_of(holder) == self.owner:
                delete(self.client, self.lock)
        except Exception as exc:
            self.log(
                f"promote: the lease {self.lock} may have been created and could not be "
                f"checked ({short(exc)}); if it was, it expires at {utc(self.expires)} UTC"
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
        client,
        model,
        owner,
        ttl=ttl,
        wait=wait,
        log=log,
        clock=clock,
        pause_before_break=pause_before_break,
    )
    lease.acquire()
    try:
        yield lease
    finally:
        lease.release()
