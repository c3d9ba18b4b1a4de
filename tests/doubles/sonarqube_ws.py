"""How the SonarQube double reads a web-service call (parameters, multipart parts, SonarQube's
validation messages) and writes its JSON answers and errors.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .server import (
    Reply,
    json_bytes,
)
from .sonarqube_model import _INSUFFICIENT_PRIVILEGES, _PROJECT_KEY_ALLOWED
from .sonarqube_state import _Session


class _WsError(Exception):
    def __init__(self, status: int, *messages: str) -> None:
        super().__init__(*messages)
        self.status = status
        self.messages = messages


def _bad_request(*messages: str) -> _WsError:
    return _WsError(400, *messages)


def _not_found(message: str) -> _WsError:
    return _WsError(404, message)


def _forbidden() -> _WsError:
    return _WsError(403, _INSUFFICIENT_PRIVILEGES)


def _json_reply(payload: Any, status: int = 200) -> Reply:
    return Reply(status, json_bytes(payload), "application/json")


def _error_reply(status: int, *messages: str) -> Reply:
    return _json_reply({"errors": [{"msg": m} for m in messages]}, status)


def _no_content() -> Reply:
    return Reply(204)


@dataclass(frozen=True)
class _Part:
    """One part of a multipart/form-data body."""

    name: str
    filename: str | None
    content_type: str | None
    data: bytes


@dataclass
class _Input:
    """A request's parameters, read like a servlet: the query string, then a form body (url
    encoded, or the text parts of a multipart one); multipart parts are kept by name too."""

    params: dict[str, str] = field(default_factory=dict)
    multi: dict[str, list[str]] = field(default_factory=dict)
    parts: list[_Part] = field(default_factory=list)


def _parse_multipart(content_type: str, body: bytes) -> list[_Part] | None:
    """The parts of a multipart/form-data body, or None when it cannot be parsed."""
    header = Message()
    header["Content-Type"] = content_type
    boundary = header.get_param("boundary")
    if not isinstance(boundary, str) or not boundary:
        return None
    delimiter = b"--" + boundary.encode("latin-1")
    chunks = body.split(delimiter)
    if len(chunks) < 2:
        return None
    parts: list[_Part] = []
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            return parts  # the closing delimiter
        head, separator, data = chunk.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        if not separator:
            return None
        fields = Message()
        for line in head.decode("latin-1").split("\r\n"):
            key, colon, value = line.partition(":")
            if colon:
                fields[key.strip()] = value.strip()
        name = fields.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        filename = fields.get_param("filename", header="content-disposition")
        parts.append(
            _Part(
                name,
                filename if isinstance(filename, str) else None,
                fields.get("Content-Type"),
                data.removesuffix(b"\r\n"),
            )
        )
    return None  # no closing delimiter


class _Call:
    """One web-service call: its parameters, read the way SonarQube's request validation does."""

    def __init__(
        self,
        method: str,
        params: dict[str, str],
        session: _Session | None,
        request_input: _Input | None = None,
    ) -> None:
        self.method = method
        self.params = params
        self._session = session
        self._input = request_input or _Input(params, {k: [v] for k, v in params.items()})

    def multi_param(self, key: str) -> list[str]:
        """Every value of a repeated parameter, in order."""
        return list(self._input.multi.get(key, []))

    @property
    def parts(self) -> list[_Part]:
        return list(self._input.parts)

    def mandatory_part(self, key: str) -> _Part:
        # ServletRequest.readPart: only multipart requests have parts; an empty part is absent.
        part = next((p for p in self._input.parts if p.name == key), None)
        if part is None or not part.data:
            raise _bad_request(f"The '{key}' parameter is missing")
        return part

    @property
    def session(self) -> _Session:
        assert self._session is not None, "authenticated endpoint reached without a session"
        return self._session

    def param(
        self,
        key: str,
        *,
        default: str | None = None,
        choices: Sequence[str] | None = None,
        min_length: int | None = None,
        max_length: int | None = None,
    ) -> str | None:
        raw = self.params.get(key)
        value = default if raw is None else raw
        if value is None:
            return None
        value = value.strip()
        if choices is not None and value not in choices:
            raise _bad_request(
                f"Value of parameter '{key}' ({value}) must be one of: [{', '.join(choices)}]"
            )
        if max_length is not None and len(value) > max_length:
            raise _bad_request(
                f"'{key}' length ({len(value)}) is longer than the maximum authorized "
                f"({max_length})"
            )
        if min_length is not None and len(value) < min_length:
            raise _bad_request(
                f"'{key}' length ({len(value)}) is shorter than the minimum authorized "
                f"({min_length})"
            )
        return value

    def mandatory(self, key: str, **checks: Any) -> str:
        raw = self.params.get(key)
        if raw is None or not raw.strip():
            raise _bad_request(f"The '{key}' parameter is missing")
        value = self.param(key, **checks)
        assert value is not None
        return value

    def int_param(self, key: str, default: int, maximum: int | None = None) -> int:
        raw = self.param(key)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise _bad_request(f"'{raw}' is not a valid integer") from None
        if maximum is not None and value > maximum:
            raise _bad_request(f"'{key}' value ({value}) must be less than {maximum}")
        return value


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _fmt(moment: datetime) -> str:
    """SonarQube's date-time format: 2024-05-25T10:34:21+0000."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S%z")


def _uuid() -> str:
    """An identifier shaped like SonarQube's (20 URL-safe characters)."""
    return secrets.token_urlsafe(15)


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _same_secret(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode("utf-8"), given.encode("utf-8"))


def _normalise_path(path: str) -> str:
    return urlsplit(path).path.strip("/")


def _valid_project_key(key: str) -> bool:
    if not key or len(key) > 400:
        return False
    if any(not (c.isascii() and (c.isalnum() or c in _PROJECT_KEY_ALLOWED)) for c in key):
        return False
    return not key.isdigit()


_LOGIN_PATTERN = re.compile(r"\w[\w.\-@]+", re.ASCII)
# Not commons-validator's full check (which also knows the top-level domains): a local part,
# an @ and a dotted domain.
_EMAIL_PATTERN = re.compile(r"[^@\s]+@[^@\s.]+(\.[^@\s.]+)+")


def _split_characteristic(text: str) -> tuple[str, str] | None:
    """StringUtils.split(text, "=", 2): runs of '=' separate, empty tokens do not count."""
    stripped = text.lstrip("=")
    key, separator, rest = stripped.partition("=")
    value = rest.lstrip("=")
    if not key or not separator or not value:
        return None
    return key, value


def _number(text: str) -> float:
    value = float(text)
    if math.isnan(value):
        raise ValueError(text)
    return value


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        raise TypeError("a measure cannot be a boolean")
    return str(value)


def _obfuscate_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    netloc = f"*****:******@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
