"""pipeline_noop: an `invoke pipeline` re-run with nothing changed, against the cold run.

Each round takes a snapshot of the repository (the files git lists, committed into a fresh
repository in a temporary folder, its packages first on PYTHONPATH, so that edits elsewhere
cannot reach it), then runs
`invoke pipeline` there twice with fresh reports and state folders: cold (a new local MLflow
store and package index, no stage cache; Docker's layer cache as the engine has it) and again
with nothing changed. The value is the median re-run time over the median cold time (goal
≤ 0.05). The image stage builds on the local base image with host networking, as the tests do.

Run from the repository root: python benchmarks/pipeline_noop.py
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPEATS = 3
GOAL = 0.05
ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "pipeline_noop.json"
BASE_IMAGE = "local/python:3.11-bookworm"


def snapshot(target: Path) -> Path:
    """The repository's files (tracked, and new but not ignored) committed in ``target``."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    git = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.org",
           "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.org"}  # fmt: skip
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "snapshot"]):
        subprocess.run(["git", *args], cwd=target, check=True, env={**os.environ, **git})
    return target


def pipeline(project: Path, state: Path) -> tuple[float, dict[str, str], int]:
    """Seconds of one `invoke pipeline`, each stage's status, and the exit code."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLCI_")}
    # The snapshot's own packages, not the editable installs of the work tree (which may
    # change while this runs).
    sources = [str(p) for p in sorted(project.glob("packages/*/src"))]
    env.update(
        PYTHONPATH=os.pathsep.join(sources),
        MLCI_PROJECT_ROOT=str(project),
        MLCI_REPORTS_DIR=str(state / "reports"),
        MLCI_STATE_DIR=str(state / "state"),
        MLCI_IMAGE_BASE_IMAGE=BASE_IMAGE,
        MLCI_IMAGE_NETWORK="host",
    )
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "invoke", "pipeline"],
        cwd=project, env=env, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    seconds = time.monotonic() - started
    summary = state / "reports" / "summary.json"
    statuses = (
        {s["stage"]: s["status"] for s in json.loads(summary.read_text())["stages"]}
        if summary.is_file()
        else {}
    )
    if proc.returncode != 0:
        print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n", file=sys.stderr)
    return seconds, statuses, proc.returncode


def machine() -> str:
    import docker
    import mlflow

    engine = docker.from_env().version().get("Version", "?")
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{os.cpu_count()} cores, {memory:.0f} GiB, Python {platform.python_version()}, "
        f"mlflow {mlflow.__version__} (SQLite store), Docker engine {engine}"
    )


def main() -> int:
    runs = []
    for round_ in range(REPEATS):
        with tempfile.TemporaryDirectory(prefix="pipeline-noop-") as tmp:
            project = snapshot(Path(tmp) / "project")
            state = Path(tmp) / "run"
            cold, cold_status, cold_rc = pipeline(project, state)
            again, again_status, again_rc = pipeline(project, state)
        if cold_rc or again_rc:
            print(
                f"pipeline_noop: the pipeline failed (exit {cold_rc or again_rc})", file=sys.stderr
            )
            return 1
        runs.append({
            "round": round_, "cold_seconds": round(cold, 2), "rerun_seconds": round(again, 2),
            "cold_statuses": cold_status, "rerun_statuses": again_status,
        })  # fmt: skip
    cold = statistics.median(r["cold_seconds"] for r in runs)
    again = statistics.median(r["rerun_seconds"] for r in runs)
    value = round(again / cold, 4)
    print(f"{'round':>5}  {'cold s':>8}  {'re-run s':>8}  {'ratio':>6}  re-run statuses")
    for r in runs:
        shown = ", ".join(f"{k}={v}" for k, v in r["rerun_statuses"].items())
        ratio = r["rerun_seconds"] / r["cold_seconds"]
        print(f"{r['round']:>5}  {r['cold_seconds']:>8.1f}  {r['rerun_seconds']:>8.1f}  "
              f"{ratio:>6.3f}  {shown}")  # fmt: skip
    print(f"{'median':>5}  {cold:>8.1f}  {again:>8.1f}  {value:>6.3f}")
    result = {
        "name": "pipeline_noop",
        "value": value,
        "unit": "x (no-op re-run / cold run)",
        "goal": GOAL,
        "better": "lower",
        "cold_seconds": cold,
        "rerun_seconds": again,
        "runs": runs,
        "machine": machine(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"pipeline_noop: {value} x (goal <= {GOAL})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
