"""Wiring the platform through the services' APIs: idempotent, and it reports drift.

Order (each step reads first and changes only what differs):

1. GitBucket: replace root's default password, the organisation, the repository, and push
   the local project's HEAD to ``main`` (skipped when GitBucket has that commit). The push
   comes before the hook exists, so the first push starts no build by itself. Then the
   account Jenkins clones with: a plain user with read access (a ``pull`` collaborator).
2. SonarQube: wait for UP, replace admin's default password, the project, a CI user with
   Execute Analysis and Browse on it, the token Jenkins uses (a PROJECT_ANALYSIS_TOKEN the CI
   user makes for itself: since 9.5 it can read the gate's status), the quality gate of
   sonarqube/quality-gate.toml. No webhook: ``invoke gate`` polls the API (an old one is
   removed).
3. MLflow (when its basic auth is on): the CI user with MANAGE on the experiment and the
   registered model (the models' slots need no MLflow login: the Deploy stage downloads
   the version for them).
4. Jenkins: prove the credentials (``get_whoami``), read the agent container's secret into
   the env file (and recreate the agent), create the job from jenkins/job.xml.template or
   update it when the part mlci owns differs (a build adds what the Jenkinsfile's options
   declare: that is not drift); the same for the nightly scoring job ``<job>-score``
   (jenkins/job-score.xml.template: jenkins/score.Jenkinsfile on a timer).
5. GitBucket: the push hook to the Generic Webhook Trigger (JSON, signed).
6. Jenkins: a first build when the job was just created (or when asked), through the same
   trigger endpoint GitBucket calls, signed as GitBucket signs, so the build has ``ref`` and
   ``commit``.

Every step returns a :class:`Change` (created, updated or unchanged). A failing step raises
:class:`WiringFailed`, which names the service and the step and carries the changes made
before it; nothing changed is left unreported. Secrets appear in no change, message or log
line: hook URLs are shown with the token masked.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import string
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit
from xml.sax.saxutils import escape

from mlci import tools
from mlci.errors import MlciError, WiringFailed
from mlci.platform.secrets import SONARQUBE_TOKEN, EnvFile, masked, set_value
from mlci.resources import gate_file, platform_file
from mlci.settings import Settings
from mlci.table import format_table

CREATED, UPDATED, UNCHANGED = "created", "updated", "unchanged"
# The products' shipped first logins. mlci never configures anything with them: wiring tries
# them only to find out whether they still work, and if so replaces them at once with the
# generated secrets (then proves they no longer work).
GITBUCKET_ADMIN = "root"
GITBUCKET_DEFAULT_PASSWORD = "root"
SONARQUBE_ADMIN = "admin"
SONARQUBE_DEFAULT_PASSWORD = "admin"
JENKINS_ADMIN = "admin"
SONAR_TOKEN_NAME = "mlci-jenkins"
SONAR_WEBHOOK_NAME = "jenkins"
SONAR_CI_USER = "mlci-ci"
SONAR_CI_PERMISSIONS = ("scan", "user")  # Execute Analysis, Browse
GITBUCKET_JENKINS_USER = "mlci-jenkins"
GITBUCKET_READ_ROLE = "GUEST"  # GitBucket's name for a `pull` collaborator
MLFLOW_CI_USER = "mlci-ci"
MLFLOW_SERVING_USER = "mlci-serving"
AGENT_NODE = "docker-agent"
BRANCH = "main"
# The job builds the commit the trigger resolved ($commit, from the push payload's `after`);
# without a push (Build Now, Replay) the job parameter `commit` defaults to main's head.
BRANCH_SPEC = "${commit}"
JOB_TEMPLATE = "jenkins/job.xml.template"
# The nightly scoring job: jenkins/score.Jenkinsfile of main's head, on a timer.
SCORE_JOB_TEMPLATE = "jenkins/job-score.xml.template"
SCORE_JOB_SUFFIX = "-score"
SCORE_BRANCH_SPEC = f"refs/heads/{BRANCH}"


@dataclass(frozen=True)
class Change:
    service: str
    step: str
    outcome: str
    detail: str


def _failed(service: str, step: str, cause: MlciError, changes: list[Change]) -> WiringFailed:
    fix = cause.fix or "see the message above"
    failure = WiringFailed(
        f"wiring stopped at {service} / {step}: {cause.what}",
        cause.why,
        f"{fix}. The changes made before this step are listed above; run "
        "`invoke platform.wire` again once it is fixed (it only does what is missing)",
        service=service,
        step=step,
        changes=tuple(changes),
    )
    failure.exit_code = cause.exit_code
    return failure


def change_table(changes: list[Change]) -> list[str]:
    return format_table(
        ("service", "step", "outcome", "detail"),
        [(c.service, c.step, c.outcome, c.detail) for c in changes],
    )


# -- pieces that need no server -----------------------------------------------------------


def webhook_url(jenkins_internal_url: str, token: str) -> str:
    """The Generic Webhook Trigger endpoint GitBucket posts to, token in the query string.

    GitBucket hooks cannot send headers, so the query string is the plugin's documented way.
    """
    return f"{_slash(jenkins_internal_url)}generic-webhook-trigger/invoke?token={quote(token)}"


def shown_url(url: str) -> str:
    """A URL for messages: any query string value masked."""
    parts = urlsplit(url)
    if not parts.query:
        return url
    query = "&".join(
        f"{pair.partition('=')[0]}={masked(pair.partition('=')[2])}"
        for pair in parts.query.split("&")
    )
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def without_query(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc.lower(), parts.path, "", ""))


def filter_expression(ref_filter: str) -> str:
    """The trigger's filter over "$ref $commit": an accepted ref, then a commit that exists.

    A deleted branch or tag still sends a push, with 40 zeros as ``after``; it must not start
    a build that can only fail at checkout. The ref filter must be anchored at both ends,
    since the plugin matches with ``find()``.
    """
    anchored = ref_filter.startswith("^") and ref_filter.endswith("$")
    if not anchored or ref_filter.endswith("\\$"):
        from mlci.errors import ConfigError

        raise ConfigError(
            f"platform.ref_filter {ref_filter!r} is not anchored (^...$)",
            "the Generic Webhook Trigger matches with find(): an unanchored filter accepts "
            "any ref that merely contains a match",
            'write it as ^...$, e.g. "^refs/(heads/main|tags/v.+)$"',
        )
    return f"^(?:{ref_filter[1:-1]}) (?!0{{40}}$)[0-9a-f]{{40}}$"


def render_job(template: str, clone_url: str, ref_filter: str, webhook_token: str) -> str:
    """jenkins/job.xml.template with XML-escaped values (string.Template.substitute)."""
    values = {
        "clone_url": clone_url,
        "branch_spec": BRANCH_SPEC,
        "filter_expression": filter_expression(ref_filter),
        "webhook_token": webhook_token,
    }
    return string.Template(template).substitute({k: escape(v) for k, v in values.items()})


def render_score_job(template: str, clone_url: str) -> str:
    """jenkins/job-score.xml.template with XML-escaped values."""
    values = {"clone_url": clone_url, "branch_spec": SCORE_BRANCH_SPEC}
    return string.Template(template).substitute({k: escape(v) for k, v in values.items()})


def owned_part(stored: str, wanted: str) -> str:
    """``stored`` reduced to the elements ``wanted`` has: what mlci owns in the job.

    A build re-saves the job with what the Jenkinsfile's ``options`` declare (job properties
    and the declarative plugin's bookkeeping in ``<actions>``); those are Jenkins', not
    drift. Top-level elements and job properties that the template lacks are left out.
    """
    mine = ET.fromstring(wanted.encode("utf-8"))
    root = ET.fromstring(stored.encode("utf-8") if isinstance(stored, str) else stored)
    keep = {child.tag for child in mine}
    for child in list(root):
        if child.tag not in keep:
            root.remove(child)
    my_properties = mine.find("properties")
    properties = root.find("properties")
    if my_properties is not None and properties is not None:
        owned = {child.tag for child in my_properties}
        for child in list(properties):
            if child.tag not in owned:
                properties.remove(child)
    return ET.tostring(root, encoding="unicode")


def canonical_xml(text: str) -> str:
    """A job config in canonical form, for comparing what Jenkins stores with what we send.

    Jenkins rewrites config.xml (declaration, quoting, empty elements, escaping, whitespace
    outside the root), so bytes never compare. Comments, whitespace around text and the
    informational ``plugin`` attributes (Jenkins adds versions to them on a UI save) are left
    out.
    """
    root = ET.fromstring(text.encode("utf-8") if isinstance(text, str) else text)
    for element in root.iter():
        element.attrib.pop("plugin", None)
    return ET.canonicalize(ET.tostring(root, encoding="unicode"), strip_text=True)


def _slash(url: str) -> str:
    return url.rstrip("/") + "/"


# -- the wiring ----------------------------------------------------------------------------


@dataclass
class Wiring:
    """One run of the wiring: settings, secrets, injected runner and progress printer."""

    settings: Settings
    env: EnvFile
    source: Path
    runner: Callable[..., Any] = tools.run
    log: Callable[[str], None] = print
    recreate_jenkins: Callable[[], None] | None = None
    recreate_agent: Callable[[], None] | None = None
    build: bool = False
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    changes: list[Change] = field(default_factory=list)
    _pushed_commit: str | None = None
    _job_created: bool = False

    # -- bookkeeping -------------------------------------------------------------------------

    @contextlib.contextmanager
    def step(self, service: str, step: str) -> Iterator[None]:
        try:
            yield
        except WiringFailed:
            raise
        except MlciError as exc:
            raise _failed(service, step, exc, self.changes) from exc

    def record(self, service: str, step: str, outcome: str, detail: str) -> None:
        change = Change(service, step, outcome, detail)
        self.changes.append(change)
        self.log(f"wire: {service} / {step}: {outcome}: {detail}")

    @property
    def platform(self) -> Any:
        return self.settings.platform

    def run(self) -> list[Change]:
        try:
            self.gitbucket_account_and_repository()
            self.gitbucket_jenkins_user()
            self.sonarqube()
            self.mlflow()
            self.jenkins_agent()
            self.jenkins_job()
            self.gitbucket_hook()
            self.jenkins_first_build()
        except WiringFailed as failure:
            self.log("wire: changes before the failure:")
            for line in change_table(failure.changes) or ["(none)"]:
                self.log(line)
            raise
        return self.changes

    # -- GitBucket ---------------------------------------------------------------------------

    def _gitbucket(self) -> Any:
        from mlci.clients.gitbucket import GitBucket

        return GitBucket(
            self.platform.gitbucket_url,
            GITBUCKET_ADMIN,
            self.env["GITBUCKET_ROOT_PASSWORD"],
            self.platform.timeout,
        )

    def gitbucket_account_and_repository(self) -> None:
        service = "GitBucket"
        org, repo = self.platform.organisation, self.platform.repository
        with self.step(service, "root password"):
            client = self._gitbucket()
            self._gitbucket_password(client)
        with self.step(service, "organisation"):
            if client.get_org(org, "reading the organisation") is not None:
                self.record(service, "organisation", UNCHANGED, f"{org} exists")
            else:
                client.create_org(org, GITBUCKET_ADMIN, f"creating the organisation {org}")
                self.record(service, "organisation", CREATED, f"{org} (manager: root)")
        with self.step(service, "repository"):
            if client.get_repo(org, repo, "reading the repository") is not None:
                self.record(service, "repository", UNCHANGED, f"{org}/{repo} exists")
            else:
                client.create_org_repo(org, repo, True, f"creating the repository {org}/{repo}")
                self.record(service, "repository", CREATED, f"{org}/{repo} (private)")
        with self.step(service, "push"):
            self._push()
        client.close()

    def _gitbucket_password(self, client: Any) -> None:
        service, step = "GitBucket", "root password"
        new = self.env["GITBUCKET_ROOT_PASSWORD"]
        if client.credentials_work(GITBUCKET_ADMIN, GITBUCKET_DEFAULT_PASSWORD, "trying root/root"):
            from mlci.clients.gitbucket import GitBucket

            default = GitBucket(
                self.platform.gitbucket_url,
                GITBUCKET_ADMIN,
                GITBUCKET_DEFAULT_PASSWORD,
                self.platform.timeout,
            )
            email = default.me("reading root's account").get("email") or "root@localhost"
            default.change_password(
                GITBUCKET_ADMIN, GITBUCKET_DEFAULT_PASSWORD, new, email,
                "changing root's password (web form)",
            )  # fmt: skip
            default.close()
            self._verify_password_change(client, new)
            self.record(service, step, UPDATED, "root/root replaced by GITBUCKET_ROOT_PASSWORD")
        elif client.credentials_work(GITBUCKET_ADMIN, new, "trying GITBUCKET_ROOT_PASSWORD"):
            self.record(service, step, UNCHANGED, "root uses GITBUCKET_ROOT_PASSWORD")
        else:
            from mlci.clients.gitbucket import GitBucketError

            raise GitBucketError(
                "GitBucket: root logs in neither with root/root nor with GITBUCKET_ROOT_PASSWORD",
                "root's password was changed outside mlci, or the env file was replaced",
                "put root's current password into GITBUCKET_ROOT_PASSWORD in the env file "
                f"({self.env.path}) and run `invoke platform.wire` again",
            )

    def _verify_password_change(self, client: Any, new: str) -> None:
        from mlci.clients.gitbucket import GitBucketError

        step = "verifying root's new password"
        if not client.credentials_work(GITBUCKET_ADMIN, new, step):
            raise GitBucketError(
                "GitBucket: root's new password does not log in after the change",
                "the account form answered as if it had changed the password",
                "sign in as root in GitBucket's UI and check the account",
            )
        if client.credentials_work(GITBUCKET_ADMIN, GITBUCKET_DEFAULT_PASSWORD, step):
            raise GitBucketError(
                "GitBucket: root/root still logs in after the password change",
                "GitBucket kept the old password",
                "change root's password in GitBucket's UI (Account settings)",
            )

    def gitbucket_jenkins_user(self) -> None:
        """The account Jenkins clones with: no admin, read access to the one repository."""
        from mlci.clients.gitbucket import GitBucketError

        service, step = "GitBucket", "Jenkins' user"
        org, repo = self.platform.organisation, self.platform.repository
        name = self.env.values.get("GITBUCKET_JENKINS_USERNAME") or GITBUCKET_JENKINS_USER
        password = self.env["GITBUCKET_JENKINS_PASSWORD"]
        with self.step(service, step):
            client = self._gitbucket()
            if client.get_user(name, "looking up Jenkins' user") is None:
                client.create_user(name, password, f"{name}@localhost", "creating Jenkins' user")
                self.record(service, step, CREATED, f"{name} (no admin)")
            elif client.credentials_work(name, password, "checking Jenkins' user"):
                self.record(service, step, UNCHANGED, f"{name} logs in")
            else:
                raise GitBucketError(
                    f"GitBucket: {name} exists but does not log in with GITBUCKET_JENKINS_PASSWORD",
                    "its password was changed outside mlci, or the env file was replaced",
                    f"set {name}'s password in GitBucket (Administration > User management) "
                    "to the env file's value, or delete the user and wire again",
                )
        step = "Jenkins' read access"
        with self.step(service, step):
            role = client.collaborator_role(org, repo, name, "reading Jenkins' access")
            if role == GITBUCKET_READ_ROLE:
                self.record(service, step, UNCHANGED, f"{name} may read {org}/{repo}")
            else:
                if role is not None:  # a wider role: GitBucket's PUT cannot change it
                    client.remove_collaborator(org, repo, name, f"removing {name}'s {role} role")
                client.add_collaborator(org, repo, name, "pull", "adding Jenkins' user")
                outcome = CREATED if role is None else UPDATED
                was = "" if role is None else f" (was {role})"
                self.record(service, step, outcome, f"{name}: pull on {org}/{repo}{was}")
        client.close()

    def _repo_http_url(self, base: str) -> str:
        return f"{base.rstrip('/')}/git/{self.platform.organisation}/{self.platform.repository}.git"

    def _push(self) -> None:
        from mlci.platform.git_push import push_head

        remote = self._repo_http_url(self.platform.gitbucket_url)
        result = push_head(
            self.source, remote, BRANCH, GITBUCKET_ADMIN, self.env["GITBUCKET_ROOT_PASSWORD"],
            self.runner, self.platform.timeout * 4,
        )  # fmt: skip
        self._pushed_commit = result.local
        if result.pushed:
            before = result.remote_before[:12] if result.remote_before else "empty"
            self.record(
                "GitBucket", "push", UPDATED if result.remote_before else CREATED,
                f"{BRANCH}: {before} -> {result.local[:12]} (HEAD of {self.source.name})",
            )  # fmt: skip
        else:
            self.record("GitBucket", "push", UNCHANGED, f"{BRANCH} is at {result.local[:12]}")

    def gitbucket_hook(self) -> None:
        from mlci.clients.gitbucket import GitBucketError

        service, step = "GitBucket", "push webhook"
        org, repo = self.platform.organisation, self.platform.repository
        url = webhook_url(self.platform.jenkins_internal_url, self.env["JENKINS_WEBHOOK_TOKEN"])
        wanted = {
            "name": "web",
            "active": True,
            "events": ["push"],
            "config": {
                "url": url,
                "content_type": "json",
                "secret": self.env["GITBUCKET_WEBHOOK_SECRET"],
            },
        }
        with self.step(service, step):
            client = self._gitbucket()
            hooks = client.list_hooks(org, repo, "listing the hooks")
            ours = [
                h for h in hooks
                if without_query(h.get("config", {}).get("url", "")) == without_query(url)
            ]  # fmt: skip
            if not ours:
                created = client.create_hook(org, repo, wanted, "creating the push hook")
                if not isinstance(created, dict) or "id" not in created:
                    raise GitBucketError(
                        "GitBucket: creating the push hook: no hook in the answer",
                        "GitBucket answered without the hook it created",
                        "look at the repository's Settings > Service Hooks",
                    )
                self.record(service, step, CREATED, f"{shown_url(url)} (json, push, signed)")
                return
            hook, stale = ours[0], ours[1:]
            drift = []
            if hook.get("config", {}).get("url") != url:
                drift.append("token")
            if hook.get("config", {}).get("content_type") != "json":
                drift.append("content type")
            if sorted(hook.get("events", [])) != ["push"]:
                drift.append(f"events {sorted(hook.get('events', []))}")
            if drift:
                client.update_hook(org, repo, hook["id"], wanted, "updating the push hook")
            for extra in stale:
                client.delete_hook(org, repo, extra["id"], "removing a duplicate push hook")
            if stale:
                drift.append(f"{len(stale)} duplicate(s) removed")
            if drift:
                self.record(service, step, UPDATED, f"fixed {', '.join(drift)}")
            else:
                self.record(service, step, UNCHANGED, f"{shown_url(url)} (json, push)")
            client.close()

    # -- SonarQube ---------------------------------------------------------------------------

    def _sonarqube(self, user: str, password: str) -> Any:
        from requests.auth import HTTPBasicAuth

        from mlci.clients.sonarqube import SonarQube, SonarServer

        client = SonarQube(SonarServer(self.platform.sonarqube_url.rstrip("/"), ""),
                           self.platform.timeout)  # fmt: skip
        client.session.auth = HTTPBasicAuth(user, password)
        return client

    def _sonar_valid(self, client: Any, auth: Any, step: str) -> bool:
        from requests.auth import HTTPBasicAuth

        saved = client.session.auth
        client.session.auth = HTTPBasicAuth(*auth)
        try:
            body = client.get("api/authentication/validate", step)
        finally:
            client.session.auth = saved
        return bool((body or {}).get("valid"))

    def sonarqube(self) -> None:
        from mlci.platform.readiness import Probe, sonarqube_check, wait_until_ready

        service = "SonarQube"
        url = self.platform.sonarqube_url
        with self.step(service, "waiting for UP"):
            wait_until_ready(
                [Probe(service, url, sonarqube_check(url, self.platform.timeout))],
                self.platform.ready_timeout, self.log, sleep=self.sleep, clock=self.clock,
            )  # fmt: skip
        password = self.env["SONARQUBE_ADMIN_PASSWORD"]
        client = self._sonarqube(SONARQUBE_ADMIN, password)
        with self.step(service, "admin password"):
            self._sonar_password(client, password)
        key = self.settings.sonar.project_key or self.settings.project_root.name
        name = self.settings.sonar.project_name or key
        with self.step(service, "project"):
            found = client.get("api/projects/search", "looking up the project", projects=key)
            if any(c.get("key") == key for c in (found or {}).get("components", [])):
                self.record(service, "project", UNCHANGED, f"{key} exists")
            else:
                client.post("api/projects/create", "creating the project", project=key, name=name)
                self.record(service, "project", CREATED, key)
        with self.step(service, "CI user"):
            self._sonar_ci_user(client)
        with self.step(service, "CI permissions"):
            self._sonar_ci_permissions(client, key)
        with self.step(service, "token for Jenkins"):
            self._sonar_token(client, key)
        with self.step(service, "quality gate"):
            self._sonar_gate(client, key, name)
        with self.step(service, "webhook"):
            self._sonar_no_webhook(client)

    def _sonar_password(self, client: Any, password: str) -> None:
        from mlci.errors import SonarQubeError

        service, step = "SonarQube", "admin password"
        default = (SONARQUBE_ADMIN, SONARQUBE_DEFAULT_PASSWORD)
        if self._sonar_valid(client, default, "trying admin/admin"):
            resp = self._sonar_change_password(client, password)
            if resp.status_code != 204 and resp.status_code != 200:
                try:
                    reason = resp.json().get("result") or resp.text
                except ValueError:
                    reason = resp.text[:200]
                raise SonarQubeError(
                    f"SonarQube: changing admin's password: HTTP {resp.status_code}",
                    str(reason)[:300],
                    "SONARQUBE_ADMIN_PASSWORD must have 12+ characters with upper and lower "
                    "case, a digit and a special character; fix it in the env file",
                )
            new_ok = self._sonar_valid(client, (SONARQUBE_ADMIN, password), "verifying")
            old_ok = self._sonar_valid(client, default, "verifying")
            if not new_ok or old_ok:
                raise SonarQubeError(
                    "SonarQube: admin's password change did not take effect",
                    f"new password works: {new_ok}; admin/admin works: {old_ok}",
                    "change it in SonarQube's UI (My Account > Security)",
                )
            self.record(service, step, UPDATED, "admin/admin replaced by SONARQUBE_ADMIN_PASSWORD")
        elif self._sonar_valid(client, (SONARQUBE_ADMIN, password), "trying the password"):
            self.record(service, step, UNCHANGED, "admin uses SONARQUBE_ADMIN_PASSWORD")
        else:
            raise SonarQubeError(
                "SonarQube: admin logs in neither with admin/admin nor with "
                "SONARQUBE_ADMIN_PASSWORD",
                "admin's password was changed outside mlci, or the env file was replaced",
                f"put admin's current password into SONARQUBE_ADMIN_PASSWORD in {self.env.path}",
            )

    def _sonar_change_password(self, client: Any, password: str) -> Any:
        """api/users/change_password is a servlet filter: its 400s carry {"result": ...}."""
        import requests
        from requests.auth import HTTPBasicAuth

        from mlci.errors import SonarQubeError

        try:
            return client.session.post(
                f"{client.server.url}/api/users/change_password",
                data={
                    "login": SONARQUBE_ADMIN,
                    "previousPassword": SONARQUBE_DEFAULT_PASSWORD,
                    "password": password,
                },
                auth=HTTPBasicAuth(SONARQUBE_ADMIN, SONARQUBE_DEFAULT_PASSWORD),
                timeout=client.timeout,
            )
        except requests.Timeout:
            raise SonarQubeError(
                f"SonarQube: changing admin's password: no answer in {client.timeout:g} s",
                "POST api/users/change_password timed out",
                "check SonarQube's health (api/system/status); raise MLCI_PLATFORM_TIMEOUT",
            ) from None
        except requests.RequestException as exc:
            raise SonarQubeError(
                "SonarQube: changing admin's password: the server cannot be reached",
                type(exc).__name__, "check MLCI_PLATFORM_SONARQUBE_URL",
            ) from None  # fmt: skip

    def _sonar_ci_user(self, client: Any) -> None:
        service, step = "SonarQube", "CI user"
        password = self.env["SONARQUBE_CI_PASSWORD"]
        found = client.get("api/users/search", "looking up the CI user", q=SONAR_CI_USER)
        if not any(u.get("login") == SONAR_CI_USER for u in (found or {}).get("users", [])):
            client.post("api/users/create", "creating the CI user", login=SONAR_CI_USER,
                        name="mlci CI", password=password, local="true")  # fmt: skip
            self.record(service, step, CREATED, f"{SONAR_CI_USER} (no global permission)")
        elif self._sonar_valid(client, (SONAR_CI_USER, password), "checking the CI user"):
            self.record(service, step, UNCHANGED, f"{SONAR_CI_USER} logs in")
        else:
            client.post("api/users/change_password", "resetting the CI user's password",
                        login=SONAR_CI_USER, password=password)  # fmt: skip
            self.record(service, step, UPDATED, f"{SONAR_CI_USER}: password from the env file")

    def _sonar_ci_permissions(self, client: Any, key: str) -> None:
        """Execute Analysis and Browse on the project: what a scan and the gate need."""
        service, step = "SonarQube", "CI permissions"
        listed = client.get("api/permissions/users", "reading the project's permissions",
                            projectKey=key, q=SONAR_CI_USER)  # fmt: skip
        user = next(
            (u for u in (listed or {}).get("users", []) if u.get("login") == SONAR_CI_USER), {}
        )
        found = client.get("api/projects/search", "reading the project's visibility",
                           projects=key)  # fmt: skip
        project = next((c for c in (found or {}).get("components", []) if c.get("key") == key), {})
        # On a public project every user has Browse already; SonarQube refuses to grant it.
        needed = [
            p for p in SONAR_CI_PERMISSIONS if p != "user" or project.get("visibility") == "private"
        ]
        missing = [p for p in needed if p not in user.get("permissions", [])]
        for permission in missing:
            client.post("api/permissions/add_user", f"granting {permission}",
                        login=SONAR_CI_USER, permission=permission, projectKey=key)  # fmt: skip
        shown = "Execute Analysis and Browse"
        if missing:
            self.record(service, step, UPDATED, f"{SONAR_CI_USER}: {shown} on {key}")
        else:
            self.record(service, step, UNCHANGED, f"{SONAR_CI_USER} has {shown} on {key}")

    def _sonar_token(self, client: Any, key: str) -> None:
        """A PROJECT_ANALYSIS_TOKEN of the CI user, made by the CI user (only it can)."""
        service, step = "SonarQube", "token for Jenkins"
        current = self.env.values.get(SONARQUBE_TOKEN, "")
        listed = client.get("api/user_tokens/search", "listing the CI user's tokens",
                            login=SONAR_CI_USER)  # fmt: skip
        tokens = (listed or {}).get("userTokens", [])
        ours = [t for t in tokens if t.get("name") == SONAR_TOKEN_NAME]
        is_analysis_token = any(t.get("type") == "PROJECT_ANALYSIS_TOKEN" for t in ours)
        if (
            is_analysis_token
            and not self.env.is_placeholder(SONARQUBE_TOKEN)
            and self._sonar_valid(client, (current, ""), "checking SONARQUBE_TOKEN")
        ):
            detail = f"SONARQUBE_TOKEN is {SONAR_CI_USER}'s analysis token for {key}"
            self.record(service, step, UNCHANGED, detail)
        else:
            ci = self._sonarqube(SONAR_CI_USER, self.env["SONARQUBE_CI_PASSWORD"])
            if ours:
                ci.post("api/user_tokens/revoke", "revoking the CI user's old token",
                        name=SONAR_TOKEN_NAME)  # fmt: skip
            made = ci.post(
                "api/user_tokens/generate", "generating the analysis token",
                name=SONAR_TOKEN_NAME, type="PROJECT_ANALYSIS_TOKEN", projectKey=key,
            )  # fmt: skip
            value = (made or {}).get("token", "")
            if not value:
                from mlci.errors import SonarQubeError

                raise SonarQubeError(
                    "SonarQube: generating the token: no token in the answer",
                    "api/user_tokens/generate answered without a token value",
                    f"as {SONAR_CI_USER}, generate a project analysis token for {key} in "
                    "SonarQube's UI and put it into SONARQUBE_TOKEN",
                )
            set_value(self.env.path, SONARQUBE_TOKEN, value)
            self.env.values[SONARQUBE_TOKEN] = value
            self.record(
                service, step, UPDATED if ours else CREATED,
                f"PROJECT_ANALYSIS_TOKEN {SONAR_TOKEN_NAME} of {SONAR_CI_USER} for {key}; "
                "stored as SONARQUBE_TOKEN",
            )  # fmt: skip
            self._recreate_jenkins_for_token()
        self._revoke_admin_token(client)

    def _revoke_admin_token(self, client: Any) -> None:
        """Earlier wiring gave Jenkins a USER_TOKEN of admin: take it back."""
        listed = client.get("api/user_tokens/search", "listing admin's tokens",
                            login=SONARQUBE_ADMIN)  # fmt: skip
        if any(t.get("name") == SONAR_TOKEN_NAME for t in (listed or {}).get("userTokens", [])):
            client.post("api/user_tokens/revoke", "revoking admin's old token for Jenkins",
                        login=SONARQUBE_ADMIN, name=SONAR_TOKEN_NAME)  # fmt: skip
            detail = f"revoked {SONAR_TOKEN_NAME} of admin (Jenkins no longer needs admin)"
            self.record("SonarQube", "admin's token", UPDATED, detail)

    def _recreate_jenkins_for_token(self) -> None:
        if self.platform.kind == "kubernetes":
            self.record(
                "Jenkins", "restart", UNCHANGED,
                "give Jenkins the new SONARQUBE_TOKEN: invoke platform.kube-secrets, "
                "kubectl apply -f the file it writes, then kubectl rollout restart the "
                "Jenkins StatefulSet",
            )  # fmt: skip
            return
        if self.recreate_jenkins is not None:
            from mlci.clients.jenkins import forget_clients

            with self.step("Jenkins", "recreating for the new token"):
                self.recreate_jenkins()
            forget_clients()
            self.record("Jenkins", "recreate", UPDATED, "recreated to read SONARQUBE_TOKEN")
        else:
            self.record(
                "Jenkins", "recreate", UNCHANGED,
                "recreate Jenkins to read the new SONARQUBE_TOKEN: docker-compose ... up -d "
                "jenkins (invoke platform.wire does it when it runs the platform)",
            )  # fmt: skip

    def _sonar_gate(self, client: Any, key: str, name: str) -> None:
        from mlci.qualitygate import load_definition
        from mlci.sonar_gate import apply_gate

        gate = load_definition(gate_file(self.settings))
        done = apply_gate(client, gate, key, name)
        if not done:
            self.record("SonarQube", "quality gate", UNCHANGED,
                        f"{gate.name} matches the file, selected for {key}")  # fmt: skip
            return
        outcome = CREATED if any(c.action == "create gate" for c in done) else UPDATED
        counts: dict[str, int] = {}
        for c in done:
            counts[c.action] = counts.get(c.action, 0) + 1
        detail = f"{gate.name}: " + ", ".join(
            action if n == 1 else f"{action} x{n}" for action, n in counts.items()
        )
        self.record("SonarQube", "quality gate", outcome, detail)

    def _sonar_no_webhook(self, client: Any) -> None:
        """No webhook to Jenkins: ``invoke gate`` polls SonarQube and never waits for one.

        Earlier wiring created one (to JENKINS_URL/sonarqube-webhook/); unused, it only sends
        analysis results to an endpoint nobody checks, so it is removed.
        """
        service, step = "SonarQube", "webhook"
        url = f"{_slash(self.platform.jenkins_internal_url)}sonarqube-webhook/"
        hooks = (client.get("api/webhooks/list", "listing the webhooks") or {}).get("webhooks", [])
        stale = [h for h in hooks if h.get("url") == url or h.get("name") == SONAR_WEBHOOK_NAME]
        for hook in stale:
            client.post("api/webhooks/delete", "removing the unused webhook",
                        webhook=hook["key"])  # fmt: skip
        if stale:
            self.record(service, step, UPDATED, f"removed {url}: invoke gate polls the API")
        else:
            self.record(service, step, UNCHANGED, "none: invoke gate polls the API")

    # -- MLflow ------------------------------------------------------------------------------

    def mlflow(self) -> None:
        from mlci.platform import mlflow_accounts as accounts

        service, url, timeout = "MLflow", self.platform.mlflow_url, self.platform.timeout
        with self.step(service, "authentication"):
            enabled = accounts.auth_enabled(url, timeout)
        if not enabled:
            self.record(
                service, "users", UNCHANGED,
                "MLflow asks for no login (MLFLOW_AUTH=none): anyone who reaches it can move "
                "the champion; set MLFLOW_AUTH=basic in the env file",
            )  # fmt: skip
            return
        values = self.env.values
        admin = accounts.Account(
            values.get("MLFLOW_ADMIN_USERNAME") or "admin", self.env["MLFLOW_ADMIN_PASSWORD"]
        )
        ci = accounts.Account(
            values.get("MLFLOW_CI_USERNAME") or MLFLOW_CI_USER, self.env["MLFLOW_CI_PASSWORD"]
        )
        with self.step(service, "admin"):
            if not accounts.credentials_work(url, admin, timeout):
                from mlci.errors import TrackingServerError

                raise TrackingServerError(
                    f"MLflow: {admin.username} does not log in with MLFLOW_ADMIN_PASSWORD",
                    "the server keeps the admin password it first started with in its "
                    "user database",
                    "put that password into the env file, or reset the mlflow-db volume",
                )
        with self.step(service, "CI user"), self._mlflow_errors(url):
            outcome, detail = accounts.ensure_user(url, admin, ci, timeout)
        self.record(service, "CI user", outcome, detail)
        if self.platform.kind == "kubernetes":
            # The model-serving replicas download their version with a login of their own,
            # which gets no permission beyond the server's default (READ).
            serving = accounts.Account(
                values.get("MLFLOW_SERVING_USERNAME") or MLFLOW_SERVING_USER,
                self.env["MLFLOW_SERVING_PASSWORD"],
            )
            with self.step(service, "serving user"), self._mlflow_errors(url):
                outcome, detail = accounts.ensure_user(url, admin, serving, timeout)
            self.record(service, "serving user", outcome, detail + " (read only)")
        # Every model's experiment and registered model ([tool.mlci.models], or the one).
        for model in self.settings.each_model():
            with self.step(service, "CI permissions"), self._mlflow_errors(url):
                done = accounts.ensure_manage(
                    url, admin, ci.username, model.mlflow.experiment,
                    model.mlflow.registered_model, timeout,
                )  # fmt: skip
            for outcome, detail in done:
                self.record(service, "CI permissions", outcome, detail)

    @contextlib.contextmanager
    def _mlflow_errors(self, url: str) -> Iterator[None]:
        from mlflow.exceptions import MlflowException

        from mlci.platform.mlflow_accounts import client_error

        try:
            yield
        except MlflowException as exc:
            raise client_error(exc, url) from None

    # -- Jenkins -----------------------------------------------------------------------------

    def _jenkins(self) -> Any:
        from mlci.clients.jenkins import jenkins_client

        return jenkins_client(
            self.platform.jenkins_url,
            JENKINS_ADMIN,
            self.env["JENKINS_ADMIN_PASSWORD"],
            self.platform.timeout,
        )

    def _job_template(self, relative: str) -> str:
        template_path = platform_file(self.settings, relative)
        try:
            return template_path.read_text()
        except OSError as exc:
            from mlci.errors import ConfigError

            raise ConfigError(
                f"Jenkins: cannot read the job template {template_path}",
                str(exc),
                "run the task from the mlci checkout (MLCI_PROJECT_ROOT)",
            ) from None

    def wanted_job_xml(self) -> str:
        clone_url = self._repo_http_url(self.platform.gitbucket_internal_url)
        return render_job(
            self._job_template(JOB_TEMPLATE), clone_url, self.platform.ref_filter,
            self.env["JENKINS_WEBHOOK_TOKEN"],
        )  # fmt: skip

    def wanted_score_job_xml(self) -> str:
        clone_url = self._repo_http_url(self.platform.gitbucket_internal_url)
        return render_score_job(self._job_template(SCORE_JOB_TEMPLATE), clone_url)

    @property
    def score_job(self) -> str:
        return f"{self.platform.job}{SCORE_JOB_SUFFIX}"

    def jenkins_job(self) -> None:
        service = "Jenkins"
        with self.step(service, "credentials"):
            client = self._jenkins()
            me = client.whoami("checking admin's credentials (get_whoami)")
            who = me.get("id") or me.get("fullName") or JENKINS_ADMIN
            self.record(service, "credentials", UNCHANGED, f"logged in as {who}")
        with self.step(service, "job"):
            created = self._ensure_job(
                client, "job", self.platform.job, self.wanted_job_xml(), JOB_TEMPLATE
            )
            self._job_created = created
        with self.step(service, "scoring job"):
            self._ensure_job(
                client, "scoring job", self.score_job, self.wanted_score_job_xml(),
                SCORE_JOB_TEMPLATE,
            )  # fmt: skip

    def _ensure_job(self, client: Any, step: str, name: str, wanted: str, template: str) -> bool:
        """Create job ``name`` from ``wanted``, or update it where the part mlci owns differs;
        True when it was created."""
        from mlci.clients.jenkins import JenkinsError

        service = "Jenkins"
        exists = client.call(f"looking up the {step}", client.lib.job_exists, name)
        if not exists:
            client.call(f"creating the {step}", client.lib.create_job, name, wanted)
            outcome, detail = CREATED, f"{name} from {template}"
        else:
            stored = client.call(
                f"reading the {step}'s config.xml", client.lib.get_job_config, name
            )
            if canonical_xml(owned_part(stored, wanted)) == canonical_xml(wanted):
                self.record(service, step, UNCHANGED, f"{name} matches {template}")
                return False
            client.call(f"updating the {step}", client.lib.reconfig_job, name, wanted)
            outcome, detail = UPDATED, f"{name}: config.xml differed from {template}"
        stored = client.call(f"reading the {step} back", client.lib.get_job_config, name)
        if canonical_xml(owned_part(stored, wanted)) != canonical_xml(wanted):
            raise JenkinsError(
                f"Jenkins: the job {name} reads back different from what was sent",
                "a plugin of the template is missing, so Jenkins dropped its elements",
                "install the plugins of jenkins/plugins.txt (rebuild the image: "
                "invoke platform.up) and run `invoke platform.wire` again",
            )
        self.record(service, step, outcome, detail)
        return outcome == CREATED

    def jenkins_agent(self) -> None:
        """The agent container connects with the secret Jenkins derives for its node."""
        from mlci.platform.secrets import JENKINS_AGENT_SECRET

        service, step = "Jenkins", "agent secret"
        if self.platform.kind == "kubernetes":
            detail = "agents are pods of the Kubernetes cloud: no permanent agent to connect"
            self.record(service, "agent", UNCHANGED, detail)
            return
        with self.step(service, step):
            secret = self._jenkins().agent_secret(AGENT_NODE)
            if self.env.values.get(JENKINS_AGENT_SECRET) == secret:
                self.record(service, step, UNCHANGED, f"{AGENT_NODE}'s secret is in the env file")
                return
            created = self.env.is_placeholder(JENKINS_AGENT_SECRET)
            set_value(self.env.path, JENKINS_AGENT_SECRET, secret)
            self.env.values[JENKINS_AGENT_SECRET] = secret
            self.record(service, step, CREATED if created else UPDATED,
                        f"{AGENT_NODE}'s secret stored as JENKINS_AGENT_SECRET")  # fmt: skip
        if self.recreate_agent is not None:
            with self.step(service, "recreating the agent"):
                self.recreate_agent()
            self.record(service, "agent", UPDATED, f"recreated to connect as {AGENT_NODE}")
        else:
            detail = "recreate the agent to connect: docker-compose ... up -d agent"
            self.record(service, "agent", UNCHANGED, detail)

    def jenkins_first_build(self) -> None:
        service, step = "Jenkins", "first build"
        if not (self._job_created or self.build):
            return
        if self._pushed_commit is None:
            return
        with self.step(service, step):
            number, url = self._trigger(self._pushed_commit)
            self.record(service, step, CREATED, f"#{number} of {self._pushed_commit[:12]}: {url}")

    def _trigger(self, commit: str) -> tuple[int, str]:
        """Start the job through the Generic Webhook Trigger and follow its queue item."""
        import requests

        from mlci.clients.jenkins import JenkinsError

        base = self.platform.jenkins_url.rstrip("/")
        payload = {
            "ref": f"refs/heads/{BRANCH}",
            "after": commit,
            "repository": {"clone_url": self._repo_http_url(self.platform.gitbucket_internal_url)},
        }
        # Signed as GitBucket signs its deliveries: the trigger's whitelist checks the HMAC.
        body = json.dumps(payload).encode("utf-8")
        signature = hmac.new(
            self.env["GITBUCKET_WEBHOOK_SECRET"].encode("utf-8"), body, hashlib.sha256
        ).hexdigest()
        try:
            resp = requests.post(
                f"{base}/generic-webhook-trigger/invoke",
                data=body,
                headers={
                    "Content-Type": "application/json",
                    "X-Hub-Signature-256": f"sha256={signature}",
                    # The plugin reads the token from a `token` header too: kept out of the URL.
                    "token": self.env["JENKINS_WEBHOOK_TOKEN"],
                    "User-Agent": "mlci",
                },
                timeout=self.platform.timeout,
            )
        except requests.Timeout:
            raise JenkinsError(
                f"Jenkins: starting the first build: no answer in {self.platform.timeout:g} s",
                "POST generic-webhook-trigger/invoke timed out",
                "check Jenkins' health (invoke platform.status); raise MLCI_PLATFORM_TIMEOUT",
            ) from None
        except requests.RequestException as exc:
            raise JenkinsError(
                "Jenkins: starting the first build: Jenkins cannot be reached",
                type(exc).__name__, "check MLCI_PLATFORM_JENKINS_URL",
            ) from None  # fmt: skip
        try:
            job = (resp.json().get("jobs") or {}).get(self.platform.job) or {}
        except ValueError:
            job = {}
        if resp.status_code != 200 or not job.get("triggered"):
            raise JenkinsError(
                f"Jenkins: starting the first build: the trigger answered HTTP {resp.status_code}",
                "no build was queued (unknown token, or the ref does not match the job's filter)",
                "check that the Generic Webhook Trigger plugin is installed and "
                "MLCI_PLATFORM_REF_FILTER matches refs/heads/main",
            )
        queue_id = int(str(job.get("url", "")).rstrip("/").rsplit("/", 1)[-1] or job.get("id"))
        return self._follow_queue(queue_id)

    def _follow_queue(self, queue_id: int) -> tuple[int, str]:
        from mlci.clients.jenkins import JenkinsError

        client = self._jenkins()
        deadline = self.clock() + self.platform.ready_timeout
        interval = 0.2
        while True:
            item = client.call("following the queued build", client.lib.get_queue_item, queue_id)
            executable = item.get("executable") or {}
            if executable.get("number"):
                return int(executable["number"]), str(executable.get("url", ""))
            if item.get("cancelled"):
                raise JenkinsError(
                    f"Jenkins: the first build (queue item {queue_id}) was cancelled",
                    "someone or something cancelled it in the queue",
                    "start it from Jenkins' UI, or run `invoke platform.wire --build`",
                )
            remaining = deadline - self.clock()
            if remaining <= 0:
                raise JenkinsError(
                    f"Jenkins: the first build did not leave the queue in "
                    f"{self.platform.ready_timeout:g} s",
                    str(item.get("why") or "no executor took it"),
                    "check the executors under Manage Jenkins > Nodes",
                )
            self.sleep(min(interval, remaining))
            interval = min(interval * 1.5, 5.0)


def wire(
    settings: Settings,
    env: EnvFile,
    *,
    source: Path,
    runner: Callable[..., Any] = tools.run,
    log: Callable[[str], None] = print,
    recreate_jenkins: Callable[[], None] | None = None,
    recreate_agent: Callable[[], None] | None = None,
    build: bool = False,
) -> list[Change]:
    """Wire the services; the changes (created / updated / unchanged), in order."""
    return Wiring(
        settings, env, source, runner=runner, log=log, recreate_jenkins=recreate_jenkins,
        recreate_agent=recreate_agent, build=build,
    ).run()  # fmt: skip
