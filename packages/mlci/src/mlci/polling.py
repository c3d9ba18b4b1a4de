"""Waiting for something to happen: one poll loop, built on tenacity, for every wait in mlci
(a server's readiness, a queued Jenkins build, a SonarQube analysis, a draining proxy)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:  # tenacity is imported when something waits: the CLI starts faster
    import tenacity

T = TypeVar("T")


def poll(
    check: Callable[[], T],
    done: Callable[[T], bool],
    timeout: float,
    every: float,
    *,
    growth: float = 1.0,
    most: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Call ``check`` until ``done(result)`` or ``timeout`` seconds have passed; its last result.

    The first pause is ``every`` seconds, each next one ``growth`` times longer, at most
    ``most``; no pause runs past the deadline. An exception from ``check`` ends the wait at
    once. ``sleep`` and ``clock`` are for tests that fake time.
    """
    import tenacity

    deadline = clock() + timeout
    backoff = tenacity.wait_exponential(
        multiplier=every, exp_base=growth, max=most if most is not None else float("inf")
    )

    def pause(state: tenacity.RetryCallState) -> float:
        return max(0.0, min(backoff(state), deadline - clock()))

    def last_result(state: tenacity.RetryCallState) -> T:
        assert state.outcome is not None  # tenacity gives up only after an attempt
        result: T = state.outcome.result()
        return result

    retrying = tenacity.Retrying(
        stop=lambda _state: clock() >= deadline,
        wait=pause,
        sleep=sleep,
        retry=tenacity.retry_if_result(lambda result: not done(result)),
        retry_error_callback=last_result,
    )
    return retrying(check)
