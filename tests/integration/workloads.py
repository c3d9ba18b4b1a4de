"""Concurrent workloads against a real MLflow tracking server (or a tier of them).

Shared by the integration tests and ``benchmarks/tracking_replicas.py``, so that a single
server and a load-balanced tier are put through exactly the same work:

- :func:`promotion_race`: rounds of pipelines promoting at the same moment through mlci's
  registry (``registry.promote_version`` under its promotion lease), checked after every
  round; :func:`check_history` checks the alias history at the end, :func:`check_no_overlap`
  the lease hold intervals that ``record_holds`` collects;
- :func:`concurrent_trainings`: real trainings of the wine classifier through mlci's train
  stage, each its own process, all started at once;
- :func:`tracking_load`: many clients creating runs and logging batches at once.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import multiprocessing
import os
import random
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

from mlci import registry, servers
from mlci.settings import PromotionSettings

# Before the first `import mlflow` here or in a process started from here.
servers.disable_mlflow_telemetry()

ENABLED = PromotionSettings(mode="enabled", min={})


def client(uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(uri, registry_uri=uri)


def candidate(mlflow_client: Any, model: str, experiment_id: str, f1: float) -> str:
    """A registered version whose run logged ``f1_macro`` (no artefacts: a fast candidate)."""
    run = mlflow_client.create_run(experiment_id)
    mlflow_client.log_metric(run.info.run_id, "f1_macro", f1)
    mlflow_client.set_terminated(run.info.run_id, "FINISHED")
    mv = mlflow_client.create_model_version(
        model, source=f"runs:/{run.info.run_id}/model", run_id=run.info.run_id
    )
    return str(mv.version)


def champion(mlflow_client: Any, model: str, alias: str = "champion") -> str | None:
    mv = registry.alias_version(mlflow_client, model, alias)
    return None if mv is None else str(mv.version)


# -- the promotion race ----------------------------------------------------------------------


@dataclass(frozen=True)
class Hold:
    """The time one pipeline held the promotion lease (monotonic seconds, this process)."""

    owner: str
    start: float
    end: float


@dataclass
class RaceResult:
    model: str
    scores: dict[str, float]  # version -> its f1_macro
    seconds: float
    holds: list[Hold] = field(default_factory=list)  # with record_holds only


@contextlib.contextmanager
def _recording_holds(holds: list[Hold]) -> Iterator[None]:
    """While active, every ``registry.promotion_lease`` appends its hold interval.

    The interval runs from the moment the lease was acquired to the moment its release
    began, so it lies inside the time the lock really existed: two that overlap mean two
    pipelines held the lease at once. promote_version looks the name up in the module at
    each call, so replacing it there observes real promotions, unchanged.
    """
    real = registry.promotion_lease

    @contextlib.contextmanager
    def observed(mlflow_client: Any, model: str, owner: str, **kwargs: Any) -> Iterator[Any]:
        with real(mlflow_client, model, owner, **kwargs) as lease:
            start = time.monotonic()
            try:
                yield lease
            finally:
                holds.append(Hold(owner, start, time.monotonic()))

    with mock.patch.object(registry, "promotion_lease", observed):
        yield


def promotion_race(
    uri: str,
    *,
    rounds: int = 20,
    per_round: int = 8,
    seed: int = 20261127,
    record_holds: bool = False,
) -> RaceResult:
    """``rounds`` times: ``per_round`` new candidates with distinct scores, then one pipeline
    per candidate (a thread with its own client) promoting it, all released at once.

    Checked after each round: no promotion failed, the champion is the best version so far,
    and no lease is left behind.
    """
    setup = client(uri)
    model = f"race-{uuid.uuid4().hex[:8]}"
    setup.create_registered_model(model)
    experiment_id = setup.create_experiment(model)
    rng = random.Random(seed)
    scores: dict[str, float] = {}
    holds: list[Hold] = []
    started = time.monotonic()
    with _recording_holds(holds) if record_holds else contextlib.nullcontext():
        for number in range(1, rounds + 1):
            batch: dict[str, float] = {}
            for _ in range(per_round):
                f1 = round(rng.uniform(0.5, 1.0), 6)
                while f1 in scores.values() or f1 in batch.values():
                    f1 = round(rng.uniform(0.5, 1.0), 6)
                batch[candidate(setup, model, experiment_id, f1)] = f1
            scores.update(batch)
            barrier = threading.Barrier(per_round)
            errors: list[BaseException] = []

            def promote_one(version, barrier=barrier, errors=errors):
                pipeline = client(uri)  # one client per pipeline, as separate processes would have
                barrier.wait()
                try:
                    registry.promote_version(pipeline, model, version, ENABLED, owner=f"p{version}")
                except BaseException as exc:  # reported below
                    errors.append(exc)

            threads = [threading.Thread(target=promote_one, args=(v,), daemon=True) for v in batch]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=300)
            assert errors == [], f"round {number}: {errors!r}"
            best = max(scores, key=scores.get)
            assert champion(setup, model) == best, f"round {number}: the champion is not v{best}"
            assert registry._read_lock(setup, model + registry.LOCK_SUFFIX) is None, (
                f"round {number}: a promotion lease was left behind"
            )
    return RaceResult(model, scores, time.monotonic() - started, holds)


def check_history(uri: str, race: RaceResult) -> list[dict[str, Any]]:
    """Exactly one version holds the champion alias, the best one; the history's moves
    form a chain in which each move raised the score; ``previous`` is the last replaced.
    Returns the champion moves."""
    setup = client(uri)
    model, scores = race.model, race.scores
    best = max(scores, key=scores.get)
    holders = [v for v in scores if "champion" in setup.get_model_version(model, v).aliases]
    assert holders == [best]  # exactly one version holds the alias
    moves = [e for e in registry.history(setup, model) if e["alias"] == "champion"]
    # every move starts where the previous one ended, and each one raised the score
    assert moves[0]["from"] is None
    for before, after in itertools.pairwise(moves):
        assert after["from"] == before["to"]
        assert scores[after["to"]] > scores[before["to"]]
    assert moves[-1]["to"] == best
    assert champion(setup, model, "previous") == moves[-1]["from"]
    return moves


def check_no_overlap(holds: list[Hold]) -> None:
    """No two pipelines held the lease at the same time."""
    ordered = sorted(holds, key=lambda h: h.start)
    for first, second in itertools.pairwise(ordered):
        assert first.end <= second.start, (
            f"{first.owner} and {second.owner} held the promotion lease at the same time "
            f"({first.start:.3f}-{first.end:.3f} and {second.start:.3f}-{second.end:.3f})"
        )


# -- concurrent trainings --------------------------------------------------------------------

#: Imported once by the process that forks the trainers, so that each trainer starts with
#: them loaded (on two cores, sixteen cold imports of MLflow and scikit-learn would take
#: longer than the trainings).
TRAINER_PRELOAD = [
    "tests.integration.workloads",  # first: it turns MLflow's telemetry off before the import
    "mlflow", "mlflow.sklearn", "mlflow.pyfunc", "sklearn.ensemble", "sklearn.linear_model",
    "skops.io", "pandas", "matplotlib.pyplot", "wine_classifier", "mlci.stages.train",
    "tests.integration.conftest",
]  # fmt: skip


@dataclass(frozen=True)
class Training:
    """What one trainer process reports (from its JSON file)."""

    index: int
    ok: bool
    run_id: str = ""
    version: str = ""
    start: float = 0.0  # wall-clock seconds: trainers are separate processes
    end: float = 0.0
    error: str = ""


def _train_one(
    index: int, uri: str, model: str, work: str, params: dict, barrier: Any
) -> None:  # pragma: no cover - runs in the trainer process
    """One pipeline's train stage (mlci.stages.train), as conftest's train_and_promote runs
    it; its outcome goes to ``work/<index>.json``, its output to ``work/<index>.log``."""
    folder = Path(work)
    log = os.open(folder / f"{index}.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(log, 1)
    os.dup2(log, 2)
    outcome: dict[str, Any] = {"index": index}
    try:
        from mlci.stages import train
        from tests.integration.conftest import make_context

        ctx, _ = make_context(
            folder / str(index),
            **{
                "mlflow.tracking_uri": uri,
                "mlflow.registered_model": model,
                "mlflow.experiment": model,
                "model.params": params,
            },
        )
        barrier.wait(timeout=120)
        outcome["start"] = time.time()
        with ctx:
            result = train.run(ctx)
        outcome.update(
            ok=True,
            end=time.time(),
            run_id=result.details["run_id"],
            version=str(result.details["version"]),
        )
    except BaseException as exc:
        outcome.update(ok=False, end=time.time(), error=f"{exc!r}\n{traceback.format_exc()}")
    (folder / f"{index}.json").write_text(json.dumps(outcome))


def concurrent_trainings(
    uri: str,
    model: str,
    work: Path,
    count: int,
    params: Callable[[int], dict],
    *,
    timeout: float = 600.0,
) -> list[Training]:
    """``count`` trainings of ``model`` (the wine classifier, ``params(i)``), each in a
    process of its own, released together by a barrier; their outcomes in index order.

    The trainers are forked by multiprocessing's fork server, which imports the calling
    program's main module again in each of them: a script that calls this must keep its
    work under ``if __name__ == "__main__":`` (pytest's own main module does)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(TRAINER_PRELOAD)
    work.mkdir(parents=True, exist_ok=True)
    barrier = context.Barrier(count)
    procs = [
        context.Process(
            target=_train_one,
            args=(i, uri, model, str(work), params(i), barrier),
            name=f"trainer-{i}",
        )
        for i in range(count)
    ]
    for proc in procs:
        proc.start()
    deadline = time.monotonic() + timeout
    try:
        for proc in procs:
            proc.join(timeout=max(0.0, deadline - time.monotonic()))
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=10)
    outcomes = []
    for i in range(count):
        path = work / f"{i}.json"
        if path.is_file():
            data = json.loads(path.read_text())
            outcomes.append(Training(**data))
        else:
            log = work / f"{i}.log"
            tail = log.read_text(errors="replace")[-2000:] if log.is_file() else "(no log)"
            why = f"no outcome (exit code {procs[i].exitcode})\n{tail}"
            outcomes.append(Training(i, False, error=why))
    return outcomes


# -- many clients logging --------------------------------------------------------------------


@dataclass(frozen=True)
class LoadResult:
    clients: int
    requests: int  # sent by the clients (each MlflowClient call below is one request)
    seconds: float
    errors: list[str]


def tracking_load(
    uri: str, *, clients: int = 16, runs: int = 6, batches: int = 4, values: int = 100
) -> LoadResult:
    """``clients`` threads, each with its own client, released together; each creates
    ``runs`` runs and logs ``batches`` batches of ``values`` metric values, a parameter
    and a tag to each, then closes it: the tracking traffic of concurrent trainings."""
    from mlflow.entities import Metric, Param, RunTag

    setup = client(uri)
    experiment_id = setup.create_experiment(f"load-{uuid.uuid4().hex[:8]}")
    barrier = threading.Barrier(clients + 1)
    errors: list[str] = []
    per_run = 1 + batches + 1  # create, the batches, terminate

    def work(number: int) -> None:
        mine = client(uri)
        barrier.wait()
        try:
            for r in range(runs):
                run_id = mine.create_run(experiment_id, run_name=f"c{number}-r{r}").info.run_id
                now = int(time.time() * 1000)
                for b in range(batches):
                    metrics = [
                        Metric("loss", 1.0 / (s + 1), now, b * values + s) for s in range(values)
                    ]
                    extra = {"params": [Param("client", str(number))],
                             "tags": [RunTag("batch", str(b))]} if b == 0 else {}  # fmt: skip
                    mine.log_batch(run_id, metrics=metrics, **extra)
                mine.set_terminated(run_id, "FINISHED")
        except Exception as exc:
            errors.append(f"client {number}: {exc!r}")

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.monotonic()
    for t in threads:
        t.join(timeout=600)
    seconds = time.monotonic() - started
    return LoadResult(clients, clients * runs * per_run, seconds, errors)
