"""image: the model's Docker image, built with the Docker SDK, pushed when a registry is set.

Without ``image.registry`` (the embedded default) the image stays on the local engine and a
missing engine is a skip. With a registry (the platform, Jenkins) the image is tagged for it,
pushed with the bound credentials, and the pushed ``name@sha256:`` digest is recorded in
``reports/image.json``: the train stage pulls and runs exactly that. There, a missing engine
is an error: a CI path that expects an image must not go green without one.

The Docker SDK's build and push calls live in :mod:`mlci.image_build`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlci import cache
from mlci.context import StageContext
from mlci.errors import ConfigError, DockerEngineError
from mlci.lineage import git_info, package_metadata
from mlci.reports import write_json
from mlci.resources import setting_file
from mlci.settings import ImageSettings, Settings
from mlci.stages import PASSED, SKIPPED, StageResult

REPORT = "image.json"


def docker_client(timeout: int) -> Any | None:
    """A low-level API client, or None when no Docker engine answers."""
    import docker  # heavy: imported only when the stage runs
    from docker.errors import DockerException
    from docker.utils import kwargs_from_env

    try:
        # DOCKER_HOST / DOCKER_TLS_VERIFY / DOCKER_CERT_PATH, as the docker CLI reads them.
        client = docker.APIClient(version="auto", timeout=timeout, **kwargs_from_env())
        client.ping()
    except DockerException:
        return None
    except Exception as exc:  # requests' connection errors when DOCKER_HOST is wrong
        if "Connection" in type(exc).__name__:
            return None
        raise
    return client


def registry_auth(image: ImageSettings) -> dict[str, str] | None:
    """The registry credentials as the Docker API takes them, or None (anonymous)."""
    if not image.registry_username and not image.registry_password:
        return None
    if not (image.registry_username and image.registry_password):
        raise ConfigError(
            "only one of image.registry_username and image.registry_password is set",
            "the registry login needs both",
            "set MLCI_IMAGE_REGISTRY_USERNAME and MLCI_IMAGE_REGISTRY_PASSWORD (in Jenkins: "
            "the image-registry credential)",
        )
    return {"username": image.registry_username, "password": image.registry_password}


def model_package(settings: Settings) -> tuple[str, str]:
    """(name, version) of what the image packages: the (first) model package, else the
    context."""
    folders = [values.get("model.package", "") for values in settings.models.values()]
    folders += [settings.model.package, settings.image.context]
    for folder in folders:
        if folder and (settings.path(folder) / "pyproject.toml").is_file():
            return package_metadata(settings.path(folder))
    return settings.image.name, "0.0.0"


def dockerfile_for(settings: Settings) -> tuple[Path, bool]:
    """(the Dockerfile, whether it is mlci's shipped one): the repository's, else mlci's."""
    context = settings.path(settings.image.context)
    path, is_shipped = setting_file(
        settings, "image.dockerfile", context / settings.image.dockerfile
    )
    if not path.is_file():
        raise ConfigError(
            f"the Dockerfile {path} does not exist",
            "image.context and image.dockerfile point at it",
            "fix [tool.mlci.image] or MLCI_IMAGE_CONTEXT / MLCI_IMAGE_DOCKERFILE, or unset "
            "them to use mlci's default Dockerfile (`mlci init` writes a copy)",
        )
    return path, is_shipped


#: What the stage leaves in the reports folder, kept with its cache entry.
OUTPUTS = (REPORT,)


#: The image settings a build reads (the password is access, not an input).
IMAGE_SETTINGS = (
    "context",
    "dockerfile",
    "name",
    "base_image",
    "network",
    "build_args",
    "registry",
    "registry_username",
)


def inputs(ctx: StageContext) -> dict[str, Any] | None:
    """The build context's files, the Dockerfile, the image settings and the commit (its
    labels and tags); None without a Docker engine (the stage skips or fails: no entry)."""
    settings = ctx.settings
    dockerfile, is_shipped = dockerfile_for(settings)
    if docker_client(settings.image.timeout) is None:
        return None
    git = git_info(settings.project_root)
    keys = [f"image.{name}" for name in IMAGE_SETTINGS]
    return {
        "context": cache.files_digest(ctx, [settings.image.context]),
        "dockerfile": cache.file_hash(dockerfile),
        "settings": cache.settings_values(ctx, *keys, *(["model.package"] if is_shipped else [])),
        "commit": [git.sha, git.dirty],
        "environment": cache.environment(),
    }


def still_valid(ctx: StageContext, details: dict[str, Any]) -> bool:
    """A cached build stands only while the engine still has the image it built."""
    client = docker_client(ctx.settings.image.timeout)
    if client is None or not details.get("image_id"):
        return False
    from docker.errors import DockerException

    try:
        client.inspect_image(details["image_id"])
    except DockerException:
        return False
    return True


def run(ctx: StageContext) -> StageResult:
    settings = ctx.settings
    image = settings.image
    # A Dockerfile that is configured and missing is a setting to fix, engine or not (an
    # unconfigured one falls back to mlci's, so a repository without one still skips).
    dockerfile = dockerfile_for(settings)
    auth = registry_auth(image)
    client = docker_client(image.timeout)
    if client is None:
        if image.registry:
            raise DockerEngineError(
                f"no Docker engine answers, and the image must be pushed to {image.registry}",
                "image.registry is set, so this pipeline expects a pushed image to train in",
                "run this stage on an agent with a Docker engine (DOCKER_HOST or the engine's "
                "socket), or unset MLCI_IMAGE_REGISTRY to build locally only",
            )
        write_json(ctx.reports / REPORT, {"skipped": "no Docker engine"})
        ctx.log("image: skipped: no Docker engine answers (set DOCKER_HOST or start dockerd)")
        return StageResult("image", SKIPPED, "skipped: no Docker engine")

    image_id, tags = _build(ctx, client, *dockerfile)
    info = client.inspect_image(image_id)
    details: dict[str, Any] = {
        "image_id": image_id,
        "tags": tags,
        "size_bytes": info.get("Size"),
        "labels": (info.get("Config") or {}).get("Labels") or {},
    }
    summary = f"{tags[0]} ({image_id[:19]}, {(info.get('Size') or 0) / 1e6:.0f} MB)"
    if image.registry:
        from mlci.image_build import push

        pushed = push(client, image_id, tags, image.registry, auth, ctx.log)
        details.update(registry=image.registry, pushed=pushed)
        summary = f"{pushed.split('@')[0]}@{pushed.split('@')[1][:19]} pushed"
    details["repo_digests"] = client.inspect_image(image_id).get("RepoDigests") or []
    write_json(ctx.reports / REPORT, details)
    return StageResult("image", PASSED, summary, details=details)


def _build(
    ctx: StageContext, client: Any, dockerfile: Path, is_shipped: bool
) -> tuple[str, list[str]]:
    """The image built with its version and commit as tags and labels; (id, tags)."""
    from mlci.image_build import build, context_source

    settings = ctx.settings
    image = settings.image
    git = git_info(settings.project_root)
    name, version = model_package(settings)
    # A Docker tag allows [A-Za-z0-9_.-]: a dev version's "+local" part becomes "-local".
    tags = [f"{image.name}:{version.replace('+', '-')}", f"{image.name}:{git.short_sha}"]
    build_args = {str(k): str(v) for k, v in image.build_args.items()}
    build_args.update(
        VERSION=version,
        REVISION=git.sha,
        CREATED=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        SOURCE=name,
    )
    if image.base_image:
        build_args["BASE_IMAGE"] = image.base_image
    if is_shipped:
        import mlci

        build_args.setdefault("MLCI_REQUIREMENT", f"mlci=={mlci.__version__}")
        build_args.setdefault("MODEL_PACKAGE", settings.model.package or ".")
    shown = "mlci's default Dockerfile (`mlci init` writes a copy)" if is_shipped else dockerfile
    ctx.log(f"image: building {tags[0]} from {shown}")
    source = context_source(settings.path(image.context), dockerfile)
    image_id = build(client, source, tags[0], build_args, image.network, image.base_image, ctx.log)
    for tag in tags[1:]:
        repo, _, label = tag.rpartition(":")
        client.tag(image_id, repo, label)
    return image_id, tags
