"""How every mlci task ends: one message and one exit code, never a half-stopped platform.

:func:`ends_cleanly` is the one place that turns what a task raises into what the user sees:

* an :class:`~mlci.errors.MlciError` becomes Invoke's ``Exit`` with its rendered message
  (``ClassName: what`` plus ``why:`` and ``fix:``) and the class's exit code;
* Ctrl-C, SIGTERM and SIGHUP end the task with one line and exit code 130, 143 or 129;
* anything else is a bug in mlci and keeps its traceback.

``timeout``, a closed terminal and Jenkins aborting a build send SIGTERM or SIGHUP, whose
default action kills the process at once: no ``finally`` runs, so the local servers (in their
own process groups, on purpose) and a training container would be left running. While a task
runs, :func:`stop_on_signals` turns either signal into :class:`Stopped`, a
``KeyboardInterrupt``: the same exception Ctrl-C raises, so the same cleanup path runs
(context managers unwind, :func:`mlci.servers.stop_process_group`, the container's removal).

``mlci --verbose TASK`` or ``MLCI_VERBOSE=1`` (also under plain ``invoke``) prints the full
traceback of an MlciError or an interruption to stderr before that message. Every task takes
the handler with one decorator line under ``@task``::

    @task
    @stops_cleanly
    def rollback(c: Context) -> None: ...
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import ParamSpec, TypeVar

from invoke.exceptions import Exit

from mlci.errors import VERBOSE_ENV as VERBOSE_ENV  # re-exported: the task layer's switch
from mlci.errors import MlciError

SIGNALS = (signal.SIGTERM, signal.SIGHUP)
CLEANED_UP = "local servers were stopped"

P = ParamSpec("P")
R = TypeVar("R")

_Handler = Callable[[int, FrameType | None], object] | int | signal.Handlers | None


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

    def handler(signum: int, _frame: FrameType | None) -> None:
        nonlocal raised
        if raised:
            return
        raised = True
        raise Stopped(signum)

    previous: dict[signal.Signals, _Handler] = {}
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


def as_exit(exc: MlciError) -> Exit:
    """The ``Exit`` the command line shows for ``exc``: its rendered message and exit code."""
    return Exit(exc.render(), code=exc.exit_code)


def verbose() -> bool:
    """Whether tracebacks are wanted: ``mlci --verbose`` sets MLCI_VERBOSE=1 for the run."""
    return os.environ.get(VERBOSE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def print_traceback(exc: BaseException) -> None:
    """The full traceback to stderr, with the causes that ``raise ... from None`` hides."""
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        link.__suppress_context__ = False
        link = link.__cause__ or link.__context__
    traceback.print_exception(exc, file=sys.stderr)
    sys.stderr.flush()


_inside = threading.local()


@contextmanager
def ends_cleanly(cleaned_up: str = CLEANED_UP) -> Iterator[None]:
    """The one error handler of the task layer (see the module docstring).

    Nested uses (a decorated task that opens a stage context) hand everything to the
    outermost one, so a message is shown once and the signal handlers are set once.
    """
    if getattr(_inside, "active", False):
        yield
        return
    _inside.active = True
    try:
        with stop_on_signals():
            try:
                yield
            except MlciError as exc:
                if verbose():
                    print_traceback(exc)
                raise as_exit(exc) from None
            except KeyboardInterrupt as exc:
                if verbose():
                    print_traceback(exc)
                raise interrupted(exc, cleaned_up) from None
    finally:
        _inside.active = False


def stops_cleanly(body: Callable[P, R]) -> Callable[P, R]:
    """Decorator for a task body: it runs inside :func:`ends_cleanly`.

    ``functools.wraps`` keeps the name, the docstring and (through ``__wrapped__``) the
    signature that Invoke reads the task's flags from.
    """

    @functools.wraps(body)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with ends_cleanly():
            return body(*args, **kwargs)

    return wrapper
