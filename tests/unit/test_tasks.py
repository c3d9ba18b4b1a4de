"""The Invoke layer: MlciError -> invoke.Exit with the rendered message and exit code.

Stages are replaced by fakes and settings are read from a temporary project, so nothing
here starts a server.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from invoke import Context, Exit

import mlci.pipeline
import mlci.stages
from mlci.errors import (
    ConfigError,
    LintFailed,
    LocalServerError,
    MlciError,
    ToolMissing,
    TrackingServerError,
)
from mlci.stages import FAILED, PASSED, StageResult
from mlci.tasks import namespace
from mlci.tasks import stages as tasks
from mlci.tasks._signals import VERBOSE_ENV, ends_cleanly

TASKS = (
    "lint",
    "test",
    "scan",
    "gate",
    "image",
    "train",
    "promote",
    "release",
    "pipeline",
    "config",
)


@pytest.fixture
def fake_stage(monkeypatch):
    """Replace every stage function; returns a dict to configure behaviour and record calls."""
    state: dict = {"behaviour": lambda ctx: StageResult("x", PASSED, "all good"), "ctx": []}

    def stage_function(name):
        def run(ctx):
            state["ctx"].append((name, ctx))
            return state["behaviour"](ctx)

        return run

    monkeypatch.setattr(mlci.stages, "stage_function", stage_function)
    return state


# ---------------------------------------------------------------------------------------------
# _run_stage / _stage_context
# ---------------------------------------------------------------------------------------------


def test_run_stage_prints_the_result_and_links(isolated_loader, fake_stage, capsys):
    fake_stage["behaviour"] = lambda ctx: StageResult(
        "release", PASSED, "2 uploaded", links={"index": "http://127.0.0.1:1/simple/"}
    )
    tasks._run_stage("release")
    out = capsys.readouterr().out.splitlines()
    assert out == ["release: passed: 2 uploaded", "  index: http://127.0.0.1:1/simple/"]
    assert [name for name, _ in fake_stage["ctx"]] == ["release"]


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (LintFailed("ruff found 2 problem(s)", "see above", "fix them"), 1),
        (ConfigError("lint.paths names paths that do not exist: x", "", "fix it"), 2),
        (TrackingServerError("the MLflow server cannot be reached", "refused", "start it"), 3),
        (LocalServerError("the local mlflow server exited", "log", "fix"), 3),
        (ToolMissing("the Python module 'ruff' is not installed", "", "pip install ruff"), 4),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, MlciError) else str(v),
)
def test_an_mlci_error_becomes_exit_with_message_and_code(isolated_loader, fake_stage, error, code):
    def fail(ctx):
        raise error

    fake_stage["behaviour"] = fail
    with pytest.raises(Exit) as info:
        tasks._run_stage("lint")
    assert info.value.message == error.render()
    assert info.value.code == code


def test_a_config_error_while_loading_settings_becomes_exit_2(
    isolated_loader, fake_stage, write_project
):
    write_project("[tool.mlci.lint]\npath = ['src']")
    with pytest.raises(Exit) as info:
        tasks._run_stage("lint")
    assert info.value.code == 2
    assert info.value.message.startswith("ConfigError: unknown setting 'lint.path'")
    assert "did you mean 'lint.paths'?" in info.value.message
    assert fake_stage["ctx"] == []  # the stage never ran


def test_overrides_reach_the_settings_of_the_stage(isolated_loader, fake_stage):
    tasks._run_stage("test", {"mlflow.timeout": "55", "gate.file": None})
    [(_, ctx)] = fake_stage["ctx"]
    assert ctx.settings.mlflow.timeout == 55.0
    assert ctx.settings.sources["mlflow.timeout"] == "command line"
    assert "gate.file" not in ctx.settings.sources


def test_the_context_is_closed_on_success_and_on_failure(isolated_loader, fake_stage):
    closed: list[str] = []

    def register(ctx, then):
        ctx._stack.callback(closed.append, "closed")
        return then(ctx)

    fake_stage["behaviour"] = lambda ctx: register(ctx, lambda c: StageResult("x", PASSED, ""))
    tasks._run_stage("lint")
    assert closed == ["closed"]

    def fail(_ctx):
        raise LintFailed("no")

    fake_stage["behaviour"] = lambda ctx: register(ctx, fail)
    with pytest.raises(Exit):
        tasks._run_stage("lint")
    assert closed == ["closed", "closed"]


def test_ctrl_c_becomes_exit_130(isolated_loader, fake_stage):
    def interrupt(_ctx):
        raise KeyboardInterrupt

    fake_stage["behaviour"] = interrupt
    with pytest.raises(Exit) as info:
        tasks._run_stage("train")
    assert info.value.code == 130
    assert "interrupted" in info.value.message


def test_real_bugs_are_not_turned_into_exit(isolated_loader, fake_stage):
    def bug(_ctx):
        raise KeyError("a bug")

    fake_stage["behaviour"] = bug
    with pytest.raises(KeyError):
        tasks._run_stage("lint")


def test_stage_context_yields_a_context_with_the_loaded_settings(isolated_loader, tmp_path):
    with tasks._stage_context({"reports_dir": "elsewhere"}) as ctx:
        assert ctx.settings.project_root == tmp_path.resolve()
        assert ctx.reports == tmp_path.resolve() / "elsewhere"
    assert isolated_loader == [{"reports_dir": "elsewhere"}]


# ---------------------------------------------------------------------------------------------
# Task functions: flags -> setting keys
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def recorded_run_stage(monkeypatch):
    calls: list[tuple] = []
    monkeypatch.setattr(
        tasks,
        "_run_stage",
        lambda name, overrides=None, model=None, force=False: calls.append(
            (name, overrides) if not force else (name, overrides, "forced")
        ),
    )
    return calls


@pytest.mark.parametrize(
    ("task", "kwargs", "expected"),
    [
        ("lint", {}, ("lint", None)),
        ("test", {}, ("test", None)),
        ("gate", {"file": "g.toml"}, ("gate", {"gate.file": "g.toml"})),
        ("image", {"base_image": "python:3.11"}, ("image", {"image.base_image": "python:3.11"})),
        (
            "train",
            {"tracking_uri": "http://m:5000", "params": '{"n_estimators": 3}'},
            (
                "train",
                {"mlflow.tracking_uri": "http://m:5000", "model.params": {"n_estimators": 3}},
            ),
        ),
        (
            "promote",
            {"mode": "dry-run"},
            ("promote", {"mlflow.tracking_uri": None, "promotion.mode": "dry-run"}),
        ),
        # a flag that is not given passes None, so env and pyproject still decide
        (
            "release",
            {},
            ("release", {"release.repository_url": None, "release.dry_run": None}),
        ),
        (
            "release",
            {"repository_url": "http://i.example/", "dry_run": True},
            ("release", {"release.repository_url": "http://i.example/", "release.dry_run": True}),
        ),
    ],
)
def test_task_flags_map_to_setting_keys(recorded_run_stage, task, kwargs, expected):
    getattr(tasks, task)(Context(), **kwargs)
    assert recorded_run_stage == [expected]


@pytest.mark.parametrize("task", ["lint", "test", "gate", "image", "train", "promote", "release"])
def test_force_flag_reaches_the_stage(recorded_run_stage, task):
    getattr(tasks, task)(Context(), force=True)
    [call] = recorded_run_stage
    assert call[0] == task and call[-1] == "forced"


def test_run_stage_force_names_the_stage_in_cache_force(isolated_loader, fake_stage):
    tasks._run_stage("train", force=True)
    assert isolated_loader[-1]["cache.force"] == ["train"]
    tasks._run_stage("train")
    assert isolated_loader[-1]["cache.force"] is None  # env and pyproject still decide


@pytest.mark.parametrize(
    ("kwargs", "forced"),
    [
        ({}, None),
        ({"force": True}, ["all"]),
        ({"force_stage": ["train", "promote"]}, ["train", "promote"]),
    ],
)
def test_pipeline_force_flags(isolated_loader, fake_pipeline_stages, kwargs, forced):
    tasks.pipeline(Context(), **kwargs)
    assert isolated_loader[-1]["cache.force"] == forced


def test_json_arg():
    assert tasks._json_arg("--params", None) is None
    assert tasks._json_arg("--params", '{"a": [1, 2]}') == {"a": [1, 2]}


@pytest.mark.parametrize("text", ["{n_estimators: 3}", "", "{'a': 1}"])
def test_json_arg_with_bad_json_exits_2(text):
    with pytest.raises(Exit) as info:
        tasks._json_arg("--params", text)
    assert info.value.code == 2
    assert info.value.message.startswith("ConfigError: --params is not valid JSON")
    assert "--params '" in info.value.message  # the fix shows shell quoting


def test_train_with_bad_params_json_exits_2_before_any_stage(recorded_run_stage):
    with pytest.raises(Exit) as info:
        tasks.train(Context(), params="{bad")
    assert info.value.code == 2
    assert recorded_run_stage == []


def test_train_with_params_that_are_not_a_table_exits_2(isolated_loader, fake_stage):
    with pytest.raises(Exit) as info:
        tasks.train(Context(), params="[1, 2]")
    assert info.value.code == 2
    assert "model.params (from command line)" in info.value.message
    assert fake_stage["ctx"] == []


def test_promote_with_a_bad_mode_exits_2(isolated_loader, fake_stage):
    with pytest.raises(Exit) as info:
        tasks.promote(Context(), mode="sometimes")
    assert info.value.code == 2
    assert "promotion.mode (from command line) is 'sometimes'" in info.value.message
    assert fake_stage["ctx"] == []


def test_train_with_a_file_store_uri_exits_2(isolated_loader, fake_stage):
    with pytest.raises(Exit) as info:
        tasks.train(Context(), tracking_uri="./mlruns")
    assert info.value.code == 2
    assert "not a file or database store" in info.value.message


# ---------------------------------------------------------------------------------------------
# pipeline and config tasks
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def fake_pipeline_stages(monkeypatch):
    ran: list[str] = []
    state: dict = {"fail": {}}

    def stage_function(name):
        def run(_ctx):
            ran.append(name)
            if name in state["fail"]:
                raise state["fail"][name]
            return StageResult(name, PASSED, f"{name} done")

        return run

    monkeypatch.setattr(mlci.pipeline, "stage_function", stage_function)
    state["ran"] = ran
    return state


def test_pipeline_task_passes_and_writes_the_summary(
    isolated_loader, fake_pipeline_stages, tmp_path, capsys
):
    tasks.pipeline(Context())
    out = capsys.readouterr().out
    assert "mlci pipeline summary" in out
    for name in ("lint", "test", "scan", "gate", "image", "train", "promote", "release"):
        assert f"{name} done" in out
    data = json.loads((tmp_path / "reports" / "summary.json").read_text())
    assert [s["status"] for s in data["stages"]] == [PASSED] * 9
    assert (tmp_path / "reports" / "summary.html").is_file()
    assert isolated_loader == [
        {"mlflow.tracking_uri": None, "release.repository_url": None, "cache.force": None}
    ]


@pytest.mark.parametrize(
    ("error", "code"),
    [(LintFailed("tests failed"), 1), (TrackingServerError("unreachable"), 3)],
)
def test_pipeline_task_failure_exits_with_the_stage_and_the_errors_code(
    isolated_loader, fake_pipeline_stages, tmp_path, capsys, error, code
):
    fake_pipeline_stages["fail"] = {"test": error}
    with pytest.raises(Exit) as info:
        tasks.pipeline(Context())
    assert info.value.message == "pipeline failed at stage test"
    assert info.value.code == code
    assert fake_pipeline_stages["ran"] == ["lint", "test"]
    data = json.loads((tmp_path / "reports" / "summary.json").read_text())
    assert [s["status"] for s in data["stages"]][:3] == [PASSED, FAILED, "not run"]


def test_config_task_prints_values_and_sources_with_the_secret_masked(
    monkeypatch, write_project, tmp_path, capsys
):
    import mlci.settings

    write_project("[tool.mlci.mlflow]\ntimeout = 61")
    real = mlci.settings.load_settings
    monkeypatch.setattr(
        mlci.settings,
        "load_settings",
        lambda overrides=None: real(
            overrides, root=tmp_path, environ={"MLCI_RELEASE_PASSWORD": "hunter2"}
        ),
    )
    tasks.config(Context())
    out = capsys.readouterr().out
    assert f"project root: {tmp_path.resolve()}" in out
    assert "hunter2" not in out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()[3:] if line.strip()}
    assert rows["mlflow.timeout"] == ["61.0", "pyproject.toml"]
    assert rows["release.password"] == ["********", "env", "MLCI_RELEASE_PASSWORD"]
    assert rows["promotion.mode"] == ["enabled", "default"]


def test_config_task_with_a_config_error_exits_2(isolated_loader, write_project):
    write_project('[tool.mlci.release]\npassword = "x"')
    with pytest.raises(Exit) as info:
        tasks.config(Context())
    assert info.value.code == 2
    assert info.value.message.startswith("ConfigError: release.password is set in pyproject")


# ---------------------------------------------------------------------------------------------
# The collection as `invoke --list` shows it
# ---------------------------------------------------------------------------------------------


def test_namespace_has_one_task_per_stage_plus_pipeline_and_config():
    assert set(TASKS) <= set(namespace.task_names)
    for name in TASKS:
        doc = namespace[name].__doc__.strip()
        assert doc, name
        assert "\n" not in doc, f"{name}: help must be one line"


def test_invoke_list_shows_every_task_with_its_help(repo_root):
    proc = subprocess.run(
        [sys.executable, "-m", "invoke", "--list"],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    helps: dict[str, str] = {}
    current = None
    for line in proc.stdout.splitlines():
        if line.startswith("  ") and not line.startswith("   "):
            name, _, text = line.strip().partition(" ")
            current = name
            helps[name] = text.strip()
        elif current and line.startswith("   "):
            helps[current] += " " + line.strip()
    assert set(TASKS) <= set(helps)
    for name in TASKS:
        assert helps[name] == namespace[name].__doc__.strip(), name


# ---------------------------------------------------------------------------------------------
# The one error handler (mlci.tasks._signals.ends_cleanly) and --verbose / MLCI_VERBOSE
# ---------------------------------------------------------------------------------------------


def _fails_with(error: BaseException) -> None:
    with ends_cleanly():
        raise error


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (LintFailed("ruff found 2 problem(s)", "see above", "fix them"), 1),
        (ConfigError("lint.paths is wrong", "", "fix it"), 2),
        (TrackingServerError("unreachable", "refused", "start it"), 3),
        (ToolMissing("no ruff", "", "pip install ruff"), 4),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, MlciError) else str(v),
)
def test_the_handler_turns_an_mlci_error_into_its_message_and_exit_code(error, code):
    with pytest.raises(Exit) as info:
        _fails_with(error)
    assert (info.value.message, info.value.code) == (error.render(), code)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_the_handler_turns_ctrl_c_into_130_and_leaves_bugs_alone(monkeypatch):
    monkeypatch.setenv(VERBOSE_ENV, "1")
    with pytest.raises(Exit) as info:
        _fails_with(KeyboardInterrupt())
    assert (info.value.code, info.value.message) == (130, "interrupted; local servers were stopped")
    with pytest.raises(KeyError):  # a bug keeps its exception and traceback, verbose or not
        _fails_with(KeyError("a bug"))


def test_nested_handlers_answer_once(capsys, monkeypatch):
    monkeypatch.setenv(VERBOSE_ENV, "1")
    with pytest.raises(Exit) as info, ends_cleanly(), ends_cleanly():
        raise ConfigError("bad")
    assert info.value.code == 2
    assert capsys.readouterr().err.count("Traceback (most recent call last)") == 1


def _hidden_cause() -> None:
    try:
        {}["missing"]
    except KeyError:
        raise ConfigError("the setting is missing", "why", "fix") from None


@pytest.mark.parametrize("value", ["1", "", None])
def test_verbose_prints_the_traceback_before_the_message(capsys, monkeypatch, value):
    if value is None:
        monkeypatch.delenv(VERBOSE_ENV, raising=False)
    else:
        monkeypatch.setenv(VERBOSE_ENV, value)
    with pytest.raises(Exit) as info, ends_cleanly():
        _hidden_cause()
    err = capsys.readouterr().err
    assert info.value.message.startswith("ConfigError: the setting is missing")
    if value == "1":
        assert "Traceback (most recent call last)" in err
        assert "in _hidden_cause" in err and "KeyError: 'missing'" in err  # the hidden cause
        assert "mlci.errors.ConfigError: the setting is missing" in err
    else:
        assert err == ""


def test_every_task_runs_inside_the_handler():
    for name in namespace.task_names:
        body = namespace[name].body
        assert getattr(body, "__wrapped__", None) is not None, f"{name}: no @stops_cleanly"


@pytest.mark.parametrize("flag", [True, False])
def test_mlci_verbose_flag_shows_the_traceback_of_a_task(
    isolated_loader, write_project, capsys, monkeypatch, flag
):
    from mlci.cli import program

    monkeypatch.setenv(VERBOSE_ENV, "")  # restored after the test: the flag sets it
    write_project("[tool.mlci.lint]\npath = ['src']")
    argv = ["mlci", *(["--verbose"] if flag else []), "config"]
    program().run(argv, exit=False)
    err = capsys.readouterr().err
    assert "ConfigError: unknown setting 'lint.path'" in err
    assert ("Traceback (most recent call last)" in err) is flag
    if flag:
        assert err.index("Traceback") < err.index("ConfigError: unknown setting")
