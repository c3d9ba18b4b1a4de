"""pipeline: stages in order, stop at the first failure, console and file summaries."""

from __future__ import annotations

import json

import pytest

import mlci.pipeline
from mlci.context import StageContext
from mlci.errors import LintFailed, StageFailed, TrackingServerError
from mlci.pipeline import run_pipeline, run_stage, summary_lines, write_summary
from mlci.stages import FAILED, NOT_RUN, PASSED, PIPELINE_STAGES, SKIPPED, StageResult


@pytest.fixture
def ctx(write_project, load):
    write_project('reports_dir = "rep"')
    lines: list[str] = []
    context = StageContext(load(), log=lines.append)
    context.lines = lines  # type: ignore[attr-defined]
    return context


class FakeRunner:
    """Records the stages it is asked to run; ``fail_at`` returns a failure."""

    def __init__(self, fail_at: str | None = None, error=None):
        self.calls: list[str] = []
        self.fail_at = fail_at
        self.error = error or StageFailed("gate said no", "2 conditions", "fix them")

    def __call__(self, ctx, name):
        self.calls.append(name)
        if name == self.fail_at:
            return StageResult(name, FAILED, self.error.what, duration=0.5), self.error
        return StageResult(name, PASSED, f"{name} ok", duration=1.25), None


def test_stops_at_the_first_failure(ctx):
    runner = FakeRunner(fail_at="gate")
    results, error = run_pipeline(ctx, runner=runner)
    assert runner.calls == ["lint", "test", "scan", "gate"]
    assert error is runner.error
    assert [(r.stage, r.status) for r in results] == [
        ("lint", PASSED),
        ("test", PASSED),
        ("scan", PASSED),
        ("gate", FAILED),
        ("image", NOT_RUN),
        ("train", NOT_RUN),
        ("promote", NOT_RUN),
        ("deploy", NOT_RUN),
        ("release", NOT_RUN),
    ]
    assert all(r.summary == "" for r in results[4:])
    assert "==> gate" in ctx.lines
    assert "==> image" not in ctx.lines
    assert runner.error.render() in ctx.lines


def test_every_stage_runs_when_none_fails(ctx):
    runner = FakeRunner()
    results, error = run_pipeline(ctx, runner=runner)
    assert error is None
    assert runner.calls == list(PIPELINE_STAGES)
    assert [r.status for r in results] == [PASSED] * len(PIPELINE_STAGES)
    assert [line for line in ctx.lines if line.startswith("==> ")] == [
        f"==> {name}" for name in PIPELINE_STAGES
    ]


def test_first_stage_failing_runs_nothing_else(ctx):
    runner = FakeRunner(fail_at="lint")
    results, error = run_pipeline(ctx, runner=runner)
    assert runner.calls == ["lint"]
    assert [r.status for r in results[1:]] == [NOT_RUN] * (len(PIPELINE_STAGES) - 1)
    assert error is runner.error


def test_a_skipped_stage_does_not_stop_the_pipeline(ctx):
    def runner(ctx, name):
        status = SKIPPED if name == "image" else PASSED
        return StageResult(name, status, ""), None

    results, error = run_pipeline(ctx, runner=runner)
    assert error is None
    assert [r.status for r in results].count(SKIPPED) == 1
    assert results[-1].status == PASSED


def test_custom_stage_list(ctx):
    runner = FakeRunner()
    results, _ = run_pipeline(ctx, stages=("test", "lint"), runner=runner)
    assert runner.calls == ["test", "lint"]
    assert [r.stage for r in results] == ["test", "lint"]


def test_run_stage_turns_an_mlci_error_into_a_failed_result(ctx, monkeypatch):
    error = LintFailed("ruff found 3 problem(s)", "see above", "fix them")

    def stage(_ctx):
        raise error

    monkeypatch.setattr(mlci.pipeline, "stage_function", lambda name: stage)
    result, returned = run_stage(ctx, "lint")
    assert returned is error
    assert (result.stage, result.status, result.summary) == ("lint", FAILED, error.what)
    assert result.duration >= 0.0


def test_run_stage_times_a_passing_stage(ctx, monkeypatch):
    monkeypatch.setattr(
        mlci.pipeline, "stage_function", lambda name: lambda c: StageResult(name, PASSED, "ok")
    )
    result, error = run_stage(ctx, "test")
    assert error is None
    assert result.status == PASSED
    assert result.duration >= 0.0


def test_run_stage_lets_real_bugs_through(ctx, monkeypatch):
    def stage(_ctx):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(mlci.pipeline, "stage_function", lambda name: stage)
    with pytest.raises(ZeroDivisionError):
        run_stage(ctx, "lint")


def test_default_runner_stops_when_a_stage_raises(ctx, monkeypatch):
    ran: list[str] = []
    error = TrackingServerError("the MLflow tracking server cannot be reached")

    def fake_stage_function(name):
        def stage(_ctx):
            ran.append(name)
            if name == "train":
                raise error
            return StageResult(name, PASSED, "ok")

        return stage

    monkeypatch.setattr(mlci.pipeline, "stage_function", fake_stage_function)
    results, returned = run_pipeline(ctx)
    assert ran == ["lint", "test", "scan", "gate", "image", "train"]
    assert returned is error
    assert [r.status for r in results[-2:]] == [NOT_RUN, NOT_RUN]
    assert results[5].summary == error.what


def _results():
    return [
        StageResult("lint", PASSED, "0 findings", duration=1.234),
        StageResult("test", PASSED, "12 passed", duration=20.0, links={"junit": "reports/j.xml"}),
        StageResult("gate", FAILED, "coverage <60> & more", duration=0.04),
        StageResult("image", NOT_RUN, ""),
    ]


def test_summary_lines_has_every_stage(ctx):
    lines = summary_lines(_results())
    assert lines[0].split() == ["stage", "status", "time", "key", "figure"]
    assert set(lines[1]) <= {"-", " "}
    by_stage = {line.split()[0]: line for line in lines[2:6]}
    assert set(by_stage) == {"lint", "test", "gate", "image"}
    assert "1.2 s" in by_stage["lint"]
    assert "0 findings" in by_stage["lint"]
    assert "0.0 s" in by_stage["gate"]
    assert by_stage["image"].split() == ["image", "not", "run", "-"]
    # links come after a blank line
    assert lines[6] == ""
    assert lines[7].split() == ["test:", "junit", "reports/j.xml"]


def test_summary_lines_without_links_is_only_the_table():
    lines = summary_lines([StageResult("lint", PASSED, "ok")])
    assert len(lines) == 3


def test_write_summary_writes_json_and_html(ctx):
    write_summary(ctx, _results())
    reports = ctx.settings.project_root / "rep"
    data = json.loads((reports / "summary.json").read_text())
    assert [s["stage"] for s in data["stages"]] == ["lint", "test", "gate", "image"]
    assert [s["status"] for s in data["stages"]] == [PASSED, PASSED, FAILED, NOT_RUN]
    assert data["stages"][0]["duration_s"] == 1.234
    assert data["stages"][1]["links"] == {"junit": "reports/j.xml"}
    assert data["finished"]
    page = (reports / "summary.html").read_text()
    for stage in ("lint", "test", "gate", "image"):
        assert f"<td>{stage}</td>" in page
    assert "<tr class='not-run'>" in page
    assert "coverage &lt;60&gt; &amp; more" in page
    assert "<a href='reports/j.xml'>junit</a>" in page


def test_write_summary_creates_the_reports_folder(write_project, load, tmp_path):
    write_project('reports_dir = "a/b/c"')
    context = StageContext(load(), log=lambda _: None)
    write_summary(context, [StageResult("lint", PASSED, "ok")])
    assert (tmp_path / "a" / "b" / "c" / "summary.json").is_file()
    assert (tmp_path / "a" / "b" / "c" / "summary.html").is_file()
