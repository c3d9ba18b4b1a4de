"""SonarQube tasks besides the pipeline's scan and gate."""

from __future__ import annotations

from invoke.context import Context
from invoke.tasks import task

from mlci.errors import ConfigError
from mlci.tasks._signals import stops_cleanly


@task(help={"dry_run": "print what would change and change nothing"})
@stops_cleanly
def apply_gate(c: Context, dry_run: bool = False) -> None:
    """Create or update the quality gate of sonarqube/quality-gate.toml and select it."""
    from mlci.clients.sonarqube import SonarQube, configured_server
    from mlci.qualitygate import load_definition
    from mlci.resources import gate_file
    from mlci.settings import load_settings
    from mlci.sonar_gate import apply_gate as apply

    settings = load_settings()
    server = configured_server(settings)
    if server is None:
        raise ConfigError(
            "no SonarQube is configured",
            "the gate is applied to a SonarQube server through its web API",
            "set MLCI_SONAR_HOST_URL and MLCI_SONAR_TOKEN (a token that may administer "
            "quality gates)",
        )
    gate = load_definition(gate_file(settings))
    key = settings.sonar.project_key or settings.project_root.name
    changes = apply(
        SonarQube(server, settings.sonar.timeout),
        gate,
        key,
        settings.sonar.project_name or key,
        dry_run=dry_run,
    )
    verb = "would" if dry_run else "did"
    if not changes:
        print(f"quality gate {gate.name!r} on {server.url}: up to date, nothing to change")
    for change in changes:
        print(f"{verb} {change.action}: {change.detail}")
