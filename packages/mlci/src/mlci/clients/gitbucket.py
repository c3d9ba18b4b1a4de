"""GitBucket access: its GitHub-shaped API v3 with basic auth, and the two web forms that
change a password (GitBucket has no API for that).

One session per client (:func:`mlci.http.session`: one timeout for every call, urllib3's
retries), one error mapping. GitBucket's
quirks handled here: errors are ``{"message": ...}`` bodies; ``POST .../repos`` answers 200
even for a duplicate name, with a message instead of the repository; a hook's own ``url``
lacks ``repos/``, so hooks are addressed by id under ``/api/v3/repos/{owner}/{repo}/hooks``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from mlci.errors import GitBucketError

if TYPE_CHECKING:
    import requests

__all__ = ["GitBucket", "GitBucketError"]

SERVICE = "GitBucket"


def _message(resp: requests.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text.strip()[:200] or resp.reason or ""
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    return str(body)[:200]


class GitBucket:
    """A client bound to one GitBucket and one account."""

    def __init__(self, url: str, user: str, password: str, timeout: float) -> None:
        self.url = url.rstrip("/")
        self.user = user
        self.timeout = timeout
        self.session = self._session(auth=(user, password))

    def _session(self, auth: tuple[str, str] | None = None) -> requests.Session:
        from mlci import http

        session = http.session(self.timeout, auth=auth)
        session.headers["Accept"] = "application/json"
        return session

    def close(self) -> None:
        self.session.close()

    # -- one request path ------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        step: str,
        *,
        missing_ok: bool = False,
        expect_empty: bool = False,
        session: requests.Session | None = None,
        **kwargs: Any,
    ) -> Any:
        """One call; the parsed JSON (None for 204, or for 404 when ``missing_ok``).

        With ``expect_empty`` a 2xx without a body answers True (a yes/no endpoint).
        """
        import requests

        url = f"{self.url}/{path.lstrip('/')}"
        try:
            resp = (session or self.session).request(method, url, allow_redirects=False, **kwargs)
        except requests.Timeout:
            raise GitBucketError(
                f"GitBucket: {step}: no answer from {self.url} within {self.timeout:g} s",
                f"{method} {path} timed out",
                "check that the gitbucket container is healthy (docker-compose ps); raise "
                "MLCI_PLATFORM_TIMEOUT if it is only slow",
            ) from None
        except requests.RequestException as exc:
            raise GitBucketError(
                f"GitBucket: {step}: {self.url} cannot be reached",
                type(exc).__name__,
                "check MLCI_PLATFORM_GITBUCKET_URL and that the gitbucket container runs",
            ) from None
        if resp.status_code == 404 and missing_ok:
            return None
        if resp.status_code == 401:
            raise GitBucketError(
                f"GitBucket: {step}: the credentials of {self.user!r} were refused (HTTP 401)",
                _message(resp),
                "the password in the env file (GITBUCKET_ROOT_PASSWORD) no longer matches "
                "GitBucket's; set it back in GitBucket's UI or put the current one in the file",
            )
        if resp.status_code >= 400:
            raise GitBucketError(
                f"GitBucket: {step}: HTTP {resp.status_code}",
                _message(resp),
                "GitBucket's log (docker-compose logs gitbucket) has the details",
            )
        if resp.status_code == 204 or not resp.content:
            return True if expect_empty else None
        try:
            return resp.json()
        except ValueError:
            raise GitBucketError(
                f"GitBucket: {step}: the answer is not JSON",
                resp.text[:200],
                "check that MLCI_PLATFORM_GITBUCKET_URL points at GitBucket itself",
            ) from None

    # -- accounts ----------------------------------------------------------------------------

    def credentials_work(self, user: str, password: str, step: str) -> bool:
        """Whether ``user``/``password`` authenticates (GET /api/v3/user; changes nothing)."""
        import requests

        # A session of its own: no cookie of this client's session may answer for the login.
        try:
            with self._session(auth=(user, password)) as probe:
                resp = probe.get(f"{self.url}/api/v3/user", allow_redirects=False)
        except requests.Timeout:
            raise GitBucketError(
                f"GitBucket: {step}: no answer from {self.url} within {self.timeout:g} s",
                "GET api/v3/user timed out",
                "check that the gitbucket container is healthy; raise MLCI_PLATFORM_TIMEOUT",
            ) from None
        except requests.RequestException as exc:
            raise GitBucketError(
                f"GitBucket: {step}: {self.url} cannot be reached",
                type(exc).__name__,
                "check MLCI_PLATFORM_GITBUCKET_URL and that the gitbucket container runs",
            ) from None
        if resp.status_code == 200:
            return True
        if resp.status_code == 401:
            return False
        raise GitBucketError(
            f"GitBucket: {step}: HTTP {resp.status_code}",
            _message(resp),
            "GitBucket's log (docker-compose logs gitbucket) has the details",
        )

    def change_password(self, user: str, old: str, new: str, email: str, step: str) -> None:
        """The web flow: sign in (form), then POST the account form with the new password.

        The account form requires the full name and the mail address and sets them too:
        the full name becomes the user name (GitBucket's own default for root).
        """
        import requests

        from mlci import http

        web = http.session(self.timeout)
        try:
            self.request(
                "POST",
                "signin",
                f"{step} (sign-in form)",
                session=web,
                data={"userName": user, "password": old},
            )
            if not web.cookies:
                raise GitBucketError(
                    f"GitBucket: {step}: signing in as {user!r} did not open a session",
                    "the sign-in form answered without a session cookie (wrong password?)",
                    "check that the old password still works in GitBucket's UI",
                )
            resp = web.post(
                f"{self.url}/{quote(user)}/_edit",
                data={"password": new, "fullName": user, "mailAddress": email},
                allow_redirects=False,
            )
        except requests.Timeout:
            raise GitBucketError(
                f"GitBucket: {step}: no answer within {self.timeout:g} s",
                "the account form",
                "check that the gitbucket container is healthy; raise MLCI_PLATFORM_TIMEOUT",
            ) from None
        except requests.RequestException as exc:
            raise GitBucketError(
                f"GitBucket: {step}: {self.url} cannot be reached",
                type(exc).__name__,
                "check MLCI_PLATFORM_GITBUCKET_URL and that the gitbucket container runs",
            ) from None
        finally:
            web.close()
        if resp.status_code == 400:
            raise GitBucketError(
                f"GitBucket: {step}: the account form refused the change (HTTP 400)",
                "GitBucket validates the form first: passwords over 20 characters, an empty "
                "or already used mail address are refused",
                "keep GITBUCKET_ROOT_PASSWORD at 20 characters or fewer",
            )
        if resp.status_code not in (200, 302):
            raise GitBucketError(
                f"GitBucket: {step}: the account form answered HTTP {resp.status_code}",
                _message(resp),
                "GitBucket's log (docker-compose logs gitbucket) has the details",
            )

    def _json(self, method: str, path: str, step: str, **kwargs: Any) -> dict[str, Any]:
        body: dict[str, Any] = self.request(method, path, step, **kwargs) or {}
        return body

    def _found(self, path: str, step: str) -> dict[str, Any] | None:
        body: dict[str, Any] | None = self.request("GET", path, step, missing_ok=True)
        return body

    def me(self, step: str) -> dict[str, Any]:
        return self._json("GET", "api/v3/user", step)

    def get_user(self, name: str, step: str) -> dict[str, Any] | None:
        return self._found(f"api/v3/users/{quote(name)}", step)

    def create_user(self, name: str, password: str, email: str, step: str) -> dict[str, Any]:
        """POST api/v3/admin/users (admin only): a plain, non-admin account."""
        account = {"login": name, "password": password, "email": email, "fullName": name}
        return self._json("POST", "api/v3/admin/users", step, json={**account, "isAdmin": False})

    # -- collaborators -----------------------------------------------------------------------

    def _collaborator_path(self, owner: str, repo: str, name: str) -> str:
        return f"api/v3/repos/{quote(owner)}/{quote(repo)}/collaborators/{quote(name)}"

    def collaborator_role(self, owner: str, repo: str, name: str, step: str) -> str | None:
        """GitBucket's role of a direct collaborator (GUEST = pull), None when it is none.

        The collaborator listing carries no permissions; ``.../collaborators/:user`` answers
        204 or 404, and ``.../permission`` names the role.
        """
        path = self._collaborator_path(owner, repo, name)
        if self.request("GET", path, step, missing_ok=True, expect_empty=True) is None:
            return None
        body = self.request("GET", f"{path}/permission", step) or {}
        return str(body.get("permission", "")) or None

    def add_collaborator(
        self, owner: str, repo: str, name: str, permission: str, step: str
    ) -> None:
        """PUT is an insert in GitBucket (a second one is a 500): remove a changed role first."""
        path = self._collaborator_path(owner, repo, name)
        self.request("PUT", path, step, json={"permission": permission})

    def remove_collaborator(self, owner: str, repo: str, name: str, step: str) -> None:
        self.request("DELETE", self._collaborator_path(owner, repo, name), step)

    # -- organisations and repositories ------------------------------------------------------

    def get_org(self, org: str, step: str) -> dict[str, Any] | None:
        return self._found(f"api/v3/orgs/{quote(org)}", step)

    def create_org(self, org: str, admin: str, step: str) -> dict[str, Any]:
        organisation = {"login": org, "admin": admin, "profile_name": org}
        return self._json("POST", "api/v3/admin/organizations", step, json=organisation)

    def get_repo(self, owner: str, name: str, step: str) -> dict[str, Any] | None:
        return self._found(f"api/v3/repos/{quote(owner)}/{quote(name)}", step)

    def create_org_repo(self, org: str, name: str, private: bool, step: str) -> dict[str, Any]:
        repository = {"name": name, "private": private, "auto_init": False}
        body = self.request("POST", f"api/v3/orgs/{quote(org)}/repos", step, json=repository)
        if not isinstance(body, dict) or "full_name" not in body:
            # GitBucket answers 200 with only a message for a name that exists already.
            message = _message_of(body)
            raise GitBucketError(
                f"GitBucket: {step}: the repository {org}/{name} was not created",
                message or "GitBucket answered 200 without a repository",
                "if it exists already but cannot be read by this account, give root access "
                "to it or choose another MLCI_PLATFORM_REPOSITORY",
            )
        return body

    # -- hooks -------------------------------------------------------------------------------

    def _hooks_path(self, owner: str, repo: str) -> str:
        return f"api/v3/repos/{quote(owner)}/{quote(repo)}/hooks"

    def list_hooks(self, owner: str, repo: str, step: str) -> list[dict[str, Any]]:
        hooks: list[dict[str, Any]] = self.request("GET", self._hooks_path(owner, repo), step)
        return hooks or []

    def create_hook(self, owner: str, repo: str, hook: dict[str, Any], step: str) -> Any:
        """The hook GitBucket answers with (the caller checks that it is one)."""
        return self.request("POST", self._hooks_path(owner, repo), step, json=hook)

    def update_hook(
        self, owner: str, repo: str, hook_id: int, hook: dict[str, Any], step: str
    ) -> None:
        # PATCH sets what it gets: the secret and content_type must be sent every time.
        path = f"{self._hooks_path(owner, repo)}/{int(hook_id)}"
        self.request("PATCH", path, step, json=hook)

    def delete_hook(self, owner: str, repo: str, hook_id: int, step: str) -> None:
        self.request("DELETE", f"{self._hooks_path(owner, repo)}/{int(hook_id)}", step)


def _message_of(body: Any) -> str:
    if isinstance(body, dict):
        return str(body.get("message", ""))
    return ""
