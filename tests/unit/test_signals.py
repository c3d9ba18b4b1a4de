"""SIGTERM / SIGHUP take Ctrl-C's path: a KeyboardInterrupt, then one line and 128 + signum.

Real signals, sent to this process with os.kill; the end-to-end check with `invoke train`
and a real local mlflow server is tests/integration/test_signals.py.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from invoke import Context, Exit, Task

import mlci.stages
from mlci.stages import PASSED, StageResult
from mlci.tasks import _signals
from mlci.tasks import stages as tasks


def _deliver(sig: int) -> None:
    """Send ``sig`` to this process and give Python the moment it needs to run the handler
    (a handler that raises ends the wait at once)."""
    os.kill(os.getpid(), sig)
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:
        time.sleep(0.01)


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_a_signal_becomes_a_keyboard_interrupt_with_its_exit_code(sig, code):
    before = signal.getsignal(sig)
    with pytest.raises(KeyboardInterrupt) as info, _signals.stop_on_signals():
        _deliver(sig)
    assert isinstance(info.value, _signals.Stopped)
    assert info.value.exit_code == code
    assert signal.getsignal(sig) == before


def test_a_second_signal_does_not_break_off_the_cleanup():
    cleaned = []
    with pytest.raises(_signals.Stopped), _signals.stop_on_signals():
        try:
            _deliver(signal.SIGTERM)
        finally:
            _deliver(signal.SIGTERM)  # ignored: the cleanup below still runs
            _deliver(signal.SIGHUP)
            cleaned.append(True)
    assert cleaned == [True]


def test_an_ignored_sighup_stays_ignored(monkeypatch):
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as under nohup
    try:
        with _signals.stop_on_signals():
            _deliver(signal.SIGHUP)
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, previous)


def test_outside_the_main_thread_nothing_is_installed():
    seen = []

    def body():
        with _signals.stop_on_signals():
            seen.append(signal.getsignal(signal.SIGTERM))

    thread = threading.Thread(target=body)
    thread.start()
    thread.join(10)
    assert seen == [signal.getsignal(signal.SIGTERM)]


@pytest.mark.parametrize(
    ("sig", "code", "message"),
    [
        (signal.SIGTERM, 143, "interrupted by SIGTERM; local servers were stopped"),
        (signal.SIGHUP, 129, "interrupted by SIGHUP; local servers were stopped"),
    ],
)
def test_a_stage_task_exits_with_128_plus_the_signal(
    isolated_loader, monkeypatch, sig, code, message
):
    closed = []

    def stage_function(_name):
        def run(ctx):
            ctx._stack.callback(closed.append, "context closed")  # as a local server's stop
            _deliver(sig)
            return StageResult("train", PASSED, "never")

        return run

    monkeypatch.setattr(mlci.stages, "stage_function", stage_function)
    with pytest.raises(Exit) as info:
        tasks._run_stage("train")
    assert (info.value.code, info.value.message) == (code, message)
    assert closed == ["context closed"]
    assert signal.getsignal(sig) == signal.SIG_DFL


def test_ctrl_c_keeps_its_message_and_130():
    exit_ = _signals.interrupted(KeyboardInterrupt())
    assert (exit_.code, exit_.message) == (130, "interrupted; local servers were stopped")


def test_stops_cleanly_keeps_the_task_signature_and_turns_a_signal_into_exit():
    @_signals.stops_cleanly
    def rollback(c, alias=None, as_json=False):
        """Put the previous champion back."""
        _deliver(signal.SIGTERM)

    task = Task(rollback)
    assert task.name == "rollback"
    assert [arg.name for arg in task.get_arguments()] == ["alias", "as_json"]
    assert rollback.__doc__ == "Put the previous champion back."
    with pytest.raises(Exit) as info:
        task(Context())
    assert (info.value.code, info.value.message) == (
        143,
        "interrupted by SIGTERM; local servers were stopped",
    )
