"""The platform's env file: generation rules, reuse, mode 0600, masking."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest

from mlci.errors import ConfigError
from mlci.platform import secrets as s

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE = REPO_ROOT / "services" / "compose.yaml"
URL_SAFE = re.compile(r"^[A-Za-z0-9_-]+$")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_required_names_are_every_required_compose_variable_plus_the_wirings() -> None:
    names = s.required_names(COMPOSE.read_text())
    text = COMPOSE.read_text()
    for name in names[: -len(s.WIRING_SECRETS)]:
        assert f"${{{name}:?" in text
    assert "JENKINS_ADMIN_PASSWORD" in names and "SONARQUBE_TOKEN" in names
    assert set(s.WIRING_SECRETS) <= set(names)
    assert "MLCI_BIND_ADDRESS" not in names and "PYPI_USERNAME" not in names
    assert len(names) == len(set(names))


@pytest.mark.parametrize("attempt", range(50))
def test_generated_values_follow_each_products_rules(attempt: int) -> None:
    gitbucket = s.generate("GITBUCKET_ROOT_PASSWORD")
    assert len(gitbucket) == 20 and URL_SAFE.match(gitbucket)
    sonar = s.generate("SONARQUBE_ADMIN_PASSWORD")
    assert s.sonarqube_password_problem(sonar) is None and URL_SAFE.match(sonar)
    for name in ("MINIO_ROOT_PASSWORD", "MLFLOW_S3_SECRET_KEY", "MLFLOW_ADMIN_PASSWORD"):
        value = s.generate(name)
        assert len(value) >= 16 and URL_SAFE.match(value)
    assert s.generate("SONARQUBE_TOKEN") == s.PLACEHOLDER


def test_sonarqube_policy_check_names_the_missing_kind() -> None:
    assert s.sonarqube_password_problem("Short1-") == "shorter than 12 characters"
    assert s.sonarqube_password_problem("alllowercase1-") == "has no an upper-case letter"
    assert s.sonarqube_password_problem("NoSpecial12345") == "has no special character"
    assert s.sonarqube_password_problem("Good-Password-1") is None


def test_masked_hides_value_and_length() -> None:
    assert s.masked("hunter2") == s.masked("a much longer secret value") == "********"
    assert s.masked("") == ""


def test_first_run_writes_every_secret_at_0600_and_later_runs_reuse_them(tmp_path: Path) -> None:
    path = tmp_path / "services" / ".env"
    first = s.ensure_for_compose(path, COMPOSE)
    assert mode(path) == 0o600
    assert set(first.generated) == set(s.required_names(COMPOSE.read_text()))
    second = s.ensure_for_compose(path, COMPOSE)
    assert second.generated == [] and second.values == first.values
    assert len(set(first.secrets())) == len(first.secrets()), "every secret is its own"


def test_new_required_names_are_added_and_user_lines_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "x.env"
    path.write_text("# mine\nGPU_AGENT_REMOTE_FS=/srv/agent\nPYPI_PASSWORD=kept-value-123\n")
    os.chmod(path, 0o600)
    env = s.ensure_env_file(path, ["PYPI_PASSWORD", "NEW_SECRET"])
    assert env.generated == ["NEW_SECRET"]
    text = path.read_text()
    assert text.startswith("# mine\nGPU_AGENT_REMOTE_FS=/srv/agent\nPYPI_PASSWORD=kept-value-123\n")
    assert env["PYPI_PASSWORD"] == "kept-value-123" and len(env["NEW_SECRET"]) == 32


def test_the_file_never_stays_wider_than_0600(tmp_path: Path) -> None:
    path = tmp_path / "x.env"
    s.ensure_env_file(path, ["A_PASSWORD"])
    os.chmod(path, 0o644)
    s.read_env_file(path)
    assert mode(path) == 0o600
    s.set_value(path, "SONARQUBE_TOKEN", "squ_abc")
    assert mode(path) == 0o600
    assert s.read_env_file(path)["SONARQUBE_TOKEN"] == "squ_abc"
    assert [p.name for p in tmp_path.iterdir()] == ["x.env"], "no temp file left behind"


def test_set_value_replaces_in_place(tmp_path: Path) -> None:
    path = tmp_path / "x.env"
    s.ensure_env_file(path, ["A_PASSWORD", "SONARQUBE_TOKEN", "B_PASSWORD"])
    before = s.read_env_file(path)
    assert before.is_placeholder("SONARQUBE_TOKEN")
    s.set_value(path, "SONARQUBE_TOKEN", "squ_real")
    after = s.read_env_file(path)
    assert list(after.values) == list(before.values)
    assert after["A_PASSWORD"] == before["A_PASSWORD"] and not after.is_placeholder(
        "SONARQUBE_TOKEN"
    )


def test_a_missing_env_file_or_name_says_to_run_platform_up(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist") as caught:
        s.read_env_file(tmp_path / "nope.env")
    assert "invoke platform.up" in caught.value.fix
    path = tmp_path / "x.env"
    env = s.ensure_env_file(path, ["A_PASSWORD"])
    with pytest.raises(ConfigError, match="has no B_PASSWORD"):
        env["B_PASSWORD"]


def test_quoted_values_and_exports_are_read(tmp_path: Path) -> None:
    path = tmp_path / "x.env"
    path.write_text("export A='one'\nB=\"two\"\n  # comment\nC=three\n")
    assert s.read_env_file(path).values == {"A": "one", "B": "two", "C": "three"}


def test_grafana_and_serving_proxy_secrets_are_generated_once_and_kept(tmp_path: Path) -> None:
    """Compose requires them, so platform.up generates them; a value already there stays."""
    names = s.required_names(COMPOSE.read_text())
    assert {"GRAFANA_ADMIN_PASSWORD", "GRAFANA_SECRET_KEY", "SERVING_PROXY_TOKEN"} <= set(names)
    path = tmp_path / "x.env"
    path.write_text("SERVING_PROXY_TOKEN=kept-token-value-1234\n")
    os.chmod(path, 0o600)
    env = s.ensure_for_compose(path, COMPOSE)
    assert env["SERVING_PROXY_TOKEN"] == "kept-token-value-1234"
    assert "SERVING_PROXY_TOKEN" not in env.generated
    for name in ("GRAFANA_ADMIN_PASSWORD", "GRAFANA_SECRET_KEY"):
        assert name in env.generated
        assert len(env[name]) >= 16 and URL_SAFE.match(env[name])
    assert s.ensure_for_compose(path, COMPOSE).values == env.values


@pytest.mark.parametrize(
    "value",
    ["p$ss$WORD $$", "has # hash", 'a "quoted" word', "two  spaces ", "plain-Value_1.2:3/4@5+6=7"],
)
def test_values_with_special_characters_round_trip(tmp_path: Path, value: str) -> None:
    path = tmp_path / "x.env"
    path.write_text("# mine\nKEEP=$OTHER\n")
    os.chmod(path, 0o600)
    s.set_value(path, "SONARQUBE_TOKEN", value)
    assert s.read_env_file(path).values == {"KEEP": "$OTHER", "SONARQUBE_TOKEN": value}
    line = path.read_text().splitlines()[-1]
    # Anything but a plain value is single-quoted: Compose reads it literally too.
    shown = value if s.PLAIN_VALUE.fullmatch(value) else f"'{value}'"
    assert line == f"SONARQUBE_TOKEN={shown}"
    assert path.read_text().startswith("# mine\nKEEP=$OTHER\n") and mode(path) == 0o600


@pytest.mark.parametrize("value", ["it's", "back\\slash", "two\nlines", "a${B}c"])
def test_values_compose_would_read_differently_are_refused(tmp_path: Path, value: str) -> None:
    path = tmp_path / "x.env"
    s.ensure_env_file(path, ["A_PASSWORD"])
    before = path.read_text()
    with pytest.raises(ConfigError, match="cannot write SONARQUBE_TOKEN"):
        s.set_value(path, "SONARQUBE_TOKEN", value)
    assert path.read_text() == before
