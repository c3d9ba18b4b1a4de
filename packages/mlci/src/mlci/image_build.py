"""The model image through the Docker SDK: the build (its context, its streamed steps and
errors) and the push to a registry (tags, login, the one digest). The image stage
(:mod:`mlci.stages.image`) decides tags and build arguments and records the outcome."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlci.errors import DockerEngineError, StageFailed

#: Parts of a build error that mean the base image could not be pulled.
PULL_FAILURES = (
    "pull access denied",
    "manifest unknown",
    "no such host",
    "registry",
    "not found: manifest",
    "repository does not exist",
)


def context_source(context: Path, dockerfile: Path) -> dict[str, Any]:
    """What client.build sends: the context folder, filtered by its .dockerignore; without
    one, mlci's (no .git, .venv, state or reports: they can be gigabytes)."""
    if (context / ".dockerignore").is_file():
        return {"path": str(context), "dockerfile": str(dockerfile)}
    from docker.api.build import process_dockerfile
    from docker.utils.build import tar

    from mlci.resources import template

    exclude = [
        line.strip()
        for line in template("dockerignore").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    name, contents = process_dockerfile(str(dockerfile), str(context))
    extra = (name, contents) if contents is not None else None
    archive = tar(context, exclude=exclude, dockerfile=extra)
    return {"fileobj": archive, "custom_context": True, "dockerfile": name}


def build(
    client: Any,
    source: dict[str, Any],
    tag: str,
    build_args: dict[str, str],
    network: str,
    base_image: str,
    log: Callable[[str], None],
) -> str:
    """Build ``source`` as ``tag`` (its steps shown as they run); the image id."""
    from docker.errors import APIError

    image_id = None
    errors: list[str] = []
    try:
        stream = client.build(
            **source,
            tag=tag,
            buildargs=build_args,
            network_mode=network or None,
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
                    log("  " + text)
            elif "aux" in chunk and "ID" in chunk["aux"]:
                image_id = chunk["aux"]["ID"]
    except APIError as exc:
        raise DockerEngineError(
            "the Docker engine refused the build",
            str(exc.explanation or exc),
            "check the Dockerfile and the engine's log",
        ) from None
    if errors and any(marker in errors[-1].lower() for marker in PULL_FAILURES):
        base = base_image or "the Dockerfile's BASE_IMAGE"
        raise StageFailed(
            f"the base image ({base}) is not on this Docker engine and cannot be pulled",
            errors[-1],
            "pull it where a registry is reachable, or set MLCI_IMAGE_BASE_IMAGE to an image "
            "this engine has (docker images)",
        )
    if errors or image_id is None:
        raise StageFailed(
            f"the image build of {tag} failed",
            errors[-1] if errors else "the engine reported no image id",
            "see the build steps above; a missing base image needs MLCI_IMAGE_BASE_IMAGE "
            "or a reachable registry",
        )
    return str(image_id)


def push(
    client: Any,
    image_id: str,
    tags: list[str],
    registry: str,
    auth: dict[str, str] | None,
    log: Callable[[str], None],
) -> str:
    """Tag the image for ``registry``, push every tag, return ``registry/name@sha256:...``."""
    from docker.errors import APIError

    registry = registry.rstrip("/")
    if auth is not None:
        try:
            client.login(auth["username"], auth["password"], registry=registry, reauth=True)
        except APIError as exc:
            raise DockerEngineError(
                f"the registry {registry} refused the login of {auth['username']!r}",
                str(exc.explanation or exc)[:500],
                "check MLCI_IMAGE_REGISTRY_USERNAME / _PASSWORD (in Jenkins: the "
                "image-registry credential) and that the registry is up",
            ) from None
    digests: set[str] = set()
    repository = ""
    for tag in tags:
        name, _, label = tag.rpartition(":")
        repository = f"{registry}/{name}"
        client.tag(image_id, repository, label)
        log(f"image: pushing {repository}:{label}")
        errors: list[str] = []
        try:
            for chunk in client.push(
                repository, tag=label, stream=True, decode=True, auth_config=auth
            ):
                if "error" in chunk:
                    errors.append(str(chunk["error"]).strip())
                elif "Digest" in (chunk.get("aux") or {}):
                    digests.add(chunk["aux"]["Digest"])
        except APIError as exc:
            errors.append(str(exc.explanation or exc))
        if errors:
            raise DockerEngineError(
                f"pushing {repository}:{label} to {registry} failed",
                errors[-1][:500],
                push_fix(errors[-1], registry),
            )
    if len(digests) != 1:
        raise DockerEngineError(
            f"the registry {registry} reported {len(digests)} digests for one image",
            f"digests: {sorted(digests) or 'none'}",
            "check the registry's log; push again",
        )
    pushed = f"{repository}@{digests.pop()}"
    log(f"image: pushed {pushed}")
    return pushed


def push_fix(error: str, registry: str) -> str:
    text = error.lower()
    if "http response to https client" in text:
        return (
            f"the engine talks HTTPS to {registry}, which serves plain HTTP: use its loopback "
            "address (127.0.0.1:PORT) or add it to the engine's insecure-registries"
        )
    if "unauthorized" in text or "authentication required" in text:
        return "set MLCI_IMAGE_REGISTRY_USERNAME / _PASSWORD (in Jenkins: image-registry)"
    return f"check that {registry} is reachable from the Docker engine and has room"
