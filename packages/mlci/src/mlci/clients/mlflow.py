"""MLflow tracking server access: reachability check, timeouts, one error mapping.

The reachability check is one GET of ``/health`` with urllib rather than
:func:`mlci.http.session`: it must fail at once (no retry) and runs before anything imports
requests.
"""

from __future__ import annotations

import contextlib
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

from mlci.errors import TrackingServerError
from mlci.settings import MlflowSettings


def _redact(uri: str) -> str:
    """A URL without user:password@, for messages."""
    scheme, sep, rest = uri.partition("://")
    if sep and "@" in rest.split("/", 1)[0]:
        rest = rest.split("@", 1)[1]
    return f"{scheme}{sep}{rest}"


def check_reachable(uri: str, timeout: float) -> None:
    """Fail fast with a clear message instead of MLflow's long retry loop."""
    if uri.startswith("databricks"):
        return
    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            if resp.status == 200:
                return
            problem = f"HTTP {resp.status}"
    except urllib.error.HTTPError as exc:
        problem = f"HTTP {exc.code} {exc.reason}"
    except (urllib.error.URLError, OSError) as exc:
        problem = str(getattr(exc, "reason", exc))
    raise TrackingServerError(
        f"the MLflow tracking server at {_redact(uri)} cannot be reached",
        f"GET /health failed: {problem}",
        "start the server, fix MLCI_MLFLOW_TRACKING_URI, or unset it to let mlci start "
        "a local server",
    )


def connect(uri: str, settings: MlflowSettings) -> Any:
    """An MlflowClient bound to ``uri`` with mlci's timeouts; checks the server first."""
    # MLflow reads these per request; its defaults (120 s, 7 retries with backoff) turn a
    # dead server into minutes of silence.
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(int(settings.timeout))
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(settings.retries)
    check_reachable(uri, settings.timeout)
    import mlflow
    from mlflow import MlflowClient

    # set_tracking_uri also exports MLFLOW_TRACKING_URI for subprocesses; mlci reads that
    # variable as the user's setting, so a later stage in this process (or a child) would
    # take a server mlci started, and maybe stopped, for the user's own. Keep the user's.
    before = os.environ.get("MLFLOW_TRACKING_URI")
    try:
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
    finally:
        if before is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = before
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


@contextlib.contextmanager
def server_errors(action: str, uri: str) -> Iterator[None]:
    """Turn MLflow and HTTP failures inside ``action`` into one clear TrackingServerError."""
    from mlflow.exceptions import MlflowException
    from requests.exceptions import RequestException

    try:
        yield
    except MlflowException as exc:
        code = getattr(exc, "error_code", "")
        why = exc.message if hasattr(exc, "message") else str(exc)
        fix = "check the server's log and that the experiment / model names are right"
        if "401" in why or "Unauthorized" in why or code == "UNAUTHENTICATED":
            fix = _login_fix()
        elif "403" in why or code == "PERMISSION_DENIED":
            user = os.environ.get("MLFLOW_TRACKING_USERNAME")
            fix = (
                f"{user!r} may not do this: ask for permission on this experiment / model "
                "(the platform's CI user has MANAGE on both), or use another account"
                if user
                else "ask for permission on this experiment / model, or use another account"
            )
        raise TrackingServerError(
            f"{action} failed on the MLflow server {_redact(uri)}",
            f"{code}: {why}".strip(": ")[:1500],
            fix,
        ) from None
    except RequestException as exc:
        raise TrackingServerError(
            f"{action} failed: the MLflow server {_redact(uri)} stopped answering",
            str(exc)[:1500],
            "check that the server is up and reachable, then run the stage again",
        ) from None


def _login_fix() -> str:
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    if user and os.environ.get("MLFLOW_TRACKING_PASSWORD"):
        return (
            f"the server refused the login of {user!r} (MLFLOW_TRACKING_USERNAME): check "
            "MLFLOW_TRACKING_PASSWORD (in Jenkins: the mlflow-ci credential)"
        )
    missing = [
        name
        for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
        if not os.environ.get(name)
    ]
    return f"this server needs a login: set {' and '.join(missing)}"


def alias_version(client: Any, model: str, alias: str) -> Any | None:
    """The model version behind ``alias``, or None when the alias (or model) is not set."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(model, alias)
    except MlflowException as exc:
        if getattr(exc, "error_code", "") in ("INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST"):
            return None
        raise
