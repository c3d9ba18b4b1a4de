"""mlflow_logging: one request per metric value vs mlci's batched logging, on a real server.

Starts a real `mlflow server` (SQLite) on 127.0.0.1 through mlci's own helper, then for
1,000 metric values measures (a) one `log_metric` call per value and (b) mlci's
MetricBuffer, which sends them with `log_batch`. Repeats 3 times, reports the median ratio
(per-call / batched; goal >= 100) and the share of a real training's wall time that went to
logging its per-step metrics through the buffer (goal <= 5 %).

Run from the repository root: python benchmarks/mlflow_logging.py
"""

from __future__ import annotations

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
REPEATS = 3
GOAL = 100.0
RESULTS = Path(__file__).resolve().parent / "results" / "mlflow_logging.json"


def _machine() -> str:
    import mlflow

    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{os.cpu_count()} cores, {mem:.0f} GiB, Python {platform.python_version()}, "
        f"mlflow server {mlflow.__version__} (SQLite backend, 127.0.0.1)"
    )


def main() -> int:
    try:
        from mlflow import MlflowClient

        from mlci import servers
        from mlci.metric_buffer import MetricBuffer
    except ImportError as exc:
        print(f"mlflow_logging: cannot measure: {exc} (install the project first)")
        return 2

    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        with servers.local_server(
            "mlflow server", servers.mlflow_server_command(state), "/health",
            state / "server.log", start_timeout=180,
        ) as server:  # fmt: skip
            client = MlflowClient(server.url)
            experiment = client.create_experiment("bench")
            for repeat in range(REPEATS):
                run = client.create_run(experiment).info.run_id
                started = time.perf_counter()
                for step in range(POINTS):
                    client.log_metric(run, "loss", 1.0 / (step + 1), step=step)
                per_call = time.perf_counter() - started

                run = client.create_run(experiment).info.run_id
                buffer = MetricBuffer(client, run)
                started = time.perf_counter()
                for step in range(POINTS):
                    buffer.add(step, {"loss": 1.0 / (step + 1)})
                buffer.flush()
                batched = time.perf_counter() - started
                runs.append({"repeat": repeat, "per_call_s": per_call, "batched_s": batched,
                             "requests_batched": buffer.requests,
                             "ratio": per_call / batched})  # fmt: skip
                print(f"repeat {repeat + 1}: per-call {per_call:.2f} s, batched "
                      f"{batched * 1000:.1f} ms ({buffer.requests} request), "
                      f"ratio {per_call / batched:.0f}x")  # fmt: skip

            share = _training_share(client, experiment, MetricBuffer)
    ratio = statistics.median(r["ratio"] for r in runs)
    print()
    print(f"{'values':>8}  {'per-call (median)':>18}  {'batched (median)':>17}  {'ratio':>7}")
    print(
        f"{POINTS:>8}  {statistics.median(r['per_call_s'] for r in runs):>16.2f} s  "
        f"{statistics.median(r['batched_s'] for r in runs) * 1000:>14.1f} ms  {ratio:>6.0f}x"
    )
    print(
        f"share of training time spent logging per-step metrics (buffered): "
        f"{share['share_percent']:.2f} % of {share['train_s']:.2f} s "
        f"({share['steps']} steps, {share['requests']} requests; goal <= 5 %)"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "name": "mlflow_logging",
        "value": round(ratio, 1),
        "unit": "x",
        "goal": f">= {GOAL:g}",
        "better": "higher",
        "runs": runs,
        "training_logging_share": share,
        "machine": _machine(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }, indent=2) + "\n")  # fmt: skip
    print(f"mlflow_logging: {ratio:.0f} x (goal >= {GOAL:g})")
    return 0


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
    return {"model": params["estimator"], "train_s": round(total, 3),
            "logging_s": round(buffer.seconds, 4), "steps": len(steps),
            "requests": buffer.requests,
            "share_percent": round(100 * buffer.seconds / total, 3)}  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
