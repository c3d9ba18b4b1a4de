"""SIGTERM and SIGHUP end a task the way Ctrl-C does.

``timeout``, a closed terminal and Jenkins aborting a build send SIGTERM or SIGHUP, whose
default action kills the process at once: no ``finally`` runs, so the local servers (in their
own process groups, on purpose) and a training container would be left running. While a task
runs, :func:`stop_on_signals` turns either signal into :class:`Stopped`, a
``KeyboardInterrupt``: the same exception Ctrl-C raises, so the same cleanup path runs
(context managers unwind, :func:`mlci.servers.stop_process_group`, the container's removal).
:func:`interrupted` turns it into Invoke's ``Exit``: one line, no traceback, exit code
128 + the signal's number (143 for SIGTERM, 129 for SIGHUP; 130 for Ctrl-C as before).

Tasks outside :mod:`mlci.tasks.stages` get the same with one decorator line, under ``@task``::

    @task
    @stops_cleanly
    def rollback(c): ...
"""

from __future__ import annotations

import functools
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from invoke import Exit

SIGNALS = (signal.SIGTERM, signal.SIGHUP)
CLEANED_UP = "local servers were stopped"

F = TypeVar("F", bound=Callable[..., Any])


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived: unwind exactly as for Ctrl-C."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """While inside: SIGTERM and SIGHUP raise :class:`Stopped` in the main thread.

    Only the first signal raises; later ones are ignored until the block is left, so that a
    second SIGTERM cannot break off the cleanup the first one started (which is bounded: a
    local server gets 10 s to stop before SIGKILL). A signal that was ignored on entry (SIGHUP
    under ``nohup``) stays ignored. The previous handlers come back on the way out.
    Outside the main thread (where Python cannot set handlers) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    raised = False

    def handler(signum: int, _frame: Any) -> None:
        nonlocal raised
        if raised:
            return
        raised = True
        raise Stopped(signum)

    previous: dict[int, Any] = {}
    for sig in SIGNALS:
        if signal.getsignal(sig) == signal.SIG_IGN:
            continue
        previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, signal.SIG_DFL if old is None else old)


def interrupted(exc: KeyboardInterrupt, cleaned_up: str = CLEANED_UP) -> Exit:
    """The one-line ``Exit`` for Ctrl-C (130) or a :class:`Stopped` signal (128 + signum)."""
    if isinstance(exc, Stopped):
        return Exit(f"interrupted by {exc.name}; {cleaned_up}", code=exc.exit_code)
    return Exit(f"interrupted; {cleaned_up}", code=130)


def stops_cleanly(body: F) -> F:
    """Decorator for a task body: signals as in :func:`stop_on_signals`, and Ctrl-C or a
    signal ends the task with :func:`interrupted`'s message and exit code."""

    @functools.wraps(body)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with stop_on_signals():
            try:
                return body(*args, **kwargs)
            except KeyboardInterrupt as exc:
                raise interrupted(exc) from None

    return wrapper  # type: ignore[return-value]
