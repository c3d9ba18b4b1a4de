"""server_start: how long the embedded `mlflow server` takes to answer /health, with MLflow's
job runner (MLflow 3's default) and without it (what mlci starts).

Both kinds are started through mlci's own helper, alternating, REPEATS times each, each on
a fresh SQLite store; the value is the median start with mlci's setting over the median
start with MLflow's default (goal: below 1, i.e. faster).

Run from the repository root: python benchmarks/server_start.py
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

REPEATS = 5
GOAL = 1.0
RESULTS = Path(__file__).resolve().parent / "results" / "server_start.json"


def _start(env: dict[str, str]) -> tuple[float, int]:
    """Seconds to ready, and the processes in the server's group once ready."""
    from mlci import servers

    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        started = time.monotonic()
        with servers.local_server(
            "mlflow server",
            servers.mlflow_server_command(state),
            "/health",
            state / "server.log",
            start_timeout=180,
            env=env,
        ) as server:
            seconds = time.monotonic() - started
            group = os.getpgid(server.pid)
            processes = sum(
                1
                for entry in Path("/proc").iterdir()
                if entry.name.isdigit() and _group(entry) == group
            )
    return seconds, processes


def _group(entry: Path) -> int | None:
    try:
        return int((entry / "stat").read_text().rsplit(")", 1)[1].split()[2])
    except (OSError, IndexError, ValueError):
        return None


def main() -> int:
    import mlflow

    from mlci.servers import MLFLOW_SERVER_ENV

    default = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "true"}
    runs = []
    for i in range(REPEATS):
        for label, env in (("mlflow default", default), ("mlci", MLFLOW_SERVER_ENV)):
            seconds, processes = _start(env)
            run = {"round": i, "kind": label, "seconds": round(seconds, 3)}
            runs.append({**run, "processes": processes})
            print(f"  round {i + 1}: {label:<15} ready in {seconds:5.2f} s, {processes} processes")
    before = statistics.median(r["seconds"] for r in runs if r["kind"] == "mlflow default")
    after = statistics.median(r["seconds"] for r in runs if r["kind"] == "mlci")
    value = after / before
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    result = {
        "name": "server_start",
        "value": round(value, 3),
        "unit": "x (mlci's start / MLflow's default start)",
        "goal": GOAL,
        "better": "lower",
        "before_seconds": before,
        "after_seconds": after,
        "runs": runs,
        "machine": f"{os.cpu_count()} cores, {mem:.0f} GiB, Python {platform.python_version()}, "
        f"mlflow server {mlflow.__version__} (SQLite, 127.0.0.1)",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nmedian start: MLflow default {before:.2f} s, mlci {after:.2f} s")
    print(f"server_start: {value:.2f} x (goal < {GOAL})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
