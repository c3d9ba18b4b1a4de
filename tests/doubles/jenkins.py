"""A test double of the Jenkins HTTP API (2.4xx LTS), served over real HTTP on 127.0.0.1.

It covers what mlci and python-jenkins use: authentication, CSRF crumbs, ``createItem``, a
job's ``config.xml``, builds through the queue, ``doDelete`` and the Generic Webhook Trigger
plugin's ``/generic-webhook-trigger/invoke``. The behaviour follows Jenkins core and the plugin's
source (class names below), not our client's expectations; ``tests/doubles_tests`` checks it with
python-jenkins and api4jenkins. Fidelity points worth knowing:

* **Authentication** (``BasicHeaderProcessor``): HTTP basic with a user's password or one of
  their API tokens (user ids are case-insensitive). Wrong credentials answer **401** with
  ``WWW-Authenticate: Basic realm="Jenkins"``, whatever the path (also the webhook endpoint).
  Anonymous requests to anything but the webhook endpoint and ``whoAmI`` answer **403** with
  the "Authentication required" page of ``HudsonAuthenticationEntryPoint`` (its comment is
  ``AccessDeniedException3.report``) and the ``X-You-Are-Authenticated-As: anonymous`` /
  ``X-Required-Permission`` / ``X-Permission-Implied-By`` headers, unless ``anonymous_read``
  is on (then anonymous GETs are served, changes still get 403). Users may do everything
  except that only ``admin`` users (:meth:`JenkinsDouble.add_user`) hold Agent/Connect; a
  user without it gets the **403** "Access Denied" page ("bob is missing the Agent/Connect
  permission", ``AccessDeniedHandlerImpl``).
* **Version headers** (``Functions.advertiseHeaders``, ``Api.setHeaders``): ``X-Jenkins``,
  ``X-Hudson: 1.395`` and ``X-Jenkins-Session`` come with ``/`` (even its anonymous 403),
  every ``.../api/json`` answer, the 403 login page and the HTML pages Jenkins renders (the
  dashboard, job pages, 400 error pages, 404 pages). They do **not** come with ``config.xml``,
  ``createItem``'s 200, the build 201, redirects, webhook answers or container errors (401,
  crumb 403): read the version from ``/`` as python-jenkins does. Caution: python-jenkins'
  ``get_version()`` sends no credentials until another call resolved them, so on a Jenkins
  without anonymous read it raises ``BadHTTPException`` (403) when called first.
* **CSRF** (``CrumbFilter``, ``DefaultCrumbIssuer``, ``ApiCrumbExclusion``):
  ``crumbIssuer/api/json`` issues a SHA-256 hex crumb bound to the user and to the web session,
  which it opens if the request has none (``Set-Cookie: JSESSIONID.<hash>=...``). A POST needs
  ``Jenkins-Crumb`` (header or form field) valid for its own session cookie, except when it
  was authenticated with an API token or goes to the webhook endpoint; otherwise **403**
  "No valid crumb was included in the request". Only POST is checked (a DELETE is not).
  ``csrf = False`` removes the crumb issuer (404) and the check.
* **Config XML** (``ItemGroupMixIn.createProjectFromXML``, ``AbstractItem.updateByXml``):
  Jenkins stores what the JDK's identity XML transform writes, so ``config.xml`` does **not**
  come back byte for byte: the declaration becomes ``<?xml version="1.0" encoding="UTF-8"?>``
  directly followed by the root element, whitespace outside the root element is dropped,
  attributes get double quotes, empty elements collapse to ``<a/>`` and text is re-escaped
  (``&gt;`` included); element content, comments and CDATA sections are kept. Compare configs
  as parsed XML, never as bytes, and only what you own. Malformed XML or an unknown root
  element answers **500**; a ``DOCTYPE`` is refused the same way.
  ``POST config.xml`` decodes the body with the charset of its ``Content-Type`` (ISO-8859-1
  when there is none, as a servlet reader does) and ignores the declaration's encoding.
* **Declarative re-save** (pipeline-model-definition ``Utils.updateRunAndJobActions`` /
  ``Utils.updateJobProperties``, ``DeclarativeJobPropertyTrackerAction``): once
  :meth:`JenkinsDouble.set_declared_job_properties` says a Pipeline job runs a declarative
  Jenkinsfile, each build start applies the job properties its ``options {}`` declare (e.g.
  :data:`DECLARED_OPTIONS_PROPERTIES`): a property set by the previous declaration (the job's
  tracker action) and no longer declared is removed; a declared one is (re)placed unless the
  job holds one of that class the Jenkinsfile did not set, which stays as it is (a ``TreeSet``
  by descriptor id); properties the Jenkinsfile never set, the trigger and the parameters are
  left alone. Changed properties are appended in descriptor-id order. The job gets a
  ``DeclarativeJobAction`` and a new ``DeclarativeJobPropertyTrackerAction`` (the declared ids
  in ``jobProperties``, in Java ``HashSet`` order; ``triggers``/``parameters``/``options``)
  when the declared set differs from the recorded one, or none was recorded: the first
  declarative build always saves, later ones only on a change. Posting a config drops the
  actions (``updateByXml`` nulls what the XML lacks), so the next build applies and saves
  again. A save is XStream's, not the posted text: ``<?xml version='1.1'
  encoding='UTF-8'?>`` and a newline, two-space indentation, ``<actions>`` first and fields
  in class order (unknown fields of known classes dropped, absent primitives written, e.g.
  the trigger's ``<allowSeveralTriggersPerBuild>false</...>``), empty strings as ``<a></a>``
  but empty lists as ``<a/>``, ``'``/``"`` escaped, comments gone, and ``plugin="NAME@VER"``
  on an object whose plugin differs from its nearest owned ancestor (``plugin_versions``;
  unknown plugins keep what was posted; core classes get none). What ``triggers {}`` and
  ``parameters {}`` declare is applied first (``getTriggersToApply``,
  ``getParametersToApply``): triggers form a ``TreeSet`` by descriptor id of the job's own
  (less those the previous declaration set) and then the declared ones, so a trigger of the
  same class set outside the Jenkinsfile wins; parameters are the declared ones, then the
  job's own of other names not declared before. A changed list (per id / name: type,
  description, XStream form) replaces the whole ``PipelineTriggersJobProperty`` or
  ``ParametersDefinitionProperty``, appended at the end; the tracker records trigger ids and
  parameter names. An unchanged one stays where it is.
* **createItem** errors are ``Failure`` pages: **400** with ``X-Error: <message>``
  ("No Content-Type header set", "Query parameter 'name' is required", unsafe characters, "A
  job already exists with the name 'NAME'" with curly quotes U+2018/U+2019 around the name,
  "No mode given" for a non-XML content type). The curly quotes cannot travel in a header:
  Jetty writes characters outside ISO-8859-1 as ``?``, so the header reads ``... the name
  ?NAME?`` (the HTML body has the real quotes).
* **Builds** (``ParameterizedJobMixIn``, ``ParametersDefinitionProperty``, ``Queue``,
  ``ParametersAction``, Stapler's ``getSubmittedForm``; 2.492.3):
  ``build``/``buildWithParameters`` answer **201** with ``Location: http://HOST/queue/item/N/``.
  ``build`` on a parameterized job never builds with defaults: without a ``json`` form it
  answers **400** "Nothing is submitted" (or "This page expects a form submission" when the
  request carries other parameters, e.g. ``?token=``); with one, the item holds only the
  submitted values (trimmed as the definition says; a bad choice or unknown name: 500).
  ``buildWithParameters`` gives each definition its query/form value or its default (two
  values: 500); on a job without parameters it answers 500 ("This build is not
  parameterized!"; cores after Aug 2025 answer 400). A disabled job answers 409. A request for
  a job that already waits in the queue with the same parameter values folds into that item:
  ``build`` of an unparameterized job still answers 201 with it, ``buildWithParameters``
  **303** with its ``Location``, ``build`` with a form **302** to the job page. A build's
  ``api/json`` shows only parameters its job defines (``ParametersAction.filter``); a queue
  item shows all. :meth:`JenkinsDouble.take_started_builds` hands a runner each build that
  left the queue (``BuildRecord``: ``parameters``, Pipeline ``params`` with defaults,
  ``variables``, causes). Queue items wait for ``queue_delay_polls`` reads of
  ``queue/item/N/api/json`` (``BuildableItem``, "why": "Waiting for next available
  executor"), then become a ``LeftItem`` with ``executable``; the build then reads as running
  (``result: null``, ``building: true``) for ``build_polls`` reads of its ``api/json`` and
  ends with the scripted result (:meth:`JenkinsDouble.set_build_result`, else
  ``default_result``).
* **Generic Webhook Trigger** (``GenericWebHookRequestReceiver``, ``JobFinder``,
  ``VariablesResolver``, ``JsonFlattener``, ``Renderer``): no crumb, no authentication; the
  token comes from the ``token`` parameter, a ``token`` header, ``Authorization: Bearer`` or
  ``X-Gitlab-Token``. Jobs match on the trigger's ``<token>`` (or ``<tokenCredentialId>``
  resolved through :meth:`JenkinsDouble.add_secret_text`, or the job's ``<authToken>``).
  No job: **404** ``{"jobs": null, "message": "Did not find any jobs with GenericTrigger
  configured!\\nA token was supplied.\\n"}``. Otherwise **200** ``{"jobs": {NAME: {"id",
  "regexpFilterExpression", "regexpFilterText", "resolvedVariables", "triggered", "url"}},
  "message": "Triggered jobs."}`` whether or not the filter matched (``triggered: false``,
  ``id: 0``, ``url: ""`` when it did not). JSONPath variables are flattened like the plugin
  (``x_0``, ``x_key``, the whole value as compact JSON) unless ``shouldNotFlattern``; an
  unresolved variable takes its ``defaultValue`` (an empty ``<defaultValue/>`` gives ``""``,
  no element leaves ``$var`` unreplaced in the filter text). A form-encoded body is turned
  into ``{"payload": ["..."]}`` first, so ``$.ref`` does **not** resolve from a form post.
  The filter is ``re.search`` (Java's ``find()``): anchor it. JSONPath is evaluated with
  jsonpath-ng (Jayway semantics for definite paths: a missing leaf is "not found"); XPath
  variables are not supported (they stay unresolved). A triggered build's parameters
  (``ParameterActionUtil``) are the job's defined parameters only, each taking the variable of
  its name when that is not empty, else its default; unless ``allowSeveralTriggersPerBuild``,
  the item also carries a random ``jenkins-generic-webhook-trigger-plugin_uuid`` (so every
  invocation queues its own build; the build's API filters it out). The variables reach the
  build through its ``GenericCause`` (environment), not as parameters.
* **Whitelist** (``global.Whitelist``/``WhitelistItem``, ``WhitelistVerifier``,
  ``HostVerifier``, ``WhitelistHost``, ``HMACVerifier``; :meth:`JenkinsDouble.
  set_gwt_whitelist`): checked after the body is read and **before** the token or job lookup
  (OPTIONS skips it); off, or on without items, everything passes; otherwise the first item
  that passes lets the request in. A host is the client's IP (``getRemoteAddr``) matched
  against an IP, a CIDR ``a/n`` or a range ``a-b``; an empty host means any host, while
  ``*`` or a host name never matches ("is not a valid IP string literal"). With HMAC: the
  header (case-insensitive) must appear exactly once; a leading ``md5=``/``sha1=``/``sha256=``
  or ``HMAC `` is cut off; the value must equal, ignoring case, the hex HMAC of the body as
  the plugin read it (UTF-8 text; a form body is its JSON rendering, so it never verifies),
  the base64 of that hex, or the base64 of the raw HMAC, keyed with the secret text
  ``hmac_credential_id``. Failure: **403** ``{"jobs": null, "message": "Sender, IP, with
  headers {name=[value], ...} did not pass whitelist.\\nDid not find a matching whitelisted
  host:\\n1) REASON\\n..."}`` (headers lower-cased, in Java ``HashMap`` order); nothing is
  queued. An algorithm ``Mac.getInstance`` does not know (or an empty secret) is a 500.
* **Agents** (``SlaveComputer``, ``JNLPLauncher``, ``jenkins-agent.jnlp.jelly``,
  ``EncryptedSlaveAgentJnlpFile``, ``ComputerSet``; :meth:`JenkinsDouble.add_node`):
  permanent inbound agents that never connect. ``computer/api/json`` lists them after the
  built-in node, sorted by name, as ``hudson.slaves.SlaveComputer`` with ``offline: true``,
  ``offlineCause: null``, ``jnlpAgent: true``, ``launchSupported: false``, idle executors
  that ``totalExecutors`` does not count, and ``assignedLabels`` = the label atoms plus the
  node's name in Java ``HashSet`` order; ``computer/NAME/api/json`` (``(built-in)`` and
  ``(master)`` name the built-in node; unknown: 404). ``computer/NAME/jenkins-agent.jnlp``
  (or ``slave-agent.jnlp``) answers ``application/x-java-jnlp-file``:
  ``<jnlp><application-desc>`` with ``<argument>`` elements: the secret
  (:meth:`JenkinsDouble.agent_secret`, hex HMAC-SHA256 of the name), the name,
  ``-webSocket`` if set, ``-workDir REMOTE_FS -internalDir remoting``, ``-url ROOT_URL``
  (:attr:`JenkinsDouble.root_url` or the request's own), on one line without an XML
  declaration. It needs Agent/Connect (anonymous: the login 403, or with ``anonymous_read``
  the entry point's 403 naming ``hudson.model.Computer.Connect``); ``?encrypt=true`` needs
  no permission, not even Overall/Read, and answers an IV plus the file under
  AES/CFB8 keyed with the secret's first 16 bytes.

Also served: ``queue/api/json``, ``queue/cancelItem``, ``computer/api/json`` (running
Pipeline builds sit on the built-in node's one-off executors, which api4jenkins reads), ``me``,
``user/ID`` and ``whoAmI`` (``api/json``), ``tree=`` filtering of every ``api/json``, build
permalinks (``lastBuild`` ...) and a ``consoleText`` stub. Not modelled: folders
(``job/A/job/B``), views, agents connecting or running builds (remoting; node
``config.xml``, creation and deletion over HTTP; ``monitorData`` stays empty), real console
logs, the UI, permissions finer than the above, ``enable``/``disable`` and build tokens.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import html
import json
import re
import secrets
import traceback
import uuid
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from .jenkins_gwt import (
    _hmac_verify,
    _is_matching,
    _java_str,
    _render,
    _resolve_variables,
    _whitelist_host_verified,
)
from .jenkins_model import (
    _AGENT_JNLP_PATH,
    _COLORS,
    _CONNECT_PERMISSION,
    _DISABLE_CONCURRENT,
    _GROUP_HEADERS_DISABLED,
    _GWT_NO_JOBS,
    _GWT_NO_TOKEN,
    _GWT_PATH,
    _GWT_UUID_PARAMETER,
    _LQ,
    _PARAMETERS_PROPERTY,
    _PERMALINKS,
    _READ_PERMISSION,
    _RQ,
    _UNSAFE_NAME_CHARACTERS,
    ADMIN_USER,
    CRUMB_FIELD,
    DECLARED_OPTIONS_PROPERTIES,
    DEFAULT_ADMIN_PASSWORD,
    DEFAULT_VERSION,
    PLUGIN_VERSIONS,
    RESULTS,
    BuildRecord,
    QueueRecord,
    RecordedRequest,
    _Build,
    _Failure,
    _GwtTrigger,
    _Job,
    _latin1_header,
    _Node,
    _now_ms,
    _ParamDef,
    _QueueItem,
    _Request,
    _same,
    _ServerError,
    _User,
    _WhitelistError,
    _WhitelistItem,
)
from .jenkins_xml import (
    _flag,
    _java_hash_order,
    _java_map_string,
    _parse_config,
    identity_transform,
)
from .jenkins_xstream import _WORKFLOW_JOB, _declarative_resave, _XStreamWriter
from .server import (
    FaultScript,
    HttpDouble,
    Incoming,
    Reply,
    Wire,
    basic_credentials,
    cookie,
    json_bytes,
    servlet_pairs,
)

__all__ = [
    "ADMIN_USER",
    "CRUMB_FIELD",
    "DECLARED_OPTIONS_PROPERTIES",
    "DEFAULT_ADMIN_PASSWORD",
    "DEFAULT_VERSION",
    "PLUGIN_VERSIONS",
    "RESULTS",
    "BuildRecord",
    "JenkinsDouble",
    "QueueRecord",
    "RecordedRequest",
    "identity_transform",
]

# ----------------------------------------------------------------------------------------------
# ``tree=`` filtering of the remote API.


def _parse_tree(spec: str) -> list[tuple[str, list[Any] | None, str | None]]:
    position = 0

    def parse_list() -> list[tuple[str, list[Any] | None, str | None]]:
        nonlocal position
        items: list[tuple[str, list[Any] | None, str | None]] = []
        while position < len(spec):
            start = position
            while position < len(spec) and spec[position] not in ",[]{}":
                position += 1
            name = spec[start:position].strip()
            children = None
            window = None
            if position < len(spec) and spec[position] == "[":
                position += 1
                children = parse_list()
                position += 1  # the closing bracket
            if position < len(spec) and spec[position] == "{":
                end = spec.index("}", position)
                window = spec[position + 1 : end]
                position = end + 1
            if name:
                items.append((name, children, window))
            if position < len(spec) and spec[position] == ",":
                position += 1
                continue
            break
        return items

    return parse_list()


def _window(values: list[Any], window: str | None) -> list[Any]:
    if window is None:
        return values
    if "," in window:
        low, high = window.split(",", 1)
        return values[int(low or 0) : int(high) if high else None]
    return values[: int(window)]


def _apply_tree(value: Any, tree: list[tuple[str, list[Any] | None, str | None]]) -> Any:
    if isinstance(value, list):
        return [_apply_tree(item, tree) for item in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    if "_class" in value:
        out["_class"] = value["_class"]
    for name, children, window in tree:
        if name not in value:
            continue
        child = value[name]
        if isinstance(child, list):
            child = _window(child, window)
        out[name] = _apply_tree(child, children) if children is not None else child
    return out


class JenkinsDouble(HttpDouble):
    """A Jenkins controller double: start it, point a client at :attr:`url`, script scenarios.

    ``JenkinsDouble(admin_user="admin", admin_password="admin", api_token=None, ...)``; use it
    as a context manager or call :meth:`start` (returns the base URL, no trailing slash) and
    :meth:`stop`. ``api_token`` defaults to a fresh Jenkins-style token (``11`` + 32 hex).
    """

    ADMIN_USER = ADMIN_USER
    DEFAULT_ADMIN_PASSWORD = DEFAULT_ADMIN_PASSWORD
    CRUMB_FIELD = CRUMB_FIELD
    product = "Jenkins"
    wire = Wire(
        "Jetty(12.0.16)",
        methods=frozenset({"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"}),
        no_delay=True,
        header_value=_latin1_header,
    )

    def __init__(
        self,
        *,
        admin_user: str = ADMIN_USER,
        admin_password: str = DEFAULT_ADMIN_PASSWORD,
        api_token: str | None = None,
        version: str = DEFAULT_VERSION,
        host: str = "127.0.0.1",
        port: int = 0,
        csrf: bool = True,
        anonymous_read: bool = False,
        queue_delay_polls: int = 1,
        build_polls: int = 1,
        default_result: str = "SUCCESS",
    ) -> None:
        super().__init__(host=host, port=port)
        self.version = version
        self.session_hash = secrets.token_hex(4)
        self.admin_user = admin_user
        self.api_token = api_token or "11" + secrets.token_hex(16)
        #: Reads of ``queue/item/N/api/json`` an item waits before it leaves the queue.
        self.queue_delay_polls = queue_delay_polls
        #: Reads of a build's ``api/json`` that still see it running.
        self.build_polls = build_polls
        #: Result of builds that have no scripted result.
        self.default_result = default_result
        self._check_result(default_result)
        self._csrf = csrf
        self._anonymous_read = anonymous_read

        self._crumb_salt = secrets.token_hex(16)
        self._cookie_name = f"JSESSIONID.{secrets.token_hex(4)}"
        self._sessions: set[str] = set()
        self._users: dict[str, _User] = {}
        self.add_user(admin_user, admin_password, api_token=self.api_token)
        self._secret_texts: dict[str, str] = {}
        self._jobs: dict[str, _Job] = {}
        self._queue: dict[int, _QueueItem] = {}
        self._next_queue_id = 1
        self._started: list[tuple[str, int]] = []
        self._nodes: dict[str, _Node] = {}
        self._agent_key = secrets.token_bytes(32)  # JnlpAgentReceiver.SLAVE_SECRET
        self._whitelist_enabled = False
        self._whitelist: list[_WhitelistItem] = []
        #: ``plugin="NAME@VERSION"`` that a re-saved config.xml gets (see PLUGIN_VERSIONS).
        self.plugin_versions: dict[str, str] = dict(PLUGIN_VERSIONS)
        #: The configured Jenkins URL (``JenkinsLocationConfiguration``); None: each request's
        #: own ``http://HOST/``, as ``Jenkins.getRootUrl()`` falls back to.
        self.root_url: str | None = None

        self._reject_all = False
        self._faults = FaultScript()
        self._requests: list[RecordedRequest] = []
        self._mutations: Counter[str] = Counter()

    # ------------------------------------------------------------------------------------------
    # Scenario control.

    @property
    def csrf(self) -> bool:
        """CSRF protection: on, ``crumbIssuer/api/json`` issues crumbs and POSTs need one."""
        return self._csrf

    @csrf.setter
    def csrf(self, value: bool) -> None:
        with self._lock:
            self._csrf = bool(value)

    @property
    def anonymous_read(self) -> bool:
        """When true, anonymous GETs are served (Overall/Read for anonymous)."""
        return self._anonymous_read

    @anonymous_read.setter
    def anonymous_read(self, value: bool) -> None:
        with self._lock:
            self._anonymous_read = bool(value)

    def add_user(
        self, user_id: str, password: str, *, api_token: str | None = None, admin: bool = True
    ) -> str:
        """Add (or replace) a user; returns their API token (generated when not given).

        Every user may do everything the double models, except that only ``admin`` users
        hold Agent/Connect (``computer/NAME/jenkins-agent.jnlp``).
        """
        token = api_token or "11" + secrets.token_hex(16)
        with self._lock:
            self._users[user_id.lower()] = _User(user_id, user_id, password, [token], admin)
        return token

    def add_secret_text(self, credential_id: str, secret: str) -> None:
        """A "Secret text" credential, for a trigger's ``<tokenCredentialId>``."""
        with self._lock:
            self._secret_texts[credential_id] = secret

    def add_job(self, name: str, config_xml: str | bytes) -> None:
        """Create a job directly (stored as ``createItem`` would store it; not counted)."""
        data = config_xml.encode("utf-8") if isinstance(config_xml, str) else config_xml
        stored = identity_transform(data)
        try:
            config = _parse_config(stored)
        except _ServerError as error:
            raise ValueError(str(error)) from None
        with self._lock:
            if name in self._jobs:
                raise ValueError(f"a job named {name!r} already exists")
            self._jobs[name] = _Job(name, stored, config)

    def set_declared_job_properties(
        self,
        job: str,
        properties_xml: Iterable[str] | None,
        *,
        triggers_xml: Iterable[str] = (),
        parameters_xml: Iterable[str] = (),
    ) -> None:
        """Say that Pipeline ``job`` runs a declarative Jenkinsfile whose ``options {}`` declare
        these job properties (XML elements as Jenkins stores them, e.g.
        :data:`DECLARED_OPTIONS_PROPERTIES`; an empty list: a declarative Jenkinsfile that
        declares none; None: not declarative, the default), whose ``triggers {}`` declare
        ``triggers_xml`` (e.g. ``<hudson.triggers.TimerTrigger><spec>H 2 * * *</spec>...``)
        and whose ``parameters {}`` declare ``parameters_xml`` (parameter definitions, e.g.
        ``<hudson.model.StringParameterDefinition>``); none of either by default.

        From then on every build of ``job`` applies them when it starts, as the
        pipeline-model-definition plugin does, and Jenkins may save the job's config.xml again
        (XStream's format; see the module docstring).
        """

        def parse(texts: Iterable[str], what: str) -> list[ET.Element]:
            elements = []
            for text in texts:
                try:
                    elements.append(ET.fromstring(text.encode("utf-8")))
                except ET.ParseError as error:
                    raise ValueError(f"not a {what} element: {error}") from None
            return elements

        elements = None if properties_xml is None else parse(properties_xml, "job property")
        triggers = parse(triggers_xml, "trigger")
        parameters = parse(parameters_xml, "parameter definition")
        if elements is None and (triggers or parameters):
            raise ValueError("triggers and parameters are declared by a declarative Jenkinsfile")
        with self._lock:
            target = self._job_or_error(job)
            if target.config.job_class != _WORKFLOW_JOB:
                raise ValueError(f"{job!r} is not a Pipeline job (flow-definition)")
            target.declared_properties = elements
            target.declared_triggers = triggers
            target.declared_parameters = parameters

    def set_gwt_whitelist(self, enabled: bool, items: Iterable[Mapping[str, Any]]) -> None:
        """The Generic Webhook Trigger's global whitelist (``org.jenkinsci.plugins.gwt.global.
        Whitelist``): item keys ``host`` (an IP, a CIDR ``a.b.c.d/n``, a range ``a-b``; empty:
        any host), ``hmac_enabled``, ``hmac_header``, ``hmac_algorithm`` (``HmacMD5``,
        ``HmacSHA1``, ``HmacSHA256``) and ``hmac_credential_id`` (a secret text registered with
        :meth:`add_secret_text`)."""
        keys = {"host", "hmac_enabled", "hmac_header", "hmac_algorithm", "hmac_credential_id"}
        parsed = []
        for item in items:
            unknown = set(item) - keys
            if unknown:
                raise ValueError(f"unknown whitelist item keys {sorted(unknown)}; use {keys}")
            parsed.append(
                _WhitelistItem(
                    host=item.get("host"),
                    hmac_enabled=bool(item.get("hmac_enabled", False)),
                    hmac_header=item.get("hmac_header"),
                    hmac_algorithm=item.get("hmac_algorithm"),
                    hmac_credential_id=item.get("hmac_credential_id"),
                )
            )
        with self._lock:
            self._whitelist_enabled = bool(enabled)
            self._whitelist = parsed

    def add_node(
        self,
        name: str,
        labels: str = "",
        *,
        executors: int = 1,
        mode: str = "NORMAL",
        remote_fs: str = "/home/jenkins/agent",
        web_socket: bool = False,
    ) -> None:
        """A permanent agent launched inbound (``JNLPLauncher``, default work directory
        settings, ``webSocket`` as given). It stays offline: the double runs no agent
        protocol. ``labels`` is the space-separated label string; ``mode`` NORMAL or
        EXCLUSIVE (stored; the double schedules nothing on agents)."""
        if mode not in ("NORMAL", "EXCLUSIVE"):
            raise ValueError(f"mode must be NORMAL or EXCLUSIVE, not {mode!r}")
        if executors < 1:
            raise ValueError("an agent needs at least one executor")
        try:
            self._check_good_name(name)
        except _Failure as failure:
            raise ValueError(str(failure)) from None
        with self._lock:
            if name in self._nodes:
                raise ValueError(f"a node named {name!r} already exists")
            self._nodes[name] = _Node(name, labels, executors, mode, remote_fs, web_socket)

    def agent_secret(self, name: str) -> str:
        """The secret an inbound agent ``name`` connects with (``SlaveComputer.getJnlpMac``:
        hex HMAC-SHA256 of the name under this controller's key)."""
        with self._lock:
            if name not in self._nodes:
                raise KeyError(f"no node named {name!r}")
        return hmac.new(self._agent_key, name.encode("utf-8"), hashlib.sha256).hexdigest()

    def set_build_result(self, job: str, number: int, result: str) -> None:
        """The result build ``number`` of ``job`` ends with (it may not exist yet; a build that
        already ended keeps its result)."""
        self._check_result(result)
        with self._lock:
            self._job_or_error(job).scripted_results[number] = result

    def finish_build(self, job: str, number: int, result: str | None = None) -> None:
        """End a running build now (with ``result``, else its scripted or default one)."""
        if result is not None:
            self._check_result(result)
        with self._lock:
            for build in self._job_or_error(job).builds:
                if build.number == number:
                    if result is not None:
                        self._jobs[job].scripted_results[number] = result
                    self._complete(self._jobs[job], build)
                    return
        raise KeyError(f"{job} has no build #{number}")

    def take_started_builds(self) -> list[BuildRecord]:
        """The builds that left the queue since the last call (by any route: polls of their
        queue item, :meth:`start_queued_builds`), oldest first, each returned once: what a
        runner that executes builds outside the double picks up. End one with
        :meth:`finish_build`."""
        with self._lock:
            started, self._started = self._started, []
            records = []
            for name, number in started:
                job = self._jobs.get(name)
                build = next((b for b in job.builds if b.number == number), None) if job else None
                if build is not None:
                    records.append(self._build_record(name, build))
            return records

    def start_queued_builds(self) -> list[tuple[str, int]]:
        """Let every waiting queue item start its build now; returns (job, number) pairs."""
        started = []
        with self._lock:
            for item in list(self._queue.values()):
                if item.state == "waiting":
                    build = self._leave_queue(item)
                    if build is not None:
                        started.append((item.job, build.number))
        return started

    def fail_next(self, path: str, count: int = 1, *, status: int = 500) -> None:
        """Answer the next ``count`` requests to ``path`` (``"*"``: any) with ``status``.

        ``path`` is the URL path without leading slash or query (``"createItem"``,
        ``"job/NAME/build"``); the body is Jenkins' "oops" page.
        """
        with self._lock:
            self._faults.fail(self._fault_key(path), status, count)

    def hang_next(self, path: str, seconds: float, count: int = 1) -> None:
        """Hold the next ``count`` requests to ``path`` for ``seconds`` before answering."""
        with self._lock:
            self._faults.hang(self._fault_key(path), seconds, count)

    @property
    def reject_all_requests(self) -> bool:
        """When true, every request answers 401 (as if all credentials were revoked)."""
        return self._reject_all

    @reject_all_requests.setter
    def reject_all_requests(self, value: bool) -> None:
        with self._lock:
            self._reject_all = bool(value)

    # ------------------------------------------------------------------------------------------
    # Inspection.

    @property
    def jobs(self) -> dict[str, str]:
        """Job name -> stored ``config.xml`` (as ``GET job/NAME/config.xml`` returns it)."""
        with self._lock:
            return {name: job.xml for name, job in self._jobs.items()}

    @property
    def builds(self) -> dict[str, list[BuildRecord]]:
        """Job name -> its builds, oldest first."""
        with self._lock:
            return {
                name: [self._build_record(name, build) for build in job.builds]
                for name, job in self._jobs.items()
            }

    @property
    def queue(self) -> list[QueueRecord]:
        """Every queue item so far, oldest first."""
        with self._lock:
            return [
                QueueRecord(
                    i.id, i.job, i.state, i.build_number, dict(i.parameters), dict(i.variables)
                )
                for i in self._queue.values()
            ]

    @property
    def nodes(self) -> dict[str, dict[str, Any]]:
        """Agent name -> its settings (labels, executors, mode, remote_fs, web_socket)."""
        with self._lock:
            return {
                name: {
                    "labels": n.labels,
                    "executors": n.executors,
                    "mode": n.mode,
                    "remote_fs": n.remote_fs,
                    "web_socket": n.web_socket,
                }
                for name, n in self._nodes.items()
            }

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def call_count(self, path: str, method: str | None = None) -> int:
        """How many requests reached ``path`` (any outcome), optionally for one method."""
        key = path.strip("/")
        with self._lock:
            return sum(1 for r in self._requests if r.path == key and method in (None, r.method))

    def mutation_count(self, kind: str | None = None) -> int:
        """Successful changes of one kind (all kinds when ``None``).

        Kinds: ``createItem``, ``config.xml`` (POST), ``build``, ``buildWithParameters``,
        ``doDelete`` (POST doDelete or DELETE), ``generic-webhook-trigger`` (an invocation that
        queued at least one build).
        """
        with self._lock:
            return sum(self._mutations.values()) if kind is None else self._mutations[kind]

    @property
    def mutation_counts(self) -> Counter[str]:
        with self._lock:
            return Counter(self._mutations)

    def reset_counters(self) -> None:
        """Forget recorded requests and mutation counts (jobs, builds and queue stay)."""
        with self._lock:
            self._requests.clear()
            self._mutations.clear()

    @property
    def internal_errors(self) -> list[str]:
        """Tracebacks of bugs inside the double (each also answered 500); should stay empty."""
        with self._lock:
            return list(self._internal_errors)

    def crumb_for(self, user: str, session_id: str) -> str:
        """The crumb ``DefaultCrumbIssuer`` gives ``user`` in web session ``session_id``."""
        digest = hashlib.sha256(f"{user};;{session_id}".encode())
        digest.update(self._crumb_salt.encode())
        return digest.hexdigest()

    # ------------------------------------------------------------------------------------------
    # Internals: bookkeeping.

    @staticmethod
    def _check_result(result: str) -> None:
        if result not in RESULTS:
            raise ValueError(f"unknown build result {result!r}; use one of {RESULTS}")

    def _job_or_error(self, name: str) -> _Job:
        job = self._jobs.get(name)
        if job is None:
            raise KeyError(f"no job named {name!r}")
        return job

    @staticmethod
    def _build_record(name: str, build: _Build) -> BuildRecord:
        # ParamsVariable (workflow-cps): getAllParameters(), then the defaults of the job's
        # definitions that got no value.
        params = dict(build.parameters)
        for definition in build.defined:
            if definition.name not in params and definition.has_default_value:
                params[definition.name] = definition.default_value()
        return BuildRecord(
            job=name,
            number=build.number,
            queue_id=build.queue_id,
            building=build.result is None,
            result=build.result,
            parameters=build.visible_parameters(),
            causes=tuple(c.get("shortDescription", "") for c in build.causes),
            variables=dict(build.variables),
            params=params,
            cause_classes=tuple(c.get("_class", "") for c in build.causes),
        )

    @staticmethod
    def _fault_key(path: str) -> str:
        return "*" if path.strip() == "*" else path.strip().strip("/")

    def _schedule(
        self,
        job: _Job,
        parameters: dict[str, str] | None,
        causes: list[dict[str, Any]],
        variables: dict[str, str] | None = None,
    ) -> tuple[_QueueItem, bool]:
        """Queue.schedule2: (the item, whether it is new). ``parameters`` None: no
        ParametersAction. A waiting item of the job with the same parameter values takes the
        request instead (ParametersAction.shouldSchedule; CauseAction folds the causes)."""
        values = dict(parameters or {})
        for item in self._queue.values():
            if item.state == "waiting" and item.job == job.name and item.parameters == values:
                item.causes.extend(c for c in causes if c not in item.causes)
                return item, False
        item = _QueueItem(
            id=self._next_queue_id,
            job=job.name,
            parameters=values,
            causes=list(causes),
            variables=dict(variables or {}),
            since_ms=_now_ms(),
            has_parameters_action=parameters is not None,
        )
        self._next_queue_id += 1
        self._queue[item.id] = item
        return item, True

    def _leave_queue(self, item: _QueueItem) -> _Build | None:
        job = self._jobs.get(item.job)
        if job is None:
            item.state = "cancelled"
            return None
        build = _Build(
            number=job.next_build_number,
            queue_id=item.id,
            timestamp_ms=_now_ms(),
            parameters=dict(item.parameters),
            causes=list(item.causes),
            variables=dict(item.variables),
            has_parameters_action=item.has_parameters_action,
            defined=[copy.copy(d) for d in job.config.parameters],
        )
        job.next_build_number += 1
        job.builds.append(build)
        item.state = "left"
        item.build_number = build.number
        self._started.append((job.name, build.number))
        if job.declared_properties is not None:
            self._run_declarative_pipeline(job)
        if self.build_polls <= 0:
            self._complete(job, build)
        return build

    def _run_declarative_pipeline(self, job: _Job) -> None:
        assert job.declared_properties is not None
        root = ET.fromstring(job.xml.encode("utf-8"))
        writer = _XStreamWriter(self.plugin_versions)
        if _declarative_resave(
            root, job.declared_properties, writer, job.declared_triggers, job.declared_parameters
        ):
            job.xml = writer.document(root)  # BulkChange.commit() -> Job.save()
            job.config = _parse_config(job.xml)

    def _complete(self, job: _Job, build: _Build) -> None:
        if build.result is None:
            build.result = job.scripted_results.get(build.number, self.default_result)

    # ------------------------------------------------------------------------------------------
    # Internals: request handling.

    def _handle(self, incoming: Incoming) -> Reply:
        headers = dict(incoming.headers.items())
        return self._dispatch(
            incoming.method,
            incoming.target,
            headers,
            incoming.body,
            header_pairs=list(incoming.headers.items()),
            remote_addr=incoming.client,
        )

    def _dispatch(
        self,
        method: str,
        target: str,
        headers: dict[str, str],
        body: bytes,
        *,
        header_pairs: list[tuple[str, str]] | None = None,
        remote_addr: str = "127.0.0.1",
    ) -> Reply:
        split = urlsplit(target)
        path = split.path.strip("/")
        header_map = {k.lower(): v for k, v in headers.items()}
        host = header_map.get("host") or (self._url or "").removeprefix("http://")
        request = _Request(
            method=method,
            path=path,
            query=split.query,
            headers=header_map,
            body=body,
            base=f"http://{host}/",
            params=self._read_params(split.query, header_map, body),
            header_pairs=list(header_pairs or headers.items()),
            remote_addr=remote_addr,
        )
        with self._lock:
            reject = self._reject_all
            hang = None if reject else self._faults.take_hang(path)
        try:
            if reject:
                reply = self._unauthorized(request)
            else:
                if hang:
                    self._stopping.wait(hang)
                with self._lock:
                    failure = self._faults.take_failure(path)
                if failure is not None:
                    reply = self._oops(failure, "injected failure")
                else:
                    reply = self._serve(request)
        except Exception:
            self._record_internal_error(traceback.format_exc())
            reply = self._oops(500, "internal error of the double")
        with self._lock:
            self._requests.append(
                RecordedRequest(
                    method, path, split.query, dict(headers), body, reply.status, request.user
                )
            )
        return reply

    @staticmethod
    def _read_params(query: str, headers: Mapping[str, str], body: bytes) -> dict[str, list[str]]:
        # A servlet's parameter map: the query string first, then a form-encoded body.
        params: dict[str, list[str]] = {}
        for key, value in servlet_pairs(query, headers.get("content-type"), body):
            params.setdefault(key, []).append(value)
        return params

    def _serve(self, request: _Request) -> Reply:
        # HudsonFilter: BASIC credentials are checked on every path.
        authorization = request.headers.get("authorization", "")
        if authorization[:6].lower() == "basic ":
            user = self._authenticate(authorization[6:].strip(), request)
            if user is None:
                return self._unauthorized(request)
        request.session = self._session_from_cookie(request.headers.get("cookie", ""))

        # CrumbFilter: POSTs only, after the exclusions.
        if request.method == "POST" and self._csrf and not self._crumb_exempt(request):
            given = request.headers.get(CRUMB_FIELD.lower()) or request.param(CRUMB_FIELD)
            expected = (
                self.crumb_for(request.user or "anonymous", request.session)
                if request.session
                else None
            )
            if not given or expected is None or not _same(given, expected):
                return self._jetty_error(403, "No valid crumb was included in the request", request)

        path = request.path
        if path.startswith(_GWT_PATH) or path == _GWT_PATH.rstrip("/"):  # UnprotectedRootAction
            return self._gwt(request)
        if path in ("whoAmI/api/json", "whoAmI/api/json/"):
            return self._api(request, self._who_am_i(request))
        # Jenkins.isSubjectToMandatoryReadPermissionCheck: an encrypted agent JNLP file needs
        # no Overall/Read (only the agent's secret decrypts it).
        encrypted_jnlp = (
            bool(_AGENT_JNLP_PATH.fullmatch(path)) and request.param("encrypt") == "true"
        )
        anonymous_may = self._anonymous_read and request.method in ("GET", "HEAD")
        if request.user is None and not anonymous_may and not encrypted_jnlp:
            return self._login_required(request)
        with self._lock:
            return self._route(request)

    def _authenticate(self, encoded: str, request: _Request) -> str | None:
        pair = basic_credentials(encoded)
        if pair is None:
            return None
        user_id, password = pair
        with self._lock:
            user = self._users.get(user_id.lower())
            if user is None:
                return None
            if any(_same(password, t) for t in user.api_tokens):
                request.user, request.via_token = user.id, True
                return user.id
            if _same(password, user.password):
                request.user = user.id
                return user.id
        return None

    def _session_from_cookie(self, cookie_header: str) -> str | None:
        value = cookie(cookie_header, self._cookie_name)
        if value is None:
            return None
        with self._lock:
            return value if value in self._sessions else None

    def _crumb_exempt(self, request: _Request) -> bool:
        if request.via_token:
            return True  # ApiCrumbExclusion
        return request.path.startswith(_GWT_PATH)  # GenericWebHookRequestReceiver

    def _route(self, request: _Request) -> Reply:
        path, method = request.path, request.method
        segments = [unquote(s) for s in path.split("/")] if path else []
        if not segments:
            return self._dashboard(request)
        head = segments[0]
        if segments == ["api", "json"]:
            return self._api(request, self._root_json(request))
        if segments == ["crumbIssuer", "api", "json"]:
            return self._crumb_issuer(request)
        if segments == ["me", "api", "json"]:
            if request.user is None:
                return self._login_required(request)
            return self._api(
                request, self._user_json(request.base, self._users[request.user.lower()])
            )
        if len(segments) == 4 and segments[0] == "user" and segments[2:] == ["api", "json"]:
            user = self._users.get(segments[1].lower())
            if user is None:
                return self._not_found(request)
            return self._api(request, self._user_json(request.base, user))
        if segments == ["createItem"]:
            if method != "POST":
                return self._method_not_allowed(request)
            return self._guarded(request, self._create_item)
        if segments == ["queue", "api", "json"]:
            return self._api(request, self._queue_json(request))
        if segments == ["computer", "api", "json"]:
            return self._api(request, self._computers_json(request))
        if segments[:1] == ["manage"] and segments[1:2] == ["computer"] and len(segments) > 2:
            segments = segments[1:]
        if segments[0] == "computer" and len(segments) >= 2:
            return self._computer_route(request, segments[1], segments[2:])
        if len(segments) == 5 and segments[:2] + segments[3:] == ["queue", "item", "api", "json"]:
            return self._queue_item(request, segments[2])
        if segments == ["queue", "cancelItem"]:
            if method != "POST":
                return self._method_not_allowed(request)
            return self._guarded(request, self._cancel_queue_item)
        if head == "job" and len(segments) >= 2:
            return self._job_route(request, segments[1], segments[2:])
        return self._not_found(request)

    def _job_route(self, request: _Request, name: str, rest: list[str]) -> Reply:
        method = request.method
        job = self._jobs.get(name)
        if job is None:
            return self._not_found(request)
        if rest == [] or rest == [""]:
            if method == "DELETE":
                return self._delete_job(request, job)
            return self._html_page(request, 200, f"{html.escape(name)} [Jenkins]", "")
        if rest == ["api", "json"]:
            return self._api(
                request, self._job_json(request, job, full=bool(request.param("tree")))
            )
        if rest == ["config.xml"]:
            if method == "POST":
                return self._guarded(request, lambda r: self._update_config(r, job))
            if request.user is None:
                return self._login_required(request)  # needs Item/ExtendedRead
            return Reply(200, job.xml.encode("utf-8"), "application/xml")
        if rest in (["build"], ["buildWithParameters"]):
            if method != "POST":
                return self._method_not_allowed(request)
            return self._guarded(request, lambda r: self._build(r, job, rest[0]))
        if rest == ["doDelete"]:
            if method != "POST":
                return self._method_not_allowed(request)
            return self._delete_job(request, job)
        if len(rest) >= 1:
            build = self._find_build(job, rest[0])
            if build is None:
                return self._not_found(request)
            tail = rest[1:]
            if tail == ["api", "json"]:
                return self._build_api(request, job, build)
            if tail == ["consoleText"]:
                text = f"Started by {build.causes[0]['shortDescription'] if build.causes else ''}\n"
                if build.result is not None:
                    text += f"Finished: {build.result}\n"
                return Reply(200, text.encode("utf-8"), "text/plain;charset=utf-8")
            if tail in ([], [""]):
                return self._html_page(request, 200, f"{html.escape(name)} #{build.number}", "")
        return self._not_found(request)

    def _computer_route(self, request: _Request, name: str, rest: list[str]) -> Reply:
        # ComputerSet.getDynamic -> Jenkins.getComputer: "(built-in)" and "(master)" name the
        # built-in node.
        built_in = name in ("(built-in)", "(master)")
        node = self._nodes.get(name)
        if node is None and not built_in:
            return self._not_found(request)
        if rest == ["api", "json"]:
            if node is None:
                return self._api(request, self._built_in_computer_json(request))
            return self._api(request, self._agent_json(request, node))
        if rest in ([], [""]):
            title = "Built-In Node" if node is None else node.name
            return self._html_page(request, 200, f"{html.escape(title)} [Jenkins]", "")
        if node is not None and rest in (["jenkins-agent.jnlp"], ["slave-agent.jnlp"]):
            return self._agent_jnlp(request, node)
        return self._not_found(request)

    def _has_connect(self, request: _Request) -> bool:
        user = self._users.get((request.user or "").lower())
        return user is not None and user.admin

    def _agent_jnlp(self, request: _Request, node: _Node) -> Reply:
        """SlaveComputer.doJenkinsAgentJnlp: EncryptedSlaveAgentJnlpFile with the
        jenkins-agent.jnlp.jelly view."""
        arguments = [self.agent_secret(node.name), node.name]
        if node.web_socket:
            arguments.append("-webSocket")
        # RemotingWorkDirSettings.getEnabledDefaults(): the agent root, internal dir "remoting".
        arguments += ["-workDir", node.remote_fs, "-internalDir", "remoting"]
        arguments += ["-url", self._root_url_for(request)]
        document = (
            "<jnlp><application-desc>"
            + "".join(f"<argument>{html.escape(a, quote=False)}</argument>" for a in arguments)
            + "</application-desc></jnlp>"
        ).encode("utf-8")
        if request.param("encrypt") == "true":
            # No permission check: AES/CFB8 under the first 128 bits of the agent's secret,
            # after a random IV.
            try:
                from cryptography.hazmat.decrepit.ciphers.modes import CFB8
            except ImportError:  # cryptography < 43
                from cryptography.hazmat.primitives.ciphers.modes import CFB8
            from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

            key = bytes.fromhex(self.agent_secret(node.name))[:16]
            iv = secrets.token_bytes(16)
            encryptor = Cipher(algorithms.AES(key), CFB8(iv)).encryptor()
            body = iv + encryptor.update(document) + encryptor.finalize()
            return Reply(200, body, "application/octet-stream")
        if not self._has_connect(request):  # it.checkPermission(Computer.CONNECT)
            if request.user is None:
                return self._login_required(request, _CONNECT_PERMISSION)
            return self._access_denied(request, _CONNECT_PERMISSION)
        return Reply(200, document, "application/x-java-jnlp-file")

    def _root_url_for(self, request: _Request) -> str:
        """``Jenkins.getRootUrl()``: the configured :attr:`root_url` (with a trailing slash),
        else the request's own base URL."""
        if self.root_url:
            return self.root_url if self.root_url.endswith("/") else self.root_url + "/"
        return request.base

    def _guarded(self, request: _Request, action: Any) -> Reply:
        if request.user is None:
            return self._login_required(request)
        try:
            return action(request)
        except _Failure as failure:
            return self._failure_page(request, str(failure))
        except _ServerError as error:
            return self._oops(500, str(error))

    @staticmethod
    def _find_build(job: _Job, key: str) -> _Build | None:
        if key.isdigit():
            return next((b for b in job.builds if b.number == int(key)), None)
        done = [b for b in job.builds if b.result is not None]
        pickers = {
            "lastBuild": job.builds,
            "firstBuild": job.builds[:1],
            "lastCompletedBuild": done,
            "lastSuccessfulBuild": [b for b in done if b.result in ("SUCCESS", "UNSTABLE")],
            "lastStableBuild": [b for b in done if b.result == "SUCCESS"],
            "lastFailedBuild": [b for b in done if b.result == "FAILURE"],
            "lastUnstableBuild": [b for b in done if b.result == "UNSTABLE"],
            "lastUnsuccessfulBuild": [b for b in done if b.result != "SUCCESS"],
        }
        candidates = pickers.get(key)
        return candidates[-1] if candidates else None

    # ------------------------------------------------------------------------------------------
    # Endpoints.

    def _crumb_issuer(self, request: _Request) -> Reply:
        if not self._csrf:
            return self._not_found(request)
        headers: list[tuple[str, str]] = []
        session = request.session
        if session is None:
            session = f"node0{secrets.token_hex(12)}"
            self._sessions.add(session)
            headers.append(("Set-Cookie", f"{self._cookie_name}={session}; Path=/; HttpOnly"))
            request.session = session
        payload = {
            "_class": "hudson.security.csrf.DefaultCrumbIssuer",
            "crumb": self.crumb_for(request.user or "anonymous", session),
            "crumbRequestField": CRUMB_FIELD,
        }
        reply = self._api(request, payload)
        reply.headers.extend(headers)
        return reply

    def _create_item(self, request: _Request) -> Reply:
        content_type = request.headers.get("content-type")
        mode = request.param("mode")
        if content_type is None and mode != "copy":
            raise _Failure("No Content-Type header set")
        is_xml = content_type is not None and (
            content_type.startswith("application/xml") or content_type.startswith("text/xml")
        )
        name = request.param("name")
        if name is None:
            raise _Failure("Query parameter 'name' is required")
        self._check_good_name(name)
        name = name.strip()
        if name in self._jobs:
            raise _Failure(f"A job already exists with the name {_LQ}{name}{_RQ}")
        if mode == "copy":
            source = self._jobs.get(request.param("from") or "")
            if source is None:
                source_name = request.param("from") or ""
                raise _Failure(
                    f"No such job: {source_name}" if source_name else "Specify which job to copy"
                )
            self._jobs[name] = _Job(name, source.xml, _parse_config(source.xml))
            self._mutations["createItem"] += 1
            return self._redirect(request, f"job/{quote(name)}/configure")
        if not is_xml:
            if mode is None:
                raise _Failure("No mode given")
            raise _Failure(f"No item type {_LQ}{mode}{_RQ} is known")
        try:
            stored = identity_transform(request.body)
        except ValueError as error:
            raise _ServerError(
                f"java.io.IOException: Failed to persist config.xml: {error}"
            ) from None
        config = _parse_config(stored)
        self._jobs[name] = _Job(name, stored, config)
        self._mutations["createItem"] += 1
        return Reply(200)

    @staticmethod
    def _check_good_name(name: str) -> None:
        if not name.strip():
            raise _Failure("No name is specified")
        if name.strip() in (".", ".."):
            raise _Failure(f"“{name.strip()}” is not an allowed name")
        for ch in name:
            if ord(ch) < 0x20 or ord(ch) == 0x7F:
                raise _Failure("No control code is allowed")
            if ch in _UNSAFE_NAME_CHARACTERS:
                raise _Failure(f"{_LQ}{ch}{_RQ} is an unsafe character")

    def _update_config(self, request: _Request, job: _Job) -> Reply:
        content_type = request.headers.get("content-type", "")
        match = re.search(r"charset=\"?([\w.:-]+)", content_type, re.IGNORECASE)
        charset = match.group(1) if match else "iso-8859-1"
        try:
            text = request.body.decode(charset, "replace")
        except LookupError:
            raise _ServerError(f"java.io.UnsupportedEncodingException: {charset}") from None
        try:
            stored = identity_transform(text.encode("utf-8"), encoding="UTF-8")
        except ValueError as error:
            raise _ServerError(
                f"java.io.IOException: Failed to persist config.xml: {error}"
            ) from None
        config = _parse_config(stored)
        if config.job_class != job.config.job_class:
            raise _ServerError(
                f"java.io.IOException: Expecting class {job.config.job_class} "
                f"but got class {config.job_class} instead"
            )
        job.xml, job.config = stored, config
        self._mutations["config.xml"] += 1
        return Reply(200)

    def _build(self, request: _Request, job: _Job, endpoint: str) -> Reply:
        if job.config.run_class is None:
            return self._not_found(request)
        if job.config.disabled:
            # HttpResponses.error(SC_CONFLICT, new IOException(...)): the stack trace as text.
            suffix = "!" if endpoint == "buildWithParameters" else ""
            text = f"java.io.IOException: {job.name} is not buildable{suffix}\n"
            return Reply(409, text.encode("utf-8"), "text/plain;charset=utf-8")
        definitions = job.config.parameters
        parameters: dict[str, str] | None = None
        if endpoint == "buildWithParameters":
            if not definitions:
                raise _ServerError(
                    "java.lang.IllegalStateException: This build is not parameterized!"
                )
            # SimpleParameterDefinition.createValue(req): the default when not given.
            parameters = {}
            for definition in definitions:
                given = request.params.get(definition.name)
                if given is None:
                    if definition.has_default_value:
                        parameters[definition.name] = definition.default_value()
                    continue
                if len(given) != 1:
                    raise _ServerError(
                        "java.lang.IllegalArgumentException: Illegal number of parameter "
                        f"values for {definition.name}: {len(given)}"
                    )
                parameters[definition.name] = self._parameter_value(definition, given[0])
        elif definitions:
            # ParametersDefinitionProperty._doBuild reads StaplerRequest.getSubmittedForm().
            submitted = request.param("json")
            if not submitted:
                if request.params:
                    return self._jetty_error(400, "This page expects a form submission", request)
                return self._jetty_error(400, "Nothing is submitted", request)
            try:
                form = json.loads(submitted)
            except ValueError:
                raise _ServerError(
                    f"jakarta.servlet.ServletException: Failed to parse JSON:{submitted}"
                ) from None
            if not isinstance(form, dict):
                raise _ServerError(
                    f"jakarta.servlet.ServletException: Failed to parse JSON:{submitted}"
                )
            values = form.get("parameter")
            values = [] if values is None else values if isinstance(values, list) else [values]
            known = {d.name: d for d in definitions}
            parameters = {}  # only what was submitted: no defaults here
            for value in values:
                pname = value.get("name") if isinstance(value, dict) else None
                if not isinstance(pname, str):
                    raise _ServerError('net.sf.json.JSONException: JSONObject["name"] not found.')
                if pname not in known:
                    raise _ServerError(
                        f"java.lang.IllegalArgumentException: No such parameter definition: {pname}"
                    )
                parameters[pname] = self._parameter_value(known[pname], value.get("value"))
        cause = {
            "_class": "hudson.model.Cause$UserIdCause",
            "shortDescription": f"Started by user {request.user}",
            "userId": request.user,
            "userName": request.user,
        }
        item, created = self._schedule(job, parameters, [cause])
        self._mutations[endpoint] += 1
        location = f"{request.base}queue/item/{item.id}/"
        if endpoint == "buildWithParameters" and not created:
            return Reply(303, headers=[("Location", location)])  # JENKINS-66105
        if endpoint == "build" and definitions and not created:
            # Queue.schedule() gives null for a folded request: sendRedirect(".").
            return Reply(302, headers=[("Location", f"{request.base}job/{quote(job.name)}/")])
        return Reply(201, headers=[("Location", location)])

    @staticmethod
    def _parameter_value(definition: _ParamDef, value: Any) -> str:
        """A submitted value as the definition's ParameterValue holds it (as text)."""
        if value is None:
            text = ""
        elif isinstance(value, bool):
            text = "true" if value else "false"
        else:
            text = value if isinstance(value, str) else json.dumps(value)
        if definition.kind == "BooleanParameterDefinition":
            return "true" if text.lower() == "true" else "false"  # Boolean.parseBoolean
        if definition.kind == "ChoiceParameterDefinition" and text not in definition.choices:
            raise _ServerError(
                "java.lang.IllegalArgumentException: Illegal choice for parameter "
                f"{definition.name}: {text}"
            )
        return text.strip() if definition.trim else text

    def _delete_job(self, request: _Request, job: _Job) -> Reply:
        if request.user is None:
            return self._login_required(request)
        del self._jobs[job.name]
        for item in self._queue.values():
            if item.job == job.name and item.state == "waiting":
                item.state = "cancelled"
        self._mutations["doDelete"] += 1
        return self._redirect(request, "")

    def _cancel_queue_item(self, request: _Request) -> Reply:
        key = request.param("id") or ""
        item = self._queue.get(int(key)) if key.isdigit() else None
        if item is not None and item.state == "waiting":
            item.state = "cancelled"
        return Reply(204)

    def _queue_item(self, request: _Request, key: str) -> Reply:
        item = self._queue.get(int(key)) if key.isdigit() else None
        if item is None:
            return self._not_found(request)
        if item.state == "waiting":
            item.polls += 1
            if item.polls > self.queue_delay_polls:
                self._leave_queue(item)
        return self._api(request, self._queue_item_json(request, item))

    def _build_api(self, request: _Request, job: _Job, build: _Build) -> Reply:
        if build.result is None:
            build.polls += 1
            if build.polls > self.build_polls:
                self._complete(job, build)
        return self._api(request, self._build_json(request, job, build))

    # ------------------------------------------------------------------------------------------
    # Generic Webhook Trigger.

    def _gwt(self, request: _Request) -> Reply:
        if request.path.rstrip("/") != "generic-webhook-trigger/invoke":
            return self._not_found(request)
        if request.method == "OPTIONS":
            return Reply(200)
        header_lists: dict[str, list[str]] = {}
        for name, value in request.header_pairs or list(request.headers.items()):
            header_lists.setdefault(name.lower(), []).append(value)
        content_type = request.headers.get("content-type") or ""
        if "application/x-www-form-urlencoded" in content_type:
            data = {k: v for k, v in request.params.items() if k != "token"}
            post_content = json.dumps(data, indent=2)
        else:
            post_content = request.body.decode("utf-8", "replace")
        try:
            self._verify_whitelist(request.remote_addr, header_lists, post_content)
        except _WhitelistError as error:
            message = (
                f"Sender, {request.remote_addr}, with headers {_java_map_string(header_lists)}"
                f" did not pass whitelist.\n{error}"
            )
            return self._gwt_reply(403, message, None)
        except _ServerError as error:
            return self._oops(500, str(error))
        token = request.param("token")
        if token is None and "token" in header_lists:
            token = header_lists["token"][0]
        if token is None:
            for value in header_lists.get("authorization", []):
                if value.startswith("Bearer "):
                    token = value[7:]
                    break
        if token is None and "x-gitlab-token" in header_lists:
            token = header_lists["x-gitlab-token"][0]

        with self._lock:
            found = [job for job in self._jobs.values() if self._gwt_matches(job, token, request)]
            if not found:
                message = _GWT_NO_JOBS + ("A token was supplied.\n" if token else _GWT_NO_TOKEN)
                return self._gwt_reply(404, message, None)
            results: dict[str, Any] = {}
            all_silent = True
            errors = False
            queued = 0
            for job in found:
                trigger = job.config.trigger
                assert trigger is not None
                try:
                    result = self._gwt_trigger(job, trigger, header_lists, request, post_content)
                except re.error as error:
                    results[job.name] = (
                        "Exception occurred (class java.util.regex.PatternSyntaxException: "
                        f"{error}), full stack trace in Jenkins server log. "
                    )
                    errors = True
                    all_silent = False
                    continue
                queued += 1 if result["triggered"] else 0
                if not trigger.silent_response:
                    all_silent = False
                    results[job.name] = result
            if queued:
                self._mutations["generic-webhook-trigger"] += 1
        if all_silent:
            return Reply(200)
        if errors:
            return self._gwt_reply(500, "There were errors when triggering jobs.", results)
        return self._gwt_reply(200, "Triggered jobs.", results)

    def _verify_whitelist(
        self, remote: str, headers: dict[str, list[str]], post_content: str
    ) -> None:
        """WhitelistVerifier.verifyWhitelist: the first item that passes lets the request in."""
        with self._lock:
            enabled, items = self._whitelist_enabled, list(self._whitelist)
            secrets_by_id = dict(self._secret_texts)
        if not items or not enabled:
            return
        messages = []
        for number, item in enumerate(items, 1):
            try:
                _whitelist_host_verified(remote, item.host)
                if item.hmac_enabled:
                    secret = secrets_by_id.get(item.hmac_credential_id or "")
                    if secret is None:
                        raise _WhitelistError(
                            "Was unable to find secret text credential "
                            f"{_java_str(item.hmac_credential_id)}"
                        )
                    _hmac_verify(
                        headers, post_content, item.hmac_header, secret, item.hmac_algorithm
                    )
                return
            except _WhitelistError as error:
                messages.append(f"{number}) {error}\n")
        raise _WhitelistError("Did not find a matching whitelisted host:\n" + "".join(messages))

    def _gwt_matches(self, job: _Job, given: str | None, request: _Request) -> bool:
        trigger = job.config.trigger
        if trigger is None:
            return False
        generic = trigger.token or ""
        if not generic and trigger.token_credential_id:
            generic = self._secret_texts.get(trigger.token_credential_id, "")
        auth_token = job.config.auth_token or ""
        if not given:
            # No token: only jobs the caller can see, with no token of either kind.
            visible = request.user is not None or self._anonymous_read
            return visible and not generic and not auth_token
        if not generic and auth_token:
            return auth_token == given
        return bool(generic) and generic == given

    def _gwt_trigger(
        self,
        job: _Job,
        trigger: _GwtTrigger,
        headers: dict[str, list[str]],
        request: _Request,
        post_content: str,
    ) -> dict[str, Any]:
        variables = _resolve_variables(trigger, headers, request.params, post_content)
        text = _render(trigger.regexp_filter_text, variables)
        expression = trigger.regexp_filter_expression
        matching = _is_matching(text, expression)
        item = None
        if matching and job.config.run_class is not None and not job.config.disabled:
            # ParameterActionUtil: each defined parameter that has a default takes the variable
            # of its name when that is not empty, else its default; other variables reach the
            # build only through the GenericCause (GenericWebhookEnvironmentContributor).
            parameters: dict[str, str] = {}
            for definition in job.config.parameters:
                if not definition.has_default_value:
                    continue
                value = variables.get(definition.name) or definition.default_value()
                if definition.kind == "BooleanParameterDefinition":
                    value = "true" if value.lower() == "true" else "false"
                parameters[definition.name] = value
            if not trigger.allow_several_triggers_per_build:
                parameters[_GWT_UUID_PARAMETER] = str(uuid.uuid4())
            cause = {
                "_class": "org.jenkinsci.plugins.gwt.GenericCause",
                "shortDescription": _render(trigger.cause_string, variables) or "Generic Cause",
            }
            item, _ = self._schedule(job, parameters, [cause], variables)
        return {
            "id": item.id if item else 0,
            "regexpFilterExpression": expression if expression is not None else "",
            "regexpFilterText": text,
            "resolvedVariables": variables,
            "triggered": item is not None,
            "url": f"queue/item/{item.id}/" if item else "",
        }

    @staticmethod
    def _gwt_reply(status: int, message: str, jobs: dict[str, Any] | None) -> Reply:
        return Reply(
            status,
            json_bytes({"jobs": jobs, "message": message}),
            "application/json;charset=utf-8",
        )

    # ------------------------------------------------------------------------------------------
    # Remote API documents.

    def _api(self, request: _Request, payload: dict[str, Any]) -> Reply:
        tree = request.param("tree")
        if tree:
            payload = _apply_tree(payload, _parse_tree(tree))
        return Reply(
            200,
            json_bytes(payload),
            "application/json;charset=utf-8",
            headers=self._advertise_headers(),
        )

    def _advertise_headers(self) -> list[tuple[str, str]]:
        return [
            ("X-Content-Type-Options", "nosniff"),
            ("X-Jenkins", self.version),
            ("X-Jenkins-Session", self.session_hash),
            ("X-Hudson", "1.395"),
        ]

    def _who_am_i(self, request: _Request) -> dict[str, Any]:
        anonymous = request.user is None
        return {
            "_class": "hudson.security.WhoAmI",
            "anonymous": anonymous,
            "authenticated": True,
            "authorities": ["anonymous"] if anonymous else ["authenticated"],
            "details": None,
            "name": "anonymous" if anonymous else request.user,
            "toString": "",
        }

    @staticmethod
    def _user_json(base: str, user: _User) -> dict[str, Any]:
        return {
            "_class": "hudson.model.User",
            "absoluteUrl": f"{base}user/{user.id.lower()}",
            "description": None,
            "fullName": user.full_name,
            "id": user.id,
            "property": [
                {"_class": "jenkins.security.ApiTokenProperty"},
                {"_class": "hudson.tasks.Mailer$UserProperty", "address": None},
            ],
        }

    def _color(self, job: _Job) -> str:
        if job.config.disabled:
            return "disabled"
        done = [b for b in job.builds if b.result is not None]
        color = _COLORS[done[-1].result] if done else "notbuilt"  # type: ignore[index]
        if any(b.result is None for b in job.builds):
            color += "_anime"
        return color

    def _job_summary(self, request: _Request, job: _Job) -> dict[str, Any]:
        return {
            "_class": job.config.job_class,
            "name": job.name,
            "url": f"{request.base}job/{quote(job.name)}/",
            "color": self._color(job),
        }

    def _root_json(self, request: _Request) -> dict[str, Any]:
        view = {"_class": "hudson.model.AllView", "name": "all", "url": request.base}
        return {
            "_class": "hudson.model.Hudson",
            "assignedLabels": [{"name": "built-in"}],
            "mode": "NORMAL",
            "nodeDescription": "the Jenkins controller's built-in node",
            "nodeName": "",
            "numExecutors": 2,
            "description": None,
            "jobs": [self._job_summary(request, job) for job in self._jobs.values()],
            "overallLoad": {},
            "primaryView": view,
            "quietDownReason": None,
            "quietingDown": False,
            "slaveAgentPort": -1,
            "unlabeledLoad": {"_class": "jenkins.model.UnlabeledLoadStatistics"},
            "url": request.base,
            "useCrumbs": self._csrf,
            "useSecurity": True,
            "views": [view],
        }

    def _build_ref(self, request: _Request, job: _Job, build: _Build | None, full: bool) -> Any:
        if build is None:
            return None
        if full:
            return self._build_json(request, job, build)
        return {
            "_class": job.config.run_class,
            "number": build.number,
            "url": f"{request.base}job/{quote(job.name)}/{build.number}/",
        }

    def _job_json(self, request: _Request, job: _Job, *, full: bool) -> dict[str, Any]:
        payload = self._job_summary(request, job)
        waiting = [i for i in self._queue.values() if i.job == job.name and i.state == "waiting"]
        properties: list[dict[str, Any]] = []
        for tag in job.config.properties:
            entry: dict[str, Any] = {"_class": tag}
            if tag == _PARAMETERS_PROPERTY:
                entry["parameterDefinitions"] = [
                    self._parameter_json(d) for d in job.config.parameters
                ]
            properties.append(entry)
        payload.update(
            {
                "actions": [{}, {"_class": "hudson.model.ParametersDefinitionProperty"}]
                if job.config.parameters
                else [{}],
                "description": job.config.description or None,
                "displayName": job.name,
                "displayNameOrNull": None,
                "fullDisplayName": job.name,
                "fullName": job.name,
                "buildable": job.config.run_class is not None and not job.config.disabled,
                "builds": [self._build_ref(request, job, b, full) for b in reversed(job.builds)][
                    :100
                ],
                "healthReport": [],
                "inQueue": bool(waiting),
                "keepDependencies": False,
                "nextBuildNumber": job.next_build_number,
                "property": properties,
                "queueItem": self._queue_item_json(request, waiting[0]) if waiting else None,
                "concurrentBuild": self._concurrent_build(job),
                "disabled": job.config.disabled,
                "resumeBlocked": False,
            }
        )
        for permalink in _PERMALINKS:
            payload[permalink] = self._build_ref(
                request, job, self._find_build(job, permalink), full
            )
        if full:
            payload["allBuilds"] = [
                self._build_ref(request, job, b, True) for b in reversed(job.builds)
            ]
        return payload

    @staticmethod
    def _concurrent_build(job: _Job) -> bool:
        # WorkflowJob.isConcurrentBuild: no DisableConcurrentBuildsJobProperty, or one that
        # aborts previous builds. (Other job types: their <concurrentBuild> flag.)
        if job.config.root != "flow-definition":
            return _flag(ET.fromstring(job.xml.encode("utf-8")), "concurrentBuild")
        root = ET.fromstring(job.xml.encode("utf-8"))
        prop = root.find(f"properties/{_DISABLE_CONCURRENT}")
        return prop is None or _flag(prop, "abortPrevious")

    @staticmethod
    def _parameter_json(definition: _ParamDef) -> dict[str, Any]:
        kind = definition.kind
        value_class = "hudson.model." + kind.replace("Definition", "Value")
        entry: dict[str, Any] = {
            "_class": f"hudson.model.{kind}",
            "defaultParameterValue": {
                "_class": value_class,
                "name": definition.name,
                "value": definition.default,
            },
            "description": definition.description or None,
            "name": definition.name,
            "type": kind,
        }
        if definition.choices:
            entry["choices"] = list(definition.choices)
        return entry

    def _build_json(self, request: _Request, job: _Job, build: _Build) -> dict[str, Any]:
        building = build.result is None
        actions: list[dict[str, Any]] = []
        if build.has_parameters_action:
            # ParametersAction.getParameters(): filtered to the parameters the job defined.
            actions.append(
                self._parameters_action(build.visible_parameters(), job.config.parameters)
            )
        actions.append({"_class": "hudson.model.CauseAction", "causes": list(build.causes)})
        numbers = [b.number for b in job.builds]
        index = numbers.index(build.number)
        previous = job.builds[index - 1] if index > 0 else None
        following = job.builds[index + 1] if index + 1 < len(job.builds) else None
        return {
            "_class": job.config.run_class,
            "actions": actions,
            "artifacts": [],
            "building": building,
            "description": None,
            "displayName": f"#{build.number}",
            "duration": 0 if building else 1000,
            "estimatedDuration": -1,
            "executor": {"_class": "hudson.model.OneOffExecutor"} if building else None,
            "fullDisplayName": f"{job.name} #{build.number}",
            "id": str(build.number),
            "keepLog": False,
            "number": build.number,
            "queueId": build.queue_id,
            "result": build.result,
            "timestamp": build.timestamp_ms,
            "url": f"{request.base}job/{quote(job.name)}/{build.number}/",
            "changeSets": [],
            "culprits": [],
            "inProgress": building,
            "nextBuild": self._build_ref(request, job, following, False),
            "previousBuild": self._build_ref(request, job, previous, False),
        }

    @staticmethod
    def _parameters_action(values: dict[str, str], definitions: list[_ParamDef]) -> dict[str, Any]:
        kinds = {d.name: d.kind for d in definitions}
        parameters: list[dict[str, Any]] = []
        for name, value in values.items():
            if kinds.get(name) == "BooleanParameterDefinition":
                parameters.append(
                    {
                        "_class": "hudson.model.BooleanParameterValue",
                        "name": name,
                        "value": value == "true",
                    }
                )
            else:
                parameters.append(
                    {"_class": "hudson.model.StringParameterValue", "name": name, "value": value}
                )
        return {"_class": "hudson.model.ParametersAction", "parameters": parameters}

    def _queue_item_json(self, request: _Request, item: _QueueItem) -> dict[str, Any]:
        job = self._jobs.get(item.job)
        task: dict[str, Any] = {
            "_class": job.config.job_class if job else "hudson.model.FreeStyleProject",
            "name": item.job,
            "url": f"{request.base}job/{quote(item.job)}/",
            "color": self._color(job) if job else "notbuilt",
        }
        actions: list[dict[str, Any]] = []
        if item.has_parameters_action:  # not attached to a run yet: not filtered
            definitions = job.config.parameters if job else []
            actions.append(self._parameters_action(item.parameters, definitions))
        actions.append({"_class": "hudson.model.CauseAction", "causes": list(item.causes)})
        payload: dict[str, Any] = {
            "actions": actions,
            "blocked": False,
            "buildable": item.state == "waiting",
            "id": item.id,
            "inQueueSince": item.since_ms,
            "params": "".join(f"\n{k}={v}" for k, v in item.parameters.items()),
            "stuck": False,
            "task": task,
            "url": f"queue/item/{item.id}/",
        }
        if item.state == "waiting":
            payload = {"_class": "hudson.model.Queue$BuildableItem", **payload}
            payload.update(
                {
                    "why": "Waiting for next available executor",
                    "buildableStartMilliseconds": item.since_ms,
                    "pending": False,
                }
            )
            return payload
        payload = {"_class": "hudson.model.Queue$LeftItem", **payload}
        payload["why"] = None
        payload["cancelled"] = item.state == "cancelled"
        executable = None
        if item.build_number is not None and job is not None:
            executable = {
                "_class": job.config.run_class,
                "number": item.build_number,
                "url": f"{request.base}job/{quote(item.job)}/{item.build_number}/",
            }
        payload["executable"] = executable
        return payload

    def _built_in_computer_json(self, request: _Request) -> dict[str, Any]:
        # The built-in node: Pipeline runs sit on one-off (flyweight) executors, other runs on
        # its two regular executors.
        running = [
            (job, build)
            for job in self._jobs.values()
            for build in job.builds
            if build.result is None
        ]
        flyweight = [(j, b) for j, b in running if j.config.root == "flow-definition"]
        regular = [(j, b) for j, b in running if j.config.root != "flow-definition"][:2]

        def executable(job: _Job, build: _Build) -> dict[str, Any]:
            return self._build_ref(request, job, build, False)

        executors = [
            {"_class": "hudson.model.Executor", "currentExecutable": executable(j, b)}
            for j, b in regular
        ]
        executors += [
            {"_class": "hudson.model.Executor", "currentExecutable": None}
            for _ in range(2 - len(executors))
        ]
        return {
            "_class": "hudson.model.Hudson$MasterComputer",
            "actions": [],
            "assignedLabels": [{"name": "built-in"}],
            "description": "the Jenkins controller's built-in node",
            "displayName": "Built-In Node",
            "executors": executors,
            "icon": "symbol-computer",
            "iconClassName": "symbol-computer",
            "idle": not running,
            "jnlpAgent": False,
            "launchSupported": True,
            "loadStatistics": {"_class": "hudson.model.Label$1"},
            "manualLaunchAllowed": True,
            "monitorData": {},
            "numExecutors": 2,
            "offline": False,
            "offlineCause": None,
            "offlineCauseReason": "",
            "oneOffExecutors": [
                {"_class": "hudson.model.OneOffExecutor", "currentExecutable": executable(j, b)}
                for j, b in flyweight
            ],
            "temporarilyOffline": False,
        }

    def _agent_json(self, request: _Request, node: _Node) -> dict[str, Any]:
        # A SlaveComputer whose inbound agent never connected: offline without an offline
        # cause, its executors idle. Node.getAssignedLabels is a HashSet of the label string's
        # atoms plus the node's own name.
        atoms = sorted(set(node.labels.split()))  # Label.parse: a TreeSet
        initial = max(int(len(atoms) / 0.75) + 1, 16)  # new HashSet<>(collection)
        labels = _java_hash_order([*atoms, node.name], 1 << (initial - 1).bit_length())
        return {
            "_class": "hudson.slaves.SlaveComputer",
            "actions": [],
            "assignedLabels": [{"name": label} for label in labels],
            "description": "",
            "displayName": node.name,
            "executors": [
                {"_class": "hudson.model.Executor", "currentExecutable": None}
                for _ in range(node.executors)
            ],
            "icon": "symbol-computer-offline",
            "iconClassName": "symbol-computer-offline",
            "idle": True,
            "jnlpAgent": True,
            "launchSupported": False,
            "loadStatistics": {"_class": "hudson.model.Label$1"},
            "manualLaunchAllowed": True,
            "monitorData": {},
            "numExecutors": node.executors,
            "offline": True,
            "offlineCause": None,
            "offlineCauseReason": "",
            "oneOffExecutors": [],
            "temporarilyOffline": False,
            "absoluteRemotePath": None,
        }

    def _computers_json(self, request: _Request) -> dict[str, Any]:
        # ComputerSet: computers sorted by name (the built-in node's is ""); the executor
        # counts only cover computers that are online.
        built_in = self._built_in_computer_json(request)
        busy = sum(1 for e in built_in["executors"] if e["currentExecutable"] is not None)
        computers = [built_in] + [
            self._agent_json(request, self._nodes[name]) for name in sorted(self._nodes)
        ]
        return {
            "_class": "hudson.model.ComputerSet",
            "busyExecutors": busy,
            "computer": computers,
            "displayName": "Nodes",
            "totalExecutors": 2,
        }

    def _queue_json(self, request: _Request) -> dict[str, Any]:
        return {
            "_class": "hudson.model.Queue",
            "discoverableItems": [],
            "items": [
                self._queue_item_json(request, i)
                for i in self._queue.values()
                if i.state == "waiting"
            ],
        }

    # ------------------------------------------------------------------------------------------
    # Pages and errors.

    def _page_html(self, title: str, content: str) -> bytes:
        return (
            "<!DOCTYPE html><html><head><title>"
            f'{html.escape(title)}</title></head><body><div id="main-panel">{content}'
            "</div></body></html>"
        ).encode()

    def _html_page(self, request: _Request, status: int, title: str, content: str) -> Reply:
        return Reply(
            status,
            self._page_html(title, content),
            "text/html;charset=utf-8",
            headers=self._advertise_headers(),
        )

    def _dashboard(self, request: _Request) -> Reply:
        return self._html_page(request, 200, "Dashboard [Jenkins]", "<h1>Welcome to Jenkins!</h1>")

    def _failure_page(self, request: _Request, message: str, *, status: int = 400) -> Reply:
        reply = self._html_page(
            request, status, "Jenkins", f"<h1>Error</h1><p>{html.escape(message)}</p>"
        )
        reply.headers.append(("X-Error", message))
        return reply

    def _not_found(self, request: _Request) -> Reply:
        return self._html_page(
            request, 404, "Jenkins", "<h2>Not Found</h2><p>This page may not exist.</p>"
        )

    def _method_not_allowed(self, request: _Request) -> Reply:
        reply = self._html_page(
            request,
            405,
            "Jenkins",
            "<p>This URL requires POST</p><p>The URL you're trying to access requires that "
            "requests be sent using POST (like a form submission).</p>",
        )
        return reply

    @staticmethod
    def _denied_headers(
        user: str, permission: tuple[str, str, tuple[str, ...]]
    ) -> list[tuple[str, str]]:
        # AccessDeniedException3.reportAsHeaders
        headers = [
            ("X-You-Are-Authenticated-As", user),
            ("X-You-Are-In-Group-Disabled", _GROUP_HEADERS_DISABLED),
            ("X-Required-Permission", permission[0]),
        ]
        headers += [("X-Permission-Implied-By", implied) for implied in permission[2]]
        return headers

    def _login_required(
        self,
        request: _Request,
        permission: tuple[str, str, tuple[str, ...]] = _READ_PERMISSION,
    ) -> Reply:
        # HudsonAuthenticationEntryPoint: anonymous lacks a permission.
        target = "/" + request.path + ("?" + request.query if request.query else "")
        login = html.escape(f"/login?from={quote(target, safe='')}", quote=True)
        implied = "".join(f" ... which is implied by: {p}\n" for p in permission[2])
        body = (
            f"<html><head><meta http-equiv='refresh' content='1;url={login}'/>"
            f"<script id='redirect' data-redirect-url='{login}' "
            f"src='/static/{self.session_hash}/scripts/redirect.js'></script></head>"
            "<body style='background-color:white; color:white;'>\n"
            "Authentication required\n<!--\n"
            "You are authenticated as: anonymous\nGroups that you are in:\n  anonymous\n"
            f"Permission you need to have (but didn't): {permission[0]}\n{implied}"
            "-->\n\n</body></html>" + " " * 300
        ).encode()
        headers = self._advertise_headers() + self._denied_headers("anonymous", permission)
        return Reply(403, body, "text/html;charset=utf-8", headers=headers)

    def _access_denied(
        self, request: _Request, permission: tuple[str, str, tuple[str, ...]]
    ) -> Reply:
        # AccessDeniedHandlerImpl: an authenticated user lacks a permission (accessDenied.jelly).
        message = f"{request.user} is missing the {permission[1]} permission"
        reply = self._html_page(
            request,
            403,
            "Access Denied [Jenkins]",
            f'<h1>Access Denied</h1><p class="error">{html.escape(message)}</p>',
        )
        reply.headers.extend(self._denied_headers(request.user or "anonymous", permission))
        return reply

    def _jetty_error(self, status: int, message: str, request: _Request) -> Reply:
        body = (
            "<html>\n<head>\n"
            '<meta http-equiv="Content-Type" content="text/html;charset=utf-8"/>\n'
            f"<title>Error {status} {html.escape(message)}</title>\n</head>\n"
            f"<body><h2>HTTP ERROR {status} {html.escape(message)}</h2>\n<table>\n"
            f"<tr><th>URI:</th><td>/{html.escape(request.path)}</td></tr>\n"
            f"<tr><th>STATUS:</th><td>{status}</td></tr>\n"
            f"<tr><th>MESSAGE:</th><td>{html.escape(message)}</td></tr>\n"
            "<tr><th>SERVLET:</th><td>Stapler</td></tr>\n</table>\n"
            '<hr/><a href="https://jetty.org/">Powered by Jetty:// 12.0.16</a><hr/>\n\n'
            "</body>\n</html>\n"
        )
        return Reply(status, body.encode(), "text/html;charset=utf-8")

    def _unauthorized(self, request: _Request) -> Reply:
        reply = self._jetty_error(401, "Unauthorized", request)
        reply.headers.append(("WWW-Authenticate", 'Basic realm="Jenkins"'))
        return reply

    def _oops(self, status: int, detail: str) -> Reply:
        body = self._page_html(
            "Jenkins",
            "<h1>Oops!</h1><p>A problem occurred while processing the request</p>"
            f"<p>Logging ID={secrets.token_hex(16)}</p><!-- {html.escape(detail)} -->",
        )
        return Reply(
            status,
            body,
            "text/html;charset=utf-8",
            headers=[("Cache-Control", "no-cache,must-revalidate")],
        )

    def _redirect(self, request: _Request, relative: str) -> Reply:
        return Reply(302, headers=[("Location", request.base + relative)])

    def snapshot(self) -> dict[str, Any]:
        """Jobs, builds and queue as plain data: compare two to prove nothing changed."""
        with self._lock:
            return copy.deepcopy(
                {
                    "jobs": self.jobs,
                    "builds": {
                        name: [(b.number, b.result) for b in job.builds]
                        for name, job in self._jobs.items()
                    },
                    "queue": [(i.id, i.job, i.state) for i in self._queue.values()],
                }
            )
