"""The quality gate as code, applied to SonarQube: create or update it, select it.

The file (sonarqube/quality-gate.toml) is the truth: a condition missing in SonarQube is
created, one with another operator or threshold is updated, one SonarQube has that the
file does not is deleted, and the gate is selected for the project. Running it twice
changes nothing the second time: every call is preceded by a read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from mlci.clients.sonarqube import SonarQube
from mlci.errors import SonarQubeError
from mlci.qualitygate import GateDefinition


@dataclass(frozen=True)
class Change:
    action: str
    detail: str


def _same_threshold(a: Any, b: float) -> bool:
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return False


def _lib_call(action: str, fn: Callable[..., Any], **kwargs: Any) -> Any:
    """A python-sonarqube-api call with its exceptions mapped like ours."""
    from requests import RequestException
    from sonarqube.utils.exceptions import AuthError, ClientError, ServerError

    try:
        return fn(**kwargs)
    except AuthError as exc:
        raise SonarQubeError(
            f"{action}: SonarQube refused the credentials",
            str(exc).splitlines()[0],
            "use a token of a user with 'Administer Quality Gates' and 'Administer' on the "
            "project (MLCI_SONAR_TOKEN)",
        ) from None
    except (ClientError, ServerError) as exc:
        raise SonarQubeError(f"{action} failed", str(exc)[:500], "see SonarQube's log") from None
    except RequestException as exc:
        raise SonarQubeError(
            f"{action}: SonarQube cannot be reached", str(exc)[:500], "check MLCI_SONAR_HOST_URL"
        ) from None


def apply_gate(
    client: SonarQube,
    gate: GateDefinition,
    project_key: str,
    project_name: str,
    *,
    dry_run: bool = False,
) -> list[Change]:
    changes: list[Change] = []

    def act(action: str, detail: str, fn: Callable[[], Any]) -> Any:
        changes.append(Change(action, detail))
        return None if dry_run else fn()

    if client.ensure_project(project_key, project_name, dry_run=dry_run):
        changes.append(Change("create project", project_key))

    existing: dict[str, Any] | None = _show_gate(client, gate.name)
    if existing is None:
        act(
            "create gate",
            gate.name,
            lambda: client.post("api/qualitygates/create", "creating the gate", name=gate.name),
        )
        existing = {"conditions": []}
    elif existing.get("isBuiltIn"):
        raise SonarQubeError(
            f"the gate {gate.name!r} is a built-in SonarQube gate",
            "built-in gates cannot be changed",
            "give the gate another name in sonarqube/quality-gate.toml",
        )
    current: dict[str, dict[str, Any]] = {c["metric"]: c for c in existing.get("conditions", [])}
    wanted = {c.metric: c for c in gate.conditions}
    for metric, cond in wanted.items():
        have = current.get(metric)
        threshold = f"{cond.error:g}"
        if have is None:
            act(
                "create condition",
                f"{metric} {cond.op} {threshold}",
                partial(
                    client.post,
                    "api/qualitygates/create_condition",
                    f"adding the condition on {metric}",
                    gateName=gate.name,
                    metric=metric,
                    op=cond.op,
                    error=threshold,
                ),
            )
        elif have.get("op") != cond.op or not _same_threshold(have.get("error"), cond.error):
            act(
                "update condition",
                f"{metric}: {have.get('op')} {have.get('error')} -> {cond.op} {threshold}",
                partial(
                    client.post,
                    "api/qualitygates/update_condition",
                    f"updating the condition on {metric}",
                    id=have["id"],
                    metric=metric,
                    op=cond.op,
                    error=threshold,
                ),
            )
    for metric, have in current.items():
        if metric not in wanted:
            act(
                "delete condition",
                f"{metric} (not in the gate file)",
                partial(
                    client.post,
                    "api/qualitygates/delete_condition",
                    f"removing the condition on {have['metric']}",
                    id=have["id"],
                ),
            )

    selected = _selected_gate(client, project_key) if existing.get("name") else None
    if selected != gate.name:
        act(
            "select gate",
            f"{gate.name} for {project_key}",
            lambda: _lib_call(
                "selecting the gate for the project",
                client.lib.qualitygates.select_quality_gate_for_project,
                projectKey=project_key,
                gateName=gate.name,
            ),
        )
    return changes


def _show_gate(client: SonarQube, name: str) -> dict[str, Any] | None:
    try:
        shown: dict[str, Any] | None = client.get(
            "api/qualitygates/show", "reading the gate", name=name
        )
        return shown
    except SonarQubeError as exc:
        if "HTTP 404" in exc.what:
            return None
        raise


def _selected_gate(client: SonarQube, project_key: str) -> str | None:
    try:
        data = client.get(
            "api/qualitygates/get_by_project", "reading the project's gate", project=project_key
        )
    except SonarQubeError as exc:
        if "HTTP 404" in exc.what:
            return None
        raise
    name = (data or {}).get("qualityGate", {}).get("name")
    return str(name) if name is not None else None
