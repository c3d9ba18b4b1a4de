"""test_overhead: what mlci's test stage costs on top of the pytest run it makes.

Both sides run the same fixed subset of this repository's tests (PATHS, ~15 s with
coverage here) with the coverage targets and extra arguments of [tool.mlci.test], as a fresh
process each time, timed from start to exit (wall clock):

- mlci: `python -m invoke test` in the repository root with MLCI_TEST_PATHS=PATHS
  (plus `--force`, or MLCI_CACHE_ENABLED=false, when the stage cache exists, so the stage
  always runs). The stage loads the settings and runs
  `python -m pytest PATHS --junitxml=... -o junit_family=xunit2 -o cache_dir=...
  --cov=TARGET... --cov-report=xml:... --cov-report=term ARGS`, then reads both reports;
- raw: that same pytest command typed by hand, built here from the same settings
  (mlci.settings.load_settings): the JUnit and Cobertura reports are part of it because
  they are what the stage is for (the gate and SonarQube read them).

Each side has its own temporary folder for reports, pytest's cache, coverage's data file
(COVERAGE_FILE) and the pytest process's bytecode (PYTHONPYCACHEPREFIX; the stage sets both
the same way), so nothing is written into the tree. Both run with bytecode writing on
(PYTHONDONTWRITEBYTECODE removed), as on a Jenkins agent: otherwise each pytest would compile
everything it imports at every run, the same seconds on both sides.

One warm-up of each (not counted, fills the bytecode caches), then REPEATS rounds that
alternate the two (each goes first in every other round); the value is the median mlci time
over the median raw time (goal: <= 1.10). The CPU time of each side (user + system, with
the processes it waited for) is reported beside it: on a shared machine the wall clock of a
15-second run moves by more than the overhead being measured, its CPU time much less.

Run from the repository root: python benchmarks/test_overhead.py
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

REPEATS = 5
GOAL = 1.10
ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "test_overhead.json"
#: Fast, stable tests: a model package's own tests and a few pure-logic unit test files.
PATHS = [
    "packages/diabetes-regressor/tests",
    "packages/wine-classifier/tests/test_data.py",
    "packages/wine-classifier/tests/test_model.py",
    "packages/wine-classifier/tests/test_train.py",
    "tests/unit/test_errors.py",
    "tests/unit/test_evaluation.py",
    "tests/unit/test_orphans.py",
    "tests/unit/test_promotion.py",
    "tests/unit/test_qualitygate.py",
]


class CannotMeasure(Exception):
    pass


def _base_env() -> dict[str, str]:
    """This environment without MLCI_* settings of its own, with bytecode writing on."""
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("MLCI_") and key != "PYTHONDONTWRITEBYTECODE"
    }


def _mlci_side(folder: Path) -> tuple[list[str], dict[str, str]]:
    from mlci.settings import SPECS

    argv = [sys.executable, "-m", "invoke", "test"]
    env = {
        **_base_env(),
        "MLCI_TEST_PATHS": json.dumps(PATHS),
        "MLCI_REPORTS_DIR": str(folder / "reports"),
        "MLCI_STATE_DIR": str(folder / "state"),
    }
    if _has_force_flag():
        argv.append("--force")
    elif "cache.enabled" in SPECS:
        env["MLCI_CACHE_ENABLED"] = "false"
    return argv, env


def _has_force_flag() -> bool:
    proc = subprocess.run(
        [sys.executable, "-m", "invoke", "test", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    return "--force" in proc.stdout


def _raw_side(folder: Path) -> tuple[list[str], dict[str, str]]:
    from mlci.settings import load_settings

    settings = load_settings(environ={**_base_env(), "MLCI_TEST_PATHS": json.dumps(PATHS)})
    reports, state = folder / "reports", folder / "state"
    reports.mkdir(parents=True)
    (state / "coverage").mkdir(parents=True)
    cov = [f"--cov={target}" for target in settings.test.cov]
    if cov:
        cov += [f"--cov-report=xml:{reports / 'coverage.xml'}", "--cov-report=term"]
    argv = [
        sys.executable,
        "-m",
        "pytest",
        *settings.test.paths,
        f"--junitxml={reports / 'junit.xml'}",
        "-o",
        "junit_family=xunit2",
        "-o",
        f"cache_dir={state / 'pytest-cache'}",
        *cov,
        *settings.test.args,
    ]
    env = {
        **_base_env(),
        "COVERAGE_FILE": str(state / "coverage" / ".coverage"),
        "PYTHONPYCACHEPREFIX": str(state / "pycache"),
    }
    return argv, env


def _seconds(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall time and CPU time (user + system, with the processes it waited for) of one run;
    fails if the run fails."""
    cpu_before = _children_cpu()
    started = time.perf_counter()
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise CannotMeasure(f"`{' '.join(argv[1:4])} ...` exited {proc.returncode}:\n{tail}")
    return seconds, _children_cpu() - cpu_before


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _tests_run(folder: Path) -> int:
    from mlci.reports import read_junit

    return read_junit(folder / "reports" / "junit.xml").tests


def _machine() -> str:
    from importlib.metadata import version

    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{os.cpu_count()} cores, {mem:.0f} GiB, Python {platform.python_version()}, "
        f"invoke {version('invoke')}, pytest {version('pytest')}, "
        f"pytest-cov {version('pytest-cov')}, coverage {version('coverage')}"
    )


def _measure(tmp: Path) -> tuple[list[dict], dict[str, int], dict[str, str]]:
    sides = {"mlci": _mlci_side(tmp / "mlci"), "raw": _raw_side(tmp / "raw")}
    for argv, env in sides.values():  # warm-up, not counted
        _seconds(argv, env)
    runs = []
    for i in range(REPEATS):
        # mlci first in even rounds, raw first in odd ones: neither always runs second.
        for label in ("mlci", "raw") if i % 2 == 0 else ("raw", "mlci"):
            argv, env = sides[label]
            seconds, cpu = _seconds(argv, env)
            runs.append(
                {
                    "round": i,
                    "kind": label,
                    "seconds": round(seconds, 3),
                    "cpu_seconds": round(cpu, 3),
                }
            )
    tests = {label: _tests_run(tmp / label) for label in sides}
    if tests["mlci"] != tests["raw"]:
        raise CannotMeasure(f"the two sides ran different numbers of tests: {tests}")
    commands = {label: _describe(argv, env, tmp / label) for label, (argv, env) in sides.items()}
    return runs, tests, commands


def _describe(argv: list[str], env: dict[str, str], folder: Path) -> str:
    """The command as a shell line, with the settings it gets from the environment."""
    settings = [f"{k}='{env[k]}'" for k in ("MLCI_TEST_PATHS", "MLCI_CACHE_ENABLED") if k in env]
    return " ".join([*settings, "python", *argv[1:]]).replace(str(folder), "$TMP")


def _median(runs: list[dict], kind: str, key: str) -> float:
    return statistics.median(r[key] for r in runs if r["kind"] == kind)


def _print_table(runs: list[dict], tests: int) -> None:
    print(f"{tests} tests in {len(PATHS)} paths, coverage of the [tool.mlci.test] targets")
    print(f"{'':>6}  {'wall clock':^30}  {'CPU (user + system)':^30}")
    print(
        f"{'round':>6}  {'invoke test':>11}  {'raw pytest':>10}  {'ratio':>6}  "
        f"{'invoke':>10}  {'raw':>10}  {'ratio':>6}"
    )
    for i in range(REPEATS):
        pair = {r["kind"]: r for r in runs if r["round"] == i}
        mlci, raw = pair["mlci"], pair["raw"]
        print(
            f"{i + 1:>6}  {mlci['seconds']:>9.2f} s  {raw['seconds']:>8.2f} s  "
            f"{mlci['seconds'] / raw['seconds']:>6.3f}  {mlci['cpu_seconds']:>8.2f} s  "
            f"{raw['cpu_seconds']:>8.2f} s  {mlci['cpu_seconds'] / raw['cpu_seconds']:>6.3f}"
        )


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        try:
            runs, tests, commands = _measure(Path(tmp))
        except CannotMeasure as exc:
            print(f"test_overhead: cannot measure: {exc}")
            return 2
    mlci, raw = _median(runs, "mlci", "seconds"), _median(runs, "raw", "seconds")
    mlci_cpu, raw_cpu = _median(runs, "mlci", "cpu_seconds"), _median(runs, "raw", "cpu_seconds")
    value = mlci / raw
    _print_table(runs, tests["raw"])
    print(
        f"{'median':>6}  {mlci:>9.2f} s  {raw:>8.2f} s  {value:>6.3f}  "
        f"{mlci_cpu:>8.2f} s  {raw_cpu:>8.2f} s  {mlci_cpu / raw_cpu:>6.3f}"
    )
    result = {
        "name": "test_overhead",
        "value": round(value, 3),
        "unit": "x (invoke test / raw pytest --cov, same tests)",
        "goal": GOAL,
        "better": "lower",
        "mlci_seconds": mlci,
        "raw_seconds": raw,
        "cpu_ratio": round(mlci_cpu / raw_cpu, 3),
        "tests": tests["raw"],
        "paths": PATHS,
        "commands": commands,
        "runs": runs,
        "machine": _machine(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"test_overhead: {value:.2f} x (goal <= {GOAL:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
