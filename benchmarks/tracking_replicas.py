"""tracking_replicas: mlci's tracking tier with three `mlflow server` replicas against one,
both behind the same HAProxy, on one PostgreSQL server.

Read this first: on a machine with two cores, three replicas cannot be faster than one in
CPU terms. Clients, HAProxy, PostgreSQL and every replica share the same two cores, and
three replicas add processes (each has two web workers and MLflow's job runner) without
adding any CPU. The figure is about correctness under load, not speed: it shows that the
scaled-out tier stays correct under concurrent load (no failed request, one champion, no
overlapping lease), and what spreading the load over replicas costs on one small machine;
it says nothing about how the tier scales on real hardware, where each replica has cores
of its own.

Both tiers are built by the code the integration tests use
(tests/integration/tracking_tier.py: a fresh database each, replicas started together, each
running services/mlflow/prepare_db.py and then `mlflow server --workers 2`, HAProxy with
`balance leastconn` in front), and measured side by side in one run: each repeat starts a
fresh tier of each size in turn, alternating which goes first, waits until the start-up
work of the replicas' helpers is over, warms it up and measures it. One tier is up at a
time: with MLflow's default connection pools, three replicas keep about 50 PostgreSQL
connections open after a burst, and two tiers at once reached PostgreSQL's default limit
of 100 here (MLflow then answers 503). Per tier and repeat:

- tracking load (the figure): 16 clients, each with its own MlflowClient, released
  together; each creates 6 runs and logs 4 batches of 100 metric values plus a
  parameter and a tag to each, then closes it. That is the tracking traffic of concurrent
  trainings without their client-side CPU (a real training spends most of its time in
  the client: on two cores, sixteen of them would measure the clients, not the tier; the
  integration test runs sixteen real ones for correctness). Requests per second are
  counted by HAProxy (its backend's request counter over the load's wall time);
- promotion race (correctness under contention): 5 rounds of 8 pipelines promoting at
  the same moment through mlci's promotion lease; checked every round (one champion, the
  best; no lease left), then the history chain and that no two pipelines ever held the
  lease at the same time. Reported as promotions per second and requests per second.

Failed requests: 5xx answers, failed connections and aborted responses at HAProxy, plus
client errors of the load; they must be 0. Answers 4xx are expected (the lease is taken by
creating a registered model: the losers of a race get RESOURCE_ALREADY_EXISTS) and only
reported.

The CPU column is the machine's busy share during the tracking load. In the runs here it
was above 90 % for both tiers, and three replicas still served 1.1-1.4 times the requests
per second of one. That is no added capacity: most likely each of six web-worker processes
spends less CPU on contention than each of two does, as it juggles fewer requests at once
in its thread pool (a Python process's threads share one interpreter lock). A ratio above 1
is no evidence of scaling; that needs replicas with cores of their own.

The value is the median over REPEATS of requests/s with three replicas over requests/s
with one, for the tracking load. Goal: at least GOAL, that is spreading the same load
over three replicas on the same two cores costs at most a third of the throughput. Exit
status 0 when it measured, 1 when a request failed or a correctness check did not hold
(the table and the results file are written first), 2 when it could not measure.

Run from the repository root: python benchmarks/tracking_replicas.py
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results" / "tracking_replicas.json"
REPEATS = 3
TIERS = (1, 3)
GOAL = 0.67
LOAD = {"clients": 16, "runs": 6, "batches": 4, "values": 100}
RACE_ROUNDS, RACE_PER_ROUND = 5, 8
CAVEAT = (
    "on 2 cores, 3 replicas cannot be faster than 1 in CPU terms: this figure is about "
    "correctness under load (no failed request, one champion, no overlapping lease), "
    "not speed"
)


class CannotMeasure(Exception):
    pass


def _cpu_times() -> tuple[int, int]:
    """This machine's CPU time so far, in all and idle (ticks, from /proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields), fields[3] + fields[4]  # idle + iowait


def _busy_since(then: tuple[int, int]) -> float:
    """The share of CPU time spent busy since ``then`` (0..1)."""
    total, idle = _cpu_times()
    return 1 - (idle - then[1]) / max(1, total - then[0])


def _cpu_busy(seconds: float = 2.0) -> float:
    then = _cpu_times()
    time.sleep(seconds)
    return _busy_since(then)


def _wait_quiet(limit: float = 120.0) -> float:
    """Wait until the freshly started replicas have finished starting their helpers (MLflow's
    job runner imports for a while after /health answers); the busy share reached."""
    deadline = time.monotonic() + limit
    busy = _cpu_busy()
    while busy > 0.25 and time.monotonic() < deadline:
        busy = _cpu_busy()
    return busy


def _delta(tier: Any, before: dict, after: dict) -> dict[str, Any]:
    old, new = before["BACKEND"], after["BACKEND"]
    failed = (
        (new.responses_5xx - old.responses_5xx)
        + (new.connection_errors - old.connection_errors)
        + (new.response_errors - old.response_errors)
    )
    return {
        "requests": new.requests - old.requests,
        "per_replica": {n: after[n].requests - before[n].requests for n in tier.names},
        "failed": failed,
        "responses_4xx": new.responses_4xx - old.responses_4xx,
        "connection_retries": new.retries - old.retries,
        "health_checks_failed": sum(
            after[n].checks_failed - before[n].checks_failed for n in tier.names
        ),
        "replicas_went_down": sum(after[n].went_down - before[n].went_down for n in tier.names),
    }


def _measure(tier: Any, replicas: int, repeat: int, workloads: Any) -> dict[str, Any]:
    marks, before, cpu = tier.log_marks(), tier.stats(), _cpu_times()
    load = workloads.tracking_load(tier.url, **LOAD)
    busy, after = _busy_since(cpu), tier.stats()
    tracking = _delta(tier, before, after)
    tracking["failed"] += len(load.errors)
    tracking.update(
        seconds=round(load.seconds, 3),
        requests_per_s=round(tracking["requests"] / load.seconds, 1),
        cpu_busy=round(busy, 2),
        client_requests=load.requests,
        client_errors=load.errors[:5],
        log_problems=tier.log_problems(marks),
    )

    problems: list[str] = []
    marks, before, cpu = tier.log_marks(), tier.stats(), _cpu_times()
    started = time.monotonic()
    moves = 0
    try:
        race = workloads.promotion_race(
            tier.url, rounds=RACE_ROUNDS, per_round=RACE_PER_ROUND, record_holds=True
        )
        race_seconds = race.seconds
        moves = len(workloads.check_history(tier.url, race))
        workloads.check_no_overlap(race.holds)
        if len(race.holds) != RACE_ROUNDS * RACE_PER_ROUND:
            problems.append(f"{len(race.holds)} lease holds for {RACE_ROUNDS * RACE_PER_ROUND}")
    except AssertionError as exc:
        problems.append(f"promotion race ({replicas} replicas): {exc}")
        race_seconds = time.monotonic() - started
    busy, after = _busy_since(cpu), tier.stats()
    contention = _delta(tier, before, after)
    promotions = RACE_ROUNDS * RACE_PER_ROUND
    contention.update(
        seconds=round(race_seconds, 3),
        promotions_per_s=round(promotions / race_seconds, 2),
        requests_per_s=round(contention["requests"] / race_seconds, 1),
        cpu_busy=round(busy, 2),
        champion_moves=moves,
        log_problems=tier.log_problems(marks),
    )
    return {
        "repeat": repeat,
        "replicas": replicas,
        "tracking_load": tracking,
        "promotion_race": contention,
        "problems": problems,
    }


def _first_line(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    lines = (out.stdout or out.stderr).splitlines()
    return lines[0].strip() if lines else "?"


def _machine() -> str:
    import mlflow

    haproxy = _first_line(["/usr/sbin/haproxy", "-v"]).split(" - ")[0]
    postgres = _first_line(
        ["runuser", "-u", "postgres", "--", "psql", "-Atc", "show server_version"]
    )
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{os.cpu_count()} cores, {mem:.0f} GiB, Python {platform.python_version()}, "
        f"mlflow server {mlflow.__version__} (--workers 2, job runner on) x 1 and x 3 on "
        f"PostgreSQL {postgres.split()[0]}, {haproxy}, all on 127.0.0.1"
    )


def _print_table(runs: list[dict], medians: dict) -> None:
    print(
        f"tracking load: {LOAD['clients']} clients x {LOAD['runs']} runs x "
        f"({LOAD['batches']} batches of {LOAD['values']} values); promotion race: "
        f"{RACE_ROUNDS} rounds x {RACE_PER_ROUND} pipelines; {REPEATS} repeats"
    )
    print(
        f"{'repeat':>6}  {'replicas':>8}  {'load req/s':>10}  {'CPU':>4}  "
        f"{'requests per replica':<20}  {'race prom/s':>11}  {'race req/s':>10}  "
        f"{'4xx':>5}  {'failed':>6}"
    )
    for r in runs:
        t, c = r["tracking_load"], r["promotion_race"]
        spread = "/".join(str(v) for v in t["per_replica"].values())
        print(
            f"{r['repeat'] + 1:>6}  {r['replicas']:>8}  {t['requests_per_s']:>10.1f}  "
            f"{t['cpu_busy']:>4.0%}  {spread:<20}  {c['promotions_per_s']:>11.2f}  "
            f"{c['requests_per_s']:>10.1f}  "
            f"{t['responses_4xx'] + c['responses_4xx']:>5}  {t['failed'] + c['failed']:>6}"
        )
    for n in TIERS:
        m = medians[str(n)]
        print(
            f"median  {n:>8}  {m['tracking_requests_per_s']:>10.1f}  {'':>4}  {'':<20}  "
            f"{m['promotions_per_s']:>11.2f}  {m['race_requests_per_s']:>10.1f}"
        )


def main() -> int:
    sys.path.insert(0, str(REPO_ROOT))  # the tier and the workloads live with the tests
    try:
        from mlci import servers

        servers.disable_mlflow_telemetry()  # before the first `import mlflow`
        from mlci.errors import MlciError
        from mlci.tasks._signals import Stopped, stop_on_signals
        from tests.integration import workloads
        from tests.integration.tracking_tier import TierUnavailable, tracking_tier
    except ImportError as exc:
        print(f"tracking_replicas: cannot measure: {exc} (install the project first)")
        return 2

    runs: list[dict] = []
    try:
        # SIGTERM and SIGHUP unwind like Ctrl-C: the tier's servers and database go too.
        with stop_on_signals(), tempfile.TemporaryDirectory() as tmp:
            for repeat in range(REPEATS):
                order = TIERS if repeat % 2 == 0 else tuple(reversed(TIERS))
                for n in order:
                    started = time.monotonic()
                    with tracking_tier(n, Path(tmp) / f"repeat{repeat}-tier{n}") as tier:
                        up = time.monotonic() - started
                        quiet = _wait_quiet()
                        # warm-up, not measured: first connections, caches
                        workloads.tracking_load(tier.url, clients=4, runs=1, batches=1, values=10)
                        run = _measure(tier, n, repeat, workloads)
                    run.update(start_seconds=round(up, 1), cpu_busy_before=round(quiet, 2))
                    runs.append(run)
                    print(
                        f"repeat {repeat + 1}, {n} replica(s): up in {up:.0f} s, measured",
                        flush=True,
                    )
    except Stopped as exc:
        print(f"tracking_replicas: stopped by {exc.name}; the tier was taken down")
        return exc.exit_code
    except TierUnavailable as exc:
        print(f"tracking_replicas: cannot measure: {exc}")
        return 2
    except (MlciError, CannotMeasure) as exc:
        print(f"tracking_replicas: cannot measure: {exc}")
        return 2

    medians = {
        str(n): {
            "tracking_requests_per_s": statistics.median(
                r["tracking_load"]["requests_per_s"] for r in runs if r["replicas"] == n
            ),
            "promotions_per_s": statistics.median(
                r["promotion_race"]["promotions_per_s"] for r in runs if r["replicas"] == n
            ),
            "race_requests_per_s": statistics.median(
                r["promotion_race"]["requests_per_s"] for r in runs if r["replicas"] == n
            ),
        }
        for n in TIERS
    }
    ratio = medians["3"]["tracking_requests_per_s"] / medians["1"]["tracking_requests_per_s"]
    race_ratio = medians["3"]["promotions_per_s"] / medians["1"]["promotions_per_s"]
    failed = sum(r["tracking_load"]["failed"] + r["promotion_race"]["failed"] for r in runs)
    problems = [p for r in runs for p in r["problems"]]
    idle_replicas = sorted(
        {name for r in runs for name, count in r["tracking_load"]["per_replica"].items()
         if count == 0 and r["replicas"] > 1}
    )  # fmt: skip
    _print_table(runs, medians)
    print(
        f"3 replicas / 1: tracking load {ratio:.2f} x, promotion race {race_ratio:.2f} x; "
        f"failed requests: {failed} (must be 0)"
    )
    print(f"note: {CAVEAT}")
    for problem in problems:
        print(f"CHECK FAILED: {problem}")
    for r in runs:
        for part in ("tracking_load", "promotion_race"):
            for line in r[part]["log_problems"][:10]:
                print(f"logged ({r['replicas']} replicas, repeat {r['repeat'] + 1}): {line}")
    if idle_replicas:
        print(f"CHECK FAILED: replicas that served no request: {', '.join(idle_replicas)}")

    result = {
        "name": "tracking_replicas",
        "value": round(ratio, 2),
        "unit": "x (tracking requests/s, 3 replicas / 1 replica, same HAProxy, same 2 cores)",
        "goal": GOAL,
        "better": "higher",
        "note": CAVEAT,
        "failed_requests": failed,
        "checks_failed": problems,
        "promotion_race_ratio": round(race_ratio, 2),
        "medians": medians,
        "workload": {
            "tracking_load": LOAD,
            "promotion_race": {"rounds": RACE_ROUNDS, "per_round": RACE_PER_ROUND},
        },
        "runs": runs,
        "machine": _machine(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"tracking_replicas: {ratio:.2f} x (goal >= {GOAL:g})")
    return 1 if failed or problems or idle_replicas else 0


if __name__ == "__main__":
    sys.exit(main())
