"""image: the model's Docker image, built with the Docker SDK when an engine answers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from mlci.context import StageContext
from mlci.errors import ConfigError, DockerEngineError, StageFailed
from mlci.lineage import git_info, package_metadata
from mlci.reports import write_json
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


def run(ctx: StageContext) -> StageResult:
    settings = ctx.settings
    image = settings.image
    context = settings.path(image.context)
    dockerfile = context / image.dockerfile
    if not dockerfile.is_file():
        raise ConfigError(
            f"the Dockerfile {dockerfile} does not exist",
            "image.context and image.dockerfile point at it",
            "fix [tool.mlci.image] or MLCI_IMAGE_CONTEXT / MLCI_IMAGE_DOCKERFILE",
        )
    client = docker_client(image.timeout)
    if client is None:
        write_json(ctx.reports / REPORT, {"skipped": "no Docker engine"})
        ctx.log("image: skipped: no Docker engine answers (set DOCKER_HOST or start dockerd)")
        return StageResult("image", SKIPPED, "skipped: no Docker engine")

    git = git_info(settings.project_root)
    name, version = (
        package_metadata(context)
        if (context / "pyproject.toml").is_file()
        else (image.name, "0.0.0")
    )
    # A Docker tag allows [A-Za-z0-9_.-]: a dev version's "+local" part becomes "-local".
    tags = [f"{image.name}:{version.replace('+', '-')}", f"{image.name}:{git.short_sha}"]
    build_args = {
        "VERSION": version,
        "REVISION": git.sha,
        "CREATED": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "SOURCE": name,
    }
    if image.base_image:
        build_args["BASE_IMAGE"] = image.base_image
    ctx.log(f"image: building {tags[0]} from {dockerfile}")
    image_id = None
    errors: list[str] = []
    from docker.errors import APIError

    try:
        stream = client.build(
            path=str(context),
            dockerfile=image.dockerfile,
            tag=tags[0],
            buildargs=build_args,
            network_mode=image.network or None,
            rm=True,
            forcerm=True,
            decode=True,
        )
        for chunk in stream:
            if "error" in chunk:
                errors.append(str(chunk["error"]).strip())
            elif "stream" in chunk:
                text = chunk["stream"].rstrip()
                if text.startswith("Step "):
                    ctx.log("  " + text)
            elif "aux" in chunk and "ID" in chunk["aux"]:
                image_id = chunk["aux"]["ID"]
    except APIError as exc:
        raise DockerEngineError(
            "the Docker engine refused the build",
            str(exc.explanation or exc),
            "check the Dockerfile and the engine's log",
        ) from None
    if errors and _is_pull_failure(errors[-1]):
        base = image.base_image or "the Dockerfile's BASE_IMAGE"
        raise StageFailed(
            f"the base image ({base}) is not on this Docker engine and cannot be pulled",
            errors[-1],
            "pull it where a registry is reachable, or set MLCI_IMAGE_BASE_IMAGE to an image "
            "this engine has (docker images)",
        )
    if errors or image_id is None:
        raise StageFailed(
            f"the image build of {tags[0]} failed",
            errors[-1] if errors else "the engine reported no image id",
            "see the build steps above; a missing base image needs MLCI_IMAGE_BASE_IMAGE "
            "or a reachable registry",
        )
    for tag in tags[1:]:
        repo, _, label = tag.rpartition(":")
        client.tag(image_id, repo, label)
    info = client.inspect_image(image_id)
    details = {
        "image_id": image_id,
        "tags": tags,
        "size_bytes": info.get("Size"),
        "repo_digests": info.get("RepoDigests") or [],
        "labels": (info.get("Config") or {}).get("Labels") or {},
    }
    write_json(ctx.reports / REPORT, details)
    size_mb = (info.get("Size") or 0) / 1e6
    return StageResult(
        "image", PASSED, f"{tags[0]} ({image_id[:19]}, {size_mb:.0f} MB)", details=details
    )


def _is_pull_failure(message: str) -> bool:
    text = message.lower()
    return any(
        marker in text
        for marker in (
            "pull access denied",
            "manifest unknown",
            "no such host",
            "registry",
            "not found: manifest",
            "repository does not exist",
        )
    )
