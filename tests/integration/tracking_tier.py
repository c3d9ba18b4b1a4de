"""A scaled-out MLflow tracking tier on this machine: N `mlflow server` replicas on one
PostgreSQL database, behind HAProxy.

mlci's tracking server keeps no state of its own (runs, the registry and mlci's promotion
lease live in the database, artefacts in one shared store), so a team may run several
replicas behind a load balancer. This module builds that tier for real, for the
integration tests (the ``tracking_tier`` fixture in conftest) and for
``benchmarks/tracking_replicas.py``, with the same code for one replica and for three:

- a throw-away role and database with a random password (the password reaches the
  replicas through PGPASSWORD only: never a command line, a config file or a log);
- one artefact folder shared by all replicas (``--artifacts-destination --serve-artifacts``);
- N replicas started at the same moment, each the way the platform's image starts one:
  ``services/mlflow/prepare_db.py`` (schema creation under a PostgreSQL advisory lock, so
  replicas that start together on an empty database do not race to create the tables),
  then ``mlflow server``; MLflow's periodic server jobs run on the first replica only;
- HAProxy (Debian's 2.6, a foreground process with its own config in the state folder) in
  front, with HAProxy's counters readable through its stats socket.

Everything started here is stopped, and the database and role dropped, however the block
ends.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import secrets
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mlci import servers

REPO_ROOT = Path(__file__).resolve().parents[2]
PREPARE_DB = REPO_ROOT / "services" / "mlflow" / "prepare_db.py"
HAPROXY = "/usr/sbin/haproxy"
BACKEND = "mlflow"
#: HAProxy answers this itself: 200 while every replica passes its health check, else 503.
MONITOR_PATH = "/haproxy-health"
#: Where MLflow keeps a replica's job queues (a folder it makes in /dev/shm at each start
#: and never removes); read from the replica's processes so that teardown can remove it.
HUEY_STORAGE_VAR = "_MLFLOW_HUEY_STORAGE_PATH"
#: What marks a replica's log line as a problem (its access log lines are left out).
PROBLEM_WORDS = ("ERROR", "Error", "Traceback", "Exception", "CRITICAL")


class TierUnavailable(RuntimeError):
    """What the tier needs is not on this machine (HAProxy, a running PostgreSQL)."""


def postgres_online() -> bool:
    """A PostgreSQL cluster of this machine is online (Debian's cluster tools say so)."""
    if not shutil.which("pg_lsclusters") or not shutil.which("runuser"):
        return False
    out = subprocess.run(
        ["pg_lsclusters", "-h"], capture_output=True, text=True, check=False, timeout=30
    )
    return " online " in f" {out.stdout} "


def missing_prerequisites() -> str | None:
    """Why the tier cannot be built here, or None when it can."""
    if not Path(HAPROXY).is_file():
        return f"no HAProxy at {HAPROXY} (apt-get install haproxy)"
    if not postgres_online():
        return "no PostgreSQL cluster online"
    return None


# -- the database ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Database:
    """A throw-away PostgreSQL role and database on 127.0.0.1:5432."""

    role: str
    name: str
    password: str

    @property
    def uri(self) -> str:
        """The SQLAlchemy URI without the password (that one goes in PGPASSWORD)."""
        return f"postgresql+psycopg://{self.role}@127.0.0.1:5432/{self.name}"


def _psql(statement: str, *, check: bool) -> None:
    # As the cluster's superuser through peer authentication: no password of ours is
    # involved. A CREATE ROLE statement carries the new role's password on psql's stdin
    # pipe (-f -), never on its command line.
    subprocess.run(
        ["runuser", "-u", "postgres", "--", "psql", "-q", "-v", "ON_ERROR_STOP=1", "-f", "-"],
        input=statement, text=True, check=check, capture_output=True, timeout=60,
    )  # fmt: skip


@contextlib.contextmanager
def throwaway_database(prefix: str = "mlflow") -> Iterator[Database]:
    """A new role and database with a random password; both dropped at the end."""
    suffix = secrets.token_hex(4)
    db = Database(f"mlci_{suffix}", f"{prefix}_{suffix}", secrets.token_urlsafe(18))
    _psql(f"create role {db.role} login password '{db.password}';", check=True)
    try:
        _psql(f"create database {db.name} owner {db.role};", check=True)
        yield db
    finally:
        # FORCE: a connection a killed server left behind does not keep the database alive.
        _psql(f"drop database if exists {db.name} with (force);", check=False)
        _psql(f"drop role if exists {db.role};", check=False)


# -- HAProxy's counters ----------------------------------------------------------------------


@dataclass(frozen=True)
class ServerStats:
    """One row of HAProxy's ``show stat`` for a replica (or the backend as a whole)."""

    name: str
    status: str  # UP, DOWN, ...
    requests: int  # HTTP requests sent to it (req_tot)
    responses_5xx: int
    responses_4xx: int
    connection_errors: int  # econ: could not connect
    response_errors: int  # eresp: the server aborted or sent garbage
    retries: int  # wretr: connection retries
    redispatches: int  # wredis: retries that went to another replica
    checks_failed: int  # chkfail: failed health checks
    went_down: int  # chkdown: UP -> DOWN transitions (a flap counts here)


def _int(value: str) -> int:
    return int(value) if value.strip().isdigit() else 0


def read_stats(socket_path: Path, timeout: float = 10.0) -> dict[str, ServerStats]:
    """HAProxy's counters of the replicas and of the backend (key ``BACKEND``)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(socket_path))
        sock.sendall(b"show stat\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    text = b"".join(chunks).decode().lstrip("# ")
    rows = {}
    for row in csv.DictReader(io.StringIO(text)):
        if row.get("pxname") != BACKEND:
            continue
        rows[row["svname"]] = ServerStats(
            name=row["svname"],
            status=row.get("status", ""),
            requests=_int(row.get("req_tot", "")),
            responses_5xx=_int(row.get("hrsp_5xx", "")),
            responses_4xx=_int(row.get("hrsp_4xx", "")),
            connection_errors=_int(row.get("econ", "")),
            response_errors=_int(row.get("eresp", "")),
            retries=_int(row.get("wretr", "")),
            redispatches=_int(row.get("wredis", "")),
            checks_failed=_int(row.get("chkfail", "")),
            went_down=_int(row.get("chkdown", "")),
        )
    return rows


# -- the tier --------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrackingTier:
    """A running tier: clients use ``url`` (the balancer), never a replica directly."""

    url: str
    replicas: tuple[str, ...]  # each replica's own URL, in HAProxy's order r1, r2, ...
    replica_logs: tuple[Path, ...]
    balancer_log: Path
    stats_socket: Path
    artifacts: Path  # the folder every replica stores artefacts in

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f"r{i}" for i in range(1, len(self.replicas) + 1))

    def stats(self) -> dict[str, ServerStats]:
        return read_stats(self.stats_socket)

    def requests_per_replica(self) -> dict[str, int]:
        """How many HTTP requests HAProxy has sent to each replica so far."""
        stats = self.stats()
        return {name: stats[name].requests for name in self.names}

    def log_marks(self) -> dict[Path, int]:
        """Where the logs end now; pass to :meth:`log_problems` later."""
        return {p: p.stat().st_size for p in (self.balancer_log, *self.replica_logs)}

    def log_problems(self, marks: dict[Path, int], limit: int = 40) -> list[str]:
        """Lines logged since ``marks`` that tell of a problem: every line of HAProxy (which
        logs only failed or abnormal requests) and the replicas' lines naming an error."""
        found = []
        for path, start in marks.items():
            with path.open("rb") as log:
                log.seek(start)
                text = log.read().decode(errors="replace")
            for line in text.splitlines():
                if path == self.balancer_log or any(w in line for w in PROBLEM_WORDS):
                    found.append(f"{path.name}: {line}")
        return found[:limit]


def replica_command(port: int, artifacts: Path) -> list[str]:
    """One replica as the platform's image starts it: prepare the schema, then serve.

    A shell runs the two steps so that both live in one process group (stopped together)
    and ``exec`` leaves `mlflow server` as the process the group's leader became. The
    backend store URI comes from MLFLOW_BACKEND_STORE_URI, which both steps read.
    """
    script = (
        'py=$1; prepare=$2; shift 2; "$py" "$prepare" || exit; exec "$py" -m mlflow server "$@"'
    )
    return [
        "/bin/sh", "-c", script, "mlflow-replica", sys.executable, str(PREPARE_DB),
        "--artifacts-destination", str(artifacts), "--serve-artifacts",
        "--host", servers.LOOPBACK, "--port", str(port), "--workers", "2",
    ]  # fmt: skip


def haproxy_config(port: int, replica_ports: list[int], stats_socket: Path) -> str:
    """The balancer's configuration; it holds no secret.

    - ``balance leastconn``: a request goes to the replica with the fewest requests in
      progress, ties taken in turn. Most tracking calls take milliseconds, but a model
      upload or download through ``--serve-artifacts`` can take seconds; round-robin would
      queue quick calls behind those, least-connections routes around them. At low load
      every replica ties and the requests still go round all of them.
    - Each request is balanced on its own (HAProxy's default HTTP keep-alive mode), not
      pinned to the replica of the client's connection.
    - Retries: only ``conn-failure``, that is a connection to a replica that could not be
      made, so the request was never sent; ``option redispatch 1`` sends such a retry to
      another replica. A request that reached a replica is never sent again: most of the
      tracking API is non-idempotent POSTs (create a run, a model version, the lease's
      registered model), and the MLflow client already retries on its own.
    - Health: ``GET /health`` every 2 s; three failures take a replica out, two passes bring
      it back. ``MONITOR_PATH`` is HAProxy's own health: 503 unless every replica is in.
    - Timeouts: the client side and the server side well above mlci's 30 s request
      timeout (an artefact upload may be slow on a loaded machine), so the client gives up
      first and HAProxy never cuts a request short; short ones for connects and checks.
    - Log: only failed or abnormal requests (``dontlog-normal``), to stderr, in the log file.
    """
    servers_lines = "\n".join(
        f"    server r{i} {servers.LOOPBACK}:{p}" for i, p in enumerate(replica_ports, start=1)
    )
    return f"""\
global
    log stderr format raw local0
    maxconn 2048
    stats socket {stats_socket} mode 600 level user
    stats timeout 10s

defaults
    mode http
    log global
    option httplog
    option dontlog-normal
    timeout connect 5s
    timeout client 3m
    timeout server 3m
    timeout http-request 30s
    timeout http-keep-alive 60s
    timeout queue 30s
    timeout check 5s
    retries 3
    retry-on conn-failure
    option redispatch 1

frontend tracking
    bind {servers.LOOPBACK}:{port}
    monitor-uri {MONITOR_PATH}
    monitor fail if {{ nbsrv({BACKEND}) lt {len(replica_ports)} }}
    default_backend {BACKEND}

backend {BACKEND}
    balance leastconn
    option httpchk GET /health
    http-check expect status 200
    default-server check inter 2s fall 3 rise 2
{servers_lines}
"""


def _huey_folders(leader: int) -> set[Path]:
    """MLflow's job-queue folders named in the environment of a replica's processes (our own
    children: only that one variable is read from it, nothing else is kept)."""
    found = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if os.getpgid(int(proc.name)) != leader:
                continue
            environ = (proc / "environ").read_bytes().split(b"\0")
        except (OSError, ProcessLookupError):
            continue
        for entry in environ:
            key, _, value = entry.partition(b"=")
            if key.decode(errors="replace") == HUEY_STORAGE_VAR and value:
                found.add(Path(value.decode()))
    return found


@contextlib.contextmanager
def _replicas(
    n: int, db: Database, artifacts: Path, state: Path, start_timeout: float
) -> Iterator[list[servers.RunningServer]]:
    """N replicas spawned back to back (not one after the other's readiness), then waited
    for; all stopped at the end. mlci.servers' spawn, readiness and stop helpers, the ones
    its ``local_server`` uses, are used here directly because that one waits for its server
    before the next could be started."""
    procs: list[tuple[subprocess.Popen, str, Path]] = []
    huey: set[Path] = set()
    try:
        for i in range(1, n + 1):
            port = servers.free_port()
            log = state / f"replica-r{i}.log"
            env = {
                "MLFLOW_BACKEND_STORE_URI": db.uri,
                "PGPASSWORD": db.password,
                # MLflow's way to run periodic server jobs on exactly one instance.
                "MLFLOW_SERVER_JOB_ENABLE_PERIODIC_TASKS": "true" if i == 1 else "false",
            }
            name = f"mlflow replica r{i}"
            proc = servers.spawn(name, replica_command(port, artifacts), log, env)
            procs.append((proc, f"http://{servers.LOOPBACK}:{port}", log))
        running = []
        for i, (proc, url, log) in enumerate(procs, start=1):
            name = f"mlflow replica r{i}"
            servers.wait_ready(name, proc, url + "/health", log, start_timeout)
            running.append(servers.RunningServer(name=name, url=url, pid=proc.pid, log=log))
        yield running
    finally:
        for proc, _, _ in procs:
            with contextlib.suppress(OSError):
                huey |= _huey_folders(proc.pid)
        # All at once: each may take its grace period to stop.
        stoppers = [
            threading.Thread(target=servers.stop_process_group, args=(proc,))
            for proc, _, _ in procs
        ]
        for t in stoppers:
            t.start()
        for t in stoppers:
            t.join()
        for folder in huey:
            if folder.name.startswith("tmp"):  # what mkdtemp makes; nothing else is removed
                shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def tracking_tier(n: int, state: Path, *, start_timeout: float = 240.0) -> Iterator[TrackingTier]:
    """N replicas on one fresh PostgreSQL database behind HAProxy, for the block's length.

    Raises TierUnavailable when HAProxy or PostgreSQL is missing, and mlci's
    LocalServerError when a replica or the balancer does not start (with its log's tail).
    """
    if n < 1:
        raise ValueError("a tracking tier needs at least one replica")
    why = missing_prerequisites()
    if why:
        raise TierUnavailable(why)
    if not PREPARE_DB.is_file():
        raise TierUnavailable(f"{PREPARE_DB} is missing (the replicas run it before serving)")
    state.mkdir(parents=True, exist_ok=True)
    artifacts = state / "artifacts"
    artifacts.mkdir(exist_ok=True)
    stats_socket = state / "haproxy.sock"
    with (
        throwaway_database() as db,
        _replicas(n, db, artifacts, state, start_timeout) as replicas,
    ):
        ports = [int(r.url.rsplit(":", 1)[1]) for r in replicas]

        def balancer(port: int) -> list[str]:
            config = state / "haproxy.cfg"
            config.write_text(haproxy_config(port, ports, stats_socket))
            # -db: stay in the foreground (stopped with its process group like the rest).
            return [HAPROXY, "-db", "-f", str(config)]

        with servers.local_server(
            "HAProxy", balancer, MONITOR_PATH, state / "haproxy.log", start_timeout=30
        ) as lb:  # fmt: skip
            yield TrackingTier(
                url=lb.url,
                replicas=tuple(r.url for r in replicas),
                replica_logs=tuple(r.log for r in replicas),
                balancer_log=lb.log,
                stats_socket=stats_socket,
                artifacts=artifacts,
            )
