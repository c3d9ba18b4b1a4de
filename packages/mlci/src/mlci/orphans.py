"""Training runs left RUNNING by a pipeline (or server) that died: found and marked FAILED.

A run whose trainer was killed (SIGKILL, a lost agent, a server that died mid-run) stays
RUNNING in MLflow forever: nothing is left to tell the server. A note in the local state
folder would only help a next stage in the same workspace; a fresh Jenkins workspace or
another agent never sees it. So the evidence lives on the server, with the run:

* the train stage tags each run it creates with ``mlci.created_by = mlci`` and a heartbeat,
  ``mlci.heartbeat`` (Unix seconds), which a background thread renews every
  :data:`HEARTBEAT_EVERY_S` seconds for as long as training runs (:func:`start_heartbeat`);
* the next train or promote, wherever it runs, searches the experiment for RUNNING runs
  with that tag whose last sign of life (the heartbeat, or the start time if there is none)
  is older than ``mlflow.orphan_after`` (600 s), and marks them FAILED, logging each
  (:func:`fail_orphaned_runs`).

Why a heartbeat and not only an age limit: training time has no bound (a GPU run can take
hours), so any age limit on the start time would either kill a long run that another pipeline
is training right now, or leave a dead run RUNNING for as long as the longest training. The
heartbeat makes the limit independent of training time: a live trainer renews it every 30 s,
so a run is stale only after 20 missed beats (10 minutes), which also rides out a restart of
the server or a network glitch. Should a live trainer still be closed (its heartbeats failed
for 10 minutes), nothing is lost: it keeps logging and sets its run FINISHED at the end.
Runs without the tag (someone else's, or made by hand) are never touched. The times compared
come from the clocks of different agents: skew of seconds, even a minute, does not matter
against 10 minutes.

This is housekeeping, so a server that cannot answer now (down, restarting, failing) or a
run that is gone is logged and the stage goes on; a refused login or permission, any other
refusal of the server, and errors in mlci itself are raised (:func:`passable`).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from typing import Any

from mlci.context import StageContext

CREATED_BY_TAG = "mlci.created_by"
CREATED_BY = "mlci"
HEARTBEAT_TAG = "mlci.heartbeat"
CLOSED_TAG = "mlci.closed_as_orphan"
#: Seconds between two heartbeats of a run being trained.
HEARTBEAT_EVERY_S = 30.0
#: The default of ``mlflow.orphan_after``: a RUNNING run made by mlci whose last heartbeat is
#: older than this is an orphan (see the module docstring).
ORPHAN_AFTER_S = 600.0
PAGE = 200
#: MLflow's error codes of a server that cannot answer now, or of a run that is gone: what
#: the search for orphans and the close of one may log and go past.
PASSABLE_CODES = frozenset(
    {
        "INTERNAL_ERROR",  # a 500, or a request that never got an answer (refused, reset)
        "TEMPORARILY_UNAVAILABLE",
        "DEADLINE_EXCEEDED",
        "REQUEST_LIMIT_EXCEEDED",
        "RESOURCE_EXHAUSTED",
        "RESOURCE_DOES_NOT_EXIST",
    }
)


def created_by_tags(now: float | None = None) -> dict[str, str]:
    """The tags that make a run findable as an orphan: who made it, and a first heartbeat."""
    beat = time.time() if now is None else now
    return {CREATED_BY_TAG: CREATED_BY, HEARTBEAT_TAG: str(int(beat))}


class Heartbeat:
    """Keeps ``mlci.heartbeat`` of one run fresh from a daemon thread until stopped."""

    def __init__(self, client: Any, run_id: str, every: float = HEARTBEAT_EVERY_S) -> None:
        self.client = client
        self.run_id = run_id
        self.every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._beat, name=f"mlci-heartbeat-{run_id[:8]}", daemon=True
        )

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def _beat(self) -> None:
        from mlflow.exceptions import MlflowException
        from requests.exceptions import RequestException

        while not self._stop.wait(self.every):
            # Whatever the server answers, the beat is tried again at the next one: training
            # must not fail over its heartbeat. A bug in mlci still ends the thread, loudly.
            with contextlib.suppress(MlflowException, RequestException, OSError):
                self.client.set_tag(self.run_id, HEARTBEAT_TAG, str(int(time.time())))

    def stop(self) -> None:
        """Stop beating (the run is FINISHED, or about to be closed)."""
        self._stop.set()
        # A beat in flight may outlast this: harmless, a tag on a run that is no longer RUNNING.
        self._thread.join(timeout=2.0)

    def fail(self) -> None:
        """Stop beating and mark the run FAILED now, if the server still answers.

        If it does not, the run keeps its last heartbeat and the next stage closes it. Called
        while training fails, so it never raises: that failure stays the error.
        """
        self.stop()
        with contextlib.suppress(Exception):
            if self.client.get_run(self.run_id).info.status == "RUNNING":
                self.client.set_terminated(self.run_id, "FAILED")


def start_heartbeat(ctx: StageContext, client: Any, run_id: str) -> Heartbeat:
    """Tag the run as mlci's with a first heartbeat, then keep that heartbeat fresh.

    Raises :class:`~mlci.errors.TrackingServerError` when the tags cannot be written; the
    run is marked FAILED first (if the server lets us), so it never stays RUNNING untagged.
    """
    from mlflow.entities import RunTag

    from mlci.clients import mlflow as mlflow_client

    tags = [RunTag(key, value) for key, value in created_by_tags().items()]
    try:
        with mlflow_client.server_errors("tagging the training run", ctx.tracking_uri()):
            client.log_batch(run_id, tags=tags)
    except BaseException:
        with contextlib.suppress(Exception):
            client.set_terminated(run_id, "FAILED")
        raise
    return Heartbeat(client, run_id).start()


def last_sign_of_life(run: Any) -> float:
    """Unix seconds of the run's last heartbeat, or of its start when it has none."""
    started = (run.info.start_time or 0) / 1000.0
    try:
        return max(float(run.data.tags.get(HEARTBEAT_TAG, "")), started)
    except ValueError:
        return started


def _running_runs_of_mlci(client: Any, experiment_id: str) -> list[Any]:
    from mlflow.entities import ViewType

    query = f"attributes.status = 'RUNNING' and tags.`{CREATED_BY_TAG}` = '{CREATED_BY}'"
    runs: list[Any] = []
    token = None
    while True:
        page = client.search_runs(
            [experiment_id],
            filter_string=query,
            run_view_type=ViewType.ACTIVE_ONLY,
            max_results=PAGE,
            page_token=token,
        )
        runs.extend(page)
        token = getattr(page, "token", None)
        if not token:
            return runs


def _closer() -> str:
    return os.environ.get("BUILD_URL") or socket.gethostname()


def passable(exc: BaseException) -> bool:
    """Whether housekeeping may log ``exc`` and go on: the server could not answer (no
    connection, a timeout, a 5xx) or the run is gone. A refused login (401) or permission
    (403), a request the server rejects, and errors in mlci itself are not passable."""
    from mlflow.exceptions import MlflowException
    from requests.exceptions import RequestException

    if isinstance(exc, MlflowException):
        return str(getattr(exc, "error_code", "")) in PASSABLE_CODES
    return isinstance(exc, RequestException | OSError)


def fail_orphaned_runs(
    ctx: StageContext,
    client: Any,
    stage: str,
    *,
    older_than: float | None = None,
    now: float | None = None,
) -> list[str]:
    """Mark FAILED the RUNNING runs of mlci in the configured experiment whose last sign of
    life is older than ``older_than`` seconds (:data:`ORPHAN_AFTER_S`); returns their ids.

    Each candidate is read again just before it is closed, so a run that finished, beat or
    was deleted in the meantime is left alone. A server that cannot answer the search (or
    one close) now is logged and the stage goes on (:func:`passable`); any other failure is
    raised, a refusal of the server as a :class:`~mlci.errors.TrackingServerError`.
    """
    from mlci.clients import mlflow as mlflow_client

    limit = ctx.settings.mlflow.orphan_after if older_than is None else older_than
    experiment_name = ctx.settings.mlflow.experiment
    uri = ctx.tracking_uri()
    with mlflow_client.server_errors("looking for orphaned runs", uri):
        try:
            experiment = client.get_experiment_by_name(experiment_name)
            if experiment is None:
                return []
            candidates = _running_runs_of_mlci(client, experiment.experiment_id)
        except Exception as exc:
            if not passable(exc):
                raise
            ctx.log(f"{stage}: could not look for orphaned runs in {experiment_name!r}: {exc}")
            return []
    closed: list[str] = []
    for candidate in candidates:
        run_id = candidate.info.run_id
        with mlflow_client.server_errors(f"closing the orphaned run {run_id}", uri):
            try:
                run = client.get_run(run_id)  # fresh: it may have finished or beat since
                silent = (time.time() if now is None else now) - last_sign_of_life(run)
                if run.info.status != "RUNNING" or silent <= limit or _deleted(run):
                    continue
                client.set_terminated(run_id, "FAILED")
                client.set_tag(
                    run_id, CLOSED_TAG, f"no heartbeat for {silent:.0f} s, by {_closer()}"
                )
            except Exception as exc:
                if not passable(exc):
                    raise
                ctx.log(f"{stage}: could not close orphaned run {run_id}: {exc}")
                continue
        closed.append(run_id)
        name = run.info.run_name or run_id
        ctx.log(
            f"{stage}: run {run_id} ({name}) was left RUNNING: no heartbeat for "
            f"{_duration(silent)} (limit {_duration(limit)}); marked FAILED"
        )
    return closed


def _deleted(run: Any) -> bool:
    """A run deleted since the search (the server refuses to change a deleted run)."""
    return getattr(run.info, "lifecycle_stage", "active") != "active"


#: The name train, promote and their tests have called it by.
close_orphans = fail_orphaned_runs


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
