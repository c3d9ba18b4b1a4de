"""cli_start: how long `invoke --list` takes in this repository, against a bare Invoke.

Both sides run `python -m invoke --list` with this interpreter, as a fresh process each
time, and are timed from start to exit (wall clock):

- repo: in the repository root, whose tasks.py imports mlci's tasks (what Jenkins and a
  developer start before every stage);
- bare: in a temporary folder whose tasks.py defines one trivial @task (Invoke's own start).

Both run in this environment as it is. Invoke turns bytecode writing off before it loads a
tasks file (unless --write-pyc), so what the tasks import comes from existing bytecode
caches (the interpreter's and the installed packages') or is compiled at each start (an
editable mlci without __pycache__ is); the JSON records which was the case for mlci. One
warm-up of each (not counted), then REPEATS rounds that alternate the two (each goes first
in every other round); the value is the median repo time over the median bare time (goal:
<= 1.3, i.e. mlci adds at most 30 % to Invoke's start). The CPU time of each (user +
system) is reported beside it: on a shared machine it moves much less than the wall clock.

Run from the repository root: python benchmarks/cli_start.py
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPEATS = 11
GOAL = 1.3
ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "cli_start.json"
BARE_TASKS = '''"""A tasks file with one trivial task: Invoke's own start."""

from invoke import task


@task
def hello(c):
    """Say hello."""
    print("hello")
'''


class CannotMeasure(Exception):
    pass


def _list_seconds(folder: Path) -> tuple[float, float]:
    """Wall time and CPU time (user + system) of one `python -m invoke --list` in ``folder``;
    fails if it fails."""
    argv = [sys.executable, "-m", "invoke", "--list"]
    cpu_before = _children_cpu()
    started = time.perf_counter()
    proc = subprocess.run(argv, cwd=folder, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise CannotMeasure(f"`invoke --list` failed in {folder}:\n{proc.stderr.strip()}")
    return seconds, _children_cpu() - cpu_before


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _machine() -> str:
    from importlib.metadata import version

    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{os.cpu_count()} cores, {mem:.0f} GiB, Python {platform.python_version()}, "
        f"invoke {version('invoke')}, mlci {version('mlci')}"
    )


def _mlci_bytecode_cached() -> bool:
    """Whether mlci's own modules have up-to-date bytecode where the interpreter looks."""
    import importlib.util

    import mlci.tasks

    source = mlci.tasks.__file__
    cached = importlib.util.cache_from_source(source)
    return os.path.exists(cached) and os.path.getmtime(cached) >= os.path.getmtime(source)


def _measure(bare: Path) -> list[dict]:
    sides = (("repo", ROOT), ("bare", bare))
    for _, folder in sides:  # warm-up, not counted
        _list_seconds(folder)
    runs = []
    for i in range(REPEATS):
        # repo first in even rounds, bare first in odd ones: neither always runs second.
        for label, folder in sides if i % 2 == 0 else sides[::-1]:
            seconds, cpu = _list_seconds(folder)
            runs.append(
                {
                    "round": i,
                    "kind": label,
                    "seconds": round(seconds, 4),
                    "cpu_seconds": round(cpu, 4),
                }
            )
    return runs


def _median(runs: list[dict], kind: str, key: str) -> float:
    return statistics.median(r[key] for r in runs if r["kind"] == kind)


def _print_table(runs: list[dict]) -> None:
    print(f"{'':>6}  {'wall clock':^29}  {'CPU (user + system)':^29}")
    print(
        f"{'round':>6}  {'repo (mlci)':>11}  {'bare':>11}  {'ratio':>6}  "
        f"{'repo (mlci)':>11}  {'bare':>11}  {'ratio':>6}"
    )
    for i in range(REPEATS):
        pair = {r["kind"]: r for r in runs if r["round"] == i}
        wall = [pair[kind]["seconds"] for kind in ("repo", "bare")]
        cpu = [pair[kind]["cpu_seconds"] for kind in ("repo", "bare")]
        print(
            f"{i + 1:>6}  {wall[0] * 1000:>8.0f} ms  {wall[1] * 1000:>8.0f} ms  "
            f"{wall[0] / wall[1]:>6.2f}  {cpu[0] * 1000:>8.0f} ms  {cpu[1] * 1000:>8.0f} ms  "
            f"{cpu[0] / cpu[1]:>6.2f}"
        )


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        bare = Path(tmp)
        (bare / "tasks.py").write_text(BARE_TASKS)
        try:
            runs = _measure(bare)
        except CannotMeasure as exc:
            print(f"cli_start: cannot measure: {exc}")
            return 2
    repo, bare_s = _median(runs, "repo", "seconds"), _median(runs, "bare", "seconds")
    repo_cpu, bare_cpu = _median(runs, "repo", "cpu_seconds"), _median(runs, "bare", "cpu_seconds")
    value = repo / bare_s
    _print_table(runs)
    print(
        f"{'median':>6}  {repo * 1000:>8.0f} ms  {bare_s * 1000:>8.0f} ms  {value:>6.2f}  "
        f"{repo_cpu * 1000:>8.0f} ms  {bare_cpu * 1000:>8.0f} ms  {repo_cpu / bare_cpu:>6.2f}"
    )
    result = {
        "name": "cli_start",
        "value": round(value, 3),
        "unit": "x (invoke --list here / bare invoke --list)",
        "goal": GOAL,
        "better": "lower",
        "repo_seconds": repo,
        "bare_seconds": bare_s,
        "cpu_ratio": round(repo_cpu / bare_cpu, 3),
        "mlci_bytecode_cached": _mlci_bytecode_cached(),
        "runs": runs,
        "machine": _machine(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"cli_start: {value:.2f} x (goal <= {GOAL:g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
