"""SonarQube web API access: python-sonarqube-api where it has the endpoint, and for what it
lacks the same session (:func:`mlci.http.session`: same auth, same timeout, same retries),
with one error mapping for both.

SonarQube answers errors as ``{"errors": [{"msg": ...}]}`` with 400/403/404, but a bad
token gets 401 with an empty body; both become a :class:`SonarQubeError` that says what.
Waiting for an analysis is one :func:`mlci.polling.poll`.
"""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import requests

from mlci.errors import ConfigError, SonarQubeError
from mlci.settings import Settings

FINISHED = ("SUCCESS", "FAILED", "CANCELED")


@dataclass(frozen=True)
class SonarServer:
    url: str
    token: str


def configured_server(settings: Settings) -> SonarServer | None:
    """The SonarQube to use: mlci settings, else Jenkins' withSonarQubeEnv, else none."""
    url = settings.sonar.host_url or os.environ.get("SONAR_HOST_URL", "")
    if not url:
        return None
    token = (
        settings.sonar.token
        or os.environ.get("SONAR_TOKEN", "")
        or os.environ.get("SONAR_AUTH_TOKEN", "")
    )
    if not token:
        raise ConfigError(
            f"SonarQube at {url} is configured but no token is set",
            "the scanner and the gate authenticate with an analysis token",
            "set MLCI_SONAR_TOKEN or SONAR_TOKEN (in Jenkins: withSonarQubeEnv provides it)",
        )
    return SonarServer(url.rstrip("/"), token)


def _messages(resp: requests.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text.strip()[:300]
    errors = body.get("errors") if isinstance(body, dict) else None
    if errors:
        return "; ".join(str(e.get("msg", e)) for e in errors)
    return str(body)[:300]


class SonarQube:
    """A thin client bound to one server; every call has a timeout.

    It authenticates with the server's token, or with ``auth`` (a login and password) when
    given.
    """

    def __init__(
        self, server: SonarServer, timeout: float, *, auth: tuple[str, str] | None = None
    ) -> None:
        from mlci import http

        # importlib: the checkout's own sonarqube/ folder would shadow the library for mypy.
        library: Any = importlib.import_module("sonarqube")
        self.server = server
        self.timeout = timeout
        self.lib = library.SonarQubeClient(sonarqube_url=server.url, timeout=timeout)
        credentials = auth or ((server.token, "") if server.token else None)
        self.session = http.session(timeout, auth=credentials)
        self.lib.session = self.session  # the library's calls go through the same session

    def request(self, method: str, path: str, action: str, **kwargs: Any) -> Any:
        """One request through the library's session; JSON body, None for 204."""
        import requests

        url = f"{self.server.url}/{path.lstrip('/')}"
        try:
            resp = self.session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.Timeout:
            raise SonarQubeError(
                f"{action}: SonarQube at {self.server.url} did not answer in {self.timeout:g} s",
                f"{method} {path} timed out",
                "check the server's load and health (api/system/status); raise "
                "MLCI_SONAR_TIMEOUT if it is just slow",
            ) from None
        except requests.RequestException as exc:
            raise SonarQubeError(
                f"{action}: SonarQube at {self.server.url} cannot be reached",
                str(exc)[:500],
                "check MLCI_SONAR_HOST_URL and that the server is up",
            ) from None
        if resp.status_code == 401:
            raise SonarQubeError(
                f"{action}: SonarQube rejected the token (HTTP 401)",
                "the token is wrong, expired or revoked",
                "generate a new analysis token and set MLCI_SONAR_TOKEN / SONAR_TOKEN",
            )
        if resp.status_code == 403:
            raise SonarQubeError(
                f"{action}: the token may not do this (HTTP 403)",
                _messages(resp),
                "give the token's user the permission named above (Browse / Execute Analysis "
                "/ Administer Quality Gates)",
            )
        if resp.status_code >= 400:
            raise SonarQubeError(
                f"{action}: SonarQube answered HTTP {resp.status_code}",
                _messages(resp),
                "see the message above; the server's log has more",
            )
        if resp.status_code == 204 or not resp.content:
            return None
        try:
            return resp.json()
        except ValueError:
            raise SonarQubeError(
                f"{action}: SonarQube answered something that is not JSON",
                resp.text[:200],
                "check that MLCI_SONAR_HOST_URL points at SonarQube itself, not a proxy page",
            ) from None

    def get(self, path: str, action: str, **params: Any) -> Any:
        return self.request("GET", path, action, params=params)

    def post(self, path: str, action: str, **data: Any) -> Any:
        return self.request("POST", path, action, data=data)

    def credentials_valid(self, auth: tuple[str, str], action: str) -> bool:
        """Whether SonarQube accepts ``auth`` (a login and password, or a token and "")."""
        body = self.request("GET", "api/authentication/validate", action, auth=auth)
        return bool((body or {}).get("valid"))

    def change_password(self, login: str, previous: str, password: str) -> requests.Response:
        """``login`` changes its own password; the answer as it is, for the caller to judge.

        api/users/change_password is a servlet filter: its 400s carry ``{"result": ...}``
        rather than SonarQube's usual errors.
        """
        import requests

        action = f"SonarQube: changing {login}'s password"
        try:
            return self.session.post(
                f"{self.server.url}/api/users/change_password",
                data={"login": login, "previousPassword": previous, "password": password},
                auth=(login, previous),
            )
        except requests.Timeout:
            raise SonarQubeError(
                f"{action}: no answer in {self.timeout:g} s",
                "POST api/users/change_password timed out",
                "check SonarQube's health (api/system/status); raise MLCI_PLATFORM_TIMEOUT",
            ) from None
        except requests.RequestException as exc:
            raise SonarQubeError(
                f"{action}: the server cannot be reached",
                type(exc).__name__,
                "check MLCI_PLATFORM_SONARQUBE_URL",
            ) from None

    def ensure_project(self, key: str, name: str, *, dry_run: bool = False) -> bool:
        """Create project ``key`` unless it exists; True when it was missing (and, unless
        ``dry_run``, is now created)."""
        found = self.get("api/projects/search", "looking up the project", projects=key)
        if any(c.get("key") == key for c in (found or {}).get("components", [])):
            return False
        if not dry_run:
            self.post("api/projects/create", "creating the project", project=key, name=name)
        return True

    def check_ready(self, action: str) -> None:
        """Fail with one clear message unless the server is UP and accepts the token.

        Run before the scanner, whose own messages for an unreachable server or a bad token
        ("Error while fetching the analysis version") do not say which it is.
        """
        status = (self.get("api/system/status", action) or {}).get("status", "unknown")
        if status != "UP":
            raise SonarQubeError(
                f"{action}: SonarQube at {self.server.url} is {status}, not UP",
                "it accepts analyses only once it is UP (after start-up and migrations)",
                "wait for it (api/system/status) and run the stage again",
            )
        if not (self.get("api/authentication/validate", action) or {}).get("valid"):
            raise SonarQubeError(
                f"{action}: SonarQube at {self.server.url} does not accept the token",
                "api/authentication/validate says the token is not valid",
                "generate a new analysis token and set MLCI_SONAR_TOKEN / SONAR_TOKEN (in "
                "Jenkins: the credential behind withSonarQubeEnv)",
            )

    # -- analysis and gate ---------------------------------------------------------------

    def wait_for_task(
        self,
        task_id: str,
        timeout: float,
        first_interval: float,
        progress: Callable[[str], None],
        sleep: Callable[[float], None] = time.sleep,
    ) -> dict[str, Any]:
        """Poll api/ce/task until the analysis finishes: the pause grows from
        ``first_interval`` by 1.5 up to 15 s, the last one cut to end at ``timeout``."""
        from mlci.polling import poll

        shown: list[str | None] = []

        def read_task() -> dict[str, Any]:
            task: dict[str, Any] = self.get("api/ce/task", "reading the analysis task", id=task_id)[
                "task"
            ]
            if not shown or task.get("status") != shown[-1]:
                progress(f"gate: analysis {task_id} is {task.get('status')}")
                shown.append(task.get("status"))
            return task

        task = poll(
            read_task,
            lambda task: task.get("status") in FINISHED,
            timeout,
            first_interval,
            growth=1.5,
            most=15.0,
            sleep=sleep,
        )
        status = task.get("status")
        if status not in FINISHED:
            raise SonarQubeError(
                f"the analysis {task_id} did not finish within {timeout:g} s (still {status})",
                "SonarQube's compute engine is busy or stuck",
                "look at Administration > Background Tasks; raise MLCI_SONAR_GATE_TIMEOUT "
                "if the server is just slow",
            )
        return task

    def project_status(self, analysis_id: str) -> dict[str, Any]:
        status: dict[str, Any] = self.get(
            "api/qualitygates/project_status",
            "reading the quality gate status",
            analysisId=analysis_id,
        )["projectStatus"]
        return status


def read_report_task(path: Any) -> dict[str, str]:
    """The properties the scanner writes to report-task.txt (key=value lines)."""
    from mlci.errors import StageFailed

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StageFailed(
            f"{path} does not exist",
            "the scanner writes it at the end of an analysis",
            "run `invoke scan` first (in Jenkins, in the same workspace)",
        ) from None
    except UnicodeDecodeError as exc:
        raise StageFailed(
            f"{path} is not UTF-8 text",
            f"byte {exc.start} cannot be decoded: it is not what the scanner writes",
            "run `invoke scan` again to write it afresh",
        ) from None
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith("#"):
            values[key.strip()] = value.strip()
    if "ceTaskId" not in values:
        raise StageFailed(
            f"{path} names no ceTaskId",
            "the analysis did not reach the server",
            "run `invoke scan` again and read its output",
        )
    return values
