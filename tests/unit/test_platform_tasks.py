"""The platform tasks: registered, documented, and errors become Exit without a traceback."""

from __future__ import annotations

import pytest
from invoke import Context, Exit

from mlci.tasks import namespace
from mlci.tasks import platform as tasks


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
