"""The GitBucket double's answers (API JSON, HTML pages, container errors), the JSON body
extraction json4s does, and the helpers for paths and git smart HTTP.
"""

from __future__ import annotations

import os
import re
import zlib
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import unquote

from .gitbucket_model import _HTML_TYPE, _JSON_TYPE, _MISSING, Repo, _Command, _Invalid, _Request
from .server import (
    Reply,
    json_bytes,
)


def _html(status: int, title: str) -> Reply:
    page = (
        f"<!DOCTYPE html><html><head><title>{title} - GitBucket</title></head>"
        f"<body><h1>{title}</h1></body></html>"
    )
    return Reply(status, page.encode(), headers=[("Content-Type", _HTML_TYPE)])


def _container_error(status: int, reason: str) -> Reply:
    page = (
        f"<html><head><title>Error {status} {reason}</title></head>"
        f"<body><h2>HTTP ERROR {status} {reason}</h2></body></html>"
    )
    return Reply(status, page.encode(), headers=[("Content-Type", "text/html;charset=iso-8859-1")])


def _api_json(status: int, value: Any) -> Reply:
    return Reply(status, json_bytes(value), headers=[("Content-Type", _JSON_TYPE)])


def _api_error(status: int, message: str, documentation_url: str | None = None) -> Reply:
    body: dict[str, Any] = {"message": message}
    if documentation_url is not None:
        body["documentation_url"] = documentation_url
    return _api_json(status, body)


def _api_empty(status: int) -> Reply:
    return Reply(status, b"", headers=[("Content-Type", _JSON_TYPE)])


def _is_browser(user_agent: str | None) -> bool:
    """Roughly woothee's pc/smartphone/mobilephone categories."""
    if not user_agent:
        return False
    agent = user_agent.lower()
    return agent.startswith("mozilla/") and "bot" not in agent


def _extract(value: Any, spec: Mapping[str, tuple[str, Any]]) -> dict[str, Any]:
    """Mimic json4s ``extract[CaseClass]``: required fields, defaults, type checks."""
    if not isinstance(value, dict):
        raise _Invalid
    out: dict[str, Any] = {}
    for name, (kind, default) in spec.items():
        raw = value.get(name, _MISSING)
        if kind.startswith("opt_"):
            if raw is _MISSING or raw is None:
                out[name] = None
                continue
            kind = kind[4:]
        elif raw is _MISSING or raw is None:
            if default is _MISSING:
                raise _Invalid
            out[name] = default() if callable(default) else default
            continue
        if kind == "str":
            if isinstance(raw, bool) or not isinstance(raw, str | int | float):
                raise _Invalid
            out[name] = raw if isinstance(raw, str) else str(raw)
        elif kind == "bool":
            if not isinstance(raw, bool):
                raise _Invalid
            out[name] = raw
        elif kind == "strlist":
            if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
                raise _Invalid
            out[name] = list(raw)
        elif kind == "hookconfig":
            out[name] = _extract(raw, _HOOK_CONFIG)
        else:  # pragma: no cover - programming error
            raise AssertionError(kind)
    return out


_HOOK_CONFIG: dict[str, tuple[str, Any]] = {
    "url": ("str", _MISSING),
    "content_type": ("str", "form"),
    "insecure_ssl": ("str", "0"),
    "secret": ("opt_str", None),
}
_CREATE_HOOK: dict[str, tuple[str, Any]] = {
    "name": ("str", "web"),
    "config": ("hookconfig", _MISSING),
    "events": ("strlist", lambda: ["push"]),
    "active": ("bool", True),
}
_UPDATE_HOOK: dict[str, tuple[str, Any]] = {
    **_CREATE_HOOK,
    "add_events": ("strlist", list),
    "remove_events": ("strlist", list),
}
_CREATE_REPO: dict[str, tuple[str, Any]] = {
    "name": ("str", _MISSING),
    "description": ("opt_str", None),
    "private": ("bool", False),
    "auto_init": ("bool", False),
}
_CREATE_GROUP: dict[str, tuple[str, Any]] = {
    "login": ("str", _MISSING),
    "admin": ("str", _MISSING),
    "profile_name": ("opt_str", None),
    "url": ("opt_str", None),
}
_ADD_COLLABORATOR: dict[str, tuple[str, Any]] = {
    "permission": ("str", _MISSING),
}
_CREATE_USER: dict[str, tuple[str, Any]] = {
    "login": ("str", _MISSING),
    "password": ("str", _MISSING),
    "email": ("str", _MISSING),
    "fullName": ("opt_str", None),
    "isAdmin": ("opt_bool", None),
    "description": ("opt_str", None),
    "url": ("opt_str", None),
}


# ---------------------------------------------------------------------------------------------
# Helpers outside the class
# ---------------------------------------------------------------------------------------------


def _unquote(text: str) -> str:
    return unquote(text)


def _open_to_anonymous(raw_path: str) -> bool:
    """PreProcessController's exceptions (plug-ins could add more; the double has none)."""
    return (
        raw_path.startswith(("/assets", "/signin", "/register", "/plugin-assets"))
        or raw_path.endswith("/info/refs")
        or raw_path == "/user.css"
    )


def _git_env() -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("GIT_") and key.lower() not in ("http_proxy", "https_proxy")
    }
    env["GIT_CONFIG_NOSYSTEM"] = "1"
    env["GIT_CONFIG_GLOBAL"] = os.devnull
    env["GIT_TERMINAL_PROMPT"] = "0"
    return env


def _compare_url(base: str, repo: Repo, command: _Command, commits: list[dict[str, Any]]) -> str:
    full = repo.full_name
    if not commits:
        return f"{base}/{full}"
    if len(commits) == 1:
        return f"{base}/{full}/commit/{command.new}"
    if set(command.old) == {"0"}:
        return f"{base}/{full}/compare/{commits[0]['id']}^...{command.new}"
    return f"{base}/{full}/compare/{command.old}...{command.new}"


def _pkt_lines(data: bytes) -> Iterator[bytes | None]:
    """pkt-line frames up to the first flush (``None`` marks the flush)."""
    pos = 0
    while pos + 4 <= len(data):
        try:
            size = int(data[pos : pos + 4], 16)
        except ValueError:
            return
        if size == 0:
            yield None
            return
        if size < 4:
            return
        yield data[pos + 4 : pos + size]
        pos += size


def _parse_receive_commands(request: _Request) -> list[_Command]:
    body = request.body
    if (request.headers.get("Content-Encoding") or "").lower() in ("gzip", "x-gzip"):
        try:
            body = zlib.decompress(body, 16 + zlib.MAX_WBITS)
        except zlib.error:
            return []
    commands = []
    for frame in _pkt_lines(body):
        if frame is None:
            break
        line = frame.split(b"\0", 1)[0].rstrip(b"\n").decode("utf-8", "replace")
        match = re.fullmatch(r"([0-9a-f]{40}) ([0-9a-f]{40}) (\S+)", line)
        if match:
            commands.append(_Command(match.group(1), match.group(2), match.group(3)))
    return commands


def _call_kind(method: str, path: str) -> str | None:
    """The kind of mutating call, for :attr:`GitBucketDouble.calls`."""
    if method == "POST" and path.endswith("/git-receive-pack") and path.startswith("/git/"):
        return "push"
    if method == "POST" and path == "/signin":
        return "signin"
    if method == "POST" and (
        re.fullmatch(r"/[^/]+/_edit/?", path) or re.fullmatch(r"/admin/users/[^/]+/_edituser", path)
    ):
        return "edit_account"
    if not path.startswith("/api/v3") or method not in ("POST", "PATCH", "PUT", "DELETE"):
        return None
    path = path.rstrip("/")
    table = (
        ("POST", r"/api/v3/admin/users", "create_user"),
        ("PATCH", r"/api/v3/user", "update_user"),
        ("POST", r"/api/v3/admin/organizations", "create_org"),
        ("POST", r"/api/v3/user/repos", "create_repo"),
        ("POST", r"/api/v3/orgs/[^/]+/repos", "create_repo"),
        ("POST", r"/api/v3/repos/[^/]+/[^/]+/hooks", "create_hook"),
        ("PATCH", r"/api/v3/repos/[^/]+/[^/]+/hooks/[^/]+", "update_hook"),
        ("DELETE", r"/api/v3/repos/[^/]+/[^/]+/hooks/[^/]+", "delete_hook"),
        ("PUT", r"/api/v3/repos/[^/]+/[^/]+/collaborators/[^/]+", "add_collaborator"),
        ("DELETE", r"/api/v3/repos/[^/]+/[^/]+/collaborators/[^/]+", "remove_collaborator"),
    )
    for wanted, pattern, kind in table:
        if method == wanted and re.fullmatch(pattern, path):
            return kind
    return "api_other"
