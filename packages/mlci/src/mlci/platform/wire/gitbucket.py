"""The wiring's GitBucket steps: root's password, the organisation and the repository, the
push of the project's HEAD, the account Jenkins clones with, and the push hook."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlci.platform.wire.core import BRANCH, CREATED, UNCHANGED, UPDATED, WiringBase
from mlci.platform.wire.templates import shown_url, webhook_url, without_query

if TYPE_CHECKING:
    from mlci.clients.gitbucket import GitBucket

# GitBucket's shipped first login: tried only to replace it at once with the generated one.
GITBUCKET_ADMIN = "root"
GITBUCKET_DEFAULT_PASSWORD = "root"
GITBUCKET_JENKINS_USER = "mlci-jenkins"
GITBUCKET_READ_ROLE = "GUEST"  # GitBucket's name for a `pull` collaborator

SERVICE = "GitBucket"


class GitBucketSteps(WiringBase):
    def _gitbucket(self, password: str | None = None) -> GitBucket:
        from mlci.clients.gitbucket import GitBucket

        return GitBucket(
            self.platform.gitbucket_url,
            GITBUCKET_ADMIN,
            password or self.env["GITBUCKET_ROOT_PASSWORD"],
            self.platform.timeout,
        )

    def gitbucket_account_and_repository(self) -> None:
        org, repo = self.platform.organisation, self.platform.repository
        with self.step(SERVICE, "root password"):
            client = self._gitbucket()
            self._gitbucket_password(client)
        with self.step(SERVICE, "organisation"):
            if client.get_org(org, "reading the organisation") is not None:
                self.record(SERVICE, "organisation", UNCHANGED, f"{org} exists")
            else:
                client.create_org(org, GITBUCKET_ADMIN, f"creating the organisation {org}")
                self.record(SERVICE, "organisation", CREATED, f"{org} (manager: root)")
        with self.step(SERVICE, "repository"):
            if client.get_repo(org, repo, "reading the repository") is not None:
                self.record(SERVICE, "repository", UNCHANGED, f"{org}/{repo} exists")
            else:
                client.create_org_repo(org, repo, True, f"creating the repository {org}/{repo}")
                self.record(SERVICE, "repository", CREATED, f"{org}/{repo} (private)")
        with self.step(SERVICE, "push"):
            self._push()
        client.close()

    def _gitbucket_password(self, client: GitBucket) -> None:
        from mlci.clients.gitbucket import GitBucketError

        step = "root password"
        new = self.env["GITBUCKET_ROOT_PASSWORD"]
        if client.credentials_work(GITBUCKET_ADMIN, GITBUCKET_DEFAULT_PASSWORD, "trying root/root"):
            default = self._gitbucket(GITBUCKET_DEFAULT_PASSWORD)
            email = default.me("reading root's account").get("email") or "root@localhost"
            default.change_password(
                GITBUCKET_ADMIN,
                GITBUCKET_DEFAULT_PASSWORD,
                new,
                email,
                "changing root's password (web form)",
            )
            default.close()
            self._verify_password_change(client, new)
            self.record(SERVICE, step, UPDATED, "root/root replaced by GITBUCKET_ROOT_PASSWORD")
        elif client.credentials_work(GITBUCKET_ADMIN, new, "trying GITBUCKET_ROOT_PASSWORD"):
            self.record(SERVICE, step, UNCHANGED, "root uses GITBUCKET_ROOT_PASSWORD")
        else:
            raise GitBucketError(
                "GitBucket: root logs in neither with root/root nor with GITBUCKET_ROOT_PASSWORD",
                "root's password was changed outside mlci, or the env file was replaced",
                "put root's current password into GITBUCKET_ROOT_PASSWORD in the env file "
                f"({self.env.path}) and run `invoke platform.wire` again",
            )

    def _verify_password_change(self, client: GitBucket, new: str) -> None:
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

        step = "Jenkins' user"
        org, repo = self.platform.organisation, self.platform.repository
        name = self.env.values.get("GITBUCKET_JENKINS_USERNAME") or GITBUCKET_JENKINS_USER
        password = self.env["GITBUCKET_JENKINS_PASSWORD"]
        with self.step(SERVICE, step):
            client = self._gitbucket()
            if client.get_user(name, "looking up Jenkins' user") is None:
                client.create_user(name, password, f"{name}@localhost", "creating Jenkins' user")
                self.record(SERVICE, step, CREATED, f"{name} (no admin)")
            elif client.credentials_work(name, password, "checking Jenkins' user"):
                self.record(SERVICE, step, UNCHANGED, f"{name} logs in")
            else:
                raise GitBucketError(
                    f"GitBucket: {name} exists but does not log in with GITBUCKET_JENKINS_PASSWORD",
                    "its password was changed outside mlci, or the env file was replaced",
                    f"set {name}'s password in GitBucket (Administration > User management) "
                    "to the env file's value, or delete the user and wire again",
                )
        step = "Jenkins' read access"
        with self.step(SERVICE, step):
            role = client.collaborator_role(org, repo, name, "reading Jenkins' access")
            if role == GITBUCKET_READ_ROLE:
                self.record(SERVICE, step, UNCHANGED, f"{name} may read {org}/{repo}")
            else:
                if role is not None:  # a wider role: GitBucket's PUT cannot change it
                    client.remove_collaborator(org, repo, name, f"removing {name}'s {role} role")
                client.add_collaborator(org, repo, name, "pull", "adding Jenkins' user")
                outcome = CREATED if role is None else UPDATED
                was = "" if role is None else f" (was {role})"
                self.record(SERVICE, step, outcome, f"{name}: pull on {org}/{repo}{was}")
        client.close()

    def _push(self) -> None:
        from mlci.platform.git_push import push_head

        remote = self._repo_http_url(self.platform.gitbucket_url)
        result = push_head(
            self.source,
            remote,
            BRANCH,
            GITBUCKET_ADMIN,
            self.env["GITBUCKET_ROOT_PASSWORD"],
            self.runner,
            self.platform.timeout * 4,
        )
        self._pushed_commit = result.local
        if not result.pushed:
            self.record(SERVICE, "push", UNCHANGED, f"{BRANCH} is at {result.local[:12]}")
            return
        before = result.remote_before[:12] if result.remote_before else "empty"
        outcome = UPDATED if result.remote_before else CREATED
        detail = f"{BRANCH}: {before} -> {result.local[:12]} (HEAD of {self.source.name})"
        self.record(SERVICE, "push", outcome, detail)

    def gitbucket_hook(self) -> None:
        from mlci.clients.gitbucket import GitBucketError

        step = "push webhook"
        org, repo = self.platform.organisation, self.platform.repository
        url = webhook_url(self.platform.jenkins_internal_url, self.env["JENKINS_WEBHOOK_TOKEN"])
        wanted: dict[str, Any] = {
            "name": "web",
            "active": True,
            "events": ["push"],
            "config": {
                "url": url,
                "content_type": "json",
                "secret": self.env["GITBUCKET_WEBHOOK_SECRET"],
            },
        }
        with self.step(SERVICE, step):
            client = self._gitbucket()
            hooks = client.list_hooks(org, repo, "listing the hooks")
            ours = [
                hook
                for hook in hooks
                if without_query(hook.get("config", {}).get("url", "")) == without_query(url)
            ]
            if not ours:
                created = client.create_hook(org, repo, wanted, "creating the push hook")
                if not isinstance(created, dict) or "id" not in created:
                    raise GitBucketError(
                        "GitBucket: creating the push hook: no hook in the answer",
                        "GitBucket answered without the hook it created",
                        "look at the repository's Settings > Service Hooks",
                    )
                self.record(SERVICE, step, CREATED, f"{shown_url(url)} (json, push, signed)")
                return
            hook, stale = ours[0], ours[1:]
            drift = _hook_drift(hook, url)
            if drift:
                client.update_hook(org, repo, hook["id"], wanted, "updating the push hook")
            for extra in stale:
                client.delete_hook(org, repo, extra["id"], "removing a duplicate push hook")
            if stale:
                drift.append(f"{len(stale)} duplicate(s) removed")
            if drift:
                self.record(SERVICE, step, UPDATED, f"fixed {', '.join(drift)}")
            else:
                self.record(SERVICE, step, UNCHANGED, f"{shown_url(url)} (json, push)")
            client.close()


def _hook_drift(hook: dict[str, Any], url: str) -> list[str]:
    """What differs between GitBucket's hook and the one mlci wants."""
    drift = []
    if hook.get("config", {}).get("url") != url:
        drift.append("token")
    if hook.get("config", {}).get("content_type") != "json":
        drift.append("content type")
    if sorted(hook.get("events", [])) != ["push"]:
        drift.append(f"events {sorted(hook.get('events', []))}")
    return drift
