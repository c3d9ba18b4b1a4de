"""The SonarQube double's internal state: users, groups, tokens, projects, gates, webhooks,
analysis tasks, and who may do what.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from .sonarqube_model import (
    _GLOBAL_ANALYSIS_TOKEN_PERMISSIONS,
    _PUBLIC_PROJECT_PERMISSIONS,
    ANYONE_GROUP,
    AnalysisScenario,
)

# ----------------------------------------------------------------------------------------------
# Internal state.


@dataclass
class _User:
    login: str
    name: str
    password: str | None
    permissions: set[str]
    project_permissions: dict[str, set[str]]
    groups: set[str] = field(default_factory=set)
    email: str | None = None
    scm_accounts: list[str] = field(default_factory=list)
    local: bool = True


@dataclass
class _Group:
    name: str
    permissions: set[str] = field(default_factory=set)
    project_permissions: dict[str, set[str]] = field(default_factory=dict)


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
    submitter: str | None = None


def _member_groups(user: _User, groups: Mapping[str, _Group]) -> list[_Group]:
    names = set(user.groups) | {ANYONE_GROUP}
    return [groups[name] for name in sorted(names) if name in groups]


def _global_permissions(user: _User, groups: Mapping[str, _Group]) -> set[str]:
    """A user's global permissions: their own and those of their groups (and of Anyone)."""
    granted = set(user.permissions)
    for group in _member_groups(user, groups):
        granted |= group.permissions
    return granted


def _project_permissions(user: _User, groups: Mapping[str, _Group], project_key: str) -> set[str]:
    granted = set(user.project_permissions.get(project_key, set()))
    for group in _member_groups(user, groups):
        granted |= group.project_permissions.get(project_key, set())
    return granted


@dataclass
class _Session:
    user: _User
    token: _Token | None
    groups: Mapping[str, _Group] = field(default_factory=dict)

    @property
    def login(self) -> str:
        return self.user.login

    @property
    def token_type(self) -> str:
        return self.token.type if self.token else "USER_TOKEN"

    def _user_global(self, permission: str) -> bool:
        return permission in _global_permissions(self.user, self.groups)

    def _user_project(self, permission: str, project: _Project) -> bool:
        return permission in _project_permissions(self.user, self.groups, project.key)

    def has_global(self, permission: str) -> bool:
        # TokenUserSession: a project analysis token has no global permission, a global one
        # keeps only Execute Analysis and Create Projects.
        kind = self.token_type
        if kind == "PROJECT_ANALYSIS_TOKEN":
            return False
        if kind == "GLOBAL_ANALYSIS_TOKEN" and permission not in _GLOBAL_ANALYSIS_TOKEN_PERMISSIONS:
            return False
        return self._user_global(permission)

    def has_project(self, permission: str, project: _Project) -> bool:
        kind = self.token_type
        if kind == "GLOBAL_ANALYSIS_TOKEN":
            return False
        if kind == "PROJECT_ANALYSIS_TOKEN":
            assert self.token is not None
            return (
                permission == "scan"
                and project.key == self.token.project_key
                and (self._user_project("scan", project) or self._user_global("scan"))
            )
        # Global administrators hold every project permission (the default permission template
        # grants them to sonar-administrators); everybody browses public projects.
        if self._user_global("admin"):
            return True
        if project.visibility == "public" and permission in _PUBLIC_PROJECT_PERMISSIONS:
            return True
        return self._user_project(permission, project)
