"""What the release leaves behind: the upload, the check that every file arrived intact,
the champion model each package ships (and its tag in the registry), the release notes."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlci.context import StageContext
from mlci.errors import PackageIndexError, ReleaseRefused
from mlci.release.build import DistFile
from mlci.release.index import download_sha, host, listings
from mlci.release.preflight import PackagePlan

if TYPE_CHECKING:
    import requests


def upload(upload_url: str, auth: tuple[str | None, str | None], files: list[DistFile]) -> None:
    """Upload ``files`` with twine; its failures become a :class:`PackageIndexError`."""
    import requests
    from twine.commands.upload import upload as twine_upload
    from twine.exceptions import TwineException
    from twine.settings import Settings as TwineSettings

    # Credentials go through twine's API, never onto a command line.
    twine_settings = TwineSettings(
        repository_url=upload_url,
        username=auth[0],
        password=auth[1],
        non_interactive=True,
        disable_progress_bar=True,
    )
    twine_logger = logging.getLogger("twine")
    level = twine_logger.level
    twine_logger.setLevel(logging.ERROR)  # its "retry with --verbose" hint does not apply here
    try:
        twine_upload(twine_settings, [str(f.path) for f in files])
    except requests.HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "?"
        why = f"HTTP {status}: {exc.response.reason if exc.response is not None else exc}"
        fix = "check the index's log; run `invoke release` again, it skips what arrived"
        if status in (401, 403):
            fix = "check TWINE_USERNAME / TWINE_PASSWORD (or MLCI_RELEASE_USERNAME / _PASSWORD)"
        raise PackageIndexError(
            f"the package index {host(upload_url)} refused the upload", why, fix
        ) from None
    except requests.RequestException as exc:
        raise PackageIndexError(
            f"the upload to {host(upload_url)} was interrupted",
            str(exc)[:500],
            "run `invoke release` again once the index answers; it skips what arrived",
        ) from None
    except TwineException as exc:
        raise PackageIndexError(
            f"twine could not upload to {host(upload_url)}",
            str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
            "set TWINE_USERNAME / TWINE_PASSWORD (or MLCI_RELEASE_USERNAME / _PASSWORD)",
        ) from None
    finally:
        twine_logger.setLevel(level)


def verify(
    session: requests.Session, simple_url: str, files: list[DistFile], timeout: float
) -> None:
    """Download every file back and compare its sha256 with what was built."""
    mismatched = []
    listed = listings(session, simple_url, files, timeout)
    for f in files:
        entry = listed[f.package].get(f.path.name)
        got = download_sha(session, entry[0], timeout) if entry else "missing"
        if got != f.sha256:
            mismatched.append(f"{f.path.name}: {got[:16]}")
    if mismatched:
        raise PackageIndexError(
            "files downloaded back from the index differ from what was built",
            "; ".join(mismatched),
            "check the index; do not use this release until it is repaired",
        )


def model_record(
    ctx: StageContext, packages: list[PackagePlan]
) -> tuple[dict[str, Any] | None, tuple[Path, str] | None]:
    """The champion this release ships, and where in which package it goes (package path,
    file inside it): the build writes it into the package's copy."""
    settings = ctx.settings
    if not settings.model.package or not settings.model.module:
        return None, None
    model_dir = settings.path(settings.model.package).resolve()
    if not any(p.path.resolve() == model_dir for p in packages):
        return None, None
    from mlci.clients import mlflow as mlflow_client

    uri = ctx.tracking_uri()
    client = mlflow_client.connect(uri, settings.mlflow)
    name, alias = settings.mlflow.registered_model, settings.promotion.alias
    with mlflow_client.server_errors(f"reading the {alias} of {name}", uri):
        champion = mlflow_client.alias_version(client, name, alias)
        if champion is None:
            raise ReleaseRefused(
                f"{name} has no {alias}: there is no validated model to ship",
                f"the release of {settings.model.package} records the {alias} it ships",
                "run `invoke train` and `invoke promote` first",
            )
        metrics = dict(client.get_run(champion.run_id).data.metrics)
    record = {
        "registered_model": name,
        "alias": alias,
        "version": str(champion.version),
        "run_id": champion.run_id,
        "metrics": {k: metrics[k] for k in sorted(metrics)},
        "tracking_uri": "local" if ctx.tracking_is_local else uri,
    }
    module = settings.model.module.replace(".", "/")
    inside = f"src/{module}" if (model_dir / "src" / module).is_dir() else module
    ctx.log(f"release: {settings.model.package} ships {name} v{champion.version} ({alias})")
    return record, (model_dir, f"{inside}/model_record.json")


def tag_model_version(
    ctx: StageContext, record: dict[str, Any], packages: list[PackagePlan]
) -> None:
    """Tag the shipped model version with the package release that carries it."""
    from mlci.clients import mlflow as mlflow_client

    settings = ctx.settings
    model_dir = settings.path(settings.model.package).resolve()
    package = next(p for p in packages if p.path.resolve() == model_dir)
    uri = ctx.tracking_uri()
    client = mlflow_client.connect(uri, settings.mlflow)
    with mlflow_client.server_errors("tagging the released model version", uri):
        client.set_model_version_tag(
            record["registered_model"],
            record["version"],
            "mlci.released_as",
            f"{package.name}=={package.version}",
        )


def release_notes(details: dict[str, Any]) -> str:
    """Markdown notes: the packages and versions, the models shipped, each file's sha256."""
    lines = ["# Release", ""]
    lines += [f"- {name} {version}" for name, version in sorted(details["packages"].items())]
    for model in details.get("models") or []:
        lines += [
            "",
            f"Ships the registered model {model['registered_model']} v{model['version']} "
            f"({model['alias']}), run {model['run_id']}.",
        ]
        lines += [f"- {k}: {v:.4f}" for k, v in model["metrics"].items()]
    lines += ["", f"Index: {details['index']}", "", "| file | sha256 |", "|---|---|"]
    lines += [f"| {f['name']} | {f['sha256']} |" for f in details["files"]]
    return "\n".join(lines) + "\n"
