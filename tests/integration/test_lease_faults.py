"""The promotion lease under faults, and rollback along the history, on real mlflow servers.

Faults are injected, never waited for: a client wrapper raises on chosen calls or runs an
action around them, the breaker's pause is an injected hook, and the pipelines that compete
are separate processes (tests/integration/lease_worker.py) that wait for files, not for
luck. Concurrency runs on the PostgreSQL-backed server; the database stop on a server of
its own, whose database alone is closed to connections.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from mlci import registry, servers
from mlci.errors import StageFailed
from mlci.settings import PromotionSettings

from .conftest import REPO_ROOT, _postgres_running, invoke_model_task

pytestmark = pytest.mark.integration

ENABLED = PromotionSettings(mode="enabled", min={})
WORKER = Path(__file__).with_name("lease_worker.py")


def _client(uri):
    from mlflow import MlflowClient

    return MlflowClient(uri, registry_uri=uri)


def _model(client, prefix):
    model = f"{prefix}-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(model)
    return model, client.create_experiment(model)


def _candidate(client, model, experiment_id, f1):
    run = client.create_run(experiment_id)
    client.log_metric(run.info.run_id, "f1_macro", f1)
    client.set_terminated(run.info.run_id, "FINISHED")
    mv = client.create_model_version(
        model, source=f"runs:/{run.info.run_id}/model", run_id=run.info.run_id
    )
    return str(mv.version)


def _champion(client, model, alias="champion"):
    mv = registry.alias_version(client, model, alias)
    return None if mv is None else str(mv.version)


def _leftovers(client, model):
    """The lock and break markers of ``model`` that exist now."""
    lock = model + registry.LOCK_SUFFIX
    return sorted(m.name for m in client.search_registered_models(f"name LIKE '{lock}%'"))


class InjectedFault(requests.exceptions.ConnectionError):
    """What a dropped connection raises, injected."""


@dataclass
class Rule:
    method: str
    name: str | None
    calls: set[int] | None  # which calls of (method, name), counting from 1; None: all
    before: Callable[[], None] | None
    after: Callable[[], None] | None
    fail: bool


class Faulty:
    """A real MlflowClient whose chosen calls fail (InjectedFault) or run an action first or
    afterwards. Every error a call of the test's own thread raised is kept in order in
    ``errors``; those of other threads (the lease renewal) in ``background_errors``."""

    def __init__(self, client):
        self._client = client
        self._rules: list[Rule] = []
        self.calls: collections.Counter = collections.Counter()
        self.errors: list[tuple[str, BaseException]] = []
        self.background_errors: list[tuple[str, BaseException]] = []
        self._guard = threading.Lock()

    def on(self, method, name=None, calls=None, *, before=None, after=None, fail=False):
        self._rules.append(Rule(method, name, calls, before, after, fail))
        return self

    def __getattr__(self, method):
        real = getattr(self._client, method)

        def call(*args, **kwargs):
            target = args[0] if args else kwargs.get("name")
            with self._guard:
                self.calls[(method, target)] += 1
                number = self.calls[(method, target)]
            rules = [
                r
                for r in self._rules
                if r.method == method
                and r.name in (None, target)
                and (r.calls is None or number in r.calls)
            ]
            try:
                for rule in rules:
                    if rule.before:
                        rule.before()
                    if rule.fail:
                        raise InjectedFault(f"injected fault: {method}({target}) call {number}")
                result = real(*args, **kwargs)
                for rule in rules:
                    if rule.after:
                        rule.after()
                return result
            except Exception as exc:
                main = threading.current_thread() is threading.main_thread()
                (self.errors if main else self.background_errors).append((method, exc))
                raise

        return call


# -- worker processes ------------------------------------------------------------------------


@dataclass
class Worker:
    owner: str
    proc: subprocess.Popen
    files: dict[str, Path]

    def go(self) -> None:
        self.files["go"].touch()

    def log(self) -> str:
        return self.files["log"].read_text() if self.files["log"].exists() else ""

    def finish(self, timeout: float = 90.0) -> None:
        out, _ = self.proc.communicate(timeout=timeout)
        assert self.proc.returncode == 0, f"{self.owner} failed:\n{out}\n{self.log()}"


def _start_worker(tmp_path, uri, model, owner, *, ttl, hold, record, wait=60.0, pause=None):
    files = {k: tmp_path / f"{owner}.{k}" for k in ("ready", "go", "log")}
    config = {
        "uri": uri,
        "model": model,
        "owner": owner,
        "ttl": ttl,
        "wait": wait,
        "hold": hold,
        "record": str(record),
        "pause": pause,
        **{k: str(v) for k, v in files.items()},
    }
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), json.dumps(config)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return Worker(owner, proc, files)


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def _intervals(record: Path) -> list[tuple[float, float, str]]:
    lines = [json.loads(line) for line in record.read_text().splitlines()]
    return sorted((r["start"], r["end"], r["owner"]) for r in lines if "end" in r)


def _no_overlap(intervals) -> None:
    for (_, end, first), (start, _, second) in itertools.pairwise(intervals):
        assert end <= start, f"{first} and {second} held the lease at the same time"


# -- (a) the lease leaks no more: errors after its creation ----------------------------------


def test_an_error_in_the_reread_after_create_removes_the_lease(mlflow_server):
    client = _client(mlflow_server)
    model, _ = _model(client, "reread")
    lock = model + registry.LOCK_SUFFIX
    faulty = Faulty(client).on("get_registered_model", lock, {1}, fail=True)
    lines: list[str] = []
    with (
        pytest.raises(InjectedFault) as err,
        registry.promotion_lease(faulty, model, "reread", ttl=60, log=lines.append),
    ):
        pytest.fail("the body must not run without the lease")
    assert err.value is faulty.errors[0][1]  # the injected error is the one reported
    assert faulty.calls[("create_registered_model", lock)] == 1  # it had been created
    assert faulty.calls[("delete_registered_model", lock)] == 1
    assert _leftovers(client, model) == []
    started = time.monotonic()
    with registry.promotion_lease(client, model, "next", ttl=60, wait=5):
        pass  # the next promotion does not wait for a TTL
    assert time.monotonic() - started < 5


def test_a_create_whose_answer_was_lost_is_looked_up_and_removed(mlflow_server):
    client = _client(mlflow_server)
    model, _ = _model(client, "lostanswer")
    lock = model + registry.LOCK_SUFFIX

    def lost_answer():
        raise InjectedFault("injected fault: the answer to the create was lost")

    faulty = Faulty(client).on("create_registered_model", lock, after=lost_answer)
    with (
        pytest.raises(InjectedFault) as err,
        registry.promotion_lease(faulty, model, "lostanswer", ttl=60),
    ):
        pytest.fail("the body must not run without the lease")
    assert err.value is faulty.errors[0][1]
    assert faulty.calls[("delete_registered_model", lock)] == 1  # it had gone through
    assert _leftovers(client, model) == []


def test_when_the_release_fails_too_the_first_error_is_raised(mlflow_server):
    client = _client(mlflow_server)
    model, _ = _model(client, "twofaults")
    lock = model + registry.LOCK_SUFFIX
    faulty = (
        Faulty(client)
        .on("get_registered_model", lock, {1}, fail=True)  # the re-read after the create
        .on("delete_registered_model", lock, fail=True)  # and the release
    )
    lines: list[str] = []
    with (
        pytest.raises(InjectedFault) as err,
        registry.promotion_lease(faulty, model, "twofaults", ttl=60, log=lines.append),
    ):
        pytest.fail("the body must not run without the lease")
    assert [method for method, _ in faulty.errors] == [
        "get_registered_model",
        "delete_registered_model",
    ]
    assert err.value is faulty.errors[0][1]
    [line] = [line for line in lines if "could not be removed" in line]
    assert "it expires at" in line and line.endswith(" UTC")
    left = client.get_registered_model(lock)  # left behind, but only until its expiry
    assert left.tags[registry.OWNER_TAG] == "twofaults"
    client.delete_registered_model(lock)

    # an error of the body and a failed release: the body's error is the one raised
    faulty = Faulty(client).on("delete_registered_model", lock, fail=True)
    lines.clear()
    with (
        pytest.raises(ValueError, match="the body failed"),
        registry.promotion_lease(faulty, model, "body", ttl=60, log=lines.append),
    ):
        raise ValueError("the body failed")
    assert any("could not be removed" in line for line in lines)
    client.delete_registered_model(lock)


# -- (b) breaking an expired lease: one breaker per expired instance -------------------------


def test_a_paused_breaker_never_leaves_two_holders(tmp_path, postgres_mlflow_server):
    uri = postgres_mlflow_server
    client = _client(uri)
    model, _ = _model(client, "breakers")
    lock = model + registry.LOCK_SUFFIX
    record = tmp_path / "holds.jsonl"
    # a pipeline that died holding the lease: its lock expired a second ago
    client.create_registered_model(
        lock,
        tags={registry.OWNER_TAG: "dead", registry.EXPIRES_TAG: f"{time.time() - 1:.3f}"},
    )
    second_log = tmp_path / "second.log"
    slow = _start_worker(
        tmp_path,
        uri,
        model,
        "slow",
        ttl=10,
        hold=1.0,
        record=record,
        pause={
            "started": str(tmp_path / "paused"),
            "until_file": str(second_log),
            # until the second one found the expired lease: it waits for this breaker (or,
            # were the right to break not exclusive, breaks it too)
            "until_lines": ["is breaking the expired lease of dead", "breaking an expired lease"],
            "seconds": 2.0,
        },
    )
    # it holds longer than the pause: a second breaker would delete its lock while it holds
    second = _start_worker(tmp_path, uri, model, "second", ttl=10, hold=3.0, record=record)
    _wait_for(lambda: slow.files["ready"].exists() and second.files["ready"].exists(), "ready")
    slow.go()
    # the slow breaker holds the right to break and sits between its re-check and its delete
    _wait_for(lambda: (tmp_path / "paused").exists(), "the slow breaker's pause")
    second.go()  # the second finds the same expired lease while the slow one pauses
    slow.finish()
    second.finish()

    holds = _intervals(record)
    assert sorted(owner for *_, owner in holds) == ["second", "slow"]
    _no_overlap(holds)  # never two holders at once
    logs = slow.log() + second.log()
    assert logs.count("breaking an expired lease of dead") == 1  # exactly one breaks
    assert "breaking an expired lease of dead" in slow.log()
    assert "slow is breaking the expired lease of dead" in second.log()
    assert _leftovers(client, model) == []  # no lock, no break marker left


def test_a_stale_break_marker_expires_on_its_own(mlflow_server):
    client = _client(mlflow_server)
    model, _ = _model(client, "stale")
    lock = model + registry.LOCK_SUFFIX
    expired = f"{time.time() - 1:.3f}"
    client.create_registered_model(
        lock, tags={registry.OWNER_TAG: "dead", registry.EXPIRES_TAG: expired}
    )
    # a breaker that won the right to break it and died before deleting it
    marker_expiry = time.time() + 1.5
    client.create_registered_model(
        registry.break_marker(lock, "dead", expired, 1),
        tags={
            registry.OWNER_TAG: "dead-breaker",
            registry.EXPIRES_TAG: f"{marker_expiry:.3f}",
        },
    )
    lines: list[str] = []
    with registry.promotion_lease(client, model, "next", ttl=10, wait=30, log=lines.append):
        acquired = time.time()
        assert client.get_registered_model(lock).tags[registry.OWNER_TAG] == "next"
    assert acquired >= marker_expiry  # nobody broke it while the marker was valid
    assert "promote: waiting: dead-breaker is breaking the expired lease of dead" in lines
    assert any("breaking an expired lease of dead" in line for line in lines)
    assert _leftovers(client, model) == []  # both generations of the marker are gone


# -- (c) a holder slower than the TTL --------------------------------------------------------


def test_a_slow_holder_keeps_its_lease_by_renewing_it(tmp_path, postgres_mlflow_server):
    uri = postgres_mlflow_server
    client = _client(uri)
    model, _ = _model(client, "slow")
    record = tmp_path / "holds.jsonl"
    waiter = _start_worker(tmp_path, uri, model, "waiter", ttl=3, hold=0.2, record=record)
    _wait_for(lambda: waiter.files["ready"].exists(), "the waiter")
    with registry.promotion_lease(client, model, "slow-holder", ttl=3) as lease:
        start, first_expiry = time.time(), lease.expires
        waiter.go()
        time.sleep(8)  # the body: well beyond the 3 s TTL
        lease.check("the end of the slow body")  # still ours
        renewed, end = lease.expires, time.time()
    waiter.finish()
    assert renewed > first_expiry + 3  # renewed while held
    [(waiter_start, _, _)] = _intervals(record)
    assert waiter_start > end  # the waiter never got it meanwhile
    assert "waiting for slow-holder to finish promoting" in waiter.log()
    assert "breaking" not in waiter.log()
    assert end - start >= 8
    assert _leftovers(client, model) == []


def test_a_holder_whose_renewal_fails_is_refused_its_alias_write(tmp_path, postgres_mlflow_server):
    uri = postgres_mlflow_server
    client = _client(uri)
    model, experiment_id = _model(client, "renewal")
    lock = model + registry.LOCK_SUFFIX
    v1 = _candidate(client, model, experiment_id, 0.80)
    v2 = _candidate(client, model, experiment_id, 0.90)
    registry.promote_version(client, model, v1, ENABLED, owner="first", lease_ttl=3)
    history_before = registry.history(client, model)

    record = tmp_path / "holds.jsonl"
    taker = _start_worker(tmp_path, uri, model, "taker", ttl=3, hold=1.0, record=record)
    _wait_for(lambda: taker.files["ready"].exists(), "the taker")

    def stall_until_taken():
        # the holder stalls after deciding; its renewals fail; the taker breaks the lease
        taker.go()
        _wait_for(lambda: record.exists() and "start" in record.read_text(), "the taker")

    faulty = (
        Faulty(client)
        .on("set_registered_model_tag", lock, fail=True)  # every renewal fails
        .on("set_model_version_tag", model, after=stall_until_taken)
    )
    with pytest.raises(registry.LeaseLost) as err:
        registry.promote_version(faulty, model, v2, ENABLED, owner="renewal-fails", lease_ttl=3)
    taker.finish()
    assert err.value.exit_code == 3
    assert f"before setting the alias previous of {model} to v{v1}" in err.value.what
    assert "renewing it failed: injected fault" in err.value.why
    assert ("set_registered_model_tag", lock) in faulty.calls  # a renewal was attempted
    assert faulty.calls[("set_registered_model_alias", model)] == 0  # no alias write at all
    assert (_champion(client, model), _champion(client, model, "previous")) == (v1, None)
    assert registry.history(client, model) == history_before
    assert "breaking an expired lease of renewal-fails" in taker.log()
    assert _leftovers(client, model) == []


# -- (d) the database stops during a promotion -----------------------------------------------


@dataclass
class BlockableServer:
    url: str
    database: str
    log: Path

    def _sql(self, *statements: str) -> None:
        for statement in statements:
            subprocess.run(
                ["runuser", "-u", "postgres", "--", "psql", "-q", "-c", statement],
                check=True,
                capture_output=True,
                timeout=60,
            )

    def block(self) -> None:
        """The database refuses new connections and loses the ones it had."""
        self._sql(
            f"alter database {self.database} allow_connections false",
            "select pg_terminate_backend(pid) from pg_stat_activity "
            f"where datname = '{self.database}'",
        )

    def unblock(self) -> None:
        self._sql(f"alter database {self.database} allow_connections true")


@pytest.fixture(scope="module")
def blockable_mlflow_server(tmp_path_factory) -> Iterator[BlockableServer]:
    """A `mlflow server` on a PostgreSQL database of its own, which the test may close to
    connections; the cluster and the other tests' databases are not touched."""
    import secrets

    if not _postgres_running():
        if os.environ.get("CI"):
            pytest.fail("CI must provide PostgreSQL (.ci/provision starts it)")
        pytest.skip("no PostgreSQL cluster online (run .ci/provision)")
    suffix = secrets.token_hex(4)
    role, database, password = f"mlci_{suffix}", f"mlflow_stop_{suffix}", secrets.token_urlsafe(18)
    state = tmp_path_factory.mktemp("mlflow-pg-stop")
    server = BlockableServer("", database, state / "server.log")
    server._sql(
        f"create role {role} login password '{password}'",
        f"create database {database} owner {role}",
    )
    (state / "artifacts").mkdir()

    def command(port: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            f"postgresql+psycopg://{role}@127.0.0.1:5432/{database}",
            "--artifacts-destination",
            str(state / "artifacts"),
            "--serve-artifacts",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ]

    try:
        with servers.local_server(
            "mlflow server (PostgreSQL, stoppable)",
            command,
            "/health",
            server.log,
            start_timeout=180,
            env={"PGPASSWORD": password},
        ) as running:
            server.url = running.url
            yield server
            server.unblock()
    finally:
        for statement in (
            f"alter database {database} allow_connections true",
            f"drop database if exists {database} with (force)",
            f"drop role if exists {role}",
        ):
            with contextlib.suppress(subprocess.SubprocessError):
                server._sql(statement)


def test_a_database_stop_reports_its_own_error_and_the_lease_expires(
    blockable_mlflow_server, monkeypatch
):
    from mlflow.exceptions import MlflowException

    server = blockable_mlflow_server
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # fail now, not in minutes
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    client = _client(server.url)
    model, experiment_id = _model(client, "dbstop")
    lock = model + registry.LOCK_SUFFIX
    v1 = _candidate(client, model, experiment_id, 0.80)
    v2 = _candidate(client, model, experiment_id, 0.90)
    registry.promote_version(client, model, v1, ENABLED, owner="first", lease_ttl=3)

    faulty = Faulty(client).on("set_model_version_tag", model, before=server.block)
    lines: list[str] = []
    try:
        with pytest.raises(MlflowException) as err:
            registry.promote_version(
                faulty, model, v2, ENABLED, owner="db-stop", lease_ttl=3, log=lines.append
            )
    finally:
        server.unblock()
    first_method, first_error = faulty.errors[0]
    assert first_method == "set_model_version_tag"
    assert err.value is first_error  # the database error, not the release's
    assert "503" in str(err.value)  # the server's answer while its database was closed
    assert "is not currently accepting connections" in server.log.read_text(errors="replace")
    assert any(method == "get_registered_model" for method, _ in faulty.errors[1:])  # release
    [line] = [line for line in lines if "could not be removed" in line]
    assert "it expires at" in line
    left = client.get_registered_model(lock)  # the database is back; the lease was left
    assert left.tags[registry.OWNER_TAG] == "db-stop"
    expiry = float(left.tags[registry.EXPIRES_TAG])

    lines.clear()
    outcome = registry.promote_version(
        client, model, v2, ENABLED, owner="after", lease_ttl=3, lease_wait=30, log=lines.append
    )
    assert outcome.moved
    assert time.time() >= expiry  # it got the lease once the left one expired, not before
    assert any("breaking an expired lease of db-stop" in line for line in lines)
    assert (_champion(client, model), _champion(client, model, "previous")) == (v2, v1)
    assert _leftovers(client, model) == []


# -- rollback walks the history back ---------------------------------------------------------


def test_rollbacks_walk_the_history_back(mlflow_server):
    client = _client(mlflow_server)
    model, experiment_id = _model(client, "walkback")
    for f1 in (0.1, 0.2, 0.3, 0.4):  # v1..v4, never promoted
        _candidate(client, model, experiment_id, f1)
    v5, v6, v7 = (_candidate(client, model, experiment_id, f1) for f1 in (0.80, 0.85, 0.90))
    assert (v5, v6, v7) == ("5", "6", "7")
    for version in (v5, v6, v7):
        assert registry.promote_version(client, model, version, ENABLED, owner="t").moved

    assert registry.rollback(client, model, "champion", owner="t") == (v7, v6)
    assert (_champion(client, model), _champion(client, model, "previous")) == (v6, v7)
    assert registry.rollback(client, model, "champion", owner="t") == (v6, v5)
    assert (_champion(client, model), _champion(client, model, "previous")) == (v5, v6)
    with pytest.raises(StageFailed, match="no previous version of champion to roll back to"):
        registry.rollback(client, model, "champion", owner="t")
    assert _champion(client, model) == v5
    moves = [(e["kind"], e["from"], e["to"]) for e in registry.history(client, model)]
    assert moves == [
        ("promotion", None, v5),
        ("promotion", v5, v6),
        ("promotion", v6, v7),
        ("rollback", v7, v6),
        ("rollback", v6, v5),
    ]

    # someone promotes v8 meanwhile: a rollback that expects v5 changes nothing
    v8 = _candidate(client, model, experiment_id, 0.95)
    registry.promote_version(client, model, v8, ENABLED, owner="t")
    before = registry.history(client, model)
    with pytest.raises(StageFailed) as err:
        registry.rollback(client, model, "champion", owner="t", expect="5")
    assert err.value.what == f"the champion of {model} is v8, not v5: nothing was rolled back"
    assert (_champion(client, model), _champion(client, model, "previous")) == (v8, v5)
    assert registry.history(client, model) == before
    # expecting the version that is there rolls back to the one v8 replaced
    assert registry.rollback(client, model, "champion", owner="t", expect="v8") == (v8, v5)
    assert _leftovers(client, model) == []


def test_rollback_command_refuses_an_unexpected_champion(tmp_path, mlflow_server):
    client = _client(mlflow_server)
    model, experiment_id = _model(client, "expect")
    v1, v2, v3 = (_candidate(client, model, experiment_id, f1) for f1 in (0.7, 0.8, 0.9))
    for version in (v1, v2, v3):
        registry.promote_version(client, model, version, ENABLED, owner="t")
    before = registry.history(client, model)

    refused = invoke_model_task(["model.rollback", "--expect", v2], mlflow_server, model, tmp_path)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "Traceback" not in refused.stderr
    assert f"StageFailed: the champion of {model} is v{v3}, not v{v2}" in refused.stderr
    assert f"--expect {v3}" in refused.stderr
    assert (_champion(client, model), registry.history(client, model)) == (v3, before)

    done = invoke_model_task(["model.rollback", "--expect", v3], mlflow_server, model, tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"champion v{v3} -> v{v2}" in done.stdout
    assert "no --expect given" not in done.stdout
    assert (_champion(client, model), _champion(client, model, "previous")) == (v2, v3)
