"""Settings: default < pyproject [tool.mlci] < MLCI_* env < command line, parsing, validation."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from mlci.errors import ConfigError
from mlci.settings import (
    ROOT_ENV,
    SECRET_MASK,
    SPECS,
    PromotionSettings,
    Settings,
    _coerce,
    _Spec,
    find_project_root,
    load_settings,
)

# ---------------------------------------------------------------------------------------------
# Precedence, per key
# ---------------------------------------------------------------------------------------------

# key, TOML written into [tool.mlci], env var and its text, command-line value, and the
# expected value from each layer (default, file, env, command line).
PRECEDENCE_CASES = [
    pytest.param(
        "sonar.poll_interval",
        "[tool.mlci.sonar]\npoll_interval = 7",
        ("MLCI_SONAR_POLL_INTERVAL", "7.5"),
        "9",
        (2.0, 7.0, 7.5, 9.0),
        id="float-in-section",
    ),
    pytest.param(
        "mlflow.tracking_uri",
        '[tool.mlci.mlflow]\ntracking_uri = "http://file.example:5000"',
        ("MLCI_MLFLOW_TRACKING_URI", "http://env.example:5000"),
        "https://cli.example",
        ("", "http://file.example:5000", "http://env.example:5000", "https://cli.example"),
        id="url-in-section",
    ),
    pytest.param(
        "reports_dir",
        'reports_dir = "file-reports"',
        ("MLCI_REPORTS_DIR", "env-reports"),
        "cli-reports",
        ("reports", "file-reports", "env-reports", "cli-reports"),
        id="top-level-text",
    ),
    pytest.param(
        "lint.paths",
        '[tool.mlci.lint]\npaths = ["src"]',
        ("MLCI_LINT_PATHS", "src,tests"),
        ["cli"],
        (["."], ["src"], ["src", "tests"], ["cli"]),
        id="list",
    ),
    pytest.param(
        "promotion.greater_is_better",
        "[tool.mlci.promotion]\ngreater_is_better = false",
        ("MLCI_PROMOTION_GREATER_IS_BETTER", "yes"),
        False,
        (True, False, True, False),
        id="bool",
    ),
    pytest.param(
        "mlflow.retries",
        "[tool.mlci.mlflow]\nretries = 5",
        ("MLCI_MLFLOW_RETRIES", "7"),
        "0",
        (2, 5, 7, 0),
        id="int",
    ),
]


@pytest.mark.parametrize(("key", "toml", "env", "cli", "expected"), PRECEDENCE_CASES)
def test_each_layer_overrides_the_one_below(
    write_project: Callable[..., Path],
    load: Callable[..., Settings],
    key: str,
    toml: str,
    env: tuple[str, str],
    cli: object,
    expected: tuple[object, object, object, object],
) -> None:
    env_name, env_text = env
    default, from_file, from_env, from_cli = expected

    write_project("")
    s = load()
    assert s.get(key) == default
    assert key not in s.sources

    write_project(toml)
    s = load()
    assert s.get(key) == from_file
    assert s.sources[key] == "pyproject.toml"

    s = load(env={env_name: env_text})
    assert s.get(key) == from_env
    assert s.sources[key] == f"env {env_name}"

    s = load({key: cli}, env={env_name: env_text})
    assert s.get(key) == from_cli
    assert s.sources[key] == "command line"


def test_precedence_is_decided_per_key(
    write_project: Callable[..., Path], load: Callable[..., Settings]
) -> None:
    write_project(
        """
        state_dir = "file-state"
        [tool.mlci.test]
        paths = ["t"]
        [tool.mlci.sonar]
        poll_interval = 7
        [tool.mlci.mlflow]
        experiment = "file-exp"
        """
    )
    s = load(
        {"mlflow.experiment": "cli-exp"},
        env={"MLCI_SONAR_POLL_INTERVAL": "6.5"},
    )
    assert (s.state_dir, s.sources["state_dir"]) == ("file-state", "pyproject.toml")
    assert (s.test.paths, s.sources["test.paths"]) == (["t"], "pyproject.toml")
    poll = (s.sonar.poll_interval, s.sources["sonar.poll_interval"])
    assert poll == (6.5, "env MLCI_SONAR_POLL_INTERVAL")
    assert (s.mlflow.experiment, s.sources["mlflow.experiment"]) == ("cli-exp", "command line")
    assert s.reports_dir == "reports"
    assert "reports_dir" not in s.sources


def test_a_command_line_value_of_none_falls_through_to_the_env(
    write_project: Callable[..., Path], load: Callable[..., Settings]
) -> None:
    # Invoke passes None for every flag that was not given.
    write_project("[tool.mlci.gate]\nfile = 'from-file.toml'")
    s = load({"gate.file": None}, env={"MLCI_GATE_FILE": "from-env.toml"})
    assert s.gate.file == "from-env.toml"
    assert s.sources["gate.file"] == "env MLCI_GATE_FILE"


def test_defaults_without_any_pyproject(tmp_path: Path, load: Callable[..., Settings]) -> None:
    s = load()
    assert s.project_root == tmp_path.resolve()
    assert s.sources == {}
    assert s.sonar.poll_interval == 2.0
    assert s.promotion.mode == "enabled"
    assert s.lint.paths == ["."]
    assert all(source == "default" for _, _, source, _ in s.describe())


def test_list_defaults_are_not_shared_between_instances(load: Callable[..., Settings]) -> None:
    a, b = load(), load()
    a.lint.paths.append("mutated")
    assert b.lint.paths == ["."]


# ---------------------------------------------------------------------------------------------
# Environment variable names
# ---------------------------------------------------------------------------------------------


def test_env_names_follow_section_and_key() -> None:
    assert SPECS["mlflow.tracking_uri"].env == "MLCI_MLFLOW_TRACKING_URI"
    assert SPECS["server_start_timeout"].env == "MLCI_SERVER_START_TIMEOUT"
    assert SPECS["release.password"].env == "MLCI_RELEASE_PASSWORD"


def test_env_names_are_unique_and_do_not_clash_with_the_root_variable() -> None:
    names = [spec.env for spec in SPECS.values()]
    assert len(names) == len(set(names))
    assert ROOT_ENV not in names
    assert all(name.startswith("MLCI_") for name in names)


def test_every_setting_has_one_line_of_help() -> None:
    for key, spec in SPECS.items():
        assert spec.help.strip(), key
        assert "\n" not in spec.help, key


# ---------------------------------------------------------------------------------------------
# Parsing: lists, tables, booleans, numbers, text
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('["src", "tests dir"]', ["src", "tests dir"]),
        ('  ["a"]  ', ["a"]),
        ("src, tests,,tasks.py ", ["src", "tests", "tasks.py"]),
        ("single", ["single"]),
        ("", []),
    ],
)
def test_list_from_env_json_or_commas(
    load: Callable[..., Settings], text: str, expected: list[str]
) -> None:
    assert load(env={"MLCI_LINT_PATHS": text}).lint.paths == expected


def test_list_from_env_with_broken_json_names_the_variable(load: Callable[..., Settings]) -> None:
    with pytest.raises(ConfigError) as info:
        load(env={"MLCI_TEST_ARGS": '["-m", '})
    assert "test.args (from env MLCI_TEST_ARGS)" in info.value.what
    assert "a list" in info.value.fix


def test_text_in_toml_where_a_list_is_expected(
    write_project: Callable[..., Path], load: Callable[..., Settings]
) -> None:
    write_project('[tool.mlci.lint]\npaths = "src,tests"')
    with pytest.raises(ConfigError) as info:
        load()
    assert "lint.paths (from pyproject.toml)" in info.value.what
    assert "expected a list" in info.value.why


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"f1_macro": 0.9, "accuracy": 0.8}', {"f1_macro": 0.9, "accuracy": 0.8}),
        ("f1_macro=0.9, accuracy = 0.8", {"f1_macro": 0.9, "accuracy": 0.8}),
        ("f1_macro=1", {"f1_macro": 1.0}),
    ],
)
def test_float_table_from_env(
    load: Callable[..., Settings], text: str, expected: dict[str, float]
) -> None:
    s = load(env={"MLCI_PROMOTION_MIN": text})
    assert s.promotion.min == expected
    assert all(isinstance(v, float) for v in s.promotion.min.values())


def test_params_table_from_env_key_value_decodes_json_values(load: Callable[..., Settings]) -> None:
    s = load(env={"MLCI_MODEL_PARAMS": "estimator=random_forest,n_estimators=300,deep=true"})
    assert s.model.params == {"estimator": "random_forest", "n_estimators": 300, "deep": True}


def test_params_table_from_env_json(load: Callable[..., Settings]) -> None:
    s = load(env={"MLCI_MODEL_PARAMS": '{"n_estimators": 50, "nested": {"a": [1, 2]}}'})
    assert s.model.params == {"n_estimators": 50, "nested": {"a": [1, 2]}}


@pytest.mark.parametrize(
    "text",
    ["f1_macro", "=0.9", "f1_macro=high", "f1_macro=true", '{"f1_macro": "x"}', "{broken"],
)
def test_bad_float_table_from_env(load: Callable[..., Settings], text: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(env={"MLCI_PROMOTION_MIN": text})
    assert "promotion.min (from env MLCI_PROMOTION_MIN)" in info.value.what


def test_toml_table_with_text_values_for_floats(
    write_project: Callable[..., Path], load: Callable[..., Settings]
) -> None:
    write_project('[tool.mlci.promotion]\nmin = { f1_macro = "0.9" }')
    with pytest.raises(ConfigError, match=r"promotion\.min \(from pyproject\.toml\)"):
        load()


def test_toml_inline_table_and_subtable_both_work(
    write_project: Callable[..., Path], load: Callable[..., Settings]
) -> None:
    write_project(
        """
        [tool.mlci.model]
        params = { estimator = "rf" }
        [tool.mlci.promotion.min]
        f1_macro = 0.85
        """
    )
    s = load()
    assert s.model.params == {"estimator": "rf"}
    assert s.promotion.min == {"f1_macro": 0.85}


@pytest.mark.parametrize("text", ["1", "true", "TRUE", " yes ", "On"])
def test_bool_true_from_env(load: Callable[..., Settings], text: str) -> None:
    s = load(env={"MLCI_PROMOTION_GREATER_IS_BETTER": text})
    assert s.promotion.greater_is_better is True


@pytest.mark.parametrize("text", ["0", "false", "No", "off "])
def test_bool_false_from_env(load: Callable[..., Settings], text: str) -> None:
    s = load(env={"MLCI_PROMOTION_GREATER_IS_BETTER": text})
    assert s.promotion.greater_is_better is False


@pytest.mark.parametrize("text", ["maybe", "", "2", "t"])
def test_bool_nonsense_from_env(load: Callable[..., Settings], text: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(env={"MLCI_PROMOTION_GREATER_IS_BETTER": text})
    assert "promotion.greater_is_better" in info.value.what
    assert "true or false" in info.value.fix


@pytest.mark.parametrize("value", ['"false"', "0", "1"])
def test_bool_in_toml_must_be_a_toml_boolean(
    write_project: Callable[..., Path], load: Callable[..., Settings], value: str
) -> None:
    write_project(f"[tool.mlci.promotion]\ngreater_is_better = {value}")
    with pytest.raises(ConfigError, match=r"greater_is_better \(from pyproject\.toml\)"):
        load()


def test_numbers_from_toml_int_is_accepted_for_a_float(
    write_project: Callable[..., Path], load: Callable[..., Settings]
) -> None:
    write_project("server_start_timeout = 30\n[tool.mlci.image]\ntimeout = 600")
    s = load()
    assert s.server_start_timeout == 30.0
    assert isinstance(s.server_start_timeout, float)
    assert s.image.timeout == 600


def test_numbers_from_env_are_stripped_and_typed(load: Callable[..., Settings]) -> None:
    s = load(env={"MLCI_SERVER_START_TIMEOUT": " 12.5 ", "MLCI_IMAGE_TIMEOUT": " 42 "})
    assert s.server_start_timeout == 12.5
    assert s.image.timeout == 42
    assert isinstance(s.image.timeout, int)


def test_invalid_number_in_env_names_key_and_source(load: Callable[..., Settings]) -> None:
    with pytest.raises(ConfigError) as info:
        load(env={"MLCI_SONAR_POLL_INTERVAL": "abc"})
    err = info.value
    assert "sonar.poll_interval" in err.what
    assert "env MLCI_SONAR_POLL_INTERVAL" in err.what
    assert "'abc'" in err.what
    assert "a number" in err.fix
    assert err.exit_code == 2


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ('[tool.mlci.sonar]\npoll_interval = "abc"', "sonar.poll_interval"),
        ('[tool.mlci.mlflow]\nretries = "3"', "mlflow.retries"),
        ("[tool.mlci.mlflow]\nretries = 2.0", "mlflow.retries"),
        ("[tool.mlci.sonar]\npoll_interval = true", "sonar.poll_interval"),
        ("[tool.mlci.image]\ntimeout = false", "image.timeout"),
        ("reports_dir = 3", "reports_dir"),
        ('[tool.mlci.mlflow]\nexperiment = ["a"]', "mlflow.experiment"),
    ],
)
def test_wrong_type_in_toml_names_key_and_source(
    write_project: Callable[..., Path], load: Callable[..., Settings], toml: str, key: str
) -> None:
    write_project(toml)
    with pytest.raises(ConfigError) as info:
        load()
    assert f"{key} (from pyproject.toml)" in info.value.what


def test_whole_number_from_env_rejects_a_fraction(load: Callable[..., Settings]) -> None:
    with pytest.raises(ConfigError, match=r"mlflow\.retries \(from env MLCI_MLFLOW_RETRIES\)"):
        load(env={"MLCI_MLFLOW_RETRIES": "2.5"})


def test_text_from_the_command_line_is_parsed_like_env_text(load: Callable[..., Settings]) -> None:
    # Invoke hands flags over as text: "--timeout 55" arrives as "55".
    s = load({"mlflow.timeout": "55", "lint.paths": "a,b"})
    assert s.mlflow.timeout == 55.0
    assert s.lint.paths == ["a", "b"]


def test_text_values_are_stripped(load: Callable[..., Settings]) -> None:
    s = load(env={"MLCI_MLFLOW_EXPERIMENT": "  exp  "})
    assert s.mlflow.experiment == "exp"


# ---------------------------------------------------------------------------------------------
# Ranges and choices
# ---------------------------------------------------------------------------------------------


PERCENT = _Spec(
    "x.percent", "x", "percent", float, {"help": "a percentage", "minimum": 0.0, "maximum": 100.0}
)


@pytest.mark.parametrize("value", ["150", "-1", "100.01"])
def test_a_value_outside_both_bounds_is_refused(value: str) -> None:
    with pytest.raises(ConfigError) as info:
        _coerce(PERCENT, value, "env MLCI_X_PERCENT", True)
    assert "x.percent (from env MLCI_X_PERCENT)" in info.value.what
    assert "between 0.0 and 100.0" in info.value.why


@pytest.mark.parametrize("value", ["0", "100"])
def test_both_bounds_are_inclusive(value: str) -> None:
    assert _coerce(PERCENT, value, "env", True) == float(value)


def test_out_of_range_in_toml_names_the_file(
    write_project: Callable[..., Path], load: Callable[..., Settings]
) -> None:
    write_project("[tool.mlci.sonar]\npoll_interval = 0.01")
    with pytest.raises(ConfigError, match=r"at least 0\.05") as info:
        load()
    assert "(from pyproject.toml) is 0.01" in info.value.what


def test_minimum_only_bound(load: Callable[..., Settings]) -> None:
    with pytest.raises(ConfigError) as info:
        load(env={"MLCI_MLFLOW_RETRIES": "-1"})
    assert "at least 0" in info.value.why
    assert load(env={"MLCI_MLFLOW_RETRIES": "0"}).mlflow.retries == 0
    with pytest.raises(ConfigError, match="at least 1"):
        load(env={"MLCI_IMAGE_TIMEOUT": "0"})


@pytest.mark.parametrize("source", ["toml", "env"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_numbers_are_rejected(
    write_project: Callable[..., Path], load: Callable[..., Settings], source: str, value: str
) -> None:
    # NaN slips through < and > comparisons; a NaN limit would never be reached.
    if source == "toml":
        write_project(f"[tool.mlci.sonar]\npoll_interval = {value}")
        env = {}
    else:
        env = {"MLCI_SONAR_POLL_INTERVAL": value}
    with pytest.raises(ConfigError) as info:
        load(env=env)
    assert "sonar.poll_interval" in info.value.what
    assert "not a finite number" in info.value.why


def test_infinite_timeout_is_rejected(load: Callable[..., Settings]) -> None:
    with pytest.raises(ConfigError, match=r"mlflow\.timeout \(from env MLCI_MLFLOW_TIMEOUT\)"):
        load(env={"MLCI_MLFLOW_TIMEOUT": "inf"})


def test_bad_choice(write_project: Callable[..., Path], load: Callable[..., Settings]) -> None:
    write_project('[tool.mlci.promotion]\nmode = "sometimes"')
    with pytest.raises(ConfigError) as info:
        load()
    err = info.value
    assert "promotion.mode (from pyproject.toml) is 'sometimes'" in err.what
    assert "disabled, dry-run, enabled" in err.why


@pytest.mark.parametrize("mode", ["disabled", "dry-run", "enabled"])
def test_every_choice_is_accepted(load: Callable[..., Settings], mode: str) -> None:
    s = load(env={"MLCI_PROMOTION_MODE": mode})
    assert s.promotion.mode == mode


def test_choices_are_case_sensitive(load: Callable[..., Settings]) -> None:
    with pytest.raises(ConfigError, match=r"promotion\.mode"):
        load({"promotion.mode": "Enabled"})


# ---------------------------------------------------------------------------------------------
# URLs: mlci trains against a server, never a file store
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "uri", ["file:///tmp/x", "./mlruns", "mlruns", "sqlite:///x.db", "/abs/mlruns"]
)
def test_file_store_tracking_uri_in_env_is_refused(load: Callable[..., Settings], uri: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(env={"MLCI_MLFLOW_TRACKING_URI": uri})
    err = info.value
    assert "mlflow.tracking_uri" in err.what
    assert "not an http(s) URL" in err.what
    assert "tracking server" in err.why
    assert "not a file or database store" in err.why
    assert "MLCI_MLFLOW_TRACKING_URI" in err.fix


def test_file_store_tracking_uri_in_toml_is_refused(
    write_project: Callable[..., Path], load: Callable[..., Settings]
) -> None:
    write_project('[tool.mlci.mlflow]\ntracking_uri = "file:///tmp/x"')
    with pytest.raises(ConfigError, match="not a file or database store") as info:
        load()
    assert "(from pyproject.toml)" in info.value.what


@pytest.mark.parametrize(
    "uri", ["http://127.0.0.1:5000", "https://mlflow.example", "databricks", "databricks://p", ""]
)
def test_server_tracking_uris_are_accepted(load: Callable[..., Settings], uri: str) -> None:
    assert load(env={"MLCI_MLFLOW_TRACKING_URI": uri}).mlflow.tracking_uri == uri


@pytest.mark.parametrize(
    ("uri", "why"),
    [
        ("http://mlflow.example:port", "port"),
        ("http://mlflow.example:99999", "port"),
    ],
)
def test_http_url_with_a_bad_port(load: Callable[..., Settings], uri: str, why: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(env={"MLCI_MLFLOW_TRACKING_URI": uri})
    assert "not a valid URL" in info.value.what
    assert why in info.value.why.lower()
    assert "MLCI_MLFLOW_TRACKING_URI" in info.value.fix


@pytest.mark.parametrize("uri", ["http://", "https:///path", "http://:5000"])
def test_http_url_without_a_host(load: Callable[..., Settings], uri: str) -> None:
    with pytest.raises(ConfigError, match="names no host") as info:
        load(env={"MLCI_RELEASE_REPOSITORY_URL": uri})
    assert "release.repository_url" in info.value.what


def test_other_url_settings_need_http(load: Callable[..., Settings]) -> None:
    with pytest.raises(ConfigError) as info:
        load(env={"MLCI_RELEASE_REPOSITORY_URL": "ftp://index.example"})
    assert "release.repository_url" in info.value.what
    assert "HTTP(S)" in info.value.why
    # databricks is a tracking-URI thing only
    with pytest.raises(ConfigError, match=r"release\.index_url"):
        load(env={"MLCI_RELEASE_INDEX_URL": "databricks"})


# ---------------------------------------------------------------------------------------------
# Unknown settings
# ---------------------------------------------------------------------------------------------


def test_unknown_key_in_pyproject_suggests_the_close_one(
    write_project: Callable[..., Path], load: Callable[..., Settings]
) -> None:
    write_project("[tool.mlci.test]\npath = ['t']")
    with pytest.raises(ConfigError) as info:
        load()
    err = info.value
    assert "unknown setting 'test.path'" in err.what
    assert "[tool.mlci] of pyproject.toml" in err.what
    assert err.fix == "did you mean 'test.paths'?"


@pytest.mark.parametrize("toml", ['lint = "src"', "test = 80", "mlflow = []"])
def test_a_section_written_as_a_value(
    write_project: Callable[..., Path], load: Callable[..., Settings], toml: str
) -> None:
    write_project(toml)
    name = toml.split()[0]
    with pytest.raises(ConfigError) as info:
        load()
    assert info.value.what.startswith(f"[tool.mlci] sets {name} = ")
    assert "section" in info.value.why
    assert f"[tool.mlci.{name}]" in info.value.fix


def test_unknown_top_level_key_in_pyproject(
    write_project: Callable[..., Path], load: Callable[..., Settings]
) -> None:
    write_project('report_dir = "r"')
    with pytest.raises(ConfigError, match="did you mean 'reports_dir'"):
        load()


def test_unknown_section_without_close_match_lists_the_sections(
    write_project: Callable[..., Path], load: Callable[..., Settings]
) -> None:
    write_project("[tool.mlci.zzzzqqq]\nxyzzy = 1")
    with pytest.raises(ConfigError) as info:
        load()
    assert info.value.what == "unknown section [tool.mlci.zzzzqqq] in pyproject.toml"
    assert (
        "sections are bootstrap, cache, gate, image, lint, mlflow, model, platform"
        in info.value.fix
    )


def test_unknown_section_suggests_the_close_one(
    write_project: Callable[..., Path], load: Callable[..., Settings]
) -> None:
    write_project('[tool.mlci.mlfow]\nexperiment = "x"')
    with pytest.raises(ConfigError) as info:
        load()
    assert info.value.fix == "did you mean [tool.mlci.mlflow]?"


def test_a_wrong_file_value_is_refused_even_where_the_environment_wins(
    write_project: Callable[..., Path], load: Callable[..., Settings]
) -> None:
    # The file is committed: a wrong value there must not wait for the day nothing overrides it.
    write_project('[tool.mlci.mlflow]\ntimeout = "soon"')
    with pytest.raises(ConfigError, match=r"mlflow\.timeout \(from pyproject\.toml\)"):
        load(env={"MLCI_MLFLOW_TIMEOUT": "10"})


def test_unknown_mlci_env_var(load: Callable[..., Settings]) -> None:
    with pytest.raises(ConfigError) as info:
        load(env={"MLCI_MLFLOW_TRACKING_URL": "http://x:5000"})
    err = info.value
    assert "'MLCI_MLFLOW_TRACKING_URL'" in err.what
    assert "the environment" in err.what
    assert err.fix == "did you mean 'MLCI_MLFLOW_TRACKING_URI'?"


def test_other_env_vars_are_ignored(load: Callable[..., Settings]) -> None:
    s = load(env={"MLCIX": "1", "HOME": "/nowhere", "mlci_lint_paths": "x"})
    assert s.lint.paths == ["."]


def test_unknown_command_line_key(load: Callable[..., Settings]) -> None:
    with pytest.raises(ConfigError, match="in the command line"):
        load({"test.fail": "3"})


# ---------------------------------------------------------------------------------------------
# Secrets
# ---------------------------------------------------------------------------------------------


def test_secret_in_pyproject_is_refused_without_echoing_it(
    write_project: Callable[..., Path], load: Callable[..., Settings]
) -> None:
    write_project('[tool.mlci.release]\npassword = "hunter2"')
    with pytest.raises(ConfigError) as info:
        load()
    err = info.value
    assert "release.password" in err.what
    assert "committed" in err.why
    assert "MLCI_RELEASE_PASSWORD" in err.fix
    assert "hunter2" not in err.render()


def test_secret_in_pyproject_is_refused_even_when_env_also_sets_it(
    write_project: Callable[..., Path], load: Callable[..., Settings]
) -> None:
    write_project('[tool.mlci.release]\npassword = "hunter2"')
    with pytest.raises(ConfigError, match=r"release\.password"):
        load(env={"MLCI_RELEASE_PASSWORD": "from-env"})


def test_secret_from_env_is_used_and_masked_by_describe(load: Callable[..., Settings]) -> None:
    s = load(env={"MLCI_RELEASE_PASSWORD": "hunter2"})
    assert s.release.password == "hunter2"
    rows = {key: (shown, source) for key, shown, source, _ in s.describe()}
    assert rows["release.password"] == (SECRET_MASK, "env MLCI_RELEASE_PASSWORD")
    assert all("hunter2" not in shown for shown, _ in rows.values())


def test_empty_secret_is_shown_empty(load: Callable[..., Settings]) -> None:
    rows = {key: shown for key, shown, _, _ in load().describe()}
    assert rows["release.password"] == ""


def test_describe_lists_every_setting_with_value_source_and_help(
    write_project: Callable[..., Path], load: Callable[..., Settings]
) -> None:
    write_project('[tool.mlci.lint]\npaths = ["src", "tests"]')
    rows = load(env={"MLCI_MODEL_PARAMS": "a=1"}).describe()
    assert [key for key, *_ in rows] == list(SPECS)
    by_key = {key: (shown, source, help_) for key, shown, source, help_ in rows}
    assert by_key["lint.paths"][:2] == ('["src", "tests"]', "pyproject.toml")
    assert by_key["model.params"][:2] == ('{"a": 1}', "env MLCI_MODEL_PARAMS")
    assert by_key["sonar.poll_interval"][:2] == ("2.0", "default")
    assert by_key["sonar.poll_interval"][2] == SPECS["sonar.poll_interval"].help


# ---------------------------------------------------------------------------------------------
# The file itself, and finding the project root
# ---------------------------------------------------------------------------------------------


def test_invalid_toml(tmp_path: Path, load: Callable[..., Settings]) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.mlci\nreports_dir = 'x'\n")
    with pytest.raises(ConfigError) as info:
        load()
    assert "is not valid TOML" in info.value.what
    assert str(tmp_path / "pyproject.toml") in info.value.what
    assert info.value.why  # the parser's message with the line


def test_tool_mlci_that_is_not_a_table(tmp_path: Path, load: Callable[..., Settings]) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool]\nmlci = 3\n")
    with pytest.raises(ConfigError, match="must be a table"):
        load()


def test_pyproject_without_tool_mlci_gives_defaults(
    tmp_path: Path, load: Callable[..., Settings]
) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n[tool.ruff]\nfix = true\n')
    assert load().sources == {}


def test_find_project_root_walks_up_to_the_mlci_pyproject(tmp_path: Path) -> None:
    top = tmp_path / "proj"
    inner = top / "packages" / "pkg"
    deep = inner / "src" / "pkg"
    deep.mkdir(parents=True)
    (top / "pyproject.toml").write_text("[tool.mlci]\nreports_dir = 'r'\n")
    # A nearer pyproject without [tool.mlci] (a package of the monorepo) is passed over.
    (inner / "pyproject.toml").write_text('[project]\nname = "pkg"\n')
    assert find_project_root(deep, environ={}) == top.resolve()
    assert find_project_root(top, environ={}) == top.resolve()


def test_find_project_root_accepts_a_section_header_only(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.mlci.lint]\npaths = ['.']\n")
    sub = tmp_path / "sub"
    sub.mkdir()
    assert find_project_root(sub, environ={}) == tmp_path.resolve()


def test_find_project_root_from_env(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert find_project_root(tmp_path, environ={ROOT_ENV: str(elsewhere)}) == elsewhere.resolve()


def test_find_project_root_env_pointing_at_a_missing_folder(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(ConfigError) as info:
        find_project_root(tmp_path, environ={ROOT_ENV: str(missing)})
    assert ROOT_ENV in info.value.what
    assert str(missing) in info.value.what
    assert ROOT_ENV in info.value.fix


def test_find_project_root_env_pointing_at_a_file(tmp_path: Path) -> None:
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(ConfigError, match=ROOT_ENV):
        find_project_root(tmp_path, environ={ROOT_ENV: str(a_file)})


def test_load_settings_without_root_uses_the_root_variable(
    write_project: Callable[..., Path], tmp_path: Path
) -> None:
    write_project('reports_dir = "via-root-env"')
    s = load_settings(environ={ROOT_ENV: str(tmp_path)})
    assert s.project_root == tmp_path.resolve()
    assert s.reports_dir == "via-root-env"
    assert s.sources["reports_dir"] == "pyproject.toml"


def test_load_settings_with_missing_root_variable_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=ROOT_ENV):
        load_settings(environ={ROOT_ENV: str(tmp_path / "missing")})


# ---------------------------------------------------------------------------------------------
# The Settings object
# ---------------------------------------------------------------------------------------------


def test_paths_resolve_against_the_project_root(
    tmp_path: Path, load: Callable[..., Settings]
) -> None:
    s = load(env={"MLCI_REPORTS_DIR": "out/reports", "MLCI_STATE_DIR": str(tmp_path / "abs")})
    assert s.reports_path == tmp_path.resolve() / "out" / "reports"
    assert s.state_path == tmp_path / "abs"
    assert s.path("a/b") == tmp_path.resolve() / "a" / "b"
    assert s.path(Path("/x/y")) == Path("/x/y")


def test_settings_are_frozen(load: Callable[..., Settings]) -> None:
    s = load()
    with pytest.raises(AttributeError):
        s.reports_dir = "x"  # type: ignore[misc]


def test_get_reads_dotted_keys(load: Callable[..., Settings]) -> None:
    s = load(env={"MLCI_MLFLOW_EXPERIMENT": "e"})
    assert s.get("mlflow.experiment") == "e"
    assert s.get("reports_dir") == "reports"


def test_section_dataclass_can_be_built_directly() -> None:
    policy = PromotionSettings(primary_metric="auc", min={"auc": 0.7})
    assert policy.mode == "enabled"
    assert policy.alias == "champion"
    assert PromotionSettings().min == {}
    assert isinstance(Settings(project_root=Path("/p")).promotion, PromotionSettings)


def test_a_direction_other_than_higher_or_lower_is_refused(
    write_project: Callable[..., Path], load: Callable[..., Settings]
) -> None:
    write_project('[tool.mlci.promotion]\ndirections = { rmse = "down" }')
    with pytest.raises(ConfigError) as info:
        load()
    assert info.value.what == "promotion.directions (from pyproject.toml) has rmse = 'down'"
    assert info.value.why == "each value must be one of: higher, lower"


MODELS = """
[tool.mlci.promotion]
mode = "dry-run"
min = { accuracy = 0.5 }

[tool.mlci.models.wine]
module = "wine_classifier"
params = { n_estimators = 10 }

[tool.mlci.models.diabetes]
module = "diabetes_regressor"
registered_model = "diabetes-v2"

[tool.mlci.models.diabetes.promotion]
primary_metric = "rmse"
directions = { rmse = "lower" }
min = {}
"""


def test_each_model_has_its_table_over_the_projects_settings(
    write_project: Callable[..., Path], load: Callable[..., Settings]
) -> None:
    write_project(MODELS)
    settings = load()
    assert [s.model_name for s in settings.each_model()] == ["wine", "diabetes"]
    wine, diabetes = settings.each_model()
    assert wine.model.module == "wine_classifier"
    assert wine.mlflow.registered_model == wine.mlflow.experiment == "wine"  # the name
    assert wine.promotion.min == {"accuracy": 0.5}  # the project's
    assert diabetes.mlflow.registered_model == "diabetes-v2"
    assert diabetes.promotion.primary_metric == "rmse"
    assert diabetes.promotion.min == {}
    assert diabetes.promotion.mode == "dry-run"  # shared
    assert diabetes.model_reports_path == settings.reports_path / "models" / "diabetes"


def test_the_environment_still_wins_over_a_models_table(
    write_project: Callable[..., Path], load: Callable[..., Settings]
) -> None:
    write_project(MODELS)
    settings = load(env={"MLCI_MODEL": "diabetes", "MLCI_PROMOTION_PRIMARY_METRIC": "mae"})
    assert settings.model_name == "diabetes"
    assert settings.each_model() == [settings]
    assert settings.promotion.primary_metric == "mae"
    assert settings.mlflow.registered_model == "diabetes-v2"


def test_choosing_a_model_that_is_not_there_says_which_are(
    write_project: Callable[..., Path], load: Callable[..., Settings]
) -> None:
    write_project(MODELS)
    with pytest.raises(ConfigError) as info:
        load(env={"MLCI_MODEL": "wnie"})
    assert info.value.what == "there is no model 'wnie' in [tool.mlci.models]"
    assert info.value.fix == "did you mean 'wine'?"
    with pytest.raises(ConfigError) as info:
        load().one_model()
    assert info.value.what == "this project has several models: wine, diabetes"


@pytest.mark.parametrize(
    ("table", "what"),
    [
        ('[tool.mlci.models.a]\nmodul = "x"', "unknown setting 'modul' in [tool.mlci.models.a]"),
        ("[tool.mlci.models.a]\nparams = { n = 1 }", "[tool.mlci.models.a] names no module"),
        (
            '[tool.mlci.models.a]\nmodule = "x"\npromotion = { mni = {} }',
            "unknown setting 'mni' in [tool.mlci.models.a] promotion",
        ),
        ("models = 3", "[tool.mlci.models] must hold one table per model"),
        ("[tool.mlci.models.a]\nmodule = 3", "model.module (from [tool.mlci.models.a]) has an"),
    ],
)
def test_a_wrong_models_table_is_named(
    write_project: Callable[..., Path], load: Callable[..., Settings], table: str, what: str
) -> None:
    write_project(table)
    with pytest.raises(ConfigError) as info:
        load()
    assert info.value.what.startswith(what)


def test_a_variable_that_would_make_several_models_one_is_refused(
    write_project: Callable[..., Path], load: Callable[..., Settings]
) -> None:
    write_project(MODELS)
    settings = load(env={"MLCI_MLFLOW_REGISTERED_MODEL": "shared"})
    with pytest.raises(ConfigError) as info:
        settings.each_model()
    assert info.value.what == (
        "MLCI_MLFLOW_REGISTERED_MODEL would apply to every model of [tool.mlci.models]"
    )
    assert info.value.fix == "choose the model it is meant for: MLCI_MODEL=NAME (or --model NAME)"
    chosen = load(env={"MLCI_MLFLOW_REGISTERED_MODEL": "shared", "MLCI_MODEL": "wine"})
    assert [s.mlflow.registered_model for s in chosen.each_model()] == ["shared"]
