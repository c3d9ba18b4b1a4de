"""The wiring's SonarQube steps: admin's password, the project, the CI user and its
permissions, the analysis token Jenkins uses, the quality gate, and no webhook."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlci.platform.secrets import SONARQUBE_TOKEN, set_value
from mlci.platform.wire.core import CREATED, UNCHANGED, UPDATED, WiringBase
from mlci.platform.wire.templates import slash
from mlci.resources import gate_file

if TYPE_CHECKING:
    from mlci.clients.sonarqube import SonarQube

# SonarQube's shipped first login: tried only to replace it at once with the generated one.
SONARQUBE_ADMIN = "admin"
SONARQUBE_DEFAULT_PASSWORD = "admin"
SONAR_TOKEN_NAME = "mlci-jenkins"
SONAR_WEBHOOK_NAME = "jenkins"
SONAR_CI_USER = "mlci-ci"
SONAR_CI_PERMISSIONS = ("scan", "user")  # Execute Analysis, Browse

SERVICE = "SonarQube"


class SonarQubeSteps(WiringBase):
    def _sonarqube(self, user: str, password: str) -> SonarQube:
        from mlci.clients.sonarqube import SonarQube, SonarServer

        server = SonarServer(self.platform.sonarqube_url.rstrip("/"), "")
        return SonarQube(server, self.platform.timeout, auth=(user, password))

    def sonarqube(self) -> None:
        from mlci.platform.readiness import Probe, sonarqube_check, wait_until_ready

        url = self.platform.sonarqube_url
        with self.step(SERVICE, "waiting for UP"):
            wait_until_ready(
                [Probe(SERVICE, url, sonarqube_check(url, self.platform.timeout))],
                self.platform.ready_timeout,
                self.log,
                sleep=self.sleep,
                clock=self.clock,
            )
        password = self.env["SONARQUBE_ADMIN_PASSWORD"]
        client = self._sonarqube(SONARQUBE_ADMIN, password)
        with self.step(SERVICE, "admin password"):
            self._sonar_password(client, password)
        key = self.settings.sonar.project_key or self.settings.project_root.name
        name = self.settings.sonar.project_name or key
        with self.step(SERVICE, "project"):
            if client.ensure_project(key, name):
                self.record(SERVICE, "project", CREATED, key)
            else:
                self.record(SERVICE, "project", UNCHANGED, f"{key} exists")
        with self.step(SERVICE, "CI user"):
            self._sonar_ci_user(client)
        with self.step(SERVICE, "CI permissions"):
            self._sonar_ci_permissions(client, key)
        with self.step(SERVICE, "token for Jenkins"):
            self._sonar_token(client, key)
        with self.step(SERVICE, "quality gate"):
            self._sonar_gate(client, key, name)
        with self.step(SERVICE, "webhook"):
            self._sonar_no_webhook(client)

    def _sonar_password(self, client: SonarQube, password: str) -> None:
        from mlci.errors import SonarQubeError

        step = "admin password"
        default = (SONARQUBE_ADMIN, SONARQUBE_DEFAULT_PASSWORD)
        if client.credentials_valid(default, "trying admin/admin"):
            resp = client.change_password(SONARQUBE_ADMIN, SONARQUBE_DEFAULT_PASSWORD, password)
            if resp.status_code not in (200, 204):
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
            new_ok = client.credentials_valid((SONARQUBE_ADMIN, password), "verifying")
            old_ok = client.credentials_valid(default, "verifying")
            if not new_ok or old_ok:
                raise SonarQubeError(
                    "SonarQube: admin's password change did not take effect",
                    f"new password works: {new_ok}; admin/admin works: {old_ok}",
                    "change it in SonarQube's UI (My Account > Security)",
                )
            self.record(SERVICE, step, UPDATED, "admin/admin replaced by SONARQUBE_ADMIN_PASSWORD")
        elif client.credentials_valid((SONARQUBE_ADMIN, password), "trying the password"):
            self.record(SERVICE, step, UNCHANGED, "admin uses SONARQUBE_ADMIN_PASSWORD")
        else:
            raise SonarQubeError(
                "SonarQube: admin logs in neither with admin/admin nor with "
                "SONARQUBE_ADMIN_PASSWORD",
                "admin's password was changed outside mlci, or the env file was replaced",
                f"put admin's current password into SONARQUBE_ADMIN_PASSWORD in {self.env.path}",
            )

    def _sonar_ci_user(self, client: SonarQube) -> None:
        step = "CI user"
        password = self.env["SONARQUBE_CI_PASSWORD"]
        found = client.get("api/users/search", "looking up the CI user", q=SONAR_CI_USER)
        if not any(u.get("login") == SONAR_CI_USER for u in (found or {}).get("users", [])):
            client.post(
                "api/users/create",
                "creating the CI user",
                login=SONAR_CI_USER,
                name="mlci CI",
                password=password,
                local="true",
            )
            self.record(SERVICE, step, CREATED, f"{SONAR_CI_USER} (no global permission)")
        elif client.credentials_valid((SONAR_CI_USER, password), "checking the CI user"):
            self.record(SERVICE, step, UNCHANGED, f"{SONAR_CI_USER} logs in")
        else:
            client.post(
                "api/users/change_password",
                "resetting the CI user's password",
                login=SONAR_CI_USER,
                password=password,
            )
            self.record(SERVICE, step, UPDATED, f"{SONAR_CI_USER}: password from the env file")

    def _sonar_ci_permissions(self, client: SonarQube, key: str) -> None:
        """Execute Analysis and Browse on the project: what a scan and the gate need."""
        step = "CI permissions"
        listed = client.get(
            "api/permissions/users",
            "reading the project's permissions",
            projectKey=key,
            q=SONAR_CI_USER,
        )
        users = (listed or {}).get("users", [])
        user: dict[str, Any] = next((u for u in users if u.get("login") == SONAR_CI_USER), {})
        found = client.get("api/projects/search", "reading the project's visibility", projects=key)
        components = (found or {}).get("components", [])
        project: dict[str, Any] = next((c for c in components if c.get("key") == key), {})
        # On a public project every user has Browse already; SonarQube refuses to grant it.
        private = project.get("visibility") == "private"
        needed = [p for p in SONAR_CI_PERMISSIONS if p != "user" or private]
        missing = [p for p in needed if p not in user.get("permissions", [])]
        for permission in missing:
            client.post(
                "api/permissions/add_user",
                f"granting {permission}",
                login=SONAR_CI_USER,
                permission=permission,
                projectKey=key,
            )
        shown = "Execute Analysis and Browse"
        if missing:
            self.record(SERVICE, step, UPDATED, f"{SONAR_CI_USER}: {shown} on {key}")
        else:
            self.record(SERVICE, step, UNCHANGED, f"{SONAR_CI_USER} has {shown} on {key}")

    def _sonar_token(self, client: SonarQube, key: str) -> None:
        """A PROJECT_ANALYSIS_TOKEN of the CI user, made by the CI user (only it can)."""
        step = "token for Jenkins"
        current = self.env.values.get(SONARQUBE_TOKEN, "")
        listed = client.get(
            "api/user_tokens/search", "listing the CI user's tokens", login=SONAR_CI_USER
        )
        tokens = (listed or {}).get("userTokens", [])
        ours = [t for t in tokens if t.get("name") == SONAR_TOKEN_NAME]
        is_analysis_token = any(t.get("type") == "PROJECT_ANALYSIS_TOKEN" for t in ours)
        if (
            is_analysis_token
            and not self.env.is_placeholder(SONARQUBE_TOKEN)
            and client.credentials_valid((current, ""), "checking SONARQUBE_TOKEN")
        ):
            detail = f"SONARQUBE_TOKEN is {SONAR_CI_USER}'s analysis token for {key}"
            self.record(SERVICE, step, UNCHANGED, detail)
        else:
            self._new_sonar_token(key, replace=bool(ours))
            self._recreate_jenkins_for_token()
        self._revoke_admin_token(client)

    def _new_sonar_token(self, key: str, *, replace: bool) -> None:
        """The CI user revokes its old token (``replace``) and generates the new one."""
        ci = self._sonarqube(SONAR_CI_USER, self.env["SONARQUBE_CI_PASSWORD"])
        if replace:
            ci.post(
                "api/user_tokens/revoke", "revoking the CI user's old token", name=SONAR_TOKEN_NAME
            )
        made = ci.post(
            "api/user_tokens/generate",
            "generating the analysis token",
            name=SONAR_TOKEN_NAME,
            type="PROJECT_ANALYSIS_TOKEN",
            projectKey=key,
        )
        value = str((made or {}).get("token", ""))
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
            SERVICE,
            "token for Jenkins",
            UPDATED if replace else CREATED,
            f"PROJECT_ANALYSIS_TOKEN {SONAR_TOKEN_NAME} of {SONAR_CI_USER} for {key}; "
            "stored as SONARQUBE_TOKEN",
        )

    def _revoke_admin_token(self, client: SonarQube) -> None:
        """Earlier wiring gave Jenkins a USER_TOKEN of admin: take it back."""
        listed = client.get(
            "api/user_tokens/search", "listing admin's tokens", login=SONARQUBE_ADMIN
        )
        if any(t.get("name") == SONAR_TOKEN_NAME for t in (listed or {}).get("userTokens", [])):
            client.post(
                "api/user_tokens/revoke",
                "revoking admin's old token for Jenkins",
                login=SONARQUBE_ADMIN,
                name=SONAR_TOKEN_NAME,
            )
            detail = f"revoked {SONAR_TOKEN_NAME} of admin (Jenkins no longer needs admin)"
            self.record(SERVICE, "admin's token", UPDATED, detail)

    def _recreate_jenkins_for_token(self) -> None:
        if self.platform.kind == "kubernetes":
            self.record(
                "Jenkins",
                "restart",
                UNCHANGED,
                "give Jenkins the new SONARQUBE_TOKEN: invoke platform.kube-secrets, "
                "kubectl apply -f the file it writes, then kubectl rollout restart the "
                "Jenkins StatefulSet",
            )
            return
        if self.recreate_jenkins is None:
            self.record(
                "Jenkins",
                "recreate",
                UNCHANGED,
                "recreate Jenkins to read the new SONARQUBE_TOKEN: docker-compose ... up -d "
                "jenkins (invoke platform.wire does it when it runs the platform)",
            )
            return
        from mlci.clients.jenkins import forget_clients

        with self.step("Jenkins", "recreating for the new token"):
            self.recreate_jenkins()
        forget_clients()
        self.record("Jenkins", "recreate", UPDATED, "recreated to read SONARQUBE_TOKEN")

    def _sonar_gate(self, client: SonarQube, key: str, name: str) -> None:
        from mlci.qualitygate import load_definition
        from mlci.sonar_gate import apply_gate

        gate = load_definition(gate_file(self.settings))
        done = apply_gate(client, gate, key, name)
        if not done:
            detail = f"{gate.name} matches the file, selected for {key}"
            self.record(SERVICE, "quality gate", UNCHANGED, detail)
            return
        outcome = CREATED if any(c.action == "create gate" for c in done) else UPDATED
        counts: dict[str, int] = {}
        for c in done:
            counts[c.action] = counts.get(c.action, 0) + 1
        detail = f"{gate.name}: " + ", ".join(
            action if n == 1 else f"{action} x{n}" for action, n in counts.items()
        )
        self.record(SERVICE, "quality gate", outcome, detail)

    def _sonar_no_webhook(self, client: SonarQube) -> None:
        """No webhook to Jenkins: ``invoke gate`` polls SonarQube and never waits for one.

        Earlier wiring created one (to JENKINS_URL/sonarqube-webhook/); unused, it only sends
        analysis results to an endpoint nobody checks, so it is removed.
        """
        step = "webhook"
        url = f"{slash(self.platform.jenkins_internal_url)}sonarqube-webhook/"
        hooks = (client.get("api/webhooks/list", "listing the webhooks") or {}).get("webhooks", [])
        stale = [h for h in hooks if h.get("url") == url or h.get("name") == SONAR_WEBHOOK_NAME]
        for hook in stale:
            client.post("api/webhooks/delete", "removing the unused webhook", webhook=hook["key"])
        if stale:
            self.record(SERVICE, step, UPDATED, f"removed {url}: invoke gate polls the API")
        else:
            self.record(SERVICE, step, UNCHANGED, "none: invoke gate polls the API")
