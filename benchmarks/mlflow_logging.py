"""mlflow_logging: one request per metric value vs mlci's batched logging, on a real server.

Starts a real `mlflow server` (SQLite) on 127.0.0.1 through mlci's own helper, as mlci
starts it (mlci.servers.MLFLOW_SERVER_ENV), then for 1,000 metric values, each on a run of
its own, measures:

- per-call: one `MlflowClient.log_metric` call per value (one request each, waited for);
- batched: mlci's MetricBuffer, which sends them with `log_batch` (one request);
- async: MLflow's own asynchronous logging, `mlflow.log_metric(..., synchronous=False)` per
  value in an active run, timed until every returned operation has finished
  (`RunOperations.wait()`), so all values are on the server. MLflow's defaults are kept:
  with MLFLOW_ASYNC_LOGGING_BUFFERING_SECONDS unset its queue sends each value as a request
  of its own, from a pool of worker threads.

Repeats REPEATS times (the three in turn); the value is the median over the repeats of
per-call / batched (goal >= 100). Also reported: the median of async / batched ("vs_async":
what mlci's buffer saves against MLflow's own answer to slow logging), and the share of a
real training's wall time that went to logging its per-step metrics through the buffer
(goal <= 5 %).

Run from the repository root: python benchmarks/mlflow_logging.py
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

POINTS = 1000
REPEATS = 5
GOAL = 100.0
SHARE_GOAL = 5.0
RESULTS = Path(__file__).resolve().parent / "results" / "mlflow_logging.json"


class CannotMeasure(Exception):
    pass


def _machine() -> str:
    import mlflow

    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{os.cpu_count()} cores, {mem:.0f} GiB, Python {platform.python_version()}, "
        f"mlflow server {mlflow.__version__} (SQLite backend, 127.0.0.1)"
    )


def _loss(step: int) -> float:
    return 1.0 / (step + 1)


def _per_call(client, experiment: str) -> float:
    run = client.create_run(experiment).info.run_id
    started = time.perf_counter()
    for step in range(POINTS):
        client.log_metric(run, "loss", _loss(step), step=step)
    return time.perf_counter() - started


def _batched(client, experiment: str, buffer_cls) -> tuple[float, int]:
    run = client.create_run(experiment).info.run_id
    buffer = buffer_cls(client, run)
    started = time.perf_counter()
    for step in range(POINTS):
        buffer.add(step, {"loss": _loss(step)})
    buffer.flush()
    return time.perf_counter() - started, buffer.requests


def _mlflow_async(client, experiment: str) -> float:
    import mlflow

    run = client.create_run(experiment).info.run_id
    # Ending the run prints its URL to stdout: kept out of the table.
    with contextlib.redirect_stdout(io.StringIO()), mlflow.start_run(run_id=run):
        started = time.perf_counter()
        operations = [
            mlflow.log_metric("loss", _loss(step), step=step, synchronous=False)
            for step in range(POINTS)
        ]
        for operation in operations:
            operation.wait()
        seconds = time.perf_counter() - started
    logged = client.get_metric_history(run, "loss")
    if len(logged) != POINTS:
        raise CannotMeasure(f"MLflow's async logging stored {len(logged)} of {POINTS} values")
    return seconds


def _measure(client, experiment: str, buffer_cls) -> list[dict]:
    runs = []
    for repeat in range(REPEATS):
        per_call = _per_call(client, experiment)
        batched, requests = _batched(client, experiment, buffer_cls)
        async_s = _mlflow_async(client, experiment)
        runs.append(
            {
                "repeat": repeat,
                "per_call_s": per_call,
                "batched_s": batched,
                "async_s": async_s,
                "requests_batched": requests,
                "ratio": per_call / batched,
                "async_ratio": async_s / batched,
            }
        )
    return runs


def main() -> int:
    try:
        from mlci import servers

        # Before the first `import mlflow`: it starts its telemetry thread on import.
        servers.disable_mlflow_telemetry()
        from mlci.errors import MlciError

        runs, share = _measure_on_a_local_server(servers)
    except ImportError as exc:
        print(f"mlflow_logging: cannot measure: {exc} (install the project first)")
        return 2
    except (MlciError, CannotMeasure) as exc:
        print(f"mlflow_logging: cannot measure: {exc}")
        return 2
    ratio = statistics.median(r["ratio"] for r in runs)
    vs_async = statistics.median(r["async_ratio"] for r in runs)
    _print_table(runs, ratio, vs_async, share)
    result = {
        "name": "mlflow_logging",
        "value": round(ratio, 1),
        "unit": "x",
        "goal": GOAL,
        "better": "higher",
        "vs_async": round(vs_async, 1),
        "vs_async_unit": "x (mlflow.log_metric(synchronous=False) / mlci batched)",
        "runs": runs,
        "training_logging_share": share,
        "machine": _machine(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"mlflow_logging: {ratio:.0f} x (goal >= {GOAL:g})")
    return 0


def _measure_on_a_local_server(servers) -> tuple[list[dict], dict]:
    import mlflow
    from mlflow import MlflowClient

    from mlci.metric_buffer import MetricBuffer

    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        with servers.local_server(
            "mlflow server",
            servers.mlflow_server_command(state),
            "/health",
            state / "server.log",
            start_timeout=180,
            env=servers.MLFLOW_SERVER_ENV,
        ) as server:
            mlflow.set_tracking_uri(server.url)
            client = MlflowClient(server.url)
            experiment = client.create_experiment("bench")
            runs = _measure(client, experiment, MetricBuffer)
            share = _training_share(client, experiment, MetricBuffer)
    return runs, share


def _print_table(runs: list[dict], ratio: float, vs_async: float, share: dict) -> None:
    print(f"{POINTS} values per way of logging, {REPEATS} repeats")
    print(
        f"{'repeat':>6}  {'per-call':>9}  {'mlflow async':>12}  {'mlci batched':>12}  "
        f"{'per-call/batched':>16}  {'async/batched':>13}"
    )
    for r in runs:
        print(
            f"{r['repeat'] + 1:>6}  {r['per_call_s']:>7.2f} s  {r['async_s']:>10.2f} s  "
            f"{r['batched_s'] * 1000:>9.1f} ms  {r['ratio']:>15.0f}x  "
            f"{r['async_ratio']:>12.0f}x"
        )
    print(
        f"{'median':>6}  {statistics.median(r['per_call_s'] for r in runs):>7.2f} s  "
        f"{statistics.median(r['async_s'] for r in runs):>10.2f} s  "
        f"{statistics.median(r['batched_s'] for r in runs) * 1000:>9.1f} ms  "
        f"{ratio:>15.0f}x  {vs_async:>12.0f}x"
    )
    print(
        f"share of training time spent logging per-step metrics (buffered): "
        f"{share['share_percent']:.2f} % of {share['train_s']:.2f} s "
        f"({share['steps']} steps, {share['requests']} requests; goal <= {SHARE_GOAL:g} %)"
    )


def _training_share(client, experiment, buffer_cls) -> dict:
    """A real training of the model package with its per-step metrics sent through the buffer."""
    try:
        import torch  # noqa: F401

        params = {"estimator": "mlp_torch", "epochs": 300, "seed": 42}
    except ImportError:
        params = {"estimator": "random_forest", "n_estimators": 400, "seed": 42}
    from wine_classifier import train_and_evaluate

    run = client.create_run(experiment).info.run_id
    buffer = buffer_cls(client, run, max_seconds=1.0)
    steps = []

    def on_step(step, metrics):
        steps.append(step)
        buffer.add(step, metrics)

    started = time.perf_counter()
    train_and_evaluate(params, on_step=on_step)
    buffer.flush()
    total = time.perf_counter() - started
    return {
        "model": params["estimator"],
        "train_s": round(total, 3),
        "logging_s": round(buffer.seconds, 4),
        "steps": len(steps),
        "requests": buffer.requests,
        "share_percent": round(100 * buffer.seconds / total, 3),
    }


if __name__ == "__main__":
    sys.exit(main())
