"""MLflow accounts of the platform, through MLflow's basic-auth admin API.

The CI user Jenkins binds for Train, Promote, Deploy, Release and the nightly scoring (it
gets MANAGE on the experiment and the registered model: it creates runs and versions, moves
aliases, and holds the promotion lease). On Compose model serving needs no MLflow user (the
Deploy stage downloads a version for its slots); on Kubernetes each serving replica
downloads its version itself, with a user that keeps the server's default READ. The experiment and
the registered model are created here (as the admin) when missing, because a permission can
only be granted on something that exists.

mlflow's ``AuthServiceClient`` takes its credentials from ``MLFLOW_TRACKING_USERNAME`` /
``_PASSWORD``; :func:`_acting_as` sets them for the duration of a call and restores them.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from mlci.errors import TrackingServerError

CREATED, UPDATED, UNCHANGED = "created", "updated", "unchanged"
MANAGE = "MANAGE"
_CREDENTIAL_ENV = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")


@dataclass(frozen=True)
class Account:
    username: str
    password: str


@contextlib.contextmanager
def _acting_as(account: Account, timeout: float) -> Iterator[None]:
    names = (*_CREDENTIAL_ENV, "MLFLOW_HTTP_REQUEST_TIMEOUT")
    saved = {name: os.environ.get(name) for name in names}
    os.environ["MLFLOW_TRACKING_USERNAME"] = account.username
    os.environ["MLFLOW_TRACKING_PASSWORD"] = account.password
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(int(timeout))
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _get(url: str, path: str, timeout: float, auth: tuple[str, str] | None = None) -> int:
    import requests

    from mlci.http import session

    try:
        with session(timeout, auth=auth) as http:
            return http.get(url.rstrip("/") + path, params={"max_results": 1}).status_code
    except requests.RequestException as exc:
        raise TrackingServerError(
            f"MLflow at {url} cannot be reached",
            type(exc).__name__,
            "check MLCI_PLATFORM_MLFLOW_URL and that the mlflow container is healthy",
        ) from None


def auth_enabled(url: str, timeout: float) -> bool:
    """Whether the server asks for a login (its basic-auth app is on)."""
    status = _get(url, "/api/2.0/mlflow/experiments/search", timeout)
    if status in (401, 403):
        return True
    if status == 200:
        return False
    raise TrackingServerError(
        f"MLflow at {url} answered HTTP {status} to an experiment search",
        "neither a login request nor an answer",
        "check the mlflow container's log (docker-compose logs mlflow)",
    )


def credentials_work(url: str, account: Account, timeout: float) -> bool:
    """Whether the account logs in (GET users/current, which changes nothing)."""
    login = (account.username, account.password)
    return _get(url, "/api/2.0/mlflow/users/current", timeout, login) == 200


def _code(exc: Exception) -> str:
    return getattr(exc, "error_code", "") or ""


def ensure_user(url: str, admin: Account, account: Account, timeout: float) -> tuple[str, str]:
    """The user exists and logs in with ``account.password``: (outcome, detail)."""
    from mlflow.exceptions import MlflowException
    from mlflow.server.auth.client import AuthServiceClient

    client = AuthServiceClient(url)
    with _acting_as(admin, timeout):
        try:
            client.get_user(account.username)
        except MlflowException as exc:
            if _code(exc) != "RESOURCE_DOES_NOT_EXIST":
                raise
            client.create_user(account.username, account.password)
            return CREATED, f"user {account.username}"
        if credentials_work(url, account, timeout):
            return UNCHANGED, f"user {account.username} logs in"
        client.update_user_password(account.username, account.password)
    return UPDATED, f"user {account.username}: password set from the env file"


def ensure_manage(
    url: str, admin: Account, username: str, experiment: str, model: str, timeout: float
) -> list[tuple[str, str]]:
    """The experiment and the registered model exist and ``username`` has MANAGE on both."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException
    from mlflow.server.auth.client import AuthServiceClient

    done: list[tuple[str, str]] = []
    auth = AuthServiceClient(url)
    with _acting_as(admin, timeout):
        tracking = MlflowClient(tracking_uri=url, registry_uri=url)
        found = tracking.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found else tracking.create_experiment(experiment)
        if found is None:
            done.append((CREATED, f"experiment {experiment}"))
        try:
            tracking.get_registered_model(model)
        except MlflowException as exc:
            if _code(exc) != "RESOURCE_DOES_NOT_EXIST":
                raise
            tracking.create_registered_model(model)
            done.append((CREATED, f"registered model {model}"))
        for kind, resource, shown in (
            ("experiment", str(experiment_id), f"experiment {experiment}"),
            ("registered_model", model, f"registered model {model}"),
        ):
            held = auth.get_user_permission(username, kind, resource).permission
            if held == MANAGE:
                done.append((UNCHANGED, f"{username} has MANAGE on {shown}"))
                continue
            with contextlib.suppress(MlflowException):  # only the default READ: none to revoke
                auth.revoke_user_permission(username, kind, resource)
            auth.grant_user_permission(username, kind, resource, MANAGE)
            done.append((UPDATED, f"{username}: {held} -> MANAGE on {shown}"))
    return done


def client_error(exc: Any, url: str) -> TrackingServerError:
    """An MLflow error during wiring, as one message."""
    return TrackingServerError(
        f"MLflow at {url} refused a wiring call",
        str(getattr(exc, "message", exc))[:500],
        "check MLFLOW_ADMIN_PASSWORD in the env file (the admin the server was started with) "
        "and the mlflow container's log",
    )
