"""One Invoke task per pipeline stage, plus `pipeline` and `config`."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from mlci.errors import ConfigError
from mlci.tasks._signals import as_exit, ends_cleanly, stops_cleanly

if TYPE_CHECKING:
    from mlci.context import StageContext
    from mlci.stages import StageResult


@contextmanager
def _stage_context(
    overrides: Mapping[str, Any] | None = None, model: str | None = None
) -> Iterator[StageContext]:
    """Settings loaded, a stage context open; closed (local servers stopped, a training
    container removed) before the task's one-line message or its exit for a signal."""
    from mlci.context import StageContext
    from mlci.settings import load_settings

    with ends_cleanly():
        settings = load_settings(overrides)
        if model:
            settings = settings.for_model(model)
        with StageContext(settings) as ctx:
            yield ctx


def _run_stage(
    name: str,
    overrides: Mapping[str, Any] | None = None,
    model: str | None = None,
    force: bool = False,
) -> None:
    from mlci.stages import stage_function

    overrides = {**(overrides or {}), "cache.force": [name] if force else None}
    with _stage_context(overrides, model) as ctx:
        result = stage_function(name)(ctx)
        print(f"{name}: {result.status}: {result.summary}")
        for label, url in result.links.items():
            print(f"  {label}: {url}")


def _json_arg(flag: str, text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        error = ConfigError(
            f"{flag} is not valid JSON",
            str(exc),
            f"""quote it for the shell, e.g. {flag} '{{"n_estimators": 300}}'""",
        )
        raise as_exit(error) from None


FORCE_HELP = "run even when its inputs are unchanged since its last success (stage cache)"


@task(help={"force": FORCE_HELP})
@stops_cleanly
def lint(c: Context, force: bool = False) -> None:
    """Lint the code with ruff; fails on findings (report: reports/ruff.json)."""
    _run_stage("lint", force=force)


@task(help={"force": FORCE_HELP})
@stops_cleanly
def test(c: Context, force: bool = False) -> None:
    """Run pytest with coverage; JUnit and Cobertura XML under reports/ (the gate judges it)."""
    _run_stage("test", force=force)


@task
@stops_cleanly
def scan(c: Context) -> None:
    """Run the SonarQube scanner with the test and lint reports (skipped without SonarQube)."""
    _run_stage("scan")


@task(help={"file": "quality-gate definition (overrides gate.file)", "force": FORCE_HELP})
@stops_cleanly
def gate(c: Context, file: str | None = None, force: bool = False) -> None:
    """Hold the build at the quality gate (SonarQube, or local rules); prints each condition."""
    _run_stage("gate", {"gate.file": file}, force=force)


@task(
    help={
        "base_image": "BASE_IMAGE build argument (overrides image.base_image)",
        "force": FORCE_HELP,
    }
)
@stops_cleanly
def image(c: Context, base_image: str | None = None, force: bool = False) -> None:
    """Build the model's Docker image (skipped when no Docker engine answers)."""
    _run_stage("image", {"image.base_image": base_image}, force=force)


@task(
    help={
        "tracking_uri": "MLflow tracking server URL (default: start a local server)",
        "params": "hyper-parameters as JSON (overrides model.params)",
        "model": "train only this one of [tool.mlci.models] (default: each of them)",
        "force": FORCE_HELP,
    }
)
@stops_cleanly
def train(
    c: Context,
    tracking_uri: str | None = None,
    params: str | None = None,
    model: str | None = None,
    force: bool = False,
) -> None:
    """Train the model and log run, model and lineage to MLflow; registers a version."""
    _run_stage(
        "train",
        {"mlflow.tracking_uri": tracking_uri, "model.params": _json_arg("--params", params)},
        model,
        force,
    )


@task(
    help={
        "tracking_uri": "MLflow tracking server URL (default: start a local server)",
        "mode": "disabled | dry-run | enabled (overrides promotion.mode)",
        "model": "promote only this one of [tool.mlci.models] (default: each of them)",
        "force": FORCE_HELP,
    }
)
@stops_cleanly
def promote(
    c: Context,
    tracking_uri: str | None = None,
    mode: str | None = None,
    model: str | None = None,
    force: bool = False,
) -> None:
    """Move the champion alias to the new version if it meets the thresholds and wins."""
    _run_stage(
        "promote", {"mlflow.tracking_uri": tracking_uri, "promotion.mode": mode}, model, force
    )


@task(
    help={
        "version": "deploy this registered version (default: the champion, resolved once)",
        "model": "which of [tool.mlci.models] (default: serving.model, or the only one)",
        "stop": "stop the local deployment (proxy and slots) instead",
    }
)
@stops_cleanly
def deploy(
    c: Context, version: str | None = None, model: str | None = None, stop: bool = False
) -> None:
    """Blue/green: the champion beside the serving version, smoke test, switch, drain."""
    if stop:
        with _stage_context(None, model) as ctx:
            from mlci import deployment
            from mlci.stages.image import docker_client

            settings = ctx.settings.served()
            name = settings.mlflow.registered_model
            stopped = deployment.stop_local(
                settings, name, lambda: docker_client(settings.image.timeout)
            )
            print(f"deploy: stopped {', '.join(stopped)}" if stopped else "deploy: nothing runs")
        return
    from mlci.stages.deploy import deploy as run_deploy

    with _stage_context(None, model) as ctx:
        result = run_deploy(ctx, version=version)
        print(f"deploy: {result.status}: {result.summary}")
        for label, url in result.links.items():
            print(f"  {label}: {url}")


@task(
    help={
        "repository_url": "upload URL of the index (default: start a local index)",
        "dry_run": "print the plan (versions, files, hashes, index) and change nothing",
        "force": FORCE_HELP,
    }
)
@stops_cleanly
def release(
    c: Context, repository_url: str | None = None, dry_run: bool = False, force: bool = False
) -> None:
    """Build sdist + wheel, twine check --strict, upload what is new, verify by download."""
    _run_stage(
        "release",
        {"release.repository_url": repository_url, "release.dry_run": dry_run or None},
        force=force,
    )


@task(
    help={
        "tracking_uri": "MLflow tracking server URL (default: start a local server)",
        "repository_url": "upload URL of the index (default: start a local index)",
        "force": "run every stage; by default a stage whose inputs are unchanged since its last "
        "success is not run again (the summary says cached, with its age and key)",
        "force_stage": "run this stage even when its inputs are unchanged (repeatable)",
    },
    iterable=["force_stage"],
)
@stops_cleanly
def pipeline(
    c: Context,
    tracking_uri: str | None = None,
    repository_url: str | None = None,
    force: bool = False,
    force_stage: list[str] | None = None,
) -> None:
    """Run lint, test, scan, gate, image, train, promote, deploy, release; print a summary."""
    from mlci.pipeline import run_pipeline, summary_lines, write_summary

    forced = ["all"] if force else list(force_stage or []) or None
    overrides = {
        "mlflow.tracking_uri": tracking_uri,
        "release.repository_url": repository_url,
        "cache.force": forced,
    }
    with _stage_context(overrides) as ctx:
        results, error = run_pipeline(ctx)
        write_summary(ctx, results)
        print("\nmlci pipeline summary")
        print("\n".join(summary_lines(results)))
        print(f"\nreports: {ctx.reports}/summary.json, summary.html")
        if ctx.tracking_is_local and any(r.links for r in results):
            from mlci.servers import running_lasting_server

            if running_lasting_server(ctx.state) is None:
                print("MLflow links: they open while the local server runs (`mlci server`)")
        if error is not None:
            raise Exit(f"pipeline failed at stage {_failed(results)}", code=error.exit_code)


def _failed(results: Sequence[StageResult]) -> str:
    return next(r.stage for r in results if r.status == "failed")


@task
@stops_cleanly
def config(c: Context) -> None:
    """Print every setting, its value and where it came from (secrets masked)."""
    from mlci.settings import load_settings
    from mlci.table import format_table

    settings = load_settings()
    print(f"project root: {settings.project_root}")
    rows = [(key, value, source) for key, value, source, _ in settings.describe()]
    print("\n".join(format_table(("setting", "value", "source"), rows)))
    if settings.models:
        print("\nmodels ([tool.mlci.models]; --model NAME or MLCI_MODEL=NAME picks one):")
        for name, values in settings.models.items():
            shown = ", ".join(f"{key}={json.dumps(value)}" for key, value in values.items())
            print(f"  {name}: {shown}")
    sys.stdout.flush()
