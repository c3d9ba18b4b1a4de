"""A test double of GitBucket 4.4x, served over real HTTP on 127.0.0.1, with real git repositories.

Behaviour follows GitBucket's own source (github.com/gitbucket/gitbucket, ``src/main/scala/
gitbucket/core``), not our client's expectations; ``tests/doubles_tests/test_gitbucket_double.py``
runs a second client (PyGithub) and real ``git push`` against it. Source facts the double keeps:

Authentication (``servlet/ApiAuthenticationFilter.scala``, ``controller/ControllerBase.scala``,
``util/Authenticator.scala``)

* ``/api/v3/*`` accepts ``Authorization: token <t>`` or ``bearer <t>`` (prefixes matched
  case-insensitively), ``Authorization: Basic ...``, an ``access_token`` parameter, or the web
  session cookie. A header that does not authenticate (wrong password, unknown token, other
  scheme) answers **401** with the literal body ``{ "message": "Bad credentials" }`` on *every*
  ``/api/v3`` path, known or not. A Basic header that does not decode to ``user:password``
  breaks the filter: 500 HTML.
* No credentials where a route needs a user: 401 ``{"message":"Requires authentication"}``.
  Unknown ``/api/v3/*`` paths (any method): 404 ``{"message":"Not Found"}`` (``ApiController``'s
  catch-all). An unhandled exception: 500 ``{"message":"Internal Server Error"}``. Outside the API,
  "not found" is an HTML page, and "unauthorized" is a bare 401 for non-browser user agents (a
  redirect to ``/signin`` or ``/`` for browsers).
* Personal access tokens exist only through the web UI; :meth:`GitBucketDouble.create_token`
  stands in for that. Over git HTTP a token also works as the password of its own user.
* An action whose JSON body does not extract yields ``None``; Scalatra 3.1's ``JValueResult``
  renders that as an **empty 200** (JSON content type, no body). A body sent without a JSON
  content type that does not parse -- an empty one included -- makes json4s throw: 500.

Anonymous access off (``allow_anonymous_access=False``; ``controller/PreProcessController.scala``,
``servlet/GitAuthenticationFilter.scala``, ``service/SystemSettingsService.scala``)

* On by default. Off, every **GET** by nobody (no session, no credentials) is refused before any
  route runs, unless its raw path starts with ``/assets``, ``/signin``, ``/register`` or
  ``/plugin-assets``, ends with ``/info/refs``, or is ``/user.css`` (bundled plug-ins could add
  paths; the double has none). Other methods are not filtered (``POST /signin`` still signs in).
  Under ``/api/v3/`` the refusal is 401 ``{"message":"Requires authentication"}`` -- for public
  repositories, ``/api/v3/users`` and unknown paths alike; the API root ``/api/v3`` is outside
  ``/api/v3/*``, so it gets the web answer: a bare 401 for non-browsers (``/signout`` and ``/``
  too), a redirect to ``/signin?redirect=...`` for browsers. Bad credentials still answer "Bad
  credentials" first; any valid credentials read as before.
* Git HTTP: a fetch of a public repository then needs Basic credentials of *any* user (a
  private one still needs a role, below); without them 401 and the ``BASIC`` challenge.

Changing the ``root`` password (``controller/api/ApiUserControllerBase.scala``,
``controller/AccountController.scala``, ``controller/IndexController.scala``,
``controller/ValidationSupport.scala``)

* There is **no API** for it: the user API has ``GET /api/v3/user``, ``PATCH /api/v3/user``
  (changes ``email`` only; a ``password`` field is ignored), ``GET /api/v3/users[/:name]``,
  ``POST /api/v3/admin/users`` (create, admin only) and suspend/unsuspend. ``PATCH
  /api/v3/admin/users/root`` and the like fall into the catch-all: 404 JSON.
* The way that exists is the web form: ``POST /signin`` (form ``userName``, ``password``; both
  trimmed) sets the ``JSESSIONID`` session and answers 302 to ``/`` (a failure answers 302 to
  ``/signin`` and logs nobody in); then ``POST /root/_edit`` with that cookie and the form
  ``password``, ``fullName`` (required), ``mailAddress`` (required, unique), optional
  ``description``, ``url``, answers 302 to ``/root/_edit``. The form is validated **before** the
  session is checked: a failed validation answers 400 with an empty body. ``password`` is
  optional (empty keeps the old one) and has ``maxlength(20)``: **a longer password answers 400
  and changes nothing**. Without a session a non-browser client gets a bare 401. An admin may also
  use ``POST /admin/users/:name/_edituser`` (``userName``, ``password``, ``fullName``,
  ``mailAddress``, ``isAdmin`` ...); that form sets ``isAdmin`` from the form, so leaving it out
  demotes the account (``controller/SystemSettingsController.scala`` in 4.46; the route is
  ``:name`` but the code reads ``params("userName")``, so the double edits the account named by
  the form's ``userName``, as that code does).

Organisations and repositories (``controller/api/ApiOrganizationControllerBase.scala``,
``ApiRepositoryControllerBase.scala``, ``api/CreateAGroup.scala``, ``api/CreateARepository.scala``)

* ``POST /api/v3/admin/organizations`` (admin only) takes ``login``, ``admin`` (required: the
  first manager), ``profile_name`` (stored as the description) and ``url``; 200 with the group
  JSON. A body that does not extract answers an empty 200 and creates nothing. There is no
  duplicate check: an existing name breaks the insert, 500. ``GET /api/v3/orgs/:org`` answers
  the group or 404. There is no API for members: :meth:`GitBucketDouble.add_member` stands in
  for the web UI's group form.
* ``POST /api/v3/user/repos`` and ``POST /api/v3/orgs/:org/repos`` answer **200** (not 201). A
  duplicate name also answers **200**, with ``{"message":"A repository with this name already
  exists on this account"`` (``... for this group`` for organisations) ``,"documentation_url":
  "https://developer.github.com/v3/repos/#create"}``. A body it cannot read, or a name outside
  ``[a-zA-Z0-9\\-+_.]+`` (or starting with ``_``/``-``, or over 100 characters), answers 404 JSON.
  A user who may not create in the organisation gets 403 (empty). ``auto_init`` commits a
  README.md ("Initial commit") to the default branch, ``main``.
* ``GET /api/v3/repos/:o/:r``: the repository, 404 JSON when missing, 401 when private and not
  readable. ``clone_url`` is ``<base>/git/<owner>/<repo>.git``; the base URL comes from the
  request's Host unless GitBucket's base URL is set (``base_url=`` here). With SSH off (the
  default) ``ssh_url`` is absent.

Users (``controller/api/ApiUserControllerBase.scala``, ``api/CreateAUser.scala``,
``api/ApiUser.scala``, ``service/AccountService.scala``, ``update/gitbucket-core_4.0.xml``)

* ``POST /api/v3/admin/users`` (admin only; others and nobody 401 "Requires authentication")
  takes ``login``, ``password``, ``email`` (required) and optional ``fullName`` (default: the
  login), ``isAdmin`` (default false), ``description``, ``url``; 200 with the user JSON. The
  password is stored hashed (PBKDF2) with no length check -- the web form's 20-character cap does
  not apply -- and works at once for the API and git. A missing required field: empty 200. A
  name or a mail address already in ``ACCOUNT`` (primary key, unique ``MAIL_ADDRESS``): 500.
* User JSON (``ApiUser``, serialised with all its fields): ``login``, ``email``, ``type``,
  ``site_admin``, ``created_at``, ``id`` (always 0), ``url``, ``html_url``, ``avatar_url``.
* Removing a user through the admin form also deletes its group memberships and collaborator
  rows (``removeUserRelatedData``).

Collaborators and access (``controller/api/ApiRepositoryCollaboratorControllerBase.scala``,
``api/AddACollaborator.scala``, ``api/ApiRepositoryCollaborator.scala``,
``service/RepositoryService.scala``, ``util/Authenticator.scala``, ``model/Collaborator.scala``)

* ``PUT .../collaborators/:user`` (``ownerOnly``: admin, owner, a *manager* of the owning group,
  or an ``admin`` collaborator; anyone else, signed in or not, 401 "Requires authentication";
  unknown repository 404) reads ``{"permission": "pull"|"push"|"admin"}``, stored as the role
  ``GUEST``/``DEVELOPER``/``ADMIN``, and answers **204** with no body. It is a plain insert: a
  user who already collaborates (whatever the permission) breaks the primary key, **500**, and
  keeps the old role; an unknown user breaks the foreign key, 500; no body (without a JSON
  content type) 500; a body without ``permission`` or with another value (``maintain``,
  ``triage``, ``write``, ``PULL``) does not extract: **empty 200, nothing stored**. The name may
  be a group: its members then collaborate with the group's role.
* ``DELETE .../collaborators/:user`` (``ownerOnly``) answers 204, collaborator or not.
* ``GET .../collaborators`` (``referrersOnly``: the repository must be readable, else 401; 404
  when unknown) lists the user JSON of every user collaborator and every member of a group
  collaborator -- never the owner, never the group itself (SQL UNION without ORDER BY; the double
  sorts by name). ``GET .../collaborators/:user``: 204 when that (not removed) user is in that
  list, else 404 JSON. ``GET .../collaborators/:user/permission``: 200
  ``{"permission": "<ROLE>", "user": {...}}`` with the stored role name (``GUEST``, not GitHub's
  ``read``; no ``role_name``) for a direct row only (a group's own name works, its members do
  not), else 404.
* Reading a private repository (API ``referrersOnly``, git fetch ``hasGuestRole``): admin, owner,
  any member of the owning group, any collaborator. Writing (git push ``hasDeveloperRole``, hook
  changes ``writableUsersOnly``): the same without ``pull`` collaborators. Hooks are *listed*
  with ``referrersOnly``. A signed-in user without the role gets what nobody gets: 401 (API
  JSON, git 401 + challenge), never 403 or 404. ``/api/v3/users/:name/repos`` shows private
  repositories the caller may read, collaborators included.

Web hooks (``controller/api/ApiRepositoryWebhookControllerBase.scala``,
``api/CreateARepositoryWebhook.scala``, ``api/ApiWebhook.scala``, ``model/WebHook.scala``)

* ``POST .../hooks``: ``config.url`` required, ``config.content_type`` ``form`` (the default) or
  ``json`` (anything else: 404), ``config.secret`` optional, ``events`` default ``["push"]``;
  ``name`` and ``active`` are read and ignored. An event name outside GitBucket's list answers
  **500** and creates nothing. A second hook with the same URL on the repository breaks a unique
  index: 500. The answer is 200 with the hook; its ``name`` is always ``"web"``, ``active``
  always true, ``config`` carries only ``content_type`` and ``url`` (never the secret), and its
  ``url`` is ``<base>/api/v3/<owner>/<repo>/hooks/<id>`` -- **without** ``repos/``, so clients
  that follow it (PyGithub's ``Hook.edit``/``Hook.delete``) hit the catch-all 404.
* ``GET .../hooks`` lists hooks sorted by URL; ``GET/PATCH/DELETE .../hooks/:id`` look the id up
  across all repositories. ``PATCH`` reads the same body as create plus ``add_events`` and
  ``remove_events``; ``events`` defaults to ``["push"]`` again, a missing ``content_type``
  turns the hook into a form hook and a missing ``secret`` clears it; 200 with the hook. ``DELETE``
  answers 204, or 404 JSON. A hook left without events drops out of every listing and lookup.

Git over HTTP and deliveries (``servlet/GitAuthenticationFilter.scala``,
``servlet/GitRepositoryServlet.scala`` ``CommitLogHook``, ``service/WebHookService.scala``,
``api/ApiCommit.scala``, ``api/ApiPusher.scala``, ``util/AuthUtil.scala``)

* ``/git/<owner>/<repo>.git``: a push (``git-receive-pack``, also its ``info/refs``
  advertisement) needs Basic credentials of a user with the developer role (admin, owner,
  organisation member, ``push``/``admin`` collaborator); a private fetch needs the guest role
  (any collaborator too). Every refusal -- no credentials, wrong ones, a ``pull`` collaborator
  pushing, a stranger -- is 401 ``WWW-Authenticate: BASIC realm="GitBucket"`` (GitBucket spells
  ``BASIC``), which git reports as "Authentication failed". Public repositories can be fetched
  anonymously while anonymous access is on. An unknown repository answers 404 before any
  authentication.
* After a push GitBucket runs, for every updated ref in order: a ``push`` delivery (also for tags
  and deletions), then a ``create`` delivery when the ref was created. There is no ``ping``, and
  no ``delete`` delivery even for a hook subscribed to ``delete``.
* Deleting a branch or a tag sends that one ``push``: ``before`` is the old id (for an annotated
  tag, the tag object's), ``after`` 40 zeros, ``commits: []``, no ``head_commit``, ``compare``
  the repository's page; the payload has no ``created``/``deleted``/``forced`` fields at all.
  ``ref`` is the full ref name (``refs/tags/v1``) in both; ``create`` has ``ref_type``
  (``branch``/``tag``), ``master_branch``, ``description`` and ``pusher_type: "user"``.
* ``commits`` (oldest first) holds only commits that were on no branch before the push: the
  log from ``after`` back to ``before`` is taken oldest first and cut at the first commit that
  some branch already had. So the first push of a new branch forked from an existing one carries
  ``commits: []``, and so do tags and deletions (then ``head_commit`` is absent). The list is
  computed per push, and the last ref of the push wins (a GitBucket quirk).
* Each commit: ``id``, ``message`` (the raw message, trailing newline included), ``timestamp``
  (committer time), ``added``/``removed``/``modified`` (against the first parent),
  ``author``/``committer`` ``{name,email,date}``, ``url`` (``<base>/api/v3/<owner>/<repo>/commits/
  <id>``, again without ``repos/``) and ``html_url``. The push payload is ``pusher {name,email}``,
  ``sender``, ``ref``, ``before``, ``after``, ``commits``, ``repository``, ``compare``,
  ``head_commit``. Dates are UTC ``yyyy-MM-ddTHH:mm:ssZ``. JSON is written compactly.
* Headers: ``Content-Type`` (``application/json`` or ``application/x-www-form-urlencoded``),
  ``X-Github-Event``, ``X-Github-Delivery`` (a UUID) and, only when the secret is not blank,
  ``X-Hub-Signature: sha1=<hex>`` and ``X-Hub-Signature-256: sha256=<hex>``, HMACs of the exact
  body bytes. A form body is ``payload=<JSON>`` encoded like Apache's ``URLEncodedUtils`` (space
  as ``+``, only ``A-Za-z0-9_-.*`` left bare). Deliveries run asynchronously; a failed one is only
  logged. Pushing a first branch other than ``main`` into an empty repository makes it the
  default branch.

Not modelled: LDAP/OIDC, issues and pull requests, account-level hooks, wikis, LFS, SSH, the
suspend/unsuspend API, group member management (see :meth:`GitBucketDouble.add_member`), the web
pages themselves (they answer a small placeholder page), private-address blocking of hook URLs
(off by default in GitBucket). Where the source did not settle an answer (``PATCH`` of an unknown
hook id), the double answers 200 with an empty body and says so here.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import re
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

from .gitbucket_http import (
    _ADD_COLLABORATOR,
    _CREATE_GROUP,
    _CREATE_HOOK,
    _CREATE_REPO,
    _CREATE_USER,
    _UPDATE_HOOK,
    _api_empty,
    _api_error,
    _api_json,
    _call_kind,
    _compare_url,
    _container_error,
    _extract,
    _git_env,
    _html,
    _is_browser,
    _open_to_anonymous,
    _parse_receive_commands,
    _unquote,
)
from .gitbucket_model import (
    _ANY_ROLE,
    _DELIVERY_USER_AGENT,
    _HTML_TYPE,
    _JSON_TYPE,
    _REPO_NAME,
    _WRITE_ROLES,
    COLLABORATOR_ROLES,
    DEFAULT_BRANCH,
    DEFAULT_ROOT_PASSWORD,
    ROOT_USER,
    WEBHOOK_EVENTS,
    ZERO_ID,
    Delivery,
    Hook,
    Repo,
    RequestRecord,
    _Account,
    _BadCredentials,
    _Command,
    _Fault,
    _FilterBroke,
    _form_encode,
    _Invalid,
    _iso,
    _Request,
    _ServerError,
)
from .server import (
    HttpDouble,
    Incoming,
    Reply,
    Wire,
    basic_credentials,
    json_bytes,
    media_type,
)

__all__ = [
    "COLLABORATOR_ROLES",
    "DEFAULT_BRANCH",
    "DEFAULT_ROOT_PASSWORD",
    "ROOT_USER",
    "WEBHOOK_EVENTS",
    "ZERO_ID",
    "Delivery",
    "GitBucketDouble",
    "Hook",
    "Repo",
    "RequestRecord",
]

Route = tuple[str, re.Pattern[str], Callable[..., Reply]]


class GitBucketDouble(HttpDouble):
    """GitBucket's API v3, sign-in form and git smart HTTP, with real web hook deliveries.

    ``start()`` binds 127.0.0.1 (a free port unless ``port`` is given) and returns the base URL
    (also :attr:`url`). The first user is ``root``/``root``, an administrator, as in a fresh
    GitBucket. Repositories are bare git directories under a temporary folder, served through
    ``git http-backend``; after each push the double POSTs the ``push``/``create`` payloads to the
    matching hooks and records them in :attr:`deliveries`.
    """

    product = "GitBucket"
    wire = Wire("Jetty(10.0.x)", chunked_requests=True, record_handler_errors=False)

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        base_url: str | None = None,
        allow_anonymous_access: bool = True,
        delivery_timeout: float = 10.0,
    ) -> None:
        super().__init__(host=host, port=port)
        self.host = host
        self.port = port
        self.base_url = base_url.rstrip("/") if base_url else None
        self.allow_anonymous_access = allow_anonymous_access
        self.delivery_timeout = delivery_timeout
        self.calls: Counter[str] = Counter()
        self.requests: list[RequestRecord] = []
        self.errors: list[str] = []
        self._accounts: dict[str, _Account] = {}
        self._repos: dict[tuple[str, str], Repo] = {}
        self._hooks: dict[int, Hook] = {}
        # (owner, repo) -> collaborator (user or group) -> role, as the COLLABORATOR table
        self._collaborators: dict[tuple[str, str], dict[str, str]] = {}
        self._tokens: dict[str, str] = {}
        self._sessions: dict[str, str | None] = {}
        self._deliveries: list[Delivery] = []
        self._delivered = threading.Condition(self._lock)
        self._faults: list[_Fault] = []
        self._repo_locks: dict[tuple[str, str], threading.Lock] = {}
        self._workers: list[threading.Thread] = []
        self._next_hook_id = 1
        self._next_repo_id = 1
        self._tmp: Path | None = None
        self._git = shutil.which("git") or "git"
        self._add_account(
            _Account(
                name=ROOT_USER,
                password=DEFAULT_ROOT_PASSWORD,
                email="root@localhost",
                full_name=ROOT_USER,
                is_admin=True,
                is_group=False,
                created_at=datetime.now(UTC).replace(microsecond=0),
                url="https://github.com/gitbucket/gitbucket",
            )
        )
        self._api_routes: list[Route] = self._build_api_routes()

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> str:
        """Start serving (again a no-op while running); return the base URL."""
        if self.running:
            return self.url
        self._tmp = Path(tempfile.mkdtemp(prefix="gitbucket-double-"))
        (self._tmp / "repositories").mkdir()
        url = super().start()
        self.port = int(url.rpartition(":")[2])
        return url

    def stop(self) -> None:
        """Stop serving, wait for running hook deliveries, remove the repositories."""
        super().stop()
        for worker in list(self._workers):
            worker.join(timeout=self.delivery_timeout + 1)
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    @property
    def url(self) -> str:
        """The base URL once started, ``""`` before."""
        return self._url or ""

    def _handle(self, incoming: Incoming) -> Reply:
        return self._dispatch(
            _Request(
                method=incoming.method,
                path=incoming.path or "/",
                query=incoming.query,
                headers=incoming.headers,
                body=incoming.body,
                client=incoming.client,
                host=incoming.host,
            )
        )

    # -- state for tests -----------------------------------------------------------------------

    @property
    def users(self) -> dict[str, str]:
        """User name -> current password (users only, not organisations)."""
        with self._lock:
            return {
                a.name: a.password or ""
                for a in self._accounts.values()
                if not a.is_group and not a.removed
            }

    @property
    def orgs(self) -> dict[str, dict[str, bool]]:
        """Organisation name -> {member: is_manager}."""
        with self._lock:
            return {a.name: dict(a.members) for a in self._accounts.values() if a.is_group}

    @property
    def repos(self) -> dict[str, Repo]:
        """``owner/name`` -> :class:`Repo`."""
        with self._lock:
            return {r.full_name: r for r in self._repos.values()}

    @property
    def hooks(self) -> list[Hook]:
        """Every repository hook, in creation order (copies)."""
        with self._lock:
            return [
                Hook(h.id, h.owner, h.repo, h.url, h.content_type, h.secret, list(h.events))
                for h in sorted(self._hooks.values(), key=lambda h: h.id)
            ]

    @property
    def collaborators(self) -> dict[str, dict[str, str]]:
        """``owner/name`` -> {collaborator: role}, roles as GitBucket stores them (``ADMIN``,
        ``DEVELOPER``, ``GUEST`` for the API's ``admin``, ``push``, ``pull``); only repositories
        that have collaborators appear."""
        with self._lock:
            return {f"{o}/{r}": dict(rows) for (o, r), rows in self._collaborators.items() if rows}

    @property
    def deliveries(self) -> list[Delivery]:
        with self._lock:
            return list(self._deliveries)

    def default_password_in_use(self) -> bool:
        with self._lock:
            return self._accounts[ROOT_USER].password == DEFAULT_ROOT_PASSWORD

    def add_user(
        self, name: str, password: str, *, admin: bool = False, email: str | None = None
    ) -> None:
        """Create a user as an administrator would."""
        with self._lock:
            if name in self._accounts:
                raise ValueError(f"account {name!r} exists")
            self._add_account(
                _Account(
                    name=name,
                    password=password,
                    email=email or f"{name}@example.com",
                    full_name=name,
                    is_admin=admin,
                    is_group=False,
                    created_at=datetime.now(UTC).replace(microsecond=0),
                )
            )

    def add_member(self, group: str, user: str, *, manager: bool = False) -> None:
        """Make ``user`` a member (or a manager) of the organisation ``group``, as a group manager
        would in the web UI: GitBucket has no API for group members."""
        with self._lock:
            account = self._accounts.get(group)
            member = self._accounts.get(user)
            if account is None or not account.is_group:
                raise KeyError(group)
            if member is None or member.is_group:
                raise KeyError(user)
            account.members[user] = manager

    def create_token(self, user: str = ROOT_USER) -> str:
        """A personal access token for ``user`` (GitBucket only makes them in the web UI)."""
        with self._lock:
            if user not in self._accounts or self._accounts[user].is_group:
                raise KeyError(user)
            token = hashlib.sha1(secrets.token_bytes(32)).hexdigest()
            self._tokens[token] = user
            return token

    def fail_next(
        self, path: str, count: int = 1, *, status: int = 500, method: str | None = None
    ) -> None:
        """Answer the next ``count`` requests to ``path`` (a trailing ``*`` matches a prefix)
        with ``status`` and GitBucket's error body for that kind of path."""
        with self._lock:
            self._faults.append(_Fault(path, method and method.upper(), count, status, 0.0))

    def hang_next(
        self, path: str, seconds: float, count: int = 1, *, method: str | None = None
    ) -> None:
        """Hold the next ``count`` requests to ``path`` for ``seconds``, then serve them."""
        with self._lock:
            self._faults.append(_Fault(path, method and method.upper(), count, None, seconds))

    def wait_for_deliveries(self, count: int, timeout: float = 10.0) -> list[Delivery]:
        """Block until at least ``count`` deliveries are recorded; return them all."""
        deadline = time.monotonic() + timeout
        with self._delivered:
            while len(self._deliveries) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"{len(self._deliveries)} deliveries after {timeout}s, wanted {count}"
                    )
                self._delivered.wait(left)
            return list(self._deliveries)

    def settle_deliveries(self, timeout: float = 10.0) -> list[Delivery]:
        """Wait until every delivery already queued (by pushes that have been answered) has been
        made; return all deliveries. Use it to prove that an event was *not* sent."""
        deadline = time.monotonic() + timeout
        with self._lock:
            workers = list(self._workers)
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))
            if worker.is_alive():
                raise TimeoutError(f"deliveries still running after {timeout}s")
        return self.deliveries

    # -- request dispatch ----------------------------------------------------------------------

    def _dispatch(self, request: _Request) -> Reply:
        kind = _call_kind(request.method, request.path)
        with self._lock:
            if kind:
                self.calls[kind] += 1
            fault = self._take_fault(request)
        user: str | None = None
        try:
            if fault is not None and fault.hang:
                time.sleep(fault.hang)
            if fault is not None and fault.status is not None:
                response = self._fault_response(request, fault.status)
            elif request.path.startswith("/git/"):
                response, user = self._serve_git(request)
            elif request.path == "/api/v3" or request.path.startswith("/api/v3/"):
                response, user = self._serve_api(request)
            else:
                response, user = self._serve_web(request)
        except _FilterBroke:
            response = _container_error(500, "Server Error")
        except Exception:  # a bug in the double: answer like GitBucket's error handler
            with self._lock:
                self.errors.append(traceback.format_exc())
            response = self._fault_response(request, 500)
        with self._lock:
            self.requests.append(RequestRecord(request.method, request.path, response.status, user))
        return response

    def _take_fault(self, request: _Request) -> _Fault | None:
        for fault in self._faults:
            if fault.remaining <= 0:
                continue
            if fault.method and fault.method != request.method:
                continue
            if fault.path.endswith("*"):
                matched = request.path.startswith(fault.path[:-1])
            else:
                matched = request.path == fault.path
            if matched:
                fault.remaining -= 1
                return fault
        return None

    @staticmethod
    def _fault_response(request: _Request, status: int) -> Reply:
        reason = http.client.responses.get(status, "Error")
        if request.path.startswith("/api/v3"):
            return _api_error(status, reason)
        if request.path.startswith("/git/"):
            return _container_error(status, reason)
        return _html(status, reason)

    def _base(self, request: _Request) -> str:
        return self.base_url or f"http://{request.host}"

    # -- accounts ------------------------------------------------------------------------------

    def _add_account(self, account: _Account) -> None:
        self._accounts[account.name] = account

    def _authenticate(self, name: str, password: str) -> _Account | None:
        with self._lock:
            account = self._accounts.get(name)
            if account is None or account.is_group or account.removed:
                return None
            if account.password is None or not hmac.compare_digest(
                account.password.encode(), password.encode()
            ):
                return None
            return account

    def _token_account(self, token: str) -> _Account | None:
        with self._lock:
            name = self._tokens.get(token)
            account = self._accounts.get(name) if name else None
            return None if account is None or account.removed else account

    def _session_account(self, request: _Request) -> _Account | None:
        sid = request.cookie("JSESSIONID")
        with self._lock:
            name = self._sessions.get(sid) if sid else None
            return self._accounts.get(name) if name else None

    @staticmethod
    def _decode_basic(header: str) -> tuple[str, str] | None:
        try:
            return basic_credentials(header[6:].strip())
        except ValueError:  # not ASCII
            return None

    def _is_member(self, group: str, user: _Account) -> bool:
        account = self._accounts.get(group)
        return bool(account and account.is_group and user.name in account.members)

    def _collaborator_rows(self, repo: Repo) -> list[tuple[str, str]]:
        """``RepositoryService.getCollaboratorUserNames``: (user, role) for every user collaborator
        and for every member of a group collaborator, without duplicate pairs. GitBucket's UNION
        has no ORDER BY; the double sorts by name."""
        rows: set[tuple[str, str]] = set()
        for name, role in self._collaborators.get((repo.owner, repo.name), {}).items():
            account = self._accounts.get(name)
            if account is None:
                continue
            if account.is_group:
                rows.update((member, role) for member in account.members)
            else:
                rows.add((name, role))
        return sorted(rows)

    def _collaborates(self, repo: Repo, account: _Account, roles: frozenset[str]) -> bool:
        return any(n == account.name and r in roles for n, r in self._collaborator_rows(repo))

    def _has_role(self, repo: Repo, account: _Account | None, roles: frozenset[str]) -> bool:
        """``hasGuestRole`` / ``hasDeveloperRole`` (and ``isReadable`` / ``isWritable``)."""
        return account is not None and (
            account.is_admin
            or account.name == repo.owner
            or self._is_member(repo.owner, account)
            or self._collaborates(repo, account, roles)
        )

    def _readable(self, repo: Repo, account: _Account | None) -> bool:
        return not repo.private or self._has_role(repo, account, _ANY_ROLE)

    def _writable(self, repo: Repo, account: _Account | None) -> bool:
        return self._has_role(repo, account, _WRITE_ROLES)

    def _manages(self, repo: Repo, account: _Account | None) -> bool:
        """``OwnerAuthenticator``: admin, owner, a *manager* of the owning group, or an ``ADMIN``
        collaborator."""
        if account is None:
            return False
        group = self._accounts.get(repo.owner)
        return (
            account.is_admin
            or account.name == repo.owner
            or bool(group and group.is_group and group.members.get(account.name))
            or self._collaborates(repo, account, frozenset({"ADMIN"}))
        )

    # -- JSON shapes (core/api/*.scala) --------------------------------------------------------

    def _user_json(self, account: _Account, base: str) -> dict[str, Any]:
        return {
            "login": account.name,
            "email": account.email,
            "type": "Organization" if account.is_group else "User",
            "site_admin": account.is_admin,
            "created_at": _iso(account.created_at),
            "id": 0,
            "url": f"{base}/api/v3/users/{account.name}",
            "html_url": f"{base}/{account.name}",
            "avatar_url": f"{base}/{account.name}/_avatar",
        }

    def _group_json(self, account: _Account, base: str) -> dict[str, Any]:
        body: dict[str, Any] = {"login": account.name}
        if account.description is not None:
            body["description"] = account.description
        body.update(
            created_at=_iso(account.created_at),
            id=0,
            url=f"{base}/api/v3/orgs/{account.name}",
            html_url=f"{base}/{account.name}",
            avatar_url=f"{base}/{account.name}/_avatar",
        )
        return body

    def _repo_json(self, repo: Repo, base: str) -> dict[str, Any]:
        owner = self._accounts[repo.owner]
        return {
            "id": repo.id,
            "name": repo.name,
            "full_name": repo.full_name,
            "description": repo.description or "",
            "watchers": 0,
            "forks": 0,
            "private": repo.private,
            "default_branch": repo.default_branch,
            "owner": self._user_json(owner, base),
            "has_issues": True,
            "forks_count": 0,
            "watchers_count": 0,
            "url": f"{base}/api/v3/repos/{repo.full_name}",
            "clone_url": f"{base}/git/{repo.full_name}.git",
            "html_url": f"{base}/{repo.full_name}",
        }

    @staticmethod
    def _hook_json(hook: Hook, base: str) -> dict[str, Any]:
        return {
            "type": "Repository",
            "id": hook.id,
            "name": "web",
            "active": True,
            "events": sorted(hook.events),
            "config": {"content_type": hook.content_type, "url": hook.url},
            "url": f"{base}/api/v3/{hook.owner}/{hook.repo}/hooks/{hook.id}",
        }

    # -- API -----------------------------------------------------------------------------------

    def _build_api_routes(self) -> list[Route]:
        seg = r"([^/]+)"
        repo = rf"/api/v3/repos/{seg}/{seg}"
        table: list[tuple[str, str, Callable[..., Reply]]] = [
            ("GET", r"/api/v3", self._api_root),
            ("GET", r"/api/v3/rate_limit", self._api_rate_limit),
            ("GET", r"/api/v3/user", self._api_get_user),
            ("PATCH", r"/api/v3/user", self._api_patch_user),
            ("GET", r"/api/v3/users", self._api_list_users),
            ("GET", rf"/api/v3/users/{seg}", self._api_get_account),
            ("POST", r"/api/v3/admin/users", self._api_create_user),
            ("GET", r"/api/v3/user/orgs", self._api_my_orgs),
            ("GET", r"/api/v3/organizations", self._api_all_orgs),
            ("GET", rf"/api/v3/users/{seg}/orgs", self._api_user_orgs),
            ("GET", rf"/api/v3/orgs/{seg}", self._api_get_org),
            ("POST", r"/api/v3/admin/organizations", self._api_create_org),
            ("GET", r"/api/v3/user/repos", self._api_my_repos),
            ("POST", r"/api/v3/user/repos", self._api_create_user_repo),
            ("GET", rf"/api/v3/users/{seg}/repos", self._api_owner_repos),
            ("GET", rf"/api/v3/orgs/{seg}/repos", self._api_owner_repos),
            ("POST", rf"/api/v3/orgs/{seg}/repos", self._api_create_org_repo),
            ("GET", repo, self._api_get_repo),
            ("GET", rf"{repo}/branches", self._api_branches),
            ("GET", rf"{repo}/hooks", self._api_list_hooks),
            ("POST", rf"{repo}/hooks", self._api_create_hook),
            ("GET", rf"{repo}/hooks/{seg}", self._api_get_hook),
            ("PATCH", rf"{repo}/hooks/{seg}", self._api_update_hook),
            ("DELETE", rf"{repo}/hooks/{seg}", self._api_delete_hook),
            ("GET", rf"{repo}/collaborators", self._api_list_collaborators),
            ("GET", rf"{repo}/collaborators/{seg}", self._api_is_collaborator),
            ("GET", rf"{repo}/collaborators/{seg}/permission", self._api_collaborator_permission),
            ("PUT", rf"{repo}/collaborators/{seg}", self._api_add_collaborator),
            ("DELETE", rf"{repo}/collaborators/{seg}", self._api_remove_collaborator),
        ]
        return [(method, re.compile(pattern), handler) for method, pattern, handler in table]

    def _serve_api(self, request: _Request) -> tuple[Reply, str | None]:
        try:
            account = self._api_login(request)
        except _BadCredentials:
            body = b'{ "message": "Bad credentials" }'
            return Reply(
                401, body, headers=[("Content-Type", "application/json; charset=utf-8")]
            ), None
        path = request.path
        if path != "/" and path.endswith("/"):
            path = path[:-1]
        if self._anonymous_refused(request, account):
            # PreProcessController answers before any API route; only "/api/v3/*" carries the
            # API marker (set by ControllerBase's before filter), so the bare root gets the web
            # answer.
            if path.startswith("/api/v3/"):
                return self._unauthorized(), None
            return self._web_unauthorized(request, None), None
        base = self._base(request)
        user = account.name if account else None
        for method, pattern, handler in self._api_routes:
            match = pattern.fullmatch(path)
            if method == request.method and match:
                args = [_unquote(g) for g in match.groups()]
                try:
                    with self._lock:
                        return handler(request, account, base, *args), user
                except _ServerError:
                    return _api_error(500, "Internal Server Error"), user
        return _api_error(404, "Not Found"), user

    def _api_login(self, request: _Request) -> _Account | None:
        header = request.headers.get("Authorization")
        if header is not None:
            if header.lower().startswith(("token ", "bearer ")):
                account = self._token_account(header[header.index(" ") + 1 :].strip())
            elif header.startswith("Basic "):
                pair = self._decode_basic(header)
                if pair is None:
                    raise _FilterBroke
                account = self._authenticate(*pair)
            else:
                account = None
            if account is None:
                raise _BadCredentials
            return account
        token = request.params.get("access_token")
        if token is not None:
            account = self._token_account(token)
            if account is None:
                raise _BadCredentials
            return account
        return self._session_account(request)

    @staticmethod
    def _json_body(request: _Request) -> Any:
        """``ControllerBase.extractFromJsonBody`` before the case-class extraction."""
        ctype = media_type(request.headers.get("Content-Type"))
        text = request.body.decode("utf-8", "replace")
        if ctype == "application/x-www-form-urlencoded":
            pairs = parse_qsl(text, keep_blank_values=True)
            if not pairs:
                return None
            try:
                return json.loads(pairs[0][0])
            except ValueError as exc:
                raise _ServerError from exc
        if ctype == "application/json":
            try:
                return json.loads(text)
            except ValueError:
                return None
        try:
            return json.loads(text)
        except ValueError as exc:
            raise _ServerError from exc

    def _unauthorized(self) -> Reply:
        return _api_error(401, "Requires authentication")

    def _anonymous_refused(self, request: _Request, account: _Account | None) -> bool:
        """PreProcessController: with anonymous access off, a GET (any other method passes) by
        nobody is refused unless its raw path is one of the few left open."""
        return (
            not self.allow_anonymous_access
            and account is None
            and request.method == "GET"
            and not _open_to_anonymous(request.path)
        )

    def _api_root(self, request: _Request, account: _Account | None, base: str) -> Reply:
        return _api_json(200, {"rate_limit_url": f"{base}/api/v3/rate_limit"})

    def _api_rate_limit(self, request: _Request, account: _Account | None, base: str) -> Reply:
        return _api_error(404, "Rate limiting is not enabled.")

    def _api_get_user(self, request: _Request, account: _Account | None, base: str) -> Reply:
        if account is None:
            return self._unauthorized()
        return _api_json(200, self._user_json(account, base))

    def _api_patch_user(self, request: _Request, account: _Account | None, base: str) -> Reply:
        if account is None:
            return self._unauthorized()
        data = self._json_body(request)
        if not isinstance(data, dict):
            return _api_empty(200)
        email = data.get("email")
        if isinstance(email, str):
            account.email = email
        return _api_json(200, self._user_json(account, base))

    def _api_list_users(self, request: _Request, account: _Account | None, base: str) -> Reply:
        accounts = [a for a in self._accounts.values() if not a.is_group and not a.removed]
        return _api_json(200, [self._user_json(a, base) for a in accounts])

    def _api_get_account(
        self, request: _Request, account: _Account | None, base: str, name: str
    ) -> Reply:
        found = self._accounts.get(name)
        if found is None or found.removed:
            return _api_error(404, "Not Found")
        return _api_json(200, self._user_json(found, base))

    def _api_create_user(self, request: _Request, account: _Account | None, base: str) -> Reply:
        if account is None or not account.is_admin:
            return self._unauthorized()
        try:
            data = _extract(self._json_body(request), _CREATE_USER)
        except _Invalid:
            return _api_empty(200)
        if data["login"] in self._accounts or self._mail_taken(data["email"], None):
            raise _ServerError  # ACCOUNT's primary key (USER_NAME), unique MAIL_ADDRESS
        created = _Account(
            name=data["login"],
            password=data["password"],
            email=data["email"],
            full_name=data["fullName"] or data["login"],
            is_admin=bool(data["isAdmin"]),
            is_group=False,
            created_at=datetime.now(UTC).replace(microsecond=0),
            description=data["description"],
            url=data["url"],
        )
        self._add_account(created)
        return _api_json(200, self._user_json(created, base))

    def _groups_of(self, user: str) -> list[_Account]:
        return [a for a in self._accounts.values() if a.is_group and user in a.members]

    def _api_my_orgs(self, request: _Request, account: _Account | None, base: str) -> Reply:
        if account is None:
            return self._unauthorized()
        return _api_json(200, [self._group_json(g, base) for g in self._groups_of(account.name)])

    def _api_all_orgs(self, request: _Request, account: _Account | None, base: str) -> Reply:
        groups = [a for a in self._accounts.values() if a.is_group]
        return _api_json(200, [self._group_json(g, base) for g in groups])

    def _api_user_orgs(
        self, request: _Request, account: _Account | None, base: str, name: str
    ) -> Reply:
        return _api_json(200, [self._group_json(g, base) for g in self._groups_of(name)])

    def _api_get_org(
        self, request: _Request, account: _Account | None, base: str, name: str
    ) -> Reply:
        group = self._accounts.get(name)
        if group is None or not group.is_group:
            return _api_error(404, "Not Found")
        return _api_json(200, self._group_json(group, base))

    def _api_create_org(self, request: _Request, account: _Account | None, base: str) -> Reply:
        if account is None or not account.is_admin:
            return self._unauthorized()
        try:
            data = _extract(self._json_body(request), _CREATE_GROUP)
        except _Invalid:
            return _api_empty(200)
        admin = self._accounts.get(data["admin"])
        if data["login"] in self._accounts or admin is None or admin.is_group:
            raise _ServerError  # primary key / foreign key violation
        group = _Account(
            name=data["login"],
            password=None,
            email=f"{data['login']}@devnull",
            full_name=data["login"],
            is_admin=False,
            is_group=True,
            created_at=datetime.now(UTC).replace(microsecond=0),
            description=data["profile_name"],
            url=data["url"],
            members={data["admin"]: True},
        )
        self._add_account(group)
        return _api_json(200, self._group_json(group, base))

    def _visible_repos(self, owner: str, account: _Account | None) -> list[Repo]:
        return [
            r
            for r in sorted(self._repos.values(), key=lambda r: r.name)
            if r.owner == owner and self._readable(r, account)
        ]

    def _api_my_repos(self, request: _Request, account: _Account | None, base: str) -> Reply:
        if account is None:
            return self._unauthorized()
        repos = self._visible_repos(account.name, account)
        return _api_json(200, [self._repo_json(r, base) for r in repos])

    def _api_owner_repos(
        self, request: _Request, account: _Account | None, base: str, owner: str
    ) -> Reply:
        return _api_json(
            200, [self._repo_json(r, base) for r in self._visible_repos(owner, account)]
        )

    def _read_repo_request(self, request: _Request) -> dict[str, Any] | None:
        try:
            data = _extract(self._json_body(request), _CREATE_REPO)
        except _Invalid:
            return None
        name = data["name"]
        if len(name) > 100 or not _REPO_NAME.fullmatch(name) or name[0] in "_-":
            return None
        return data

    def _api_create_user_repo(
        self, request: _Request, account: _Account | None, base: str
    ) -> Reply:
        if account is None:
            return self._unauthorized()
        data = self._read_repo_request(request)
        if data is None:
            return _api_error(404, "Not Found")
        if (account.name, data["name"]) in self._repos:
            return _api_error(
                200,
                "A repository with this name already exists on this account",
                "https://developer.github.com/v3/repos/#create",
            )
        repo = self._create_repo(account, account.name, data)
        return _api_json(200, self._repo_json(repo, base))

    def _api_create_org_repo(
        self, request: _Request, account: _Account | None, base: str, org: str
    ) -> Reply:
        if account is None:
            return self._unauthorized()
        data = self._read_repo_request(request)
        if data is None:
            return _api_error(404, "Not Found")
        if (org, data["name"]) in self._repos:
            return _api_error(
                200,
                "A repository with this name already exists for this group",
                "https://developer.github.com/v3/repos/#create",
            )
        group = self._accounts.get(org)
        if not (account.is_admin or account.name == org or self._is_member(org, account)):
            return _api_empty(403)
        if group is None:
            raise _ServerError  # getAccountByUserName(groupName).get on a missing account
        repo = self._create_repo(account, org, data)
        return _api_json(200, self._repo_json(repo, base))

    def _find_repo(
        self, owner: str, name: str, account: _Account | None, *, write: bool = False
    ) -> tuple[Repo | None, Reply | None]:
        repo = self._repos.get((owner, name))
        if repo is None:
            return None, _api_error(404, "Not Found")
        allowed = self._writable(repo, account) if write else self._readable(repo, account)
        if not allowed:
            return None, self._unauthorized()
        return repo, None

    def _api_get_repo(
        self, request: _Request, account: _Account | None, base: str, owner: str, name: str
    ) -> Reply:
        repo, refusal = self._find_repo(owner, name, account)
        if repo is None:
            return refusal  # type: ignore[return-value]
        return _api_json(200, self._repo_json(repo, base))

    def _api_branches(
        self, request: _Request, account: _Account | None, base: str, owner: str, name: str
    ) -> Reply:
        repo, refusal = self._find_repo(owner, name, account)
        if repo is None:
            return refusal  # type: ignore[return-value]
        branches = [
            {"name": ref[len("refs/heads/") :], "commit": {"sha": sha}}
            for ref, sha in self._refs(repo).items()
            if ref.startswith("refs/heads/")
        ]
        return _api_json(200, branches)

    def _api_list_hooks(
        self, request: _Request, account: _Account | None, base: str, owner: str, name: str
    ) -> Reply:
        repo, refusal = self._find_repo(owner, name, account)
        if repo is None:
            return refusal  # type: ignore[return-value]
        hooks = sorted(
            (h for h in self._hooks.values() if (h.owner, h.repo) == (owner, name) and h.events),
            key=lambda h: h.url,
        )
        return _api_json(200, [self._hook_json(h, base) for h in hooks])

    @staticmethod
    def _events(names: list[str]) -> list[str]:
        unknown = [n for n in names if n not in WEBHOOK_EVENTS]
        if unknown:
            raise _ServerError(f"unknown event {unknown[0]!r}")  # WebHook.Event.valueOf
        return list(dict.fromkeys(names))

    def _api_create_hook(
        self, request: _Request, account: _Account | None, base: str, owner: str, name: str
    ) -> Reply:
        repo, refusal = self._find_repo(owner, name, account, write=True)
        if repo is None:
            return refusal  # type: ignore[return-value]
        try:
            data = _extract(self._json_body(request), _CREATE_HOOK)
        except _Invalid:
            return _api_error(404, "Not Found")
        config = data["config"]
        if config["content_type"] not in ("form", "json"):
            return _api_error(404, "Not Found")
        events = self._events(data["events"])
        if any(
            (h.owner, h.repo, h.url) == (owner, name, config["url"]) for h in self._hooks.values()
        ):
            raise _ServerError  # unique index (user_name, repository_name, url)
        hook = Hook(
            id=self._next_hook_id,
            owner=owner,
            repo=name,
            url=config["url"],
            content_type=config["content_type"],
            secret=config["secret"],
            events=events,
        )
        self._next_hook_id += 1
        self._hooks[hook.id] = hook
        if not hook.events:
            return _api_empty(200)
        return _api_json(200, self._hook_json(hook, base))

    @staticmethod
    def _hook_id(raw: str) -> int:
        try:
            return int(raw)
        except ValueError as exc:
            raise _ServerError from exc  # params("id").toInt

    def _api_get_hook(
        self,
        request: _Request,
        account: _Account | None,
        base: str,
        owner: str,
        name: str,
        raw_id: str,
    ) -> Reply:
        repo, refusal = self._find_repo(owner, name, account)
        if repo is None:
            return refusal  # type: ignore[return-value]
        hook = self._hooks.get(self._hook_id(raw_id))
        if hook is None or not hook.events:
            return _api_error(404, "Not Found")
        return _api_json(200, self._hook_json(hook, base))

    def _api_update_hook(
        self,
        request: _Request,
        account: _Account | None,
        base: str,
        owner: str,
        name: str,
        raw_id: str,
    ) -> Reply:
        repo, refusal = self._find_repo(owner, name, account, write=True)
        if repo is None:
            return refusal  # type: ignore[return-value]
        hook_id = self._hook_id(raw_id)
        try:
            data = _extract(self._json_body(request), _UPDATE_HOOK)
        except _Invalid:
            return _api_error(404, "Not Found")
        config = data["config"]
        if config["content_type"] not in ("form", "json"):
            return _api_error(404, "Not Found")
        wanted = [e for e in data["events"] + data["add_events"] if e not in data["remove_events"]]
        events = self._events(wanted)
        hook = self._hooks.get(hook_id)
        if hook is None:
            return _api_empty(200)
        clash = any(
            (h.owner, h.repo, h.url) == (hook.owner, hook.repo, config["url"]) and h.id != hook.id
            for h in self._hooks.values()
        )
        if clash:
            raise _ServerError
        hook.url = config["url"]
        hook.content_type = "json" if config["content_type"] == "json" else "form"
        hook.secret = config["secret"]
        hook.events = events
        if not hook.events:
            return _api_empty(200)
        return _api_json(200, self._hook_json(hook, base))

    def _api_delete_hook(
        self,
        request: _Request,
        account: _Account | None,
        base: str,
        owner: str,
        name: str,
        raw_id: str,
    ) -> Reply:
        repo, refusal = self._find_repo(owner, name, account, write=True)
        if repo is None:
            return refusal  # type: ignore[return-value]
        hook_id = self._hook_id(raw_id)
        hook = self._hooks.get(hook_id)
        if hook is None or not hook.events:
            return _api_error(404, "Not Found")
        del self._hooks[hook_id]
        return Reply(204, b"", headers=[("Content-Type", _JSON_TYPE)])

    # -- collaborators (ApiRepositoryCollaboratorControllerBase) -------------------------------

    def _owned_repo(
        self, owner: str, name: str, account: _Account | None
    ) -> tuple[Repo | None, Reply | None]:
        """``ownerOnly``: 404 JSON for an unknown repository, 401 unless the caller manages it."""
        repo = self._repos.get((owner, name))
        if repo is None:
            return None, _api_error(404, "Not Found")
        if not self._manages(repo, account):
            return None, self._unauthorized()
        return repo, None

    def _api_list_collaborators(
        self, request: _Request, account: _Account | None, base: str, owner: str, name: str
    ) -> Reply:
        repo, refusal = self._find_repo(owner, name, account)
        if repo is None:
            return refusal  # type: ignore[return-value]
        users = []
        for user, _role in self._collaborator_rows(repo):
            found = self._accounts.get(user)
            if found is None or found.removed:
                raise _ServerError  # getAccountByUserName(u).get
            users.append(self._user_json(found, base))
        return _api_json(200, users)

    def _api_is_collaborator(
        self,
        request: _Request,
        account: _Account | None,
        base: str,
        owner: str,
        name: str,
        user: str,
    ) -> Reply:
        repo, refusal = self._find_repo(owner, name, account)
        if repo is None:
            return refusal  # type: ignore[return-value]
        found = self._accounts.get(user)
        if found is None or found.removed:
            return _api_error(404, "Not Found")
        if any(n == user for n, _role in self._collaborator_rows(repo)):
            return _api_empty(204)
        return _api_error(404, "Not Found")

    def _api_collaborator_permission(
        self,
        request: _Request,
        account: _Account | None,
        base: str,
        owner: str,
        name: str,
        user: str,
    ) -> Reply:
        repo, refusal = self._find_repo(owner, name, account)
        if repo is None:
            return refusal  # type: ignore[return-value]
        found = self._accounts.get(user)
        role = self._collaborators.get((owner, name), {}).get(user)
        if found is None or found.removed or role is None:
            return _api_error(404, "Not Found")
        return _api_json(200, {"permission": role, "user": self._user_json(found, base)})

    def _api_add_collaborator(
        self,
        request: _Request,
        account: _Account | None,
        base: str,
        owner: str,
        name: str,
        user: str,
    ) -> Reply:
        repo, refusal = self._owned_repo(owner, name, account)
        if repo is None:
            return refusal  # type: ignore[return-value]
        try:
            data = _extract(self._json_body(request), _ADD_COLLABORATOR)
        except _Invalid:
            return _api_empty(200)  # no body to extract: the action yields None
        role = COLLABORATOR_ROLES.get(data["permission"])
        if role is None:
            return _api_empty(200)  # AddACollaborator.role throws inside the extraction
        if user not in self._accounts:
            raise _ServerError  # COLLABORATOR_NAME references ACCOUNT
        rows = self._collaborators.setdefault((owner, name), {})
        if user in rows:
            raise _ServerError  # primary key (owner, repository, collaborator): a plain insert
        rows[user] = role
        return _api_empty(204)

    def _api_remove_collaborator(
        self,
        request: _Request,
        account: _Account | None,
        base: str,
        owner: str,
        name: str,
        user: str,
    ) -> Reply:
        repo, refusal = self._owned_repo(owner, name, account)
        if repo is None:
            return refusal  # type: ignore[return-value]
        self._collaborators.get((owner, name), {}).pop(user, None)
        return _api_empty(204)

    # -- web pages: sign-in and account forms --------------------------------------------------

    def _serve_web(self, request: _Request) -> tuple[Reply, str | None]:
        account = self._session_account(request)
        user = account.name if account else None
        path = request.path
        if path != "/" and path.endswith("/"):
            path = path[:-1]
        method = request.method
        with self._lock:
            if self._anonymous_refused(request, account):
                return self._web_unauthorized(request, None), None
            if method == "GET" and path in ("/", "/signin"):
                return _html(200, "GitBucket"), user
            if method == "POST" and path == "/signin":
                return self._web_signin(request), user
            if method == "GET" and path == "/signout":
                sid = request.cookie("JSESSIONID")
                if sid:
                    self._sessions.pop(sid, None)
                return self._redirect(request, "/"), None
            match = re.fullmatch(r"/([^/]+)/_edit", path)
            if match and method in ("GET", "POST"):
                name = _unquote(match.group(1))
                if method == "GET":
                    if not self._oneself(account, name):
                        return self._web_unauthorized(request, account), user
                    target = self._accounts.get(name)
                    return (_html(200, "Edit account") if target else _html(404, "Not Found")), user
                return self._web_edit_account(request, account, name), user
            match = re.fullmatch(r"/admin/users/([^/]+)/_edituser", path)
            if match and method in ("GET", "POST"):
                if method == "GET":
                    if account is None or not account.is_admin:
                        return self._web_unauthorized(request, account), user
                    return _html(200, "Edit user"), user
                return self._web_admin_edit_user(request, account), user
            if method == "GET":
                parts = [_unquote(p) for p in path.strip("/").split("/")]
                if len(parts) == 1 and parts[0] in self._accounts:
                    return _html(200, parts[0]), user
                if len(parts) == 2:
                    repo = self._repos.get((parts[0], parts[1]))
                    if repo is not None and self._readable(repo, account):
                        return _html(200, repo.full_name), user
            return _html(404, "Not Found"), user

    def _redirect(self, request: _Request, path: str, cookie: str | None = None) -> Reply:
        headers = [("Location", self._base(request) + path)]
        if cookie:
            headers.append(("Set-Cookie", f"JSESSIONID={cookie}; Path=/; HttpOnly"))
        return Reply(302, b"", headers=headers)

    def _web_unauthorized(self, request: _Request, account: _Account | None) -> Reply:
        if not _is_browser(request.headers.get("User-Agent")):
            return Reply(401, b"", headers=[("Content-Type", _HTML_TYPE)])
        if account is not None:
            return self._redirect(request, "/")
        if request.method == "POST":
            return self._redirect(request, "/signin")
        target = request.path + (f"?{request.query}" if request.query else "")
        return self._redirect(request, "/signin?redirect=" + quote(target, safe=""))

    @staticmethod
    def _oneself(account: _Account | None, name: str) -> bool:
        return account is not None and (account.is_admin or account.name == name)

    def _web_signin(self, request: _Request) -> Reply:
        form = request.params
        name = form.get("userName", "").strip()
        password = form.get("password", "").strip()
        if not name or not password:
            return Reply(400, b"", headers=[("Content-Type", _HTML_TYPE)])
        account = self._authenticate(name, password)
        if account is None:
            return self._redirect(request, "/signin")
        sid = request.cookie("JSESSIONID")
        fresh = None
        if not sid or sid not in self._sessions:
            sid = fresh = "node0" + secrets.token_hex(12) + ".node0"
        self._sessions[sid] = account.name
        return self._redirect(request, "/", cookie=fresh)

    def _mail_taken(self, mail: str, except_user: str | None) -> bool:
        return any(a.email == mail and a.name != except_user for a in self._accounts.values())

    def _web_edit_account(self, request: _Request, account: _Account | None, name: str) -> Reply:
        form = request.params
        password = form.get("password", "").strip() or None
        full_name = form.get("fullName", "").strip()
        mail = form.get("mailAddress", "").strip()
        url = form.get("url", "").strip() or None
        description = form.get("description", "").strip() or None
        errors = (
            (password is not None and len(password) > 20)
            or not full_name
            or len(full_name) > 100
            or not mail
            or len(mail) > 100
            or self._mail_taken(mail, name)
            or (url is not None and len(url) > 200)
        )
        if errors:  # ValidationSupport: validate first, BadRequest() with no body
            return Reply(400, b"", headers=[("Content-Type", _HTML_TYPE)])
        if not self._oneself(account, name):
            return self._web_unauthorized(request, account)
        target = self._accounts.get(name)
        if target is None or target.removed:
            return _html(404, "Not Found")
        if password is not None:
            target.password = password
        target.full_name = full_name
        target.email = mail
        target.description = description
        target.url = url
        return self._redirect(request, f"/{name}/_edit")

    def _web_admin_edit_user(self, request: _Request, account: _Account | None) -> Reply:
        form = request.params
        name = form.get("userName", "").strip()
        password = form.get("password", "").strip() or None
        full_name = form.get("fullName", "").strip()
        mail = form.get("mailAddress", "").strip()
        url = form.get("url", "").strip() or None
        is_admin = form.get("isAdmin", "").strip() == "true"
        removed = form.get("removed", "").strip() == "true"
        errors = (
            not name
            or not re.fullmatch(r"[a-zA-Z0-9\-_.]+", name)
            or (password is not None and len(password) > 20)
            or not full_name
            or not mail
            or self._mail_taken(mail, name)
            or (removed and account is not None and account.name == name)
        )
        if errors:
            return Reply(400, b"", headers=[("Content-Type", _HTML_TYPE)])
        if account is None or not account.is_admin:
            return self._web_unauthorized(request, account)
        target = self._accounts.get(name)
        if target is None or target.is_group:
            return _html(404, "Not Found")
        if password is not None:
            target.password = password
        target.full_name = full_name
        target.email = mail
        target.url = url
        target.is_admin = is_admin
        target.removed = removed
        if removed:  # AccountService.removeUserRelatedData: GROUP_MEMBER and COLLABORATOR rows
            for group in self._accounts.values():
                group.members.pop(name, None)
            for rows in self._collaborators.values():
                rows.pop(name, None)
        return self._redirect(request, "/admin/users")

    # -- repositories on disk ------------------------------------------------------------------

    def _run_git(self, repo_dir: Path, *args: str, stdin: bytes | None = None) -> str:
        env = _git_env()
        result = subprocess.run(
            [self._git, "--git-dir", str(repo_dir), *args],
            input=stdin,
            capture_output=True,
            env=env,
            check=True,
            timeout=60,
        )
        return result.stdout.decode("utf-8", "replace")

    def _create_repo(self, creator: _Account, owner: str, data: Mapping[str, Any]) -> Repo:
        if self._tmp is None:
            raise RuntimeError("start() the double first")
        path = self._tmp / "repositories" / owner / f"{data['name']}.git"
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                self._git,
                "init",
                "--bare",
                "--quiet",
                f"--initial-branch={DEFAULT_BRANCH}",
                str(path),
            ],
            check=True,
            capture_output=True,
            env=_git_env(),
            timeout=60,
        )
        repo = Repo(
            id=self._next_repo_id,
            owner=owner,
            name=data["name"],
            description=data["description"],
            private=bool(data["private"]),
            default_branch=DEFAULT_BRANCH,
            path=path,
        )
        self._next_repo_id += 1
        self._repos[(owner, repo.name)] = repo
        self._repo_locks[(owner, repo.name)] = threading.Lock()
        if data.get("auto_init"):
            readme = f"{repo.name}\n===============\n"
            if repo.description:
                readme += f"\n{repo.description}"
            blob = self._run_git(
                path, "hash-object", "-w", "--stdin", stdin=readme.encode()
            ).strip()
            tree = self._run_git(
                path, "mktree", stdin=f"100644 blob {blob}\tREADME.md\n".encode()
            ).strip()
            ident = {
                "GIT_AUTHOR_NAME": creator.full_name,
                "GIT_AUTHOR_EMAIL": creator.email,
                "GIT_COMMITTER_NAME": creator.full_name,
                "GIT_COMMITTER_EMAIL": creator.email,
            }
            commit = (
                subprocess.run(
                    [
                        self._git,
                        "--git-dir",
                        str(path),
                        "commit-tree",
                        tree,
                        "-m",
                        "Initial commit",
                    ],
                    check=True,
                    capture_output=True,
                    env={**_git_env(), **ident},
                    timeout=60,
                )
                .stdout.decode()
                .strip()
            )
            self._run_git(path, "update-ref", f"refs/heads/{DEFAULT_BRANCH}", commit)
        return repo

    def _refs(self, repo: Repo) -> dict[str, str]:
        out = self._run_git(repo.path, "for-each-ref", "--format=%(objectname) %(refname)")
        refs = {}
        for line in out.splitlines():
            sha, _, ref = line.partition(" ")
            refs[ref] = sha
        return refs

    # -- git smart HTTP ------------------------------------------------------------------------

    def _serve_git(self, request: _Request) -> tuple[Reply, str | None]:
        parts = request.path.split("/")
        if len(parts) < 4:
            return _container_error(404, "Not Found"), None
        owner, raw_name = _unquote(parts[2]), _unquote(parts[3])
        name = re.sub(r"(\.wiki)?\.git$", "", raw_name)
        with self._lock:
            repo = self._repos.get((owner, name))
        if repo is None:
            return _container_error(404, "Not Found"), None
        updating = (
            request.path.endswith("/git-receive-pack")
            or request.query == "service=git-receive-pack"
        )
        account: _Account | None = None
        if updating or repo.private or not self.allow_anonymous_access:
            account = self._git_login(request)
            with self._lock:
                if updating:
                    allowed = self._writable(repo, account)
                else:
                    allowed = self._readable(repo, account) and account is not None
            if not allowed:
                response = _container_error(401, "Unauthorized")
                response.headers.append(("WWW-Authenticate", 'BASIC realm="GitBucket"'))
                return response, account.name if account else None
        user = account.name if account else None
        if not raw_name.endswith(".git") or raw_name.endswith(".wiki.git"):
            return _container_error(404, "Not Found"), user
        agent = (request.headers.get("User-Agent") or "").lower()
        if "git" not in agent:
            return self._redirect(request, f"/{owner}/{name}"), user
        receive = request.method == "POST" and request.path.endswith("/git-receive-pack")
        if not receive:
            return self._http_backend(request, repo, user), user
        with self._repo_locks[(owner, name)]:
            before = self._refs(repo)
            commands = _parse_receive_commands(request)
            response = self._http_backend(request, repo, user)
            if response.status == 200 and commands:
                after = self._refs(repo)
                applied = [c for c in commands if after.get(c.ref, ZERO_ID) == c.new]
                if applied and account is not None:
                    try:
                        with self._lock:
                            jobs = self._post_receive(repo, account, applied, before, request)
                    except (subprocess.SubprocessError, OSError, KeyError, ValueError):
                        with self._lock:  # GitBucket logs a failing hook; the push stands
                            self.errors.append(traceback.format_exc())
                        jobs = []
                    self._deliver_async(jobs)
        return response, user

    def _git_login(self, request: _Request) -> _Account | None:
        header = request.headers.get("Authorization")
        if not header or not header.startswith("Basic "):
            return None
        pair = self._decode_basic(header)
        if pair is None:
            return None
        account = self._authenticate(*pair)
        if account is None:
            token_account = self._token_account(pair[1])
            if token_account is not None and token_account.name == pair[0]:
                account = token_account
        return account

    def _http_backend(self, request: _Request, repo: Repo, user: str | None) -> Reply:
        assert self._tmp is not None
        rest = request.path.split("/", 4)[4] if request.path.count("/") >= 4 else ""
        env = {
            **_git_env(),
            "GIT_PROJECT_ROOT": str(self._tmp / "repositories"),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": f"/{repo.owner}/{repo.name}.git/{rest}",
            "QUERY_STRING": request.query,
            "REQUEST_METHOD": request.method,
            "CONTENT_TYPE": request.headers.get("Content-Type") or "",
            "CONTENT_LENGTH": str(len(request.body)),
            "REMOTE_ADDR": request.client,
            "SERVER_PROTOCOL": "HTTP/1.1",
        }
        if user:
            env["REMOTE_USER"] = user
        for header in ("Git-Protocol", "Content-Encoding"):
            value = request.headers.get(header)
            if value:
                env["HTTP_" + header.upper().replace("-", "_")] = value
        result = subprocess.run(
            [self._git, "http-backend"],
            input=request.body,
            capture_output=True,
            env=env,
            timeout=120,
        )
        out = result.stdout
        head_end = out.find(b"\r\n\r\n")
        sep = 4
        if head_end < 0:
            head_end, sep = out.find(b"\n\n"), 2
        if head_end < 0:
            return _container_error(500, "Server Error")
        status = 200
        headers: list[tuple[str, str]] = []
        for line in out[:head_end].decode("latin-1").splitlines():
            key, _, value = line.partition(":")
            if key.lower() == "status":
                status = int(value.strip().split()[0])
            elif key:
                headers.append((key.strip(), value.strip()))
        return Reply(status, out[head_end + sep :], headers=headers)

    # -- after a push: CommitLogHook -----------------------------------------------------------

    def _rev_list(self, repo: Repo, *args: str) -> list[str]:
        return self._run_git(repo.path, "rev-list", *args).split()

    def _commit_log(self, repo: Repo, old: str, new: str) -> list[str]:
        """JGitUtil.getCommitLog: walk from ``new`` until ``old``, then oldest first."""
        log = []
        for sha in self._rev_list(repo, new):
            if sha == old:
                break
            log.append(sha)
        return list(reversed(log))

    def _commits_of(self, repo: Repo, command: _Command) -> list[str]:
        parts = command.ref.split("/")
        if len(parts) > 1 and parts[1] == "tags":
            return []
        if command.type == "DELETE":
            return []
        return self._commit_log(repo, command.old, command.new)

    def _new_commit_ids(
        self, repo: Repo, applied: list[_Command], before: Mapping[str, str]
    ) -> set[str]:
        old_heads = sorted({s for r, s in before.items() if r.startswith("refs/heads/")})
        old_refs = sorted(set(before.values()))
        new_ids: list[str] = []
        for command in applied:  # onPreReceive keeps the last command's list only
            commits = self._commits_of(repo, command)
            if not commits:
                new_ids = []
            elif len(commits) < 100:
                fresh = set(self._rev_list(repo, command.new, "--not", *old_heads))
                new_ids = []
                for sha in commits:
                    if sha not in fresh:
                        break
                    new_ids.append(sha)
            else:
                unknown = set(self._rev_list(repo, command.new, "--not", *old_refs))
                new_ids = [sha for sha in commits if sha in unknown]
        return set(new_ids)

    def _post_receive(
        self,
        repo: Repo,
        pusher: _Account,
        applied: list[_Command],
        before: Mapping[str, str],
        request: _Request,
    ) -> list[tuple[Hook, str, str]]:
        base = self._base(request)
        new_ids = self._new_commit_ids(repo, applied, before)
        jobs: list[tuple[Hook, str, str]] = []
        for command in applied:
            parts = command.ref.split("/")
            branch = "/".join(parts[2:])
            commits = self._commits_of(repo, command)
            repository_json = self._repo_json(repo, base)
            head_ok = (
                subprocess.run(
                    [self._git, "--git-dir", str(repo.path), "rev-parse", "--verify", "-q", "HEAD"],
                    capture_output=True,
                    env=_git_env(),
                    timeout=60,
                ).returncode
                == 0
            )
            if not head_ok and commits and branch != repo.default_branch:
                repo.default_branch = branch
                self._run_git(repo.path, "symbolic-ref", "HEAD", f"refs/heads/{branch}")
            new_commits = [sha for sha in commits if sha in new_ids]
            push_hooks = self._hooks_for(repo, "push")
            if push_hooks:
                commit_json = [self._commit_json(repo, sha, base) for sha in new_commits]
                payload = {
                    "pusher": {"name": pusher.name, "email": pusher.email},
                    "sender": self._user_json(pusher, base),
                    "ref": command.ref,
                    "before": command.old,
                    "after": command.new,
                    "commits": commit_json,
                    "repository": repository_json,
                    "compare": _compare_url(base, repo, command, commit_json),
                }
                if commit_json:
                    payload["head_commit"] = commit_json[-1]
                text = json_bytes(payload).decode("utf-8")
                jobs.extend((hook, "push", text) for hook in push_hooks)
            create_hooks = self._hooks_for(repo, "create") if command.type == "CREATE" else []
            if create_hooks:
                payload = {
                    "sender": self._user_json(pusher, base),
                    "description": repo.description or "",
                    "ref": command.ref,
                    "ref_type": "tag" if len(parts) > 1 and parts[1] == "tags" else "branch",
                    "master_branch": repository_json["default_branch"],
                    "repository": repository_json,
                    "pusher_type": "user",
                }
                text = json_bytes(payload).decode("utf-8")
                jobs.extend((hook, "create", text) for hook in create_hooks)
        return jobs

    def _hooks_for(self, repo: Repo, event: str) -> list[Hook]:
        return [
            Hook(h.id, h.owner, h.repo, h.url, h.content_type, h.secret, list(h.events))
            for h in sorted(self._hooks.values(), key=lambda h: h.id)
            if (h.owner, h.repo) == (repo.owner, repo.name) and event in h.events
        ]

    def _commit_json(self, repo: Repo, sha: str, base: str) -> dict[str, Any]:
        raw = self._run_git(repo.path, "cat-file", "commit", sha)
        header, _, message = raw.partition("\n\n")
        parents: list[str] = []
        idents: dict[str, dict[str, Any]] = {}
        for line in header.splitlines():
            key, _, value = line.partition(" ")
            if key == "parent":
                parents.append(value)
            elif key in ("author", "committer"):
                match = re.fullmatch(r"(.*) <(.*)> (\d+) ([+-]\d{4})", value)
                if match:
                    when = datetime.fromtimestamp(int(match.group(3)), UTC)
                    idents[key] = {
                        "name": match.group(1),
                        "email": match.group(2),
                        "date": _iso(when),
                    }
        diff_args = ["diff-tree", "-r", "--no-commit-id", "--name-status", "-M"]
        if parents:
            out = self._run_git(repo.path, *diff_args, parents[0], sha)
        else:
            out = self._run_git(repo.path, *diff_args, "--root", sha)
        added: list[str] = []
        removed: list[str] = []
        modified: list[str] = []
        for line in out.splitlines():
            fields = line.split("\t")
            status = fields[0][:1]
            if status == "A":
                added.append(fields[-1])
            elif status == "D":
                removed.append(fields[1])
            elif status:
                modified.append(fields[-1])
        return {
            "id": sha,
            "message": message,
            "timestamp": idents["committer"]["date"],
            "added": added,
            "removed": removed,
            "modified": modified,
            "author": idents["author"],
            "committer": idents["committer"],
            "url": f"{base}/api/v3/{repo.full_name}/commits/{sha}",
            "html_url": f"{base}/{repo.full_name}/commit/{sha}",
        }

    # -- deliveries (WebHookService.callWebHook) -----------------------------------------------

    def _deliver_async(self, jobs: list[tuple[Hook, str, str]]) -> None:
        if not jobs:
            return
        worker = threading.Thread(
            target=self._deliver_all, args=(jobs,), name="gitbucket-hooks", daemon=True
        )
        with self._lock:
            self._workers = [w for w in self._workers if w.is_alive()]
            self._workers.append(worker)
        worker.start()

    def _deliver_all(self, jobs: list[tuple[Hook, str, str]]) -> None:
        for hook, event, text in jobs:
            delivery = self._deliver(hook, event, text)
            with self._delivered:
                self._deliveries.append(delivery)
                self._delivered.notify_all()

    def _deliver(self, hook: Hook, event: str, text: str) -> Delivery:
        if hook.content_type == "form":
            body = ("payload=" + _form_encode(text)).encode("utf-8")
            ctype = "application/x-www-form-urlencoded"
        else:
            body = text.encode("utf-8")
            ctype = "application/json"
        headers = {
            "Content-Type": ctype,
            "X-Github-Event": event,
            "X-Github-Delivery": str(uuid.uuid4()),
        }
        if hook.secret is not None and hook.secret.strip():
            key = hook.secret.encode("utf-8")
            headers["X-Hub-Signature"] = "sha1=" + hmac.new(key, body, hashlib.sha1).hexdigest()
            headers["X-Hub-Signature-256"] = (
                "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()
            )
        delivery = Delivery(hook.id, hook.url, event, headers, body)
        try:
            split = urlsplit(hook.url)
            if split.scheme not in ("http", "https") or not split.hostname:
                raise ValueError(f"Illegal URL: {hook.url}")
            connection_class = (
                http.client.HTTPSConnection
                if split.scheme == "https"
                else http.client.HTTPConnection
            )
            connection = connection_class(split.hostname, split.port, timeout=self.delivery_timeout)
            try:
                target = (split.path or "/") + (f"?{split.query}" if split.query else "")
                connection.putrequest("POST", target, skip_accept_encoding=True)
                for key, value in headers.items():
                    connection.putheader(key, value)
                connection.putheader("Content-Length", str(len(body)))
                connection.putheader("Connection", "Keep-Alive")
                connection.putheader("User-Agent", _DELIVERY_USER_AGENT)
                connection.putheader("Accept-Encoding", "gzip,deflate")
                connection.endheaders(body)
                response = connection.getresponse()
                response.read()
                delivery.status = response.status
            finally:
                connection.close()
        except (OSError, http.client.HTTPException, ValueError) as exc:
            delivery.error = f"{type(exc).__name__}: {exc}"
        return delivery
