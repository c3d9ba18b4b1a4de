"""The Jenkins double's constants, the records tests read, and its internal state."""

from __future__ import annotations

import hmac
import json
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DEFAULT_VERSION = "2.492.3"
ADMIN_USER = "admin"
DEFAULT_ADMIN_PASSWORD = "admin"
CRUMB_FIELD = "Jenkins-Crumb"
RESULTS = ("SUCCESS", "UNSTABLE", "FAILURE", "NOT_BUILT", "ABORTED")

_GWT_TRIGGER = "org.jenkinsci.plugins.gwt.GenericTrigger"
_GWT_VARIABLE = "org.jenkinsci.plugins.gwt.GenericVariable"
_GWT_REQUEST_VARIABLE = "org.jenkinsci.plugins.gwt.GenericRequestVariable"
_GWT_HEADER_VARIABLE = "org.jenkinsci.plugins.gwt.GenericHeaderVariable"
_PIPELINE_TRIGGERS = "org.jenkinsci.plugins.workflow.job.properties.PipelineTriggersJobProperty"
_PARAMETERS_PROPERTY = "hudson.model.ParametersDefinitionProperty"
_STRING_PARAMETER = "hudson.model.StringParameterDefinition"
_TIMER_TRIGGER = "hudson.triggers.TimerTrigger"
_DISABLE_CONCURRENT = (
    "org.jenkinsci.plugins.workflow.job.properties.DisableConcurrentBuildsJobProperty"
)
_DECLARATIVE_ACTIONS = "org.jenkinsci.plugins.pipeline.modeldefinition.actions."
_DECLARATIVE_JOB_ACTION = _DECLARATIVE_ACTIONS + "DeclarativeJobAction"
_PROPERTY_TRACKER = _DECLARATIVE_ACTIONS + "DeclarativeJobPropertyTrackerAction"
_GWT_UUID_PARAMETER = "jenkins-generic-webhook-trigger-plugin_uuid"
_HMAC_PREFIXES = ("md5=", "sha1=", "sha256=")  # WhitelistAlgorithm, in its declaration order
_HMAC_ALGORITHMS = {  # Mac.getInstance looks names up case-insensitively
    "hmacmd5": "md5",
    "hmacsha1": "sha1",
    "hmacsha224": "sha224",
    "hmacsha256": "sha256",
    "hmacsha384": "sha384",
    "hmacsha512": "sha512",
}
_GWT_PATH = "generic-webhook-trigger/"
_GWT_NO_JOBS = "Did not find any jobs with GenericTrigger configured!\n"
_GWT_NO_TOKEN = (
    "No token was supplied.\n"
    "If you are using a token, you need to pass it like ...trigger/invoke?token=TOKENHERE\n"
    "If you are not using a token, you need to authenticate like "
    "http://user:passsword@example.org/generic-webhook...\n"
)

#: The job properties ``options { buildDiscarder(logRotator(numToKeepStr: '30'));
#: disableConcurrentBuilds() }`` declares, as Jenkins stores them (``LogRotator``'s string
#: constructor turns every empty count into -1; ``abortPrevious`` defaults to false).
DECLARED_OPTIONS_PROPERTIES: tuple[str, ...] = (
    """<jenkins.model.BuildDiscarderProperty>
  <strategy class="hudson.tasks.LogRotator">
    <daysToKeep>-1</daysToKeep>
    <numToKeep>30</numToKeep>
    <artifactDaysToKeep>-1</artifactDaysToKeep>
    <artifactNumToKeep>-1</artifactNumToKeep>
    <removeLastBuild>false</removeLastBuild>
  </strategy>
</jenkins.model.BuildDiscarderProperty>""",
    """<org.jenkinsci.plugins.workflow.job.properties.DisableConcurrentBuildsJobProperty>
  <abortPrevious>false</abortPrevious>
</org.jenkinsci.plugins.workflow.job.properties.DisableConcurrentBuildsJobProperty>""",
)
#: Versions XStream writes into ``plugin="NAME@VERSION"`` when Jenkins re-saves a config
#: (releases of early 2025, next to 2.492.3); classes of other plugins keep what was posted.
PLUGIN_VERSIONS: dict[str, str] = {
    "workflow-job": "1505.vea_4b_20a_4a_495",
    "workflow-cps": "4018.vf02e01888da_f",
    "generic-webhook-trigger": "2.3.1",
    "pipeline-model-definition": "2.2247.va_423189a_7dff",
}

# Root elements Jenkins can load as a top-level item, with the class its API reports and the
# class of its runs.
_ITEM_TYPES: dict[str, tuple[str, str | None]] = {
    "flow-definition": (
        "org.jenkinsci.plugins.workflow.job.WorkflowJob",
        "org.jenkinsci.plugins.workflow.job.WorkflowRun",
    ),
    "project": ("hudson.model.FreeStyleProject", "hudson.model.FreeStyleBuild"),
    "matrix-project": ("hudson.matrix.MatrixProject", "hudson.matrix.MatrixBuild"),
    "maven2-moduleset": ("hudson.maven.MavenModuleSet", "hudson.maven.MavenModuleSetBuild"),
    "com.cloudbees.hudson.plugins.folder.Folder": (
        "com.cloudbees.hudson.plugins.folder.Folder",
        None,
    ),
    "org.jenkinsci.plugins.workflow.multibranch.WorkflowMultiBranchProject": (
        "org.jenkinsci.plugins.workflow.multibranch.WorkflowMultiBranchProject",
        None,
    ),
}
# Jenkins' messages quote names with U+2018 / U+2019.
_LQ, _RQ = "\u2018", "\u2019"
_UNSAFE_NAME_CHARACTERS = "?*/\\%!@#$^&|<>[]:;"
_COLORS = {
    "SUCCESS": "blue",
    "UNSTABLE": "yellow",
    "FAILURE": "red",
    "NOT_BUILT": "notbuilt",
    "ABORTED": "aborted",
}
_PERMALINKS = (
    "lastBuild",
    "lastCompletedBuild",
    "lastFailedBuild",
    "lastStableBuild",
    "lastSuccessfulBuild",
    "lastUnstableBuild",
    "lastUnsuccessfulBuild",
    "firstBuild",
)
# Permissions the double checks: (id, "Group/Name" as messages print it, the ids implying it).
_READ_PERMISSION = (
    "hudson.model.Hudson.Read",
    "Overall/Read",
    ("hudson.security.Permission.GenericRead", "hudson.model.Hudson.Administer"),
)
_CONNECT_PERMISSION = (
    "hudson.model.Computer.Connect",
    "Agent/Connect",
    ("hudson.model.Computer.Disconnect", "hudson.model.Hudson.Administer"),
)
_GROUP_HEADERS_DISABLED = (
    "JENKINS-39402: use -Dhudson.security.AccessDeniedException2.REPORT_GROUP_HEADERS=true"
    " or use /whoAmI to diagnose"
)
_AGENT_JNLP_PATH = re.compile(r"(manage/)?computer/[^/]+/(jenkins|slave)-agent[.]jnlp")


# ----------------------------------------------------------------------------------------------
# Public records.


@dataclass(frozen=True)
class RecordedRequest:
    """One HTTP request the double answered (``path`` without leading slash or query)."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    status: int
    user: str | None

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class BuildRecord:
    """A build as the double holds it (a snapshot; the live one goes on).

    ``parameters``: the values of the build's ``ParametersAction`` that the build exposes (its
    ``api/json`` and environment): only parameters the job defined when the build started.
    ``params``: what a Pipeline's ``params`` holds: every submitted value (defined or not,
    e.g. the Generic Webhook Trigger's ``jenkins-generic-webhook-trigger-plugin_uuid``) plus
    the default of each defined parameter that was not submitted. ``variables``: the Generic
    Webhook Trigger's resolved variables (its ``GenericCause``; the build's environment).
    ``causes``: the causes' short descriptions, ``cause_classes`` their classes.
    """

    job: str
    number: int
    queue_id: int
    building: bool
    result: str | None
    parameters: dict[str, str]
    causes: tuple[str, ...]
    variables: dict[str, str]
    params: dict[str, str] = field(default_factory=dict)
    cause_classes: tuple[str, ...] = ()


@dataclass(frozen=True)
class QueueRecord:
    """A queue item: ``state`` is ``waiting``, ``left`` (has a build) or ``cancelled``.

    ``parameters``: its ``ParametersAction`` in full (a queue item is not filtered yet);
    ``variables``: the Generic Webhook Trigger's resolved variables, if it queued the item.
    """

    id: int
    job: str
    state: str
    build_number: int | None
    parameters: dict[str, str]
    variables: dict[str, str] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------
# Internal state.


@dataclass
class _User:
    id: str
    full_name: str
    password: str
    api_tokens: list[str]
    admin: bool = True


@dataclass
class _ParamDef:
    kind: str
    name: str
    default: str | None
    description: str
    choices: list[str] = field(default_factory=list)
    trim: bool = False

    @property
    def has_default_value(self) -> bool:
        # getDefaultParameterValue() is null for these (and for a choice without choices).
        if self.kind in ("FileParameterDefinition", "RunParameterDefinition"):
            return False
        return self.kind != "ChoiceParameterDefinition" or self.default is not None

    def default_value(self) -> str:
        value = self.default or ""
        return value.strip() if self.trim else value


@dataclass
class _GwtVariable:
    key: str
    expression: str
    expression_type: str
    regexp_filter: str | None
    default_value: str | None


@dataclass
class _GwtTrigger:
    variables: list[_GwtVariable]
    request_variables: list[tuple[str, str | None]]
    header_variables: list[tuple[str, str | None]]
    regexp_filter_text: str | None
    regexp_filter_expression: str | None
    cause_string: str | None
    token: str | None
    token_credential_id: str | None
    silent_response: bool
    should_not_flatten: bool
    allow_several_triggers_per_build: bool = False


@dataclass
class _Config:
    root: str
    job_class: str
    run_class: str | None
    disabled: bool
    description: str
    auth_token: str | None
    parameters: list[_ParamDef]
    properties: list[str]
    trigger: _GwtTrigger | None


@dataclass
class _Build:
    number: int
    queue_id: int
    timestamp_ms: int
    parameters: dict[str, str]  # ParametersAction.getAllParameters()
    causes: list[dict[str, Any]]
    variables: dict[str, str]
    has_parameters_action: bool = False
    # ParametersAction.onAttached: the job's parameter names when the build started.
    defined: list[_ParamDef] = field(default_factory=list)
    result: str | None = None
    polls: int = 0

    def visible_parameters(self) -> dict[str, str]:
        names = {d.name for d in self.defined}
        return {k: v for k, v in self.parameters.items() if k in names}


@dataclass
class _Job:
    name: str
    xml: str
    config: _Config
    next_build_number: int = 1
    builds: list[_Build] = field(default_factory=list)
    scripted_results: dict[int, str] = field(default_factory=dict)
    # The job properties its (declarative) Jenkinsfile declares; None: not declarative.
    declared_properties: list[ET.Element] | None = None
    # The triggers and parameters its triggers {} and parameters {} declare.
    declared_triggers: list[ET.Element] = field(default_factory=list)
    declared_parameters: list[ET.Element] = field(default_factory=list)


@dataclass
class _QueueItem:
    id: int
    job: str
    parameters: dict[str, str]
    causes: list[dict[str, Any]]
    variables: dict[str, str]
    since_ms: int
    has_parameters_action: bool = False
    polls: int = 0
    state: str = "waiting"
    build_number: int | None = None


@dataclass
class _Node:
    name: str
    labels: str
    executors: int
    mode: str
    remote_fs: str
    web_socket: bool


@dataclass
class _WhitelistItem:
    host: str | None
    hmac_enabled: bool
    hmac_header: str | None
    hmac_algorithm: str | None
    hmac_credential_id: str | None


class _WhitelistError(Exception):
    """org.jenkinsci.plugins.gwt.whitelist.WhitelistException."""


@dataclass
class _Request:
    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    body: bytes
    base: str
    params: dict[str, list[str]]
    header_pairs: list[tuple[str, str]] = field(default_factory=list)
    remote_addr: str = "127.0.0.1"
    user: str | None = None
    via_token: bool = False
    session: str | None = None

    def param(self, name: str) -> str | None:
        values = self.params.get(name)
        return values[0] if values else None


class _XmlError(Exception):
    pass


class _Failure(Exception):
    """hudson.model.Failure: a 400 page with ``X-Error``."""


class _ServerError(Exception):
    """An exception Jenkins reports through its 500 "oops" page."""


def _now_ms() -> int:
    return int(time.time() * 1000)


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def _latin1_header(value: str) -> str:
    # Jetty writes header characters outside ISO-8859-1 as '?' and control characters as ' '.
    chars = []
    for ch in value:
        if ord(ch) > 0xFF:
            chars.append("?")
        elif ord(ch) < 0x20 and ch != "\t":
            chars.append(" ")
        else:
            chars.append(ch)
    return "".join(chars)
