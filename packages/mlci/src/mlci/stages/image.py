"""image: the model's Docker image, built with the Docker SDK, pushed when a registry is set.

Without ``image.registry`` (the embedded default) the image stays on the local engine and a
missing engine is a skip. With a registry (the platform, Jenkins) the image is tagged for it,
pushed with the bound credentials, and the pushed ``name@sha256:`` digest is recorded in
``reports/image.json``: the train stage pulls and runs exactly that. There, a missing engine
is an error: a CI path that expects an image must not go green without one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlci import cache
from mlci.context import StageContext
from mlci.errors import ConfigError, DockerEngineError, StageFailed
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
IMAGE_SETTINGS = ("context", "dockerfile", "name", "base_image", "network", "build_args",
                  "registry", "registry_username")  # fmt: skip


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
        pushed = push(ctx, client, image_id, tags, image.registry, auth)
        details.update(registry=image.registry, pushed=pushed)
        summary = f"{pushed.split('@')[0]}@{pushed.split('@')[1][:19]} pushed"
    details["repo_digests"] = client.inspect_image(image_id).get("RepoDigests") or []
    write_json(ctx.reports / REPORT, details)
    return StageResult("image", PASSED, summary, details=details)


def _context_source(context: Path, dockerfile: Path) -> dict[str, Any]:
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
    archive = tar(str(context), exclude=exclude, dockerfile=extra)
    return {"fileobj": archive, "custom_context": True, "dockerfile": name}


def _build(
    ctx: StageContext, client: Any, dockerfile: Path, is_shipped: bool
) -> tuple[str, list[str]]:
    settings = ctx.settings
    image = settings.image
    context = settings.path(image.context)
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
    source = _context_source(context, dockerfile)
    image_id = None
    errors: list[str] = []
    from docker.errors import APIError

    try:
        stream = client.build(
            **source,
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
    return image_id, tags


def push(
    ctx: StageContext,
    client: Any,
    image_id: str,
    tags: list[str],
    registry: str,
    auth: dict[str, str] | None,
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
        ctx.log(f"image: pushing {repository}:{label}")
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
                _push_fix(errors[-1], registry),
            )
    if len(digests) != 1:
        raise DockerEngineError(
            f"the registry {registry} reported {len(digests)} digests for one image",
            f"digests: {sorted(digests) or 'none'}",
            "check the registry's log; push again",
        )
    pushed = f"{repository}@{digests.pop()}"
    ctx.log(f"image: pushed {pushed}")
    return pushed


def _push_fix(error: str, registry: str) -> str:
    text = error.lower()
    if "http response to https client" in text:
        return (
            f"the engine talks HTTPS to {registry}, which serves plain HTTP: use its loopback "
            "address (127.0.0.1:PORT) or add it to the engine's insecure-registries"
        )
    if "unauthorized" in text or "authentication required" in text:
        return "set MLCI_IMAGE_REGISTRY_USERNAME / _PASSWORD (in Jenkins: image-registry)"
    return f"check that {registry} is reachable from the Docker engine and has room"


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
