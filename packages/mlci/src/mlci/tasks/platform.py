"""Platform tasks: start the services, wire them, show their state, stop them.

The work happens in ``mlci.platform``; these tasks parse flags and print. Secrets are never
printed: only the names of generated secrets and the env file's path.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING

from invoke.context import Context
from invoke.tasks import task

from mlci.tasks._signals import stops_cleanly

if TYPE_CHECKING:
    from mlci.platform.compose import Compose
    from mlci.platform.secrets import EnvFile
    from mlci.settings import Settings


def _settings() -> Settings:
    from mlci.settings import load_settings

    return load_settings()


def _compose(settings: Settings) -> Compose:
    from mlci import tools
    from mlci.platform.compose import Compose

    return Compose.from_settings(settings, tools.run)


def _wait_for(settings: Settings, env: EnvFile, services: Collection[str] | None = None) -> None:
    from mlci.context import print_progress
    from mlci.platform.readiness import platform_probes, wait_until_ready

    platform = settings.platform
    probes = platform_probes(
        platform.jenkins_url,
        platform.gitbucket_url,
        platform.sonarqube_url,
        platform.mlflow_url,
        env["JENKINS_ADMIN_PASSWORD"],
        platform.timeout,
    )
    if services:
        probes = [p for p in probes if p.service in services]
    wait_until_ready(probes, platform.ready_timeout, print_progress)


@task(help={"no_build": "do not rebuild the images built from this checkout"})
@stops_cleanly
def up(c: Context, no_build: bool = False) -> None:
    """Generate missing secrets (env file, 0600), start the platform, wait until it is ready."""
    from mlci.platform.compose import ping_engine
    from mlci.platform.secrets import ensure_for_compose
    from mlci.resources import platform_file

    settings = _settings()
    platform = settings.platform
    compose = _compose(settings)
    env = ensure_for_compose(
        settings.path(platform.env_file), platform_file(settings, platform.compose_file)
    )
    if env.generated:
        print(f"generated into {env.path} (mode 0600): {', '.join(env.generated)}")
    else:
        print(f"secrets: {env.path} has every secret the platform needs")
    ping_engine()
    compose.up(build=not no_build)
    _wait_for(settings, env)
    print("platform is up; next: invoke platform.wire")


@task(
    help={
        "source": "git checkout whose HEAD is pushed to GitBucket's main (default: project root)",
        "build": "start a build even when the job already existed",
    }
)
@stops_cleanly
def wire(c: Context, source: str | None = None, build: bool = False) -> None:
    """Configure GitBucket, SonarQube and Jenkins through their APIs (idempotent)."""
    from pathlib import Path

    from mlci.context import print_progress
    from mlci.platform.secrets import read_env_file
    from mlci.platform.wire import change_table, filter_expression
    from mlci.platform.wire import wire as run_wiring

    settings = _settings()
    filter_expression(settings.platform.ref_filter)  # a bad filter fails before any change
    env = read_env_file(settings.path(settings.platform.env_file))

    def recreate_jenkins() -> None:
        # Compose is needed only when the SonarQube token changed.
        _compose(settings).up("jenkins", build=False)
        _wait_for(settings, env, services=("Jenkins",))

    def recreate_agent() -> None:
        # ... or when the agent's secret was read for the first time (or changed).
        _compose(settings).up("agent", build=False)

    on_compose = settings.platform.kind == "compose"
    changes = run_wiring(
        settings,
        env,
        source=Path(source).resolve() if source else settings.project_root,
        log=print_progress,
        recreate_jenkins=recreate_jenkins if on_compose else None,
        recreate_agent=recreate_agent if on_compose else None,
        build=build,
    )
    print("\n".join(change_table(changes)))
    changed = [ch for ch in changes if ch.outcome != "unchanged"]
    print(f"\n{len(changed)} change(s); re-running `invoke platform.wire` changes nothing more")


@task(
    help={
        "output": "where to write the Secrets (default: kubernetes-secrets.yaml beside the "
        "env file)",
        "namespace": "the namespace of the overlays (default mlci)",
        "jenkins_namespace": "the namespace of the Jenkins chart's release (default jenkins)",
        "db_host": "PostgreSQL host of the tracking tier (default mlflow-db: the single-node "
        "overlay's own)",
        "db_port": "its port (default 5432)",
        "db_name": "its database (default mlflow)",
        "db_options": "libpq options for it, e.g. sslmode=require (a managed database)",
    }
)
@stops_cleanly
def kube_secrets(
    c: Context,
    output: str | None = None,
    namespace: str = "mlci",
    jenkins_namespace: str = "jenkins",
    db_host: str = "mlflow-db",
    db_port: int = 5432,
    db_name: str = "mlflow",
    db_options: str = "",
) -> None:
    """Write the platform's secrets as Kubernetes Secrets (one 0600 file) from the env file."""
    from pathlib import Path

    from mlci.platform.kubernetes import Database, secret_manifests, write_manifests
    from mlci.platform.secrets import ensure_for_compose
    from mlci.resources import platform_file

    if not 1 <= int(db_port) <= 65535:
        from mlci.errors import ConfigError

        raise ConfigError(
            f"--db-port is {db_port}, not a TCP port",
            "PostgreSQL listens on a port from 1 to 65535 (5432 unless told otherwise)",
            "pass the port the database listens on, e.g. --db-port 5432",
        )
    settings = _settings()
    platform = settings.platform
    env_path = settings.path(platform.env_file)
    # The same names Compose requires: one env file serves either platform.
    env = ensure_for_compose(env_path, platform_file(settings, platform.compose_file))
    database = Database(db_host, int(db_port), db_name, db_options)
    documents = secret_manifests(env, namespace, database, jenkins_namespace)
    path = Path(output) if output else env_path.with_name("kubernetes-secrets.yaml")
    write_manifests(path, documents)
    if env.generated:
        print(f"generated into {env.path} (mode 0600): {', '.join(env.generated)}")
    names = ", ".join(d["metadata"]["name"] for d in documents)
    print(f"wrote {len(documents)} Secrets to {path} (mode 0600): {names}")
    print(
        f"next: kubectl apply -f {path}  (namespaces {namespace} and {jenkins_namespace} "
        "must exist)"
    )


@task
@stops_cleanly
def status(c: Context) -> None:
    """Show each service's URL, version, health and wiring (changes nothing)."""
    from mlci.platform.secrets import read_env_file
    from mlci.platform.status import platform_status, status_table

    settings = _settings()
    path = settings.path(settings.platform.env_file)
    env = read_env_file(path) if path.exists() else None
    rows = platform_status(settings, env)
    if env is None:
        print(f"no env file at {path}: showing what needs no credentials")
    print("\n".join(status_table(rows)))


@task(help={"volumes": "also delete the named volumes (all data: repositories, jobs, models)"})
@stops_cleanly
def down(c: Context, volumes: bool = False) -> None:
    """Stop and remove the platform's containers; volumes are kept unless --volumes."""
    from mlci.platform.secrets import read_env_file

    settings = _settings()
    # Compose checks the required secrets even to stop: it needs the env file.
    read_env_file(settings.path(settings.platform.env_file))
    _compose(settings).down(volumes=volumes)
    print("platform stopped" + ("; volumes deleted" if volumes else "; volumes kept"))
