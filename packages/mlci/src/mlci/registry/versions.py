"""Finding a model version by alias or by number, and describing where it came from."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from mlci.errors import StageFailed
from mlci.registry.history import history
from mlci.registry.lock import error_code


def alias_version(client: Any, model: str, alias: str) -> Any | None:
    """The model version behind ``alias``, or None when the alias (or model) is not set."""
    from mlci.clients.mlflow import alias_version as read

    return read(client, model, alias)


def named_version(client: Any, model: str, version: str, purpose: str = "describe") -> Any:
    """The version the user named (``7`` or ``v7``), or a clear error naming the ones there are."""
    from mlflow.exceptions import MlflowException

    number = str(version).strip().removeprefix("v")
    if not number.isdigit():
        raise StageFailed(
            f"--version {version!r} is not a version number",
            "registered model versions are whole numbers (1, 2, 3 ...)",
            "pass e.g. --version 7 (or v7)",
        )
    try:
        return client.get_model_version(model, number)
    except MlflowException as exc:
        if error_code(exc) != "RESOURCE_DOES_NOT_EXIST":
            raise
    known = sorted(
        (int(mv.version) for mv in client.search_model_versions(f"name='{model}'")), reverse=True
    )
    shown = ", ".join(f"v{n}" for n in known[:10]) + (" ..." if len(known) > 10 else "")
    raise StageFailed(
        f"{model} has no version {number}",
        f"its versions: {shown or 'none'}",
        f"pass one of those to --version, or leave --version out to {purpose} the champion",
    )


def resolve_version(
    client: Any, model: str, alias: str, version: str | None = None, purpose: str = "describe"
) -> Any:
    """The model version behind ``alias``, or ``version`` when given (``7`` or ``v7``); a
    clear error when the model, the alias or the version does not exist. ``purpose`` (what
    the caller does with it) completes the advice of that error."""
    from mlflow.exceptions import MlflowException

    try:
        registered = client.get_registered_model(model)
    except MlflowException as exc:
        if error_code(exc) == "RESOURCE_DOES_NOT_EXIST":
            raise StageFailed(
                f"the registered model {model!r} does not exist on this tracking server",
                "nothing has been trained and registered under that name here",
                "check MLCI_MLFLOW_REGISTERED_MODEL and MLCI_MLFLOW_TRACKING_URI",
            ) from None
        raise
    if version is not None:
        return named_version(client, model, version, purpose)
    mv = alias_version(client, model, alias)
    if mv is None:
        raise StageFailed(
            f"{model} has no alias {alias!r}",
            f"aliases now: {', '.join(sorted(registered.aliases)) or 'none'}",
            "promote a version first (invoke promote), or pass --version",
        )
    return mv


def describe(client: Any, model: str, alias: str, version: str | None = None) -> dict[str, Any]:
    """The version behind ``alias`` (or ``version``): run, metrics, lineage, history."""
    mv = resolve_version(client, model, alias, version)
    run = client.get_run(mv.run_id)
    return {
        "model": model,
        "alias": alias if version is None else None,
        "version": str(mv.version),
        "aliases": sorted(mv.aliases or []),
        "run_id": mv.run_id,
        "created": datetime.fromtimestamp(mv.creation_timestamp / 1000, UTC).isoformat(
            timespec="seconds"
        ),
        "metrics": dict(sorted(run.data.metrics.items())),
        "params": dict(sorted(run.data.params.items())),
        "lineage": {k: v for k, v in sorted(mv.tags.items()) if k.startswith("mlci.")},
        "history": history(client, model),
    }
