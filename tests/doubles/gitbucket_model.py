"""The GitBucket double's constants, the records tests read, and its internal state."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from .server import (
    cookie,
    form_pairs,
)

ROOT_USER = "root"
DEFAULT_ROOT_PASSWORD = "root"
DEFAULT_BRANCH = "main"
ZERO_ID = "0" * 40

# model/WebHook.scala: WebHook.Event.values
WEBHOOK_EVENTS = (
    "commit_comment",
    "create",
    "delete",
    "deployment",
    "deployment_status",
    "fork",
    "gollum",
    "issue_comment",
    "issues",
    "member",
    "page_build",
    "public",
    "pull_request",
    "pull_request_review_comment",
    "push",
    "release",
    "status",
    "team_add",
    "watch",
)

_JSON_TYPE = "application/json;charset=utf-8"
_HTML_TYPE = "text/html;charset=utf-8"
_REPO_NAME = re.compile(r"[a-zA-Z0-9\-+_.]+")
_DELIVERY_USER_AGENT = "Apache-HttpClient/4.5.14 (Java/17)"
_FORM_SAFE = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.*")

# api/AddACollaborator.scala: the API permission -> the Role stored in COLLABORATOR.ROLE
COLLABORATOR_ROLES = {"admin": "ADMIN", "push": "DEVELOPER", "pull": "GUEST"}
_ANY_ROLE = frozenset(COLLABORATOR_ROLES.values())
_WRITE_ROLES = frozenset({"ADMIN", "DEVELOPER"})


# ---------------------------------------------------------------------------------------------
# Public records
# ---------------------------------------------------------------------------------------------


@dataclass
class Repo:
    """A repository: its metadata and the bare git directory the double serves."""

    id: int
    owner: str
    name: str
    description: str | None
    private: bool
    default_branch: str
    path: Path

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"


@dataclass
class Hook:
    """A repository web hook as GitBucket stores it (``content_type`` is ``json`` or ``form``)."""

    id: int
    owner: str
    repo: str
    url: str
    content_type: str
    secret: str | None
    events: list[str]


@dataclass
class Delivery:
    """One web hook POST the double made (or tried to make) after a push."""

    hook_id: int
    url: str
    event: str
    headers: dict[str, str]
    body: bytes
    status: int | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def payload(self) -> dict[str, Any]:
        """The JSON payload, decoded from a JSON body or from the form's ``payload`` field."""
        if self.headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded"):
            fields = dict(parse_qsl(self.body.decode("utf-8"), keep_blank_values=True))
            return json.loads(fields["payload"])
        return json.loads(self.body)


@dataclass
class RequestRecord:
    """One request the double answered (the path without its query string)."""

    method: str
    path: str
    status: int
    user: str | None


# ---------------------------------------------------------------------------------------------
# Internals
# ---------------------------------------------------------------------------------------------


@dataclass
class _Account:
    name: str
    password: str | None
    email: str
    full_name: str
    is_admin: bool
    is_group: bool
    created_at: datetime
    description: str | None = None
    url: str | None = None
    removed: bool = False
    members: dict[str, bool] = field(default_factory=dict)  # group: member -> is manager


@dataclass
class _Request:
    method: str
    path: str
    query: str
    headers: Any  # email.message.Message: case-insensitive get()
    body: bytes
    client: str
    host: str

    @property
    def params(self) -> dict[str, str]:
        values = dict(parse_qsl(self.query, keep_blank_values=True))
        for key, value in form_pairs(self.headers.get("Content-Type"), self.body):
            values.setdefault(key, value)
        return values

    def cookie(self, name: str) -> str | None:
        return cookie(self.headers.get("Cookie"), name)


@dataclass
class _Fault:
    path: str
    method: str | None
    remaining: int
    status: int | None
    hang: float


@dataclass
class _Command:
    old: str
    new: str
    ref: str

    @property
    def type(self) -> str:
        if self.old == ZERO_ID:
            return "CREATE"
        if self.new == ZERO_ID:
            return "DELETE"
        return "UPDATE"


class _ServerError(Exception):
    """Where GitBucket would throw: its error handler answers 500."""


class _BadCredentials(Exception):
    """ApiAuthenticationFilter rejected the Authorization header."""


class _FilterBroke(Exception):
    """An exception inside a servlet filter: the container's 500 page."""


class _Invalid(Exception):
    """A JSON body json4s could not extract into the expected case class."""


_MISSING = object()


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _form_encode(text: str) -> str:
    out = []
    for byte in text.encode("utf-8"):
        if byte in _FORM_SAFE:
            out.append(chr(byte))
        elif byte == 0x20:
            out.append("+")
        else:
            out.append(f"%{byte:02X}")
    return "".join(out)
