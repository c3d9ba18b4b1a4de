"""prepare: the Jenkinsfile's Prepare stage when nothing it installs has changed, against a
cold Prepare.

Prepare (and Train, on the train agent) runs `bash .ci/bootstrap`: it creates .venv and
pip-installs [tool.mlci.bootstrap] requirements, and installs nothing when the stamp of its
inputs is unchanged. On the platform's agent both .venv (in the job's workspace) and pip's
cache (PIP_CACHE_DIR) live in the agent-workspace volume, so both outlive builds. In a copy
of this repository (its tracked files and the untracked ones git does not ignore, made a git
repository of its own so that hatch-vcs versions the packages as in a Jenkins checkout) this
script times `bash .ci/bootstrap`:

  (a) cold: no .venv, an empty PIP_CACHE_DIR (a new agent);
  (b) unchanged: run again with nothing changed (the stamp hits);
  (c) dependency change: pyproject.toml edited so that the stamp changes, .venv kept, pip's
      cache warm from (a): pip runs over the venv again (it rebuilds the editable packages
      and installs what is new; here nothing is, as after a version bound was loosened);
  (d) new workspace: no .venv (a new branch's job, a wiped workspace), pip's cache warm.

pip runs as it does on an agent: from the index alone (PIP_INDEX_URL when set, else PyPI),
with this machine's pip configuration files and local wheel folders (find-links) left out,
and with the Python on PATH outside any active virtual environment. Each round starts from
a fresh copy and an empty cache and runs (a) once: ROUNDS rounds (default 3, `--rounds N`,
at least 1; a cold Prepare takes a minute or more), with (b), (c) and (d) repeated in each
so that each runs at least 3 times in all. The value is median (b) / median (a), goal
<= 0.05; (c)/(a) and (d)/(a) are reported beside it, with how much pip's cache holds. pip
caches only responses that carry caching headers (Cache-Control max-age, Expires, ETag), as
PyPI's do; the script checks the index and says when they are missing, since (c) and (d)
then download everything again. The temporary copies are removed.

Run from the repository root: python benchmarks/prepare.py [--rounds N]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

REPEATS = 3
ROUNDS = 3
GOAL = 0.05
BOOTSTRAP_TIMEOUT = 1800  # seconds; a cold Prepare on a slow link
REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results" / "prepare.json"
PYPI = "https://pypi.org/simple/"
# Variables that would point pip (or the shell) at sources, caches or environments an agent
# does not have; the other PIP_* (certificates, timeouts, proxies, an index URL) pass on.
LEFT_OUT = frozenset(
    {
        "PIP_CONFIG_FILE",
        "PIP_FIND_LINKS",
        "PIP_EXTRA_INDEX_URL",
        "PIP_NO_INDEX",
        "PIP_CONSTRAINT",
        "PIP_CACHE_DIR",
        "PIP_NO_CACHE_DIR",
        "VIRTUAL_ENV",
        "PYTHONPATH",
        "PYTHONHOME",
        "MLCI_BOOTSTRAP_FORCE",
    }
)
SCENARIOS = {
    "cold": "(a) cold: no .venv, empty pip cache",
    "unchanged": "(b) unchanged: the stamp hits",
    "dependency change": "(c) dependency change: .venv kept, warm cache",
    "new workspace": "(d) new workspace: no .venv, warm cache",
}


class CouldNotMeasure(Exception):
    """Something the measurement needs failed; the message says what."""


def copy_repository(destination: Path) -> int:
    """Copy the working tree's tracked and unignored files into a new git repository."""
    listed = _git(["ls-files", "-z", "--cached", "--others", "--exclude-standard"], REPO)
    copied = 0
    for name in sorted(set(filter(None, listed.split("\0")))):
        source = REPO / name
        if not (source.is_file() or source.is_symlink()):
            continue  # deleted in the working tree, or a submodule
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target, follow_symlinks=False)
        copied += 1
    _git(["init", "-q"], destination)
    _git(["add", "-A"], destination)
    _git(["commit", "-q", "-m", "copy for benchmarks/prepare.py"], destination)
    return copied


def _git(args: list[str], where: Path) -> str:
    settings = (
        "user.name=prepare benchmark",
        "user.email=prepare-benchmark@localhost",
        "commit.gpgsign=false",
        "init.defaultBranch=main",
    )
    config = [word for setting in settings for word in ("-c", setting)]
    try:
        proc = subprocess.run(
            ["git", *config, *args], cwd=where, capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError) as error:
        detail = getattr(error, "stderr", "") or error
        raise CouldNotMeasure(f"git {args[0]} failed in {where}: {detail}") from error
    return proc.stdout


def agent_environment(cache: Path) -> dict[str, str]:
    """This process's environment as an agent's shell step would see it, with ``cache``."""
    env = {key: value for key, value in os.environ.items() if key not in LEFT_OUT}
    venv_bins = set()
    if sys.prefix != sys.base_prefix:
        venv_bins.add(os.path.realpath(Path(sys.prefix) / "bin"))
    if os.environ.get("VIRTUAL_ENV"):
        venv_bins.add(os.path.realpath(Path(os.environ["VIRTUAL_ENV"]) / "bin"))
    env["PATH"] = os.pathsep.join(
        entry
        for entry in env.get("PATH", "").split(os.pathsep)
        if entry and os.path.realpath(entry) not in venv_bins
    )
    env["PIP_CONFIG_FILE"] = os.devnull  # pip then reads no configuration file at all
    env["PIP_CACHE_DIR"] = str(cache)
    return env


def bootstrap(workspace: Path, env: dict[str, str], scenario: str) -> float:
    """Seconds `bash .ci/bootstrap` takes in ``workspace``; checks it did what ``scenario`` says."""
    started = time.monotonic()
    try:
        proc = subprocess.run(
            ["bash", ".ci/bootstrap"],
            cwd=workspace,
            env=env,
            capture_output=True,
            text=True,
            timeout=BOOTSTRAP_TIMEOUT,
        )
    except subprocess.TimeoutExpired as error:
        raise CouldNotMeasure(
            f".ci/bootstrap ({scenario}) ran past {BOOTSTRAP_TIMEOUT} s; is the index reachable?"
        ) from error
    seconds = time.monotonic() - started
    output = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0:
        tail = "\n".join(output.splitlines()[-15:])
        raise CouldNotMeasure(
            f".ci/bootstrap ({scenario}) exited {proc.returncode} in the copy:\n{tail}"
        )
    skipped = "up to date" in output
    if skipped != (scenario == "unchanged"):
        raise CouldNotMeasure(
            f".ci/bootstrap ({scenario}) {'skipped' if skipped else 'ran'} the install, "
            f"which this scenario should not: {output.splitlines()[-1]}"
        )
    return seconds


def cache_contents(cache: Path) -> tuple[float, int]:
    """MB in pip's cache, and how many HTTP responses (index pages, downloads) it holds."""
    size, responses = 0, 0
    if cache.is_dir():
        for path in cache.rglob("*"):
            if path.is_file():
                size += path.stat().st_size
                responses += path.relative_to(cache).parts[0] in ("http", "http-v2")
    return size / 2**20, responses


def index_sends_caching_headers(index: str) -> bool | None:
    """Whether the index's page for pip carries headers that let pip cache it (None: unknown)."""
    url = index.rstrip("/") + "/pip/"
    request = urllib.request.Request(url, headers={"User-Agent": "mlci-prepare-benchmark"})
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            headers = {key.lower(): value for key, value in response.headers.items()}
    except (OSError, ValueError):
        return None
    cacheable = "max-age" in headers.get("cache-control", "")
    return cacheable or "etag" in headers or "expires" in headers


def measure_round(number: int, per_round: int, facts: dict[str, str]) -> list[dict]:
    runs: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="mlci-prepare-") as tmp:
        workspace, cache = Path(tmp) / "workspace", Path(tmp) / "pip-cache"
        files = copy_repository(workspace)
        env = agent_environment(cache)
        if not facts:
            facts["files"] = str(files)
            facts["python"] = _output(["python3", "--version"], workspace, env)

        def timed(scenario: str) -> None:
            seconds = bootstrap(workspace, env, scenario)
            megabytes, responses = cache_contents(cache)
            runs.append(
                {
                    "round": number,
                    "scenario": scenario,
                    "seconds": round(seconds, 3),
                    "pip_cache_mb": round(megabytes, 1),
                    "pip_cache_http_responses": responses,
                }
            )
            print(
                f"  round {number + 1}: {SCENARIOS[scenario]:<46} {seconds:7.2f} s   "
                f"pip cache {megabytes:6.1f} MB, {responses} HTTP responses",
                flush=True,
            )

        timed("cold")
        if "pip" not in facts:
            pip = [".venv/bin/python", "-m", "pip", "--version"]
            facts["pip"] = _output(pip, workspace, env).split(" from ")[0]
        for repeat in range(per_round):
            timed("unchanged")
            with (workspace / "pyproject.toml").open("a") as pyproject:
                pyproject.write(f"\n# benchmarks/prepare.py: change {number}.{repeat}\n")
            timed("dependency change")
            shutil.rmtree(workspace / ".venv")
            timed("new workspace")
    return runs


def _output(command: list[str], where: Path, env: dict[str, str]) -> str:
    try:
        proc = subprocess.run(
            command, cwd=where, env=env, capture_output=True, text=True, check=True, timeout=60
        )
    except (OSError, subprocess.SubprocessError) as error:
        raise CouldNotMeasure(f"{' '.join(command)} failed: {error}") from error
    return proc.stdout.strip()


def main() -> int:
    # A stop (SIGTERM) unwinds like an error, so that the temporary copies are removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="cold Prepares (default 3)")
    rounds = max(1, parser.parse_args().rounds)
    per_round = math.ceil(REPEATS / rounds)
    index = os.environ.get("PIP_INDEX_URL", PYPI)
    facts: dict[str, str] = {}
    runs: list[dict] = []
    load_before = os.getloadavg()[0]
    try:
        for number in range(rounds):
            runs += measure_round(number, per_round, facts)
    except CouldNotMeasure as error:
        print(f"prepare: could not measure: {error}", file=sys.stderr)
        return 1

    medians = {
        scenario: statistics.median(r["seconds"] for r in runs if r["scenario"] == scenario)
        for scenario in SCENARIOS
    }
    cold = medians["cold"]
    counts = {s: sum(r["scenario"] == s for r in runs) for s in SCENARIOS}
    print(f"\n  {'scenario':<46} {'runs':>4} {'median s':>9} {'/ cold':>7}")
    for scenario, label in SCENARIOS.items():
        ratio = medians[scenario] / cold
        print(f"  {label:<46} {counts[scenario]:>4} {medians[scenario]:>9.2f} {ratio:>7.3f}")

    cached = max(r["pip_cache_http_responses"] for r in runs if r["scenario"] == "cold")
    headers = index_sends_caching_headers(index)
    notes = []
    if cached == 0:
        why = (
            "arrive here without caching headers (no Cache-Control max-age, Expires or ETag)"
            if headers is False
            else "were not cacheable"
        )
        notes.append(
            f"pip's HTTP cache held no download after a cold Prepare: responses from {index} "
            f"{why}, so (c) and (d) downloaded again all but the wheels pip built from source; "
            "where the headers arrive as the index sends them (pypi.org sends them), (c) and "
            "(d) download nothing that is cached"
        )
    for note in notes:
        print(f"\nnote: {note}")

    value = medians["unchanged"] / cold
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    header_fact = {
        True: "responses arrive with caching headers",
        False: "responses arrive without caching headers",
        None: "caching headers not checked",
    }[headers]
    result = {
        "name": "prepare",
        "value": round(value, 4),
        "unit": "x (unchanged Prepare / cold Prepare)",
        "goal": GOAL,
        "better": "lower",
        "cold_seconds": round(cold, 3),
        "unchanged_seconds": round(medians["unchanged"], 3),
        "dependency_change_seconds": round(medians["dependency change"], 3),
        "new_workspace_seconds": round(medians["new workspace"], 3),
        "dependency_change_ratio": round(medians["dependency change"] / cold, 4),
        "new_workspace_ratio": round(medians["new workspace"] / cold, 4),
        "cold_repeats": counts["cold"],
        "repeats": {scenario: counts[scenario] for scenario in SCENARIOS},
        "runs": runs,
        "notes": notes,
        "machine": f"{os.cpu_count()} cores, {mem:.0f} GiB, {facts['python']} on PATH, "
        f"{facts['pip']} in the venv, index {index} ({header_fact}), copy of {facts['files']} "
        f"files; load average {load_before:.1f} before the run, {os.getloadavg()[0]:.1f} after",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"\nmedian Prepare: cold {cold:.2f} s, unchanged {medians['unchanged']:.2f} s, "
        f"dependency change {medians['dependency change']:.2f} s "
        f"({result['dependency_change_ratio']:.3f} of cold), new workspace "
        f"{medians['new workspace']:.2f} s ({result['new_workspace_ratio']:.3f} of cold)"
    )
    print(f"prepare: {value:.3f} x (goal <= {GOAL})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
