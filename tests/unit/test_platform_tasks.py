"""The platform tasks: registered, documented, and errors become Exit without a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from invoke import Context, Exit

from mlci.tasks import namespace
from mlci.tasks import platform as tasks

COMPOSE = Path(__file__).resolve().parents[2] / "services" / "compose.yaml"


def test_the_platform_collection_has_its_four_documented_tasks() -> None:
    names = set(namespace.task_names)
    assert {"platform.up", "platform.wire", "platform.status", "platform.down"} <= names
    for name in ("up", "wire", "status", "down"):
        assert getattr(tasks, name).__doc__.strip()


def test_wire_without_an_env_file_exits_with_the_config_error(isolated_loader, capsys) -> None:
    with pytest.raises(Exit) as caught:
        tasks.wire(Context())
    assert caught.value.code == 2
    assert "ConfigError: the platform's env file" in str(caught.value.message)
    assert "invoke platform.up" in str(caught.value.message)


def test_down_without_compose_exits_with_tool_missing(
    isolated_loader, monkeypatch, tmp_path
) -> None:
    import mlci.platform.compose as compose
    from mlci.platform.secrets import ensure_env_file

    ensure_env_file(tmp_path / "services" / ".env", ["A_PASSWORD"])
    monkeypatch.setattr(compose.shutil, "which", lambda name: None)
    with pytest.raises(Exit) as caught:
        tasks.down(Context())
    assert caught.value.code == 4
    assert "ToolMissing: Compose: neither docker-compose nor docker" in str(caught.value.message)


def test_down_without_an_env_file_says_so_before_running_compose(isolated_loader) -> None:
    with pytest.raises(Exit) as caught:
        tasks.down(Context())
    assert caught.value.code == 2 and "platform.up" in str(caught.value.message)


def test_kube_secrets_writes_the_env_files_secrets_as_kubernetes_secrets(
    isolated_loader, tmp_path, capsys
) -> None:
    import stat

    import yaml

    from mlci.platform.secrets import read_env_file

    (tmp_path / "services").mkdir()
    (tmp_path / "services" / "compose.yaml").write_bytes(COMPOSE.read_bytes())
    tasks.kube_secrets(Context(), db_host="db.example", db_options="sslmode=require")
    out = capsys.readouterr().out
    path = tmp_path / "services" / "kubernetes-secrets.yaml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    env = read_env_file(tmp_path / "services" / ".env")
    documents = list(yaml.safe_load_all(path.read_text()))
    by_name = {d["metadata"]["name"]: d for d in documents}
    assert all(d["kind"] == "Secret" for d in documents)
    namespaces = {d["metadata"]["name"]: d["metadata"]["namespace"] for d in documents}
    assert namespaces.pop("mlci-jenkins") == "jenkins"  # beside the chart's release
    assert set(namespaces.values()) == {"mlci"}
    database = by_name["mlci-mlflow-db"]["stringData"]
    assert database["password"] == env["MLFLOW_DB_PASSWORD"]
    assert (database["host"], database["port"], database["options"]) == (
        "db.example", "5432", "sslmode=require",
    )  # fmt: skip
    jenkins = by_name["mlci-jenkins"]["stringData"]
    assert jenkins["mlflow-ci-password"] == env["MLFLOW_CI_PASSWORD"]
    assert jenkins["serving-proxy-token"] == env["SERVING_PROXY_TOKEN"]
    assert by_name["mlci-registry"]["stringData"]["http-secret"] == env["REGISTRY_HTTP_SECRET"]
    # names and the path are shown, never a value
    assert "mlci-mlflow-db" in out and str(path) in out
    assert not any(secret in out for secret in env.secrets())

    before = path.read_text()
    tasks.kube_secrets(Context(), db_host="db.example", db_options="sslmode=require")
    assert path.read_text() == before  # the env file's values are kept, so the Secrets are too


def test_kube_secrets_refuses_a_port_that_is_none(isolated_loader, tmp_path) -> None:
    with pytest.raises(Exit) as caught:
        tasks.kube_secrets(Context(), db_port=70000)
    assert caught.value.code == 2 and "--db-port is 70000" in str(caught.value.message)
    assert not (tmp_path / "services" / "kubernetes-secrets.yaml").exists()
