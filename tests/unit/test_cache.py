"""The stage cache: same inputs, recorded result and restored reports; anything else runs."""

from __future__ import annotations

import json
import subprocess

import pytest

from mlci import cache
from mlci.context import StageContext
from mlci.errors import StageFailed
from mlci.stages import CACHED, PASSED, SKIPPED, StageResult


class Stage:
    """A stage that writes a report and counts its runs; its inputs are a dict we control."""

    def __init__(self):
        self.runs = 0
        self.inputs: dict | None = {"code": "a"}
        self.status = PASSED
        self.error: Exception | None = None

    def run(self, ctx):
        self.runs += 1
        if self.error is not None:
            raise self.error
        (ctx.reports / "out.json").write_text(json.dumps({"run": self.runs}))
        return StageResult(
            "demo",
            self.status,
            f"run {self.runs}",
            details={"n": self.runs},
            links={"report": "http://example.org/r"},
        )

    def declared(self, ctx):
        return self.inputs


@pytest.fixture
def ctx(write_project, load):
    write_project()
    lines: list[str] = []
    context = StageContext(load(), log=lines.append)
    context.lines = lines  # type: ignore[attr-defined]
    return context


def cached_run(ctx, stage, **kw):
    return cache.run_cached(
        ctx, "test", stage.run, stage.declared, ("out.json",), ctx.settings.reports_path, **kw
    )


def test_unchanged_inputs_give_the_recorded_result_without_running(ctx):
    stage = Stage()
    first = cached_run(ctx, stage)
    second = cached_run(ctx, stage)
    assert (first.status, stage.runs) == (PASSED, 1)
    assert second.status == CACHED
    assert second.summary.startswith("run 1 [cached ")
    assert "key " in second.summary
    assert second.details["n"] == 1 and "key" in second.details["cache"]
    assert second.links == {"report": "http://example.org/r"}
    assert any("cached: inputs unchanged" in line for line in ctx.lines)


def test_changed_inputs_run_the_stage_again(ctx):
    stage = Stage()
    cached_run(ctx, stage)
    stage.inputs = {"code": "b"}
    assert cached_run(ctx, stage).status == PASSED
    assert stage.runs == 2
    assert cached_run(ctx, stage).status == CACHED  # the new inputs are recorded


def test_a_stage_without_reports_is_cached_too(ctx):
    stage = Stage()
    folder = ctx.settings.reports_path
    cache.run_cached(ctx, "gate", stage.run, stage.declared, (), folder)
    assert cache.run_cached(ctx, "gate", stage.run, stage.declared, (), folder).status == CACHED


def test_a_cache_that_cannot_be_written_does_not_fail_the_stage(ctx):
    (ctx.state / "cache").write_text("a file where the folder should be")
    stage = Stage()
    assert cached_run(ctx, stage).status == PASSED
    assert cached_run(ctx, stage).status == PASSED
    assert any("could not be cached" in line for line in ctx.lines)


def test_a_missing_report_is_restored_from_the_cache(ctx):
    stage = Stage()
    cached_run(ctx, stage)
    report = ctx.reports / "out.json"
    report.unlink()
    assert cached_run(ctx, stage).status == CACHED
    assert json.loads(report.read_text()) == {"run": 1}
    report.write_text("edited")  # a report that differs is put back as well
    cached_run(ctx, stage)
    assert json.loads(report.read_text()) == {"run": 1}


def test_a_lost_copy_makes_the_stage_run(ctx):
    stage = Stage()
    cached_run(ctx, stage)
    (ctx.state / "cache" / "test" / "outputs" / "out.json").unlink()
    assert cached_run(ctx, stage).status == PASSED
    assert stage.runs == 2


def test_failures_and_skips_record_nothing(ctx):
    stage = Stage()
    stage.error = StageFailed("no", "why", "fix")
    with pytest.raises(StageFailed):
        cached_run(ctx, stage)
    assert not (ctx.state / "cache" / "test" / cache.RECORD).exists()
    stage.error, stage.status = None, SKIPPED
    cached_run(ctx, stage)
    assert cached_run(ctx, stage).status == SKIPPED
    assert stage.runs == 3


def test_a_failure_keeps_the_last_success(ctx):
    stage = Stage()
    cached_run(ctx, stage)
    stage.inputs, stage.error = {"code": "broken"}, StageFailed("no", "why", "fix")
    with pytest.raises(StageFailed):
        cached_run(ctx, stage)
    stage.inputs, stage.error = {"code": "a"}, None  # the change reverted
    assert cached_run(ctx, stage).status == CACHED


def test_inputs_that_cannot_be_read_leave_the_stage_to_report_it(ctx):
    stage = Stage()

    def unreadable(_ctx):
        return {"gate": cache.file_hash(ctx.settings.project_root / "missing.toml")}

    stage.declared = unreadable  # type: ignore[method-assign]
    stage.error = StageFailed("the gate file is missing", "why", "fix")
    with pytest.raises(StageFailed, match="the gate file is missing"):
        cached_run(ctx, stage)


def test_none_inputs_mean_no_caching(ctx):
    stage = Stage()
    stage.inputs = None
    cached_run(ctx, stage)
    assert cached_run(ctx, stage).status == PASSED
    assert stage.runs == 2


@pytest.mark.parametrize("force", [["test"], ["all"]])
def test_force_runs_and_records_again(write_project, load, force):
    write_project()
    stage = Stage()
    cached_run(StageContext(load(), log=lambda _: None), stage)
    forced = StageContext(load({"cache.force": force}), log=lambda _: None)
    assert cached_run(forced, stage).status == PASSED
    assert stage.runs == 2
    again = cached_run(StageContext(load(), log=lambda _: None), stage)
    assert again.status == CACHED and again.summary.startswith("run 2 ")


def test_force_of_another_stage_leaves_this_one_cached(write_project, load):
    write_project()
    stage = Stage()
    cached_run(StageContext(load(), log=lambda _: None), stage)
    other = StageContext(load({"cache.force": ["train"]}), log=lambda _: None)
    assert cached_run(other, stage).status == CACHED


def test_disabled_cache_neither_reads_nor_writes(write_project, load):
    write_project("[tool.mlci.cache]\nenabled = false")
    ctx = StageContext(load(), log=lambda _: None)
    stage = Stage()
    cached_run(ctx, stage)
    assert cached_run(ctx, stage).status == PASSED
    assert not (ctx.state / "cache").exists()


def test_still_valid_can_veto_a_hit(ctx):
    stage = Stage()
    cached_run(ctx, stage)
    seen = []
    result = cached_run(ctx, stage, still_valid=lambda c, details: seen.append(details) or False)
    assert result.status == PASSED and stage.runs == 2
    assert seen == [{"n": 1}]


@pytest.mark.parametrize(
    "content", ["{not json", '{"format": 0}', '{"format": 1, "key": "x"}', "[]"]
)
def test_an_unreadable_or_old_record_is_a_miss(ctx, content):
    stage = Stage()
    cached_run(ctx, stage)
    (ctx.state / "cache" / "test" / cache.RECORD).write_text(content)
    assert cached_run(ctx, stage).status == PASSED


def test_the_key_is_independent_of_dict_order():
    assert cache.digest({"a": 1, "b": [1, 2]}) == cache.digest({"b": [1, 2], "a": 1})
    assert cache.digest({"a": 1}) != cache.digest({"a": 2})


def test_files_digest_follows_content_not_reports_or_state(ctx, tmp_path):
    (tmp_path / "src").mkdir()
    code = tmp_path / "src" / "model.py"
    code.write_text("x = 1\n")
    before = cache.files_digest(ctx, ["."])
    (ctx.reports / "junit.xml").write_text("<testsuites/>")
    (ctx.state / "anything").write_text("state")
    assert cache.files_digest(ctx, ["."]) == before
    code.write_text("x = 1\n#")  # one byte more
    assert cache.files_digest(ctx, ["."]) != before
    assert cache.files_digest(ctx, ["src"]) != cache.files_digest(ctx, ["."])


def test_files_digest_leaves_out_what_git_ignores(ctx, tmp_path):
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / ".gitignore").write_text("build/\n")
    (tmp_path / "build").mkdir()
    before = cache.files_digest(ctx, ["."])
    (tmp_path / "build" / "junk.o").write_text("junk")
    assert cache.files_digest(ctx, ["."]) == before
    (tmp_path / "new.py").write_text("")  # untracked, not ignored: part of the project
    assert cache.files_digest(ctx, ["."]) != before


def test_the_local_store_gets_a_new_identity_when_its_data_is_deleted(ctx):
    assert cache.tracking_server(ctx) == "local:new"
    assert not (ctx.state / "mlflow" / ".mlci-store-id").exists()  # nothing written for it
    (ctx.state / "mlflow").mkdir(parents=True)
    (ctx.state / "mlflow" / "mlflow.db").write_text("")
    named = cache.tracking_server(ctx)
    assert named != "local:new" and cache.tracking_server(ctx) == named
    (ctx.state / "mlflow" / "mlflow.db").unlink()
    assert cache.tracking_server(ctx) == "local:new"
    (ctx.state / "mlflow" / ".mlci-store-id").unlink()
    (ctx.state / "mlflow" / "mlflow.db").write_text("")  # a new store: a new name
    assert cache.tracking_server(ctx) not in ("local:new", named)


def test_a_store_the_stage_creates_is_named_in_the_record(ctx):
    """Keys are computed again after a success: the next run, which finds the store the
    first one created, hits."""
    stage = Stage()
    stage.declared = lambda c: {"server": cache.tracking_server(c)}  # type: ignore[method-assign]
    real = stage.run

    def creating(c):
        (c.state / "mlflow").mkdir(parents=True, exist_ok=True)
        (c.state / "mlflow" / "mlflow.db").write_text("")
        return real(c)

    stage.run = creating  # type: ignore[method-assign]
    assert cached_run(ctx, stage).status == PASSED
    assert cached_run(ctx, stage).status == CACHED


def test_a_configured_server_is_named_by_its_url(write_project, load):
    write_project('[tool.mlci.mlflow]\ntracking_uri = "http://mlflow.example:5000/"')
    ctx = StageContext(load(), log=lambda _: None)
    assert cache.tracking_server(ctx) == "http://mlflow.example:5000"
