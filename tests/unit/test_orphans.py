"""The orphan rule with a recording client; against a real mlflow server (and a second state
folder) in tests/integration/test_orphaned_runs.py."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import PERMISSION_DENIED, RESOURCE_DOES_NOT_EXIST, ErrorCode

from mlci import orphans
from mlci.context import StageContext
from mlci.errors import TrackingServerError
from mlci.settings import load_settings

NOW = 1_700_000_000.0
HOUR = 3600.0


def _run(run_id, *, status="RUNNING", started=NOW - HOUR, beat=None, ours=True, name=None):
    tags = {}
    if ours:
        tags[orphans.CREATED_BY_TAG] = orphans.CREATED_BY
    if beat is not None:
        tags[orphans.HEARTBEAT_TAG] = beat if isinstance(beat, str) else str(int(beat))
    info = SimpleNamespace(
        run_id=run_id, status=status, start_time=int(started * 1000), run_name=name
    )
    return SimpleNamespace(info=info, data=SimpleNamespace(tags=tags))


class Page(list):
    token = None


class FakeClient:
    def __init__(self, runs, page=2, experiment="exp-1"):
        self.runs = {r.info.run_id: r for r in runs}
        self.page = page
        self.experiment = experiment
        self.calls: list[tuple] = []

    def get_experiment_by_name(self, name):
        self.calls.append(("get_experiment_by_name", name))
        return None if self.experiment is None else SimpleNamespace(experiment_id=self.experiment)

    def search_runs(self, ids, filter_string, run_view_type, max_results, page_token):
        self.calls.append(("search_runs", ids, filter_string, page_token))
        # What the server does with orphans' filter: RUNNING runs tagged by mlci.
        assert filter_string == (
            "attributes.status = 'RUNNING' and tags.`mlci.created_by` = 'mlci'"
        )
        hits = [
            r
            for r in self.runs.values()
            if r.info.status == "RUNNING"
            and r.data.tags.get(orphans.CREATED_BY_TAG) == orphans.CREATED_BY
        ]
        start = int(page_token or 0)
        page = Page(hits[start : start + self.page])
        page.token = str(start + self.page) if start + self.page < len(hits) else None
        return page

    def get_run(self, run_id):
        return self.runs[run_id]

    def set_terminated(self, run_id, status):
        self.calls.append(("set_terminated", run_id, status))
        self.runs[run_id].info.status = status

    def set_tag(self, run_id, key, value):
        self.calls.append(("set_tag", run_id, key))
        self.runs[run_id].data.tags[key] = value

    def log_batch(self, run_id, tags=()):
        self.calls.append(("log_batch", run_id))
        self.runs[run_id].data.tags.update({t.key: t.value for t in tags})


@pytest.fixture
def ctx(tmp_path):
    settings = load_settings(
        {"mlflow.tracking_uri": "http://127.0.0.1:1", "mlflow.experiment": "wine"},
        root=tmp_path,
        environ={},
    )
    lines: list[str] = []
    context = StageContext(settings, log=lines.append)
    context.lines = lines
    return context


def test_only_mlci_runs_silent_for_longer_than_the_limit_are_failed(ctx):
    client = FakeClient(
        [
            _run("stale", started=NOW - 3 * HOUR, beat=NOW - 2 * HOUR, name="wine-1.0-abc"),
            _run("no-beat", started=NOW - HOUR),  # falls back to its start time
            _run("fresh", started=NOW - 10 * HOUR, beat=NOW - 60),  # long run, still beating
            _run("young", started=NOW - 60),
            _run("someone-elses", started=NOW - 10 * HOUR, ours=False),
            _run("done", status="FINISHED", beat=NOW - 2 * HOUR),
        ]
    )
    closed = orphans.close_orphans(ctx, client, "train", now=NOW)
    assert sorted(closed) == ["no-beat", "stale"]
    assert {r: client.runs[r].info.status for r in client.runs} == {
        "stale": "FAILED",
        "no-beat": "FAILED",
        "fresh": "RUNNING",
        "young": "RUNNING",
        "someone-elses": "RUNNING",
        "done": "FINISHED",
    }
    assert client.runs["stale"].data.tags[orphans.CLOSED_TAG].startswith("no heartbeat for 7200 s")
    assert [c[1] for c in client.calls if c[0] == "get_experiment_by_name"] == ["wine"]
    assert len([c for c in client.calls if c[0] == "search_runs"]) == 2  # two pages
    assert (
        "train: run stale (wine-1.0-abc) was left RUNNING: no heartbeat for 2.0 h "
        "(limit 10 min); marked FAILED" in ctx.lines
    )


def test_the_limit_is_the_module_constant_and_can_be_passed(ctx):
    client = FakeClient([_run("a", beat=NOW - 300)])
    assert orphans.close_orphans(ctx, client, "promote", now=NOW) == []
    assert orphans.close_orphans(ctx, client, "promote", now=NOW, older_than=120) == ["a"]
    assert ctx.lines[-1] == (
        "promote: run a (a) was left RUNNING: no heartbeat for 5 min (limit 2 min); marked FAILED"
    )


def test_a_run_that_beat_since_the_search_is_left_alone(ctx):
    client = FakeClient([_run("a", beat=NOW - HOUR)])
    real_get_run = client.get_run

    def get_run(run_id):  # the trainer's heartbeat lands between search and close
        run = real_get_run(run_id)
        run.data.tags[orphans.HEARTBEAT_TAG] = str(int(NOW))
        return run

    client.get_run = get_run
    assert orphans.close_orphans(ctx, client, "train", now=NOW) == []
    assert client.runs["a"].info.status == "RUNNING"


def test_no_experiment_yet_means_nothing_to_close(ctx):
    client = FakeClient([], experiment=None)
    assert orphans.close_orphans(ctx, client, "train", now=NOW) == []


def test_a_server_that_refuses_the_search_does_not_fail_the_stage(ctx):
    client = FakeClient([_run("a")])

    def refuse(*_args, **_kwargs):
        raise MlflowException("PERMISSION_DENIED: no")

    client.search_runs = refuse
    assert orphans.close_orphans(ctx, client, "promote", now=NOW) == []
    assert ctx.lines == [
        "promote: could not look for orphaned runs in 'wine': PERMISSION_DENIED: no"
    ]


def test_a_bad_heartbeat_value_falls_back_to_the_start_time():
    assert orphans.last_sign_of_life(_run("a", started=NOW - 5, beat="soon")) == NOW - 5
    assert orphans.last_sign_of_life(_run("a", started=NOW - 5, beat=NOW - 1)) == NOW - 1


def test_the_heartbeat_tags_the_run_and_renews_until_stopped(ctx):
    client = FakeClient([_run("r", ours=False)])
    before = time.time()
    beat = orphans.start_heartbeat(ctx, client, "r")
    beat.stop()
    tags = client.runs["r"].data.tags
    assert tags[orphans.CREATED_BY_TAG] == "mlci"
    assert int(tags[orphans.HEARTBEAT_TAG]) >= int(before)
    assert beat.every == orphans.HEARTBEAT_EVERY_S

    fast = orphans.Heartbeat(client, "r", every=0.02).start()
    deadline = time.monotonic() + 5
    while ("set_tag", "r", orphans.HEARTBEAT_TAG) not in client.calls:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    fast.stop()
    count = client.calls.count(("set_tag", "r", orphans.HEARTBEAT_TAG))
    time.sleep(0.1)
    assert client.calls.count(("set_tag", "r", orphans.HEARTBEAT_TAG)) == count


def test_fail_marks_the_run_failed_and_stops_beating(ctx):
    client = FakeClient([_run("r")])
    orphans.Heartbeat(client, "r", every=60).start().fail()
    assert client.runs["r"].info.status == "FAILED"


def test_a_run_that_cannot_be_tagged_is_failed_at_once(ctx):
    client = FakeClient([_run("r", ours=False)])

    def refuse(*_args, **_kwargs):
        raise MlflowException("the server is gone")

    client.log_batch = refuse
    with pytest.raises(TrackingServerError, match="tagging the training run"):
        orphans.start_heartbeat(ctx, client, "r")
    assert client.runs["r"].info.status == "FAILED"


def test_a_refused_login_or_permission_fails_the_stage_clearly(ctx):
    for code in ("UNAUTHENTICATED", "PERMISSION_DENIED"):
        client = FakeClient([_run("a")])

        def refuse(*_args, code=code, **_kwargs):
            raise MlflowException(f"{code}: no", error_code=ErrorCode.Value(code))

        client.search_runs = refuse
        with pytest.raises(TrackingServerError, match="looking for orphaned runs failed"):
            orphans.fail_orphaned_runs(ctx, client, "promote", now=NOW)

    client = FakeClient([_run("a")])

    def refuse_close(*_args, **_kwargs):
        raise MlflowException("PERMISSION_DENIED: no", error_code=PERMISSION_DENIED)

    client.set_terminated = refuse_close
    with pytest.raises(TrackingServerError, match="closing the orphaned run a failed"):
        orphans.fail_orphaned_runs(ctx, client, "train", now=NOW)


def test_an_error_in_mlci_itself_is_not_swallowed(ctx):
    client = FakeClient([_run("a")])

    def broken(*_args, **_kwargs):
        raise TypeError("search_runs() got an unexpected keyword argument")

    client.search_runs = broken
    with pytest.raises(TypeError):
        orphans.fail_orphaned_runs(ctx, client, "train", now=NOW)


def test_an_unreachable_server_or_a_run_already_gone_is_logged_and_passed(ctx):
    import requests

    client = FakeClient([_run("a")])

    def unreachable(*_args, **_kwargs):
        raise requests.ConnectionError("connection refused")

    client.get_experiment_by_name = unreachable
    assert orphans.fail_orphaned_runs(ctx, client, "train", now=NOW) == []
    assert ctx.lines[-1].startswith("train: could not look for orphaned runs in 'wine'")

    client = FakeClient([_run("gone"), _run("stale")])
    real_get_run = client.get_run

    def get_run(run_id):
        if run_id == "gone":
            raise MlflowException("no such run", error_code=RESOURCE_DOES_NOT_EXIST)
        return real_get_run(run_id)

    client.get_run = get_run
    assert orphans.fail_orphaned_runs(ctx, client, "train", now=NOW) == ["stale"]
    assert "train: could not close orphaned run gone: no such run" in ctx.lines


def test_a_run_deleted_since_the_search_is_left_alone(ctx):
    deleted = _run("deleted")
    deleted.info.lifecycle_stage = "deleted"
    client = FakeClient([deleted])
    assert orphans.fail_orphaned_runs(ctx, client, "train", now=NOW) == []
    assert ("set_terminated", "deleted", "FAILED") not in client.calls
