"""A test double of the SonarQube web API (10.x / 2025.x), served over real HTTP on 127.0.0.1.

The behaviour follows SonarQube's own web-service code and documentation, not our client's
expectations; the contract tests in ``tests/doubles_tests`` run a second client (the
``python-sonarqube-api`` library) against it. Fidelity points worth knowing:

* Every ``api/`` endpoint except ``api/system/status``, ``api/server/version`` and
  ``api/authentication/validate`` needs authentication (``sonar.forceAuthentication`` is on by
  default). Missing or bad credentials answer **401 with an empty body**.
  ``api/authentication/validate`` never answers 401: it reports ``{"valid": false}``.
* Credentials: HTTP basic ``login:password``, a token as the basic user with an empty password,
  or ``Authorization: Bearer <token>``. Analysis tokens (``GLOBAL_ANALYSIS_TOKEN`` and
  ``PROJECT_ANALYSIS_TOKEN``) only carry the scan (and, global, provisioning) permissions, so
  they get 403 on administration endpoints and on ``project_status``/``get_by_project``.
* Web-service errors answer ``{"errors": [{"msg": ...}]}`` with ``Content-Type:
  application/json``; a GET on a POST-only action answers 405 "HTTP method POST is required";
  a POST on a GET action is served (SonarQube only checks the POST-only case); an unknown
  action answers 404 "Unknown url : /api/...".
* ``api/users/change_password`` is a servlet filter in SonarQube, not a regular web service:
  its 400 answers carry ``{"result": "<message or key>"}`` (``old_password_incorrect``,
  ``new_password_same_as_old``, password-policy messages), not the ``errors`` shape.
* Successful POSTs that return nothing answer 204 with no body and no Content-Type.
* An unknown metric in ``create_condition``/``update_condition`` answers **404** ("There is no
  metric with key=..."), operators are checked against the metric's direction (coverage only
  ``LT``, issue counts only ``GT``) and a second condition on the same metric is refused.
* ``api/webhooks/update`` without ``secret`` removes the secret (the action sets what it gets).
  Webhook URLs on loopback or wildcard addresses are refused unless ``validate_webhook_urls``
  is off (SonarQube's ``sonar.validateWebhooks``); host names are not resolved here, except
  ``localhost``.

Analyses are not uploaded over HTTP: tests call :meth:`SonarQubeDouble.submit_analysis`, which
queues a Compute Engine task whose successive ``api/ce/task`` polls follow an
:class:`AnalysisScenario`. When a task ends (SUCCESS or FAILED) the double records, in
:attr:`SonarQubeDouble.delivered_webhooks`, the POST SonarQube would send to every matching
webhook (nothing is sent).
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import hmac
import ipaddress
import json
import math
import secrets
import sys
import threading
import traceback
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, quote_plus, urlsplit, urlunsplit

ADMIN_LOGIN = "admin"
DEFAULT_ADMIN_PASSWORD = "admin"
BUILT_IN_GATE = "Sonar way"
DEFAULT_VERSION = "10.7.0.96327"

SERVER_STATUSES = frozenset(
    {"STARTING", "UP", "DOWN", "RESTARTING", "DB_MIGRATION_NEEDED", "DB_MIGRATION_RUNNING"}
)
TASK_STATUSES = ("PENDING", "IN_PROGRESS", "SUCCESS", "FAILED", "CANCELED")
FINAL_TASK_STATUSES = frozenset({"SUCCESS", "FAILED", "CANCELED"})
TOKEN_TYPES = ("USER_TOKEN", "GLOBAL_ANALYSIS_TOKEN", "PROJECT_ANALYSIS_TOKEN")
GLOBAL_PERMISSIONS = frozenset({"admin", "gateadmin", "profileadmin", "provisioning", "scan"})
PROJECT_PERMISSIONS = frozenset(
    {"user", "codeviewer", "issueadmin", "securityhotspotadmin", "admin", "scan"}
)

_TOKEN_PREFIXES = {
    "USER_TOKEN": "squ_",
    "GLOBAL_ANALYSIS_TOKEN": "sqa_",
    "PROJECT_ANALYSIS_TOKEN": "sqp_",
}
# What a global analysis token keeps of its owner's global permissions.
_GLOBAL_ANALYSIS_TOKEN_PERMISSIONS = frozenset({"scan", "provisioning"})
# Permissions everybody has on a public project.
_PUBLIC_PROJECT_PERMISSIONS = frozenset({"user", "codeviewer"})
# Paths that SonarQube serves without running authentication at all.
_UNAUTHENTICATED_PATHS = frozenset(
    {"api/system/status", "api/server/version", "api/authentication/validate"}
)
_GENERIC_ERROR = "An error has occurred. Please contact your administrator"
_INSUFFICIENT_PRIVILEGES = "Insufficient privileges"
_MAX_WEBHOOKS = 10
_PROJECT_KEY_ALLOWED = frozenset("-_.:")


# ----------------------------------------------------------------------------------------------
# Metrics: the subset of SonarQube's core metrics a quality gate can use, with the attributes the
# condition checks look at (value type and direction: 1 = higher is better, -1 = higher is worse).


@dataclass(frozen=True)
class Metric:
    key: str
    name: str
    type: str
    direction: int
    hidden: bool = False


_CONDITION_TYPES = frozenset({"INT", "FLOAT", "PERCENT", "MILLISEC", "LEVEL", "RATING", "WORK_DUR"})
_FORBIDDEN_CONDITION_METRICS = frozenset(
    {"alert_status", "security_hotspots", "new_security_hotspots"}
)

METRICS: dict[str, Metric] = {
    m.key: m
    for m in (
        Metric("coverage", "Coverage", "PERCENT", 1),
        Metric("new_coverage", "Coverage on New Code", "PERCENT", 1),
        Metric("line_coverage", "Line Coverage", "PERCENT", 1),
        Metric("new_line_coverage", "Line Coverage on New Code", "PERCENT", 1),
        Metric("branch_coverage", "Condition Coverage", "PERCENT", 1),
        Metric("new_branch_coverage", "Condition Coverage on New Code", "PERCENT", 1),
        Metric("tests", "Unit Tests", "INT", 1),
        Metric("test_failures", "Unit Test Failures", "INT", -1),
        Metric("test_errors", "Unit Test Errors", "INT", -1),
        Metric("skipped_tests", "Skipped Unit Tests", "INT", -1),
        Metric("test_success_density", "Unit Test Success (%)", "PERCENT", 1),
        Metric("violations", "Issues", "INT", -1),
        Metric("new_violations", "New Issues", "INT", -1),
        Metric("blocker_violations", "Blocker Issues", "INT", -1),
        Metric("critical_violations", "Critical Issues", "INT", -1),
        Metric("major_violations", "Major Issues", "INT", -1),
        Metric("bugs", "Bugs", "INT", -1),
        Metric("new_bugs", "New Bugs", "INT", -1),
        Metric("vulnerabilities", "Vulnerabilities", "INT", -1),
        Metric("new_vulnerabilities", "New Vulnerabilities", "INT", -1),
        Metric("code_smells", "Code Smells", "INT", -1),
        Metric("new_code_smells", "New Code Smells", "INT", -1),
        Metric("duplicated_lines_density", "Duplicated Lines (%)", "PERCENT", -1),
        Metric("new_duplicated_lines_density", "Duplicated Lines (%) on New Code", "PERCENT", -1),
        Metric("reliability_rating", "Reliability Rating", "RATING", -1),
        Metric("new_reliability_rating", "Reliability Rating on New Code", "RATING", -1),
        Metric("security_rating", "Security Rating", "RATING", -1),
        Metric("new_security_rating", "Security Rating on New Code", "RATING", -1),
        Metric("sqale_rating", "Maintainability Rating", "RATING", -1),
        Metric("new_maintainability_rating", "Maintainability Rating on New Code", "RATING", -1),
        Metric("security_review_rating", "Security Review Rating", "RATING", -1),
        Metric("security_hotspots_reviewed", "Security Hotspots Reviewed", "PERCENT", 1),
        Metric(
            "new_security_hotspots_reviewed",
            "Security Hotspots Reviewed on New Code",
            "PERCENT",
            1,
        ),
        Metric("sqale_index", "Technical Debt", "WORK_DUR", -1),
        Metric("sqale_debt_ratio", "Technical Debt Ratio", "PERCENT", -1),
        Metric("ncloc", "Lines of Code", "INT", -1),
        Metric("complexity", "Cyclomatic Complexity", "INT", -1),
        Metric("cognitive_complexity", "Cognitive Complexity", "INT", -1),
        Metric("alert_status", "Quality Gate Status", "LEVEL", 1),
        Metric("security_hotspots", "Security Hotspots", "INT", -1),
        Metric("new_security_hotspots", "New Security Hotspots", "INT", -1),
        Metric("quality_gate_details", "Quality Gate Details", "DATA", 0),
    )
}

# The conditions of the built-in "Sonar way" gate.
_SONAR_WAY_CONDITIONS = (
    ("new_violations", "GT", "0"),
    ("new_coverage", "LT", "80"),
    ("new_duplicated_lines_density", "GT", "3"),
    ("new_security_hotspots_reviewed", "LT", "100"),
)


# ----------------------------------------------------------------------------------------------
# Public records handed to tests.


@dataclass(frozen=True)
class AnalysisScenario:
    """How one Compute Engine task behaves, set by the test that submits it.

    ``statuses`` are the answers of successive ``api/ce/task`` polls; the last one repeats, so
    ``("IN_PROGRESS",)`` never finishes. The first SUCCESS creates the analysis (its id shows
    as ``analysisId``) and evaluates the quality gate; FAILED reports ``error_message``.

    The gate result is either computed from ``measures`` against the conditions of the gate the
    project uses when the task ends (a condition without a measure is ``NO_VALUE``), or forced
    with ``gate_status`` ("OK", "ERROR" or "NONE") and ``conditions``: mappings with ``metric``,
    ``op`` ("LT"/"GT"), ``error`` (threshold), ``value`` (actual) and optionally ``status``.
    ``properties`` are scanner properties; the webhook payload keeps the ``sonar.analysis.*``
    ones.
    """

    statuses: tuple[str, ...] = ("PENDING", "IN_PROGRESS", "SUCCESS")
    error_message: str = "Analysis failed"
    measures: Mapping[str, Any] = field(default_factory=dict)
    gate_status: str | None = None
    conditions: tuple[Mapping[str, Any], ...] = ()
    revision: str | None = None
    properties: Mapping[str, str] = field(default_factory=dict)
    submitter: str = ADMIN_LOGIN

    def __post_init__(self) -> None:
        statuses = (self.statuses,) if isinstance(self.statuses, str) else tuple(self.statuses)
        if not statuses:
            raise ValueError("an analysis scenario needs at least one task status")
        unknown = [s for s in statuses if s not in TASK_STATUSES]
        if unknown:
            raise ValueError(f"unknown task status(es) {unknown}; use {list(TASK_STATUSES)}")
        if self.gate_status not in (None, "OK", "ERROR", "NONE"):
            raise ValueError(f"gate_status must be OK, ERROR or NONE, not {self.gate_status!r}")
        object.__setattr__(self, "statuses", statuses)
        object.__setattr__(self, "conditions", tuple(dict(c) for c in self.conditions))

    @classmethod
    def failing(cls, error_message: str, *, polls_before: int = 1) -> AnalysisScenario:
        """A task that answers IN_PROGRESS ``polls_before`` times, then FAILED."""
        statuses = ("IN_PROGRESS",) * polls_before + ("FAILED",)
        return cls(statuses=statuses, error_message=error_message)

    @classmethod
    def never_finishing(cls) -> AnalysisScenario:
        """A task that answers IN_PROGRESS forever."""
        return cls(statuses=("PENDING", "IN_PROGRESS"))


@dataclass(frozen=True)
class WebhookDelivery:
    """The POST SonarQube would have sent to one webhook when a task ended."""

    url: str
    headers: dict[str, str]
    body: bytes
    webhook_key: str
    webhook_name: str
    project_key: str
    task_id: str

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class RecordedRequest:
    """One HTTP request the double answered (``path`` without the leading slash)."""

    method: str
    path: str
    params: dict[str, str]
    status: int
    login: str | None


# ----------------------------------------------------------------------------------------------
# Internal state.


@dataclass
class _User:
    login: str
    name: str
    password: str
    permissions: set[str]
    project_permissions: dict[str, set[str]]


@dataclass
class _Token:
    login: str
    name: str
    type: str
    token_hash: str
    created_at: datetime
    project_key: str | None = None
    expires_at: datetime | None = None
    last_connection: datetime | None = None


@dataclass
class _Project:
    key: str
    name: str
    visibility: str
    uuid: str
    created_at: datetime
    last_analysis: datetime | None = None
    revision: str | None = None


@dataclass
class _Condition:
    id: str
    metric: str
    op: str
    error: str


@dataclass
class _Gate:
    name: str
    built_in: bool
    conditions: list[_Condition] = field(default_factory=list)


@dataclass
class _Webhook:
    key: str
    name: str
    url: str
    secret: str | None
    project_key: str | None


@dataclass
class _Evaluated:
    metric: str
    op: str
    error: str
    value: str | None
    status: str  # OK, ERROR or NO_VALUE


@dataclass
class _Analysis:
    id: str
    project_key: str
    task_id: str
    date: datetime
    revision: str | None
    gate_name: str | None
    gate_status: str
    conditions: list[_Evaluated]


@dataclass
class _Task:
    id: str
    project_key: str
    scenario: AnalysisScenario
    submitted_at: datetime
    status: str = "PENDING"
    polls: int = 0
    started_at: datetime | None = None
    executed_at: datetime | None = None
    analysis_id: str | None = None


@dataclass
class _Session:
    user: _User
    token: _Token | None

    @property
    def login(self) -> str:
        return self.user.login

    def has_global(self, permission: str) -> bool:
        kind = self.token.type if self.token else "USER_TOKEN"
        if kind == "PROJECT_ANALYSIS_TOKEN":
            return False
        if kind == "GLOBAL_ANALYSIS_TOKEN" and permission not in _GLOBAL_ANALYSIS_TOKEN_PERMISSIONS:
            return False
        return permission in self.user.permissions

    def has_project(self, permission: str, project: _Project) -> bool:
        kind = self.token.type if self.token else "USER_TOKEN"
        if kind == "GLOBAL_ANALYSIS_TOKEN":
            return False
        if kind == "PROJECT_ANALYSIS_TOKEN":
            assert self.token is not None
            return (
                permission == "scan"
                and project.key == self.token.project_key
                and (
                    "scan" in self.user.permissions
                    or "scan" in self.user.project_permissions.get(project.key, set())
                )
            )
        # Global administrators hold every project permission (the default permission template
        # grants them to sonar-administrators); everybody browses public projects.
        if "admin" in self.user.permissions:
            return True
        if project.visibility == "public" and permission in _PUBLIC_PROJECT_PERMISSIONS:
            return True
        return permission in self.user.project_permissions.get(project.key, set())


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


@dataclass
class _Reply:
    status: int
    body: bytes = b""
    content_type: str | None = None


def _json_reply(payload: Any, status: int = 200) -> _Reply:
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return _Reply(status, body, "application/json")


def _error_reply(status: int, *messages: str) -> _Reply:
    return _json_reply({"errors": [{"msg": m} for m in messages]}, status)


def _no_content() -> _Reply:
    return _Reply(204)


class _Call:
    """One web-service call: its parameters, read the way SonarQube's request validation does."""

    def __init__(self, method: str, params: dict[str, str], session: _Session | None) -> None:
        self.method = method
        self.params = params
        self._session = session

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


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], double: SonarQubeDouble) -> None:
        self.double = double
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError | TimeoutError):
            return  # the client went away (for example after its own timeout)
        self.double._record_internal_error(traceback.format_exc())


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        reply = self.server.double._dispatch(self.command, self.path, self.headers, body)
        try:
            self.send_response(reply.status)
            if reply.content_type:
                self.send_header("Content-Type", reply.content_type)
            if reply.status != 204:
                self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            if reply.body and self.command != "HEAD":
                self.wfile.write(reply.body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _serve

    def version_string(self) -> str:
        return "SonarQubeDouble"

    def log_message(self, format: str, *args: Any) -> None:
        pass


# Endpoint table: path -> (handler method name, POST only).
_ENDPOINTS: dict[str, tuple[str, bool]] = {
    "api/system/status": ("_ws_system_status", False),
    "api/server/version": ("_ws_server_version", False),
    "api/authentication/validate": ("_ws_authentication_validate", False),
    "api/users/change_password": ("_ws_users_change_password", True),
    "api/users/search": ("_ws_users_search", False),
    "api/user_tokens/generate": ("_ws_user_tokens_generate", True),
    "api/user_tokens/search": ("_ws_user_tokens_search", False),
    "api/user_tokens/revoke": ("_ws_user_tokens_revoke", True),
    "api/projects/create": ("_ws_projects_create", True),
    "api/projects/search": ("_ws_projects_search", False),
    "api/projects/delete": ("_ws_projects_delete", True),
    "api/qualitygates/list": ("_ws_qualitygates_list", False),
    "api/qualitygates/show": ("_ws_qualitygates_show", False),
    "api/qualitygates/create": ("_ws_qualitygates_create", True),
    "api/qualitygates/create_condition": ("_ws_qualitygates_create_condition", True),
    "api/qualitygates/update_condition": ("_ws_qualitygates_update_condition", True),
    "api/qualitygates/delete_condition": ("_ws_qualitygates_delete_condition", True),
    "api/qualitygates/select": ("_ws_qualitygates_select", True),
    "api/qualitygates/deselect": ("_ws_qualitygates_deselect", True),
    "api/qualitygates/set_as_default": ("_ws_qualitygates_set_as_default", True),
    "api/qualitygates/get_by_project": ("_ws_qualitygates_get_by_project", False),
    "api/qualitygates/search": ("_ws_qualitygates_search", False),
    "api/qualitygates/project_status": ("_ws_qualitygates_project_status", False),
    "api/webhooks/create": ("_ws_webhooks_create", True),
    "api/webhooks/list": ("_ws_webhooks_list", False),
    "api/webhooks/update": ("_ws_webhooks_update", True),
    "api/webhooks/delete": ("_ws_webhooks_delete", True),
    "api/ce/task": ("_ws_ce_task", False),
    "api/ce/activity": ("_ws_ce_activity", False),
}


class SonarQubeDouble:
    """A SonarQube server double: start it, point a client at :attr:`url`, script scenarios.

    ``SonarQubeDouble(version=..., public_url=..., validate_webhook_urls=True)``; use it as a
    context manager or call :meth:`start` (returns the base URL) and :meth:`stop`.
    """

    ADMIN_LOGIN = ADMIN_LOGIN
    DEFAULT_ADMIN_PASSWORD = DEFAULT_ADMIN_PASSWORD
    BUILT_IN_GATE = BUILT_IN_GATE

    def __init__(
        self,
        *,
        version: str = DEFAULT_VERSION,
        host: str = "127.0.0.1",
        port: int = 0,
        public_url: str | None = None,
        validate_webhook_urls: bool = True,
    ) -> None:
        self.version = version
        self.server_id = f"{secrets.token_hex(4).upper()}-{_uuid()}"
        self._host = host
        self._port = port
        self._public_url = public_url.rstrip("/") if public_url else None
        self._validate_webhook_urls = validate_webhook_urls
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._url: str | None = None

        self._status_sequence: list[str] = ["UP"]
        self._status_polls = 0
        self._reject_all = False
        self._failures: dict[str, list[int]] = {}
        self._hangs: dict[str, list[float]] = {}

        self._users: dict[str, _User] = {
            ADMIN_LOGIN: _User(
                ADMIN_LOGIN,
                "Administrator",
                DEFAULT_ADMIN_PASSWORD,
                set(GLOBAL_PERMISSIONS),
                {},
            )
        }
        self._tokens: dict[str, _Token] = {}
        self._projects: dict[str, _Project] = {}
        self._gates: dict[str, _Gate] = {
            BUILT_IN_GATE: _Gate(
                BUILT_IN_GATE,
                True,
                [_Condition(_uuid(), m, op, err) for m, op, err in _SONAR_WAY_CONDITIONS],
            )
        }
        self._default_gate = BUILT_IN_GATE
        self._gate_of_project: dict[str, str] = {}
        self._webhooks: dict[str, _Webhook] = {}
        self._tasks: dict[str, _Task] = {}
        self._analyses: dict[str, _Analysis] = {}
        self._deliveries: list[WebhookDelivery] = []

        self._requests: list[RecordedRequest] = []
        self._calls: Counter[tuple[str, str]] = Counter()
        self._mutations: Counter[str] = Counter()
        self._internal_errors: list[str] = []

    # ------------------------------------------------------------------------------------------
    # Lifecycle.

    def start(self) -> str:
        """Start serving on ``host``:``port`` (0 picks a free port); return the base URL."""
        with self._lock:
            if self._server is not None:
                raise RuntimeError("the SonarQube double is already running")
            self._stopping.clear()
            server = _Server((self._host, self._port), self)
            host, port = server.server_address[:2]
            self._server = server
            self._url = f"http://{host}:{port}"
            self._thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"sonarqube-double:{port}",
                daemon=True,
            )
            self._thread.start()
            return self._url

    def stop(self) -> None:
        """Stop serving; requests held by :meth:`hang_next` are released at once."""
        with self._lock:
            server, thread = self._server, self._thread
            self._server = self._thread = None
        self._stopping.set()
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> SonarQubeDouble:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:43210`` (known once :meth:`start` ran)."""
        if self._url is None:
            raise RuntimeError("the SonarQube double is not running; call start() first")
        return self._url

    # ------------------------------------------------------------------------------------------
    # Scenario control.

    def set_status_sequence(self, statuses: str | Iterable[str]) -> None:
        """Answers of successive ``api/system/status`` calls; the last one repeats."""
        sequence = [statuses] if isinstance(statuses, str) else list(statuses)
        if not sequence:
            raise ValueError("the status sequence needs at least one status")
        unknown = [s for s in sequence if s not in SERVER_STATUSES]
        if unknown:
            raise ValueError(f"unknown server status(es) {unknown}; use {sorted(SERVER_STATUSES)}")
        with self._lock:
            self._status_sequence = sequence
            self._status_polls = 0

    def add_user(
        self,
        login: str,
        password: str,
        *,
        name: str | None = None,
        permissions: Iterable[str] = (),
        project_permissions: Mapping[str, Iterable[str]] | None = None,
    ) -> None:
        """Add a local user with the given global and per-project permissions.

        Global: admin, gateadmin, profileadmin, provisioning, scan. Project: user, codeviewer,
        issueadmin, securityhotspotadmin, admin, scan. Everybody browses public projects.
        """
        granted = set(permissions)
        if granted - GLOBAL_PERMISSIONS:
            raise ValueError(f"unknown global permission(s) {sorted(granted - GLOBAL_PERMISSIONS)}")
        per_project = {k: set(v) for k, v in (project_permissions or {}).items()}
        for perms in per_project.values():
            if perms - PROJECT_PERMISSIONS:
                unknown = sorted(perms - PROJECT_PERMISSIONS)
                raise ValueError(f"unknown project permission(s) {unknown}")
        with self._lock:
            if login in self._users:
                raise ValueError(f"user {login!r} already exists")
            self._users[login] = _User(login, name or login, password, granted, per_project)

    def submit_analysis(
        self,
        project_key: str,
        scenario: AnalysisScenario | Sequence[str] | None = None,
        **scenario_fields: Any,
    ) -> str:
        """Queue a Compute Engine REPORT task for ``project_key``; return the task id.

        ``scenario`` is an :class:`AnalysisScenario`, a list of statuses, or None for the
        default (PENDING, IN_PROGRESS, SUCCESS); keyword arguments build or amend it
        (``measures=``, ``gate_status=``, ``conditions=``, ``error_message=``, ...). Like a
        first scan, an unknown project is created (name = key).
        """
        if scenario is None:
            scenario = AnalysisScenario(**scenario_fields)
        elif isinstance(scenario, AnalysisScenario):
            if scenario_fields:
                values = {f: getattr(scenario, f) for f in scenario.__dataclass_fields__}
                scenario = AnalysisScenario(**{**values, **scenario_fields})
        else:
            scenario = AnalysisScenario(statuses=tuple(scenario), **scenario_fields)
        with self._lock:
            if project_key not in self._projects:
                self._create_project(project_key, project_key, "public")
            task = _Task(_uuid(), project_key, scenario, _now())
            self._tasks[task.id] = task
            return task.id

    def finish_task(self, task_id: str) -> str:
        """Drive a task to where its scenario ends, without HTTP polls; return its status."""
        with self._lock:
            task = self._tasks[task_id]
            for _ in range(len(task.scenario.statuses)):
                self._advance(task)
            return task.status

    def fail_next(self, path: str, count: int = 1, *, status: int = 500) -> None:
        """Answer the next ``count`` requests to ``path`` (``"*"``: any) with ``status``.

        The body is SonarQube's generic error (``{"errors":[{"msg":"An error has occurred.
        Please contact your administrator"}]}``).
        """
        with self._lock:
            self._failures.setdefault(self._fault_key(path), []).extend([status] * count)

    def hang_next(self, path: str, seconds: float, count: int = 1) -> None:
        """Hold the next ``count`` requests to ``path`` for ``seconds`` before answering."""
        with self._lock:
            self._hangs.setdefault(self._fault_key(path), []).extend([seconds] * count)

    @property
    def reject_all_requests(self) -> bool:
        """When true, every request (even ``api/system/status``) answers 401, empty body."""
        return self._reject_all

    @reject_all_requests.setter
    def reject_all_requests(self, value: bool) -> None:
        with self._lock:
            self._reject_all = bool(value)

    # ------------------------------------------------------------------------------------------
    # Inspection.

    @property
    def default_admin_password_in_use(self) -> bool:
        """True while ``admin`` still logs in with the factory password ``admin``."""
        with self._lock:
            return self._users[ADMIN_LOGIN].password == DEFAULT_ADMIN_PASSWORD

    def check_password(self, login: str, password: str) -> bool:
        with self._lock:
            user = self._users.get(login)
            return user is not None and _same_secret(user.password, password)

    @property
    def delivered_webhooks(self) -> list[WebhookDelivery]:
        """Webhook POSTs recorded so far (url, headers, exact body bytes), oldest first."""
        with self._lock:
            return list(self._deliveries)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def call_count(self, path: str, method: str | None = None) -> int:
        """How many requests reached ``path`` (any outcome), optionally for one method."""
        key = _normalise_path(path)
        with self._lock:
            return sum(n for (m, p), n in self._calls.items() if p == key and method in (None, m))

    def mutation_count(self, path: str | None = None) -> int:
        """Successful (2xx) calls to POST-only endpoints: for ``path``, or all together."""
        with self._lock:
            if path is None:
                return sum(self._mutations.values())
            return self._mutations[_normalise_path(path)]

    @property
    def mutation_counts(self) -> Counter[str]:
        with self._lock:
            return Counter(self._mutations)

    def reset_counters(self) -> None:
        """Forget recorded requests and counters (state and deliveries stay)."""
        with self._lock:
            self._requests.clear()
            self._calls.clear()
            self._mutations.clear()

    @property
    def internal_errors(self) -> list[str]:
        """Tracebacks of bugs inside the double (each also answered 500); should stay empty."""
        with self._lock:
            return list(self._internal_errors)

    def project_gate(self, project_key: str) -> tuple[str, bool]:
        """The gate a project uses and whether it is the default one (not explicitly chosen)."""
        with self._lock:
            gate = self._gate_of_project.get(project_key)
            return (gate, False) if gate else (self._default_gate, True)

    def snapshot(self) -> dict[str, Any]:
        """Everything the API can change, as plain data: compare two to prove nothing changed."""
        with self._lock:
            return copy.deepcopy(
                {
                    "admin_password_is_default": self.default_admin_password_in_use,
                    "passwords": {u.login: u.password for u in self._users.values()},
                    "tokens": sorted(
                        (t.login, t.name, t.type, t.project_key) for t in self._tokens.values()
                    ),
                    "projects": {
                        p.key: {"name": p.name, "visibility": p.visibility}
                        for p in self._projects.values()
                    },
                    "quality_gates": {
                        g.name: [(c.id, c.metric, c.op, c.error) for c in g.conditions]
                        for g in self._gates.values()
                    },
                    "default_gate": self._default_gate,
                    "gate_of_project": dict(self._gate_of_project),
                    "webhooks": sorted(
                        (w.key, w.name, w.url, w.secret or "", w.project_key or "")
                        for w in self._webhooks.values()
                    ),
                }
            )

    # ------------------------------------------------------------------------------------------
    # Request plumbing.

    @staticmethod
    def _fault_key(path: str) -> str:
        return "*" if path.strip() == "*" else _normalise_path(path)

    def _take_fault(self, table: dict[str, list[Any]], path: str) -> Any:
        for key in (path, "*"):
            queue = table.get(key)
            if queue:
                return queue.pop(0)
        return None

    def _record_internal_error(self, text: str) -> None:
        with self._lock:
            self._internal_errors.append(text)

    def _dispatch(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes
    ) -> _Reply:
        split = urlsplit(target)
        path = split.path.strip("/")
        with self._lock:
            self._calls[(method, path)] += 1
            reject = self._reject_all
            hang = None if reject else self._take_fault(self._hangs, path)
        login: str | None = None
        params: dict[str, str] = {}
        try:
            params = self._read_params(split.query, headers, body)
            if reject:
                reply = _Reply(401)
            else:
                if hang:
                    self._stopping.wait(hang)
                with self._lock:
                    failure = self._take_fault(self._failures, path)
                if failure is not None:
                    reply = _error_reply(failure, _GENERIC_ERROR)
                else:
                    reply, login = self._serve(method, path, params, headers)
        except Exception:
            self._record_internal_error(traceback.format_exc())
            reply = _error_reply(500, _GENERIC_ERROR)
        with self._lock:
            self._requests.append(RecordedRequest(method, path, params, reply.status, login))
        return reply

    @staticmethod
    def _read_params(query: str, headers: Mapping[str, str], body: bytes) -> dict[str, str]:
        # Like a servlet's getParameter: query string first, then a form-encoded body; the
        # first value of a repeated parameter wins.
        params: dict[str, str] = {}
        pairs = parse_qsl(query, keep_blank_values=True)
        content_type = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if body and content_type == "application/x-www-form-urlencoded":
            pairs += parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        for key, value in pairs:
            params.setdefault(key, value)
        return params

    def _serve(
        self, method: str, path: str, params: dict[str, str], headers: Mapping[str, str]
    ) -> tuple[_Reply, str | None]:
        if not path.startswith("api/"):
            return _Reply(404, b"Not Found", "text/plain"), None
        session: _Session | None = None
        if path not in _UNAUTHENTICATED_PATHS:
            session = self._authenticate(headers)
            if session is None:
                return _Reply(401), None
        login = session.login if session else None
        endpoint = _ENDPOINTS.get(path)
        if endpoint is None:
            return _error_reply(404, f"Unknown url : /{path}"), login
        handler_name, post_only = endpoint
        if post_only and method != "POST":
            return _error_reply(405, "HTTP method POST is required"), login
        call = _Call(method, params, session)
        with self._lock:
            try:
                if handler_name == "_ws_authentication_validate":
                    reply = self._ws_authentication_validate(headers)
                else:
                    reply = getattr(self, handler_name)(call)
            except _WsError as error:
                reply = _error_reply(error.status, *error.messages)
            if post_only and 200 <= reply.status < 300:
                self._mutations[path] += 1
        return reply, login

    def _authenticate(self, headers: Mapping[str, str]) -> _Session | None:
        header = (headers.get("Authorization") or "").strip()
        scheme, _, value = header.partition(" ")
        value = value.strip()
        with self._lock:
            if scheme.lower() == "basic" and value:
                try:
                    decoded = base64.b64decode(value, validate=True).decode("utf-8")
                except (binascii.Error, UnicodeDecodeError):
                    return None
                login, colon, password = decoded.partition(":")
                if not colon or not login:
                    return None
                if password == "":
                    return self._session_for_token(login)
                user = self._users.get(login)
                if user is None or not _same_secret(user.password, password):
                    return None
                return _Session(user, None)
            if scheme.lower() == "bearer" and value:
                return self._session_for_token(value)
            return None

    def _session_for_token(self, token: str) -> _Session | None:
        record = self._tokens.get(_hash_token(token))
        if record is None:
            return None
        now = _now()
        if record.expires_at is not None and now >= record.expires_at:
            return None
        user = self._users.get(record.login)
        if user is None:
            return None
        record.last_connection = now
        return _Session(user, record)

    # ------------------------------------------------------------------------------------------
    # System and authentication.

    def _ws_system_status(self, call: _Call) -> _Reply:
        index = min(self._status_polls, len(self._status_sequence) - 1)
        self._status_polls += 1
        return _json_reply(
            {"id": self.server_id, "version": self.version, "status": self._status_sequence[index]}
        )

    def _ws_server_version(self, call: _Call) -> _Reply:
        return _Reply(200, self.version.encode("utf-8"), "text/plain")

    def _ws_authentication_validate(self, headers: Mapping[str, str]) -> _Reply:
        return _json_reply({"valid": self._authenticate(headers) is not None})

    # ------------------------------------------------------------------------------------------
    # Users and tokens.

    def _ws_users_change_password(self, call: _Call) -> _Reply:
        # SonarQube implements this action as a servlet filter: failures are 400 with
        # {"result": ...}, not the usual {"errors": [...]}.
        def refuse(message: str) -> _Reply:
            return _json_reply({"result": message}, 400)

        def required(key: str) -> str | None:
            value = call.params.get(key)
            return value if value else None

        session = call.session
        login = required("login")
        if login is None:
            return refuse("The 'login' parameter is missing")
        password = required("password")
        if password is None:
            return refuse("The 'password' parameter is missing")
        problem = self._password_policy_problem(password)
        if problem:
            return refuse(problem)
        if login == session.login:
            previous = required("previousPassword")
            if previous is None:
                return refuse("The 'previousPassword' parameter is missing")
            if not _same_secret(session.user.password, previous):
                return refuse("old_password_incorrect")
            if previous == password:
                return refuse("new_password_same_as_old")
            user = session.user
        else:
            if not session.has_global("admin"):
                raise _forbidden()
            target = self._users.get(login)
            if target is None:
                raise _not_found(f"User with login '{login}' has not been found")
            user = target
        user.password = password
        return _no_content()

    @staticmethod
    def _password_policy_problem(password: str) -> str | None:
        if len(password) < 12:
            return "Password must be at least 12 characters long"
        if not any(c.isupper() and c.isascii() for c in password):
            return "Password must contain at least one uppercase character"
        if not any(c.islower() and c.isascii() for c in password):
            return "Password must contain at least one lowercase character"
        if not any(c.isdigit() and c.isascii() for c in password):
            return "Password must contain at least one digit"
        if all(c.isascii() and c.isalnum() for c in password):
            return "Password must contain at least one special character"
        return None

    def _ws_users_search(self, call: _Call) -> _Reply:
        query = (call.param("q") or "").lower()
        page = call.int_param("p", 1)
        size = call.int_param("ps", 50, maximum=500)
        users = [
            u
            for u in sorted(self._users.values(), key=lambda u: u.login)
            if not query or query in u.login.lower() or query in u.name.lower()
        ]
        shown = users[(page - 1) * size : page * size]
        return _json_reply(
            {
                "paging": {"pageIndex": page, "pageSize": size, "total": len(users)},
                "users": [
                    {
                        "login": u.login,
                        "name": u.name,
                        "active": True,
                        "local": True,
                        "externalIdentity": u.login,
                        "externalProvider": "sonarqube",
                        "managed": False,
                    }
                    for u in shown
                ],
            }
        )

    def _token_owner(self, call: _Call) -> _User:
        session = call.session
        login = call.param("login") or session.login
        if login != session.login and not session.has_global("admin"):
            raise _forbidden()
        user = self._users.get(login)
        if user is None:
            raise _not_found(f"User with login '{login}' has not been found")
        return user

    def _ws_user_tokens_generate(self, call: _Call) -> _Reply:
        session = call.session
        token_type = call.param("type", default="USER_TOKEN", choices=TOKEN_TYPES)
        assert token_type is not None
        same_login = call.param("login") in (None, session.login)
        project_key: str | None = None
        if token_type == "PROJECT_ANALYSIS_TOKEN":
            if not same_login:
                raise _bad_request("A Project Analysis Token cannot be generated for another user.")
            if call.param("projectKey") is None:
                raise _bad_request("A projectKey is needed when creating Project Analysis Token")
            project_key = call.mandatory("projectKey")
            project = self._project_or_404(project_key)
            if not (session.has_global("scan") or session.has_project("scan", project)):
                raise _forbidden()
        elif token_type == "GLOBAL_ANALYSIS_TOKEN":
            if not same_login:
                raise _bad_request("A Global Analysis Token cannot be generated for another user.")
            if not session.has_global("scan"):
                raise _forbidden()
        name = call.mandatory("name", max_length=100)
        expires_at = self._expiration(call.param("expirationDate"))
        owner = self._token_owner(call)
        if any(t.login == owner.login and t.name == name for t in self._tokens.values()):
            raise _bad_request(
                f"A user token for login '{owner.login}' and name '{name}' already exists"
            )
        value = _TOKEN_PREFIXES[token_type] + secrets.token_hex(20)
        record = _Token(owner.login, name, token_type, _hash_token(value), _now(), project_key)
        record.expires_at = expires_at
        self._tokens[record.token_hash] = record
        payload: dict[str, Any] = {
            "login": owner.login,
            "name": name,
            "createdAt": _fmt(record.created_at),
            "token": value,
            "type": token_type,
        }
        if project_key is not None:
            payload["projectKey"] = project_key
        if expires_at is not None:
            payload["expirationDate"] = _fmt(expires_at)
        return _json_reply(payload)

    @staticmethod
    def _expiration(text: str | None) -> datetime | None:
        if not text:
            return None
        try:
            day = date.fromisoformat(text)
        except ValueError:
            raise _bad_request(
                "Supplied date format for parameter expirationDate is wrong. Please supply date "
                "in the ISO 8601 date format (YYYY-MM-DD)"
            ) from None
        tomorrow = datetime.now(UTC).date() + timedelta(days=1)
        if day < tomorrow:
            raise _bad_request(
                f"The minimum value for parameter expirationDate is {tomorrow.isoformat()}."
            )
        return datetime.combine(day, time(), tzinfo=UTC)

    def _ws_user_tokens_search(self, call: _Call) -> _Reply:
        owner = self._token_owner(call)
        now = _now()
        tokens = []
        for record in sorted(self._tokens.values(), key=lambda t: t.created_at):
            if record.login != owner.login:
                continue
            item: dict[str, Any] = {"name": record.name, "createdAt": _fmt(record.created_at)}
            if record.last_connection is not None:
                item["lastConnectionDate"] = _fmt(record.last_connection)
            item["type"] = record.type
            if record.project_key is not None:
                project = self._projects.get(record.project_key)
                item["project"] = {
                    "key": record.project_key,
                    "name": project.name if project else record.project_key,
                }
            item["isExpired"] = record.expires_at is not None and now >= record.expires_at
            if record.expires_at is not None:
                item["expirationDate"] = _fmt(record.expires_at)
            tokens.append(item)
        return _json_reply({"login": owner.login, "userTokens": tokens})

    def _ws_user_tokens_revoke(self, call: _Call) -> _Reply:
        name = call.mandatory("name")
        owner = self._token_owner(call)
        for token_hash, record in list(self._tokens.items()):
            if record.login == owner.login and record.name == name:
                del self._tokens[token_hash]
        return _no_content()

    # ------------------------------------------------------------------------------------------
    # Projects.

    def _project_or_404(self, key: str) -> _Project:
        project = self._projects.get(key)
        if project is None:
            raise _not_found(f"Project '{key}' not found")
        return project

    def _create_project(self, key: str, name: str, visibility: str) -> _Project:
        project = _Project(key, name, visibility, _uuid(), _now())
        self._projects[key] = project
        return project

    @staticmethod
    def _project_json(project: _Project) -> dict[str, Any]:
        return {
            "key": project.key,
            "name": project.name,
            "qualifier": "TRK",
            "visibility": project.visibility,
        }

    def _ws_projects_create(self, call: _Call) -> _Reply:
        if not call.session.has_global("provisioning"):
            raise _forbidden()
        key = call.mandatory("project", max_length=400)
        name = call.mandatory("name")
        visibility = call.param("visibility", default="public", choices=("private", "public"))
        assert visibility is not None
        if len(name) > 500:
            name = name[:497] + "..."
        if not _valid_project_key(key):
            raise _bad_request(
                f"Malformed key for Project: '{key}'. Allowed characters are alphanumeric, '-', "
                "'_', '.' and ':', with at least one non-digit."
            )
        existing = next((p for p in self._projects.values() if p.key.lower() == key.lower()), None)
        if existing is not None:
            raise _bad_request(
                f'Could not create Project with key: "{key}". A similar key already exists: '
                f'"{existing.key}"'
            )
        project = self._create_project(key, name, visibility)
        return _json_reply({"project": self._project_json(project)})

    def _ws_projects_search(self, call: _Call) -> _Reply:
        if not call.session.has_global("admin"):
            raise _forbidden()
        qualifiers = (call.param("qualifiers") or "TRK").split(",")
        wanted = {k.strip() for k in (call.param("projects") or "").split(",") if k.strip()}
        query = (call.param("q") or "").lower()
        page = call.int_param("p", 1)
        size = call.int_param("ps", 100, maximum=500)
        found = [
            p
            for p in sorted(self._projects.values(), key=lambda p: p.name.lower())
            if "TRK" in qualifiers
            and (not wanted or p.key in wanted)
            and (not query or query in p.key.lower() or query in p.name.lower())
        ]
        components = []
        for project in found[(page - 1) * size : page * size]:
            item = self._project_json(project)
            if project.last_analysis is not None:
                item["lastAnalysisDate"] = _fmt(project.last_analysis)
            if project.revision is not None:
                item["revision"] = project.revision
            item["managed"] = False
            components.append(item)
        return _json_reply(
            {
                "paging": {"pageIndex": page, "pageSize": size, "total": len(found)},
                "components": components,
            }
        )

    def _ws_projects_delete(self, call: _Call) -> _Reply:
        project = self._project_or_404(call.mandatory("project"))
        if not call.session.has_project("admin", project):
            raise _forbidden()
        del self._projects[project.key]
        self._gate_of_project.pop(project.key, None)
        for key, hook in list(self._webhooks.items()):
            if hook.project_key == project.key:
                del self._webhooks[key]
        return _no_content()

    # ------------------------------------------------------------------------------------------
    # Quality gates.

    def _gate_or_404(self, name: str) -> _Gate:
        gate = self._gates.get(name)
        if gate is None:
            raise _not_found(f"No quality gate has been found for name {name}")
        return gate

    def _check_can_edit(self, session: _Session, gate: _Gate) -> None:
        if gate.built_in:
            raise _bad_request(f"Operation forbidden for built-in Quality Gate '{gate.name}'")
        if not session.has_global("gateadmin"):
            raise _forbidden()

    def _effective_gate(self, project_key: str) -> tuple[_Gate, bool]:
        chosen = self._gate_of_project.get(project_key)
        if chosen is not None and chosen in self._gates:
            return self._gates[chosen], False
        return self._gates[self._default_gate], True

    @staticmethod
    def _cayc_status(gate: _Gate) -> str:
        return "compliant" if gate.built_in else "non-compliant"

    def _gate_actions(self, session: _Session, gate: _Gate) -> dict[str, bool]:
        admin = session.has_global("gateadmin")
        default = gate.name == self._default_gate
        editable = admin and not gate.built_in
        return {
            "rename": editable,
            "setAsDefault": admin and not default,
            "copy": admin,
            "associateProjects": admin and not default,
            "delete": editable and not default,
            "manageConditions": editable,
            "delegate": editable,
        }

    def _ws_qualitygates_list(self, call: _Call) -> _Reply:
        gates = sorted(self._gates.values(), key=lambda g: g.name.lower())
        return _json_reply(
            {
                "qualitygates": [
                    {
                        "name": g.name,
                        "isDefault": g.name == self._default_gate,
                        "isBuiltIn": g.built_in,
                        "actions": self._gate_actions(call.session, g),
                        "caycStatus": self._cayc_status(g),
                    }
                    for g in gates
                ],
                "actions": {"create": call.session.has_global("gateadmin")},
            }
        )

    def _ws_qualitygates_show(self, call: _Call) -> _Reply:
        gate = self._gate_or_404(call.mandatory("name"))
        return _json_reply(
            {
                "name": gate.name,
                "conditions": [
                    {"id": c.id, "metric": c.metric, "op": c.op, "error": c.error}
                    for c in gate.conditions
                ],
                "isBuiltIn": gate.built_in,
                "isDefault": gate.name == self._default_gate,
                "actions": self._gate_actions(call.session, gate),
                "caycStatus": self._cayc_status(gate),
            }
        )

    def _ws_qualitygates_create(self, call: _Call) -> _Reply:
        if not call.session.has_global("gateadmin"):
            raise _forbidden()
        name = call.mandatory("name", max_length=100)
        if name in self._gates:
            raise _bad_request("Name has already been taken")
        self._gates[name] = _Gate(name, False)
        return _json_reply({"name": name})

    def _condition_params(self, call: _Call) -> tuple[str, str, str]:
        metric = call.mandatory("metric")
        op = call.mandatory("op", choices=("LT", "GT"))
        error = call.mandatory("error", max_length=64)
        return metric, op, error

    def _validate_condition(self, metric_key: str, op: str, error: str) -> Metric:
        metric = METRICS.get(metric_key)
        if metric is None:
            raise _not_found(f"There is no metric with key={metric_key}")
        problems = []
        if (
            metric.hidden
            or metric.type not in _CONDITION_TYPES
            or metric.key in _FORBIDDEN_CONDITION_METRICS
        ):
            problems.append(f"Metric '{metric.key}' cannot be used to define a condition.")
        allowed = {0: {"LT", "GT"}, 1: {"LT"}, -1: {"GT"}}.get(metric.direction, set())
        if op not in allowed:
            problems.append(f"Operator {op} is not allowed for this metric.")
        try:
            if metric.type in ("INT", "RATING", "MILLISEC", "WORK_DUR"):
                int(error)
            elif metric.type in ("FLOAT", "PERCENT"):
                _number(error)
        except ValueError:
            problems.append(f"Invalid value '{error}' for metric '{metric.name}'")
        if metric.type == "RATING":
            if error not in ("1", "2", "3", "4", "5"):
                problems.append(f"'{error}' is not a valid rating")
            elif error == "5":
                problems.append(f"There's no worse rating than E ({error})")
        if problems:
            raise _bad_request(*problems)
        return metric

    def _ws_qualitygates_create_condition(self, call: _Call) -> _Reply:
        gate_name = call.mandatory("gateName", max_length=100)
        metric_key, op, error = self._condition_params(call)
        gate = self._gate_or_404(gate_name)
        self._check_can_edit(call.session, gate)
        metric = self._validate_condition(metric_key, op, error)
        if any(c.metric == metric.key for c in gate.conditions):
            raise _bad_request(f"Condition on metric '{metric.name}' already exists.")
        condition = _Condition(_uuid(), metric.key, op, error)
        gate.conditions.append(condition)
        return _json_reply(
            {"id": condition.id, "metric": condition.metric, "op": op, "error": error}
        )

    def _condition_or_404(self, condition_id: str) -> tuple[_Gate, _Condition]:
        for gate in self._gates.values():
            for condition in gate.conditions:
                if condition.id == condition_id:
                    return gate, condition
        raise _not_found(f"No quality gate condition with uuid '{condition_id}'")

    def _ws_qualitygates_update_condition(self, call: _Call) -> _Reply:
        condition_id = call.mandatory("id")
        metric_key, op, error = self._condition_params(call)
        gate, condition = self._condition_or_404(condition_id)
        self._check_can_edit(call.session, gate)
        metric = self._validate_condition(metric_key, op, error)
        if any(c.metric == metric.key and c.id != condition.id for c in gate.conditions):
            raise _bad_request(f"Condition on metric '{metric.name}' already exists.")
        condition.metric, condition.op, condition.error = metric.key, op, error
        return _no_content()

    def _ws_qualitygates_delete_condition(self, call: _Call) -> _Reply:
        gate, condition = self._condition_or_404(call.mandatory("id"))
        self._check_can_edit(call.session, gate)
        gate.conditions.remove(condition)
        return _no_content()

    def _ws_qualitygates_select(self, call: _Call) -> _Reply:
        gate = self._gate_or_404(call.mandatory("gateName", max_length=100))
        project = self._project_or_404(call.mandatory("projectKey"))
        session = call.session
        if not (session.has_global("gateadmin") or session.has_project("admin", project)):
            raise _forbidden()
        self._gate_of_project[project.key] = gate.name
        return _no_content()

    def _ws_qualitygates_deselect(self, call: _Call) -> _Reply:
        project = self._project_or_404(call.mandatory("projectKey"))
        session = call.session
        if not (session.has_global("gateadmin") or session.has_project("admin", project)):
            raise _forbidden()
        self._gate_of_project.pop(project.key, None)
        return _no_content()

    def _ws_qualitygates_set_as_default(self, call: _Call) -> _Reply:
        gate = self._gate_or_404(call.mandatory("name", max_length=100))
        if not call.session.has_global("gateadmin"):
            raise _forbidden()
        self._default_gate = gate.name
        return _no_content()

    def _ws_qualitygates_get_by_project(self, call: _Call) -> _Reply:
        project = self._project_or_404(call.mandatory("project"))
        session = call.session
        if not (session.has_project("user", project) or session.has_project("admin", project)):
            raise _forbidden()
        gate, is_default = self._effective_gate(project.key)
        return _json_reply({"qualityGate": {"name": gate.name, "default": is_default}})

    def _ws_qualitygates_search(self, call: _Call) -> _Reply:
        gate = self._gate_or_404(call.mandatory("gateName"))
        query = (call.param("query") or "").lower()
        selected = call.param(
            "selected", default="selected", choices=("all", "deselected", "selected")
        )
        if query:
            selected = "all"
        page = call.int_param("page", 1)
        size = call.int_param("pageSize", 100, maximum=500)
        results = []
        for project in sorted(self._projects.values(), key=lambda p: p.name.lower()):
            is_selected = self._gate_of_project.get(project.key) == gate.name
            if selected == "selected" and not is_selected:
                continue
            if selected == "deselected" and is_selected:
                continue
            if query and query not in project.key.lower() and query not in project.name.lower():
                continue
            results.append({"key": project.key, "name": project.name, "selected": is_selected})
        return _json_reply(
            {
                "paging": {"pageIndex": page, "pageSize": size, "total": len(results)},
                "results": results[(page - 1) * size : page * size],
            }
        )

    def _ws_qualitygates_project_status(self, call: _Call) -> _Reply:
        analysis_id = call.param("analysisId") or None
        project_id = call.param("projectId") or None
        project_key = call.param("projectKey") or None
        given = [v for v in (analysis_id, project_id, project_key) if v]
        if len(given) != 1:
            raise _bad_request("Either 'analysisId', 'projectId' or 'projectKey' must be provided")
        if call.param("branch") and call.param("pullRequest"):
            raise _bad_request("Either 'branch' or 'pullRequest' can be provided, not both")
        analysis: _Analysis | None
        if analysis_id:
            analysis = self._analyses.get(analysis_id)
            if analysis is None:
                raise _not_found(f"Analysis with id '{analysis_id}' is not found")
            project = self._project_or_404(analysis.project_key)
        else:
            if project_id:
                project = next((p for p in self._projects.values() if p.uuid == project_id), None)
                if project is None:
                    raise _not_found(f"Project '{project_id}' not found")
            else:
                assert project_key is not None
                project = self._project_or_404(project_key)
            analysis = self._latest_analysis(project.key)
        session = call.session
        if not (session.has_project("admin", project) or session.has_project("user", project)):
            raise _forbidden()
        gate, _ = self._effective_gate(project.key)
        if analysis is None or analysis.gate_status == "NONE":
            status, conditions = "NONE", []
        else:
            status = analysis.gate_status
            conditions = [
                {
                    "status": c.status,
                    "metricKey": c.metric,
                    "comparator": c.op,
                    "errorThreshold": c.error,
                    "actualValue": c.value,
                }
                for c in analysis.conditions
                if c.status != "NO_VALUE"
            ]
        return _json_reply(
            {
                "projectStatus": {
                    "status": status,
                    "ignoredConditions": False,
                    "caycStatus": self._cayc_status(gate),
                    "conditions": conditions,
                }
            }
        )

    def _latest_analysis(self, project_key: str) -> _Analysis | None:
        mine = [a for a in self._analyses.values() if a.project_key == project_key]
        return mine[-1] if mine else None

    # ------------------------------------------------------------------------------------------
    # Webhooks.

    def _check_webhook_url(self, url: str) -> None:
        parts = urlsplit(url)
        try:
            host = parts.hostname
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError:
            host = None
        if parts.scheme.lower() not in ("http", "https") or not host:
            raise _bad_request(f"Url parameter with value '{url}' is not a valid url")
        if not self._validate_webhook_urls:
            return
        if host.lower() == "localhost" or host.lower().endswith(".localhost"):
            loopback = True
        else:
            try:
                address = ipaddress.ip_address(host)
            except ValueError:
                return  # names are not resolved by the double
            loopback = address.is_loopback or address.is_unspecified
        if loopback:
            raise _bad_request(
                "Invalid URL: loopback and wildcard addresses are not allowed for webhooks."
            )

    def _check_webhook_permission(self, session: _Session, project_key: str | None) -> None:
        if project_key is None:
            if not session.has_global("admin"):
                raise _forbidden()
        elif not session.has_project("admin", self._projects[project_key]):
            raise _forbidden()

    def _ws_webhooks_create(self, call: _Call) -> _Reply:
        name = call.mandatory("name", max_length=100)
        url = call.mandatory("url", max_length=512)
        project_key = call.param("project", max_length=400) or None
        secret = call.param("secret", min_length=1, max_length=200)
        if project_key is not None:
            self._project_or_404(project_key)
        self._check_webhook_permission(call.session, project_key)
        self._check_webhook_url(url)
        siblings = [w for w in self._webhooks.values() if w.project_key == project_key]
        if len(siblings) >= _MAX_WEBHOOKS:
            if project_key is None:
                raise _bad_request("Maximum number of global webhooks reached")
            raise _bad_request(f"Maximum number of webhook reached for project '{project_key}'")
        hook = _Webhook(_uuid(), name, url, secret, project_key)
        self._webhooks[hook.key] = hook
        return _json_reply(
            {
                "webhook": {
                    "key": hook.key,
                    "name": hook.name,
                    "url": hook.url,
                    "hasSecret": hook.secret is not None,
                }
            }
        )

    def _ws_webhooks_list(self, call: _Call) -> _Reply:
        project_key = call.param("project") or None
        if project_key is not None:
            self._project_or_404(project_key)
        self._check_webhook_permission(call.session, project_key)
        hooks = sorted(
            (w for w in self._webhooks.values() if w.project_key == project_key),
            key=lambda w: w.name.lower(),
        )
        return _json_reply(
            {
                "webhooks": [
                    {
                        "key": w.key,
                        "name": w.name,
                        "url": _obfuscate_url(w.url),
                        "hasSecret": w.secret is not None,
                    }
                    for w in hooks
                ]
            }
        )

    def _webhook_or_404(self, key: str) -> _Webhook:
        hook = self._webhooks.get(key)
        if hook is None:
            raise _not_found(f"No webhook with key '{key}'")
        return hook

    def _ws_webhooks_update(self, call: _Call) -> _Reply:
        key = call.mandatory("webhook", max_length=40)
        name = call.mandatory("name", max_length=100)
        url = call.mandatory("url", max_length=512)
        secret = call.param("secret", min_length=1, max_length=200)
        self._check_webhook_url(url)
        hook = self._webhook_or_404(key)
        self._check_webhook_permission(call.session, hook.project_key)
        hook.name, hook.url, hook.secret = name, url, secret
        return _no_content()

    def _ws_webhooks_delete(self, call: _Call) -> _Reply:
        hook = self._webhook_or_404(call.mandatory("webhook", max_length=40))
        self._check_webhook_permission(call.session, hook.project_key)
        del self._webhooks[hook.key]
        return _no_content()

    # ------------------------------------------------------------------------------------------
    # Compute Engine.

    def _task_json(self, task: _Task) -> dict[str, Any]:
        project = self._projects.get(task.project_key)
        item: dict[str, Any] = {"id": task.id, "type": "REPORT"}
        if project is not None:
            item.update(
                componentId=project.uuid,
                componentKey=project.key,
                componentName=project.name,
                componentQualifier="TRK",
            )
        if task.analysis_id is not None:
            item["analysisId"] = task.analysis_id
        item["status"] = task.status
        item["submittedAt"] = _fmt(task.submitted_at)
        item["submitterLogin"] = task.scenario.submitter
        if task.started_at is not None:
            item["startedAt"] = _fmt(task.started_at)
        if task.executed_at is not None:
            item["executedAt"] = _fmt(task.executed_at)
            start = task.started_at or task.submitted_at
            item["executionTimeMs"] = int((task.executed_at - start).total_seconds() * 1000)
        if task.status == "FAILED":
            item["errorMessage"] = task.scenario.error_message
        item["hasScannerContext"] = True
        item["warningCount"] = 0
        item["warnings"] = []
        return item

    def _ws_ce_task(self, call: _Call) -> _Reply:
        task_id = call.mandatory("id")
        task = self._tasks.get(task_id)
        if task is None:
            raise _not_found(f"No activity found for task '{task_id}'")
        session = call.session
        project = self._projects.get(task.project_key)
        allowed = session.has_global("admin") or session.has_global("scan")
        if project is not None:
            allowed = allowed or any(session.has_project(p, project) for p in ("admin", "scan"))
        if not allowed:
            raise _forbidden()
        self._advance(task)
        return _json_reply({"task": self._task_json(task)})

    def _ws_ce_activity(self, call: _Call) -> _Reply:
        component = call.param("component") or None
        session = call.session
        if component is not None:
            project = self._project_or_404(component)
            if not (session.has_global("admin") or session.has_project("admin", project)):
                raise _forbidden()
        elif not session.has_global("admin"):
            raise _forbidden()
        statuses = {s.strip() for s in (call.param("status") or "").split(",") if s.strip()}
        unknown = statuses - set(TASK_STATUSES)
        if unknown:
            raise _bad_request(
                f"Value of parameter 'status' ({','.join(sorted(unknown))}) must be one of: "
                f"[{', '.join(TASK_STATUSES)}]"
            )
        task_type = call.param("type") or None
        query = call.param("q") or None
        page = call.int_param("p", 1)
        size = call.int_param("ps", 100, maximum=1000)
        tasks = [
            t
            for t in reversed(list(self._tasks.values()))
            if (component is None or t.project_key == component)
            and (not statuses or t.status in statuses)
            and (task_type in (None, "REPORT"))
            and (query is None or query in (t.id, t.project_key))
        ]
        return _json_reply(
            {
                "tasks": [self._task_json(t) for t in tasks[(page - 1) * size : page * size]],
                "paging": {"pageIndex": page, "pageSize": size, "total": len(tasks)},
            }
        )

    def _advance(self, task: _Task) -> None:
        if task.status in FINAL_TASK_STATUSES:
            return
        statuses = task.scenario.statuses
        next_status = statuses[min(task.polls, len(statuses) - 1)]
        task.polls += 1
        now = _now()
        if next_status == "IN_PROGRESS" and task.started_at is None:
            task.started_at = now
        task.status = next_status
        if next_status not in FINAL_TASK_STATUSES:
            return
        if next_status != "CANCELED" and task.started_at is None:
            task.started_at = now
        task.executed_at = now
        analysis = None
        if next_status == "SUCCESS":
            analysis = self._complete_analysis(task, now)
        if next_status in ("SUCCESS", "FAILED"):
            self._deliver_webhooks(task, analysis, now)

    def _complete_analysis(self, task: _Task, now: datetime) -> _Analysis:
        scenario = task.scenario
        project = self._projects[task.project_key]
        gate, _ = self._effective_gate(project.key)
        if scenario.gate_status is not None:
            status = scenario.gate_status
            evaluated = [self._forced_condition(c) for c in scenario.conditions]
        else:
            evaluated = [
                self._evaluate(c, scenario.measures.get(c.metric)) for c in gate.conditions
            ]
            status = "ERROR" if any(c.status == "ERROR" for c in evaluated) else "OK"
        analysis = _Analysis(
            _uuid(), project.key, task.id, now, scenario.revision, gate.name, status, evaluated
        )
        self._analyses[analysis.id] = analysis
        task.analysis_id = analysis.id
        project.last_analysis = now
        if scenario.revision is not None:
            project.revision = scenario.revision
        return analysis

    @staticmethod
    def _evaluate(condition: _Condition, measure: Any) -> _Evaluated:
        if measure is None:
            return _Evaluated(condition.metric, condition.op, condition.error, None, "NO_VALUE")
        value = _as_text(measure)
        actual, threshold = _number(value), _number(condition.error)
        failed = actual > threshold if condition.op == "GT" else actual < threshold
        status = "ERROR" if failed else "OK"
        return _Evaluated(condition.metric, condition.op, condition.error, value, status)

    def _forced_condition(self, spec: Mapping[str, Any]) -> _Evaluated:
        condition = _Condition("", str(spec["metric"]), str(spec["op"]), _as_text(spec["error"]))
        value = spec.get("value")
        if "status" in spec:
            text = None if value is None else _as_text(value)
            return _Evaluated(
                condition.metric, condition.op, condition.error, text, str(spec["status"])
            )
        return self._evaluate(condition, value)

    def _deliver_webhooks(self, task: _Task, analysis: _Analysis | None, now: datetime) -> None:
        project = self._projects.get(task.project_key)
        if project is None:
            return
        hooks = [w for w in self._webhooks.values() if w.project_key is None] + [
            w for w in self._webhooks.values() if w.project_key == project.key
        ]
        if not hooks:
            return
        base = self._public_url or self._url or "http://localhost:9000"
        project_url = f"{base}/dashboard?id={quote_plus(project.key, safe='*')}"
        payload: dict[str, Any] = {"serverUrl": base, "taskId": task.id, "status": task.status}
        if analysis is not None:
            payload["analysedAt"] = _fmt(analysis.date)
            if analysis.revision is not None:
                payload["revision"] = analysis.revision
        payload["changedAt"] = _fmt(analysis.date if analysis else now)
        payload["project"] = {"key": project.key, "name": project.name, "url": project_url}
        if analysis is not None:
            payload["branch"] = {
                "name": "main",
                "type": "BRANCH",
                "isMain": True,
                "url": project_url,
            }
            if analysis.gate_name is not None and analysis.gate_status != "NONE":
                conditions = []
                for c in analysis.conditions:
                    item: dict[str, Any] = {
                        "metric": c.metric,
                        "operator": "GREATER_THAN" if c.op == "GT" else "LESS_THAN",
                    }
                    if c.value is not None:
                        item["value"] = c.value
                    item["status"] = c.status
                    item["errorThreshold"] = c.error
                    conditions.append(item)
                payload["qualityGate"] = {
                    "name": analysis.gate_name,
                    "status": analysis.gate_status,
                    "conditions": conditions,
                }
        payload["properties"] = {
            k: v for k, v in task.scenario.properties.items() if k.startswith("sonar.analysis.")
        }
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        for hook in hooks:
            headers = {
                "Content-Type": "application/json; charset=utf-8",
                "X-SonarQube-Project": project.key,
            }
            parts = urlsplit(hook.url)
            if parts.username:
                credentials = f"{parts.username}:{parts.password or ''}".encode()
                headers["Authorization"] = "Basic " + base64.b64encode(credentials).decode()
            if hook.secret is not None:
                digest = hmac.new(hook.secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
                headers["X-Sonar-Webhook-HMAC-SHA256"] = digest
            self._deliveries.append(
                WebhookDelivery(
                    url=hook.url,
                    headers=headers,
                    body=body,
                    webhook_key=hook.key,
                    webhook_name=hook.name,
                    project_key=project.key,
                    task_id=task.id,
                )
            )
