"""The SonarQube double's constants, the metrics a quality gate can use, and the records tests
read.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

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
USERS_GROUP = "sonar-users"
ADMINISTRATORS_GROUP = "sonar-administrators"
ANYONE_GROUP = "Anyone"

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
# The order in which SonarQube lists permissions in "Invalid ... permission" messages (the
# GlobalPermission enum without the Enterprise-only creators, and ALL_PROJECT_PERMISSIONS).
_GLOBAL_PERMISSION_ORDER = ("admin", "gateadmin", "profileadmin", "provisioning", "scan")
_PROJECT_PERMISSION_ORDER = (
    "admin",
    "codeviewer",
    "issueadmin",
    "securityhotspotadmin",
    "scan",
    "user",
)
# A fresh installation (PopulateInitialSchema): global permissions of the built-in groups.
_INITIAL_GROUP_PERMISSIONS = {
    ADMINISTRATORS_GROUP: frozenset({"admin", "profileadmin", "gateadmin", "provisioning"}),
    USERS_GROUP: frozenset({"scan", "provisioning"}),
}
# The default permission template, applied to every new project.
_TEMPLATE_PROJECT_PERMISSIONS = {
    ADMINISTRATORS_GROUP: frozenset({"admin", "issueadmin", "securityhotspotadmin"}),
    USERS_GROUP: frozenset({"user", "codeviewer"}),
}
_LOGIN_MIN_LENGTH, _LOGIN_MAX_LENGTH = 2, 255
_NAME_MAX_LENGTH, _EMAIL_MAX_LENGTH = 200, 100
_BOOLEANS = ("true", "false", "yes", "no")
_MAX_COMPONENT_NAME_LENGTH = 500


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
class Submission:
    """One report accepted by ``POST api/ce/submit``.

    ``fields`` are the names of the multipart parts in the order they came (the scanner engine
    sends only ``report``; its other parameters travel in the query string), ``characteristics``
    every ``characteristic=key=value`` pair given, ``report`` the uploaded bytes.
    """

    project_key: str
    project_name: str
    login: str
    token_type: str | None
    task_id: str
    fields: tuple[str, ...]
    characteristics: dict[str, str]
    report: bytes = field(repr=False)
    project_created: bool = False


@dataclass(frozen=True)
class RecordedRequest:
    """One HTTP request the double answered (``path`` without the leading slash)."""

    method: str
    path: str
    params: dict[str, str]
    status: int
    login: str | None
