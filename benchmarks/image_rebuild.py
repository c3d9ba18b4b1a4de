"""image_rebuild: how long the model image takes to rebuild after a code-only change, against a
cold build of the same Dockerfile.

The repository's root Dockerfile is built through the Docker SDK, as the image stage builds
it (legacy builder, network_mode host), from a copy of its build context in a temporary
folder: exactly the files the root .dockerignore lets through. Each round

- gives the base image (local/python:3.11-bookworm) a new image id: a one-line build that
  only adds a label with the round's id, so that no layer already on the engine (this
  Dockerfile is built by the pipeline and the tests too) can serve as cache;
- builds the pristine copy on it: a cold build, every step runs and pip downloads and
  installs every dependency, exactly a first build on a fresh machine;
- appends one comment line to wine_classifier/model.py in the copy and builds again: a
  developer's edit-and-rebuild, with the cache the cold build left.

Why not ``nocache=True`` for the cold build: the legacy builder then writes a second image
for the runtime stage's ``ARG DEBIAN_FRONTEND`` (the deps stage's first step has the same
parent and text), and a later cached build takes the newest of the two for the deps stage
too, so it misses every deps layer: a rebuild would measure a second cold build. (It would
also offer those images as cache to other builds of this Dockerfile on the engine.)

The value is the median rebuild over the median cold build (goal: at most 0.10). Every
image a round creates, the labelled base included, is removed after the round. The tree is
never written to.

Run from the repository root: python benchmarks/image_rebuild.py
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

REPEATS = 3
GOAL = 0.10
BASE_IMAGE = "local/python:3.11-bookworm"
EDITED = "packages/wine-classifier/src/wine_classifier/model.py"
ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "image_rebuild.json"
# The legacy builder names each step's image as " ---> 0123456789ab".
STEP_IMAGE = re.compile(r"^ ---> ([0-9a-f]{12})\s*$")


class CannotMeasure(Exception):
    pass


def _copy_context(target: Path) -> None:
    """The files of the root build context, as the root .dockerignore filters them."""
    from docker.utils.build import exclude_paths

    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for name in exclude_paths(str(ROOT), patterns, dockerfile="Dockerfile"):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


def _fresh_base(api, tag: str) -> str:
    """The base image under a new image id (a label, no bytes): nothing is cached on it."""
    dockerfile = f"FROM {BASE_IMAGE}\nLABEL org.mlci.benchmark={tag.rpartition(':')[2]}\n"
    with tempfile.TemporaryDirectory(prefix="image-rebuild-base-") as tmp:
        (Path(tmp) / "Dockerfile").write_text(dockerfile)
        return _build(api, Path(tmp), base=BASE_IMAGE, tag=tag)[1]


def _build(
    api, context: Path, *, base: str, tag: str | None = None
) -> tuple[float, str, list[str]]:
    """(seconds, image id, the ids of every step's image) of one build."""
    started = time.monotonic()
    steps: list[str] = []
    image_id, errors = None, []
    for chunk in api.build(
        path=str(context),
        dockerfile="Dockerfile",
        tag=tag,
        buildargs={"BASE_IMAGE": base},
        network_mode="host",
        rm=True,
        forcerm=True,
        decode=True,
    ):
        if "error" in chunk:
            errors.append(str(chunk["error"]).strip())
        for line in str(chunk.get("stream", "")).splitlines():
            if match := STEP_IMAGE.match(line):
                steps.append(match.group(1))
        if "ID" in (chunk.get("aux") or {}):
            image_id = chunk["aux"]["ID"]
    seconds = time.monotonic() - started
    if errors or image_id is None:
        raise CannotMeasure(f"the build failed: {errors[-1] if errors else 'no image id'}")
    return seconds, image_id, steps


def _remove(api, created: list[str], existing: set[str], tags: list[str]) -> list[str]:
    """Remove the images a round created, newest first; those that cannot go are returned."""
    from docker.errors import APIError

    left = []
    for tag in tags:
        with contextlib.suppress(APIError):
            api.remove_image(tag, noprune=True)  # the tag; the image itself goes below
    for image in reversed(dict.fromkeys(created)):
        if image in existing:
            continue  # a cache hit on an image that was there before: not ours
        try:
            # noprune: an untagged parent may be someone else's cache layer
            api.remove_image(image, noprune=True)
        except APIError as exc:
            if exc.status_code != 404:
                left.append(f"{image}: {exc.explanation}")
    return left


def _image_ids(api) -> set[str]:
    return {i.removeprefix("sha256:")[:12] for i in api.images(all=True, quiet=True)}


def main() -> int:
    import docker
    from docker.errors import DockerException, ImageNotFound

    try:
        client = docker.from_env(timeout=1800)
        api = client.api
        api.ping()
        api.inspect_image(BASE_IMAGE)
    except ImageNotFound:
        print(f"image_rebuild: cannot measure: the base image {BASE_IMAGE} is not on the engine")
        return 1
    except DockerException as exc:
        print(f"image_rebuild: cannot measure: no Docker engine answers ({exc})")
        return 1
    engine = api.version()
    info = api.info()
    existing = _image_ids(api)
    runs, left = [], []
    try:
        for i in range(REPEATS):
            with tempfile.TemporaryDirectory(prefix="image-rebuild-") as tmp:
                context = Path(tmp)
                _copy_context(context)
                base = f"mlci-benchmark/image-rebuild-base:{uuid.uuid4().hex[:12]}"
                created: list[str] = []
                try:
                    created.append(_fresh_base(api, base).removeprefix("sha256:")[:12])
                    cold, cold_id, steps = _build(api, context, base=base)
                    created += [*steps, cold_id.removeprefix("sha256:")[:12]]
                    with (context / EDITED).open("a") as f:
                        f.write(f"# image_rebuild round {i + 1}\n")
                    rebuild, rebuild_id, steps = _build(api, context, base=base)
                    created += [*steps, rebuild_id.removeprefix("sha256:")[:12]]
                finally:
                    left += _remove(api, created, existing, tags=[base])
            for kind, seconds in (("cold", cold), ("rebuild", rebuild)):
                runs.append({"round": i, "kind": kind, "seconds": round(seconds, 2)})
                print(f"  round {i + 1}: {kind:<8} {seconds:7.1f} s")
    except CannotMeasure as exc:
        print(f"image_rebuild: cannot measure: {exc}")
        return 1
    if left:
        print("images that could not be removed (in use by another build?):")
        for line in left:
            print(f"  {line}")
    cold = statistics.median(r["seconds"] for r in runs if r["kind"] == "cold")
    rebuild = statistics.median(r["seconds"] for r in runs if r["kind"] == "rebuild")
    value = rebuild / cold
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    result = {
        "name": "image_rebuild",
        "value": round(value, 3),
        "unit": "x (code-only rebuild / cold build)",
        "goal": GOAL,
        "better": "lower",
        "cold_seconds": cold,
        "rebuild_seconds": rebuild,
        "runs": runs,
        "machine": f"{os.cpu_count()} cores, {mem:.0f} GiB, Python {platform.python_version()}, "
        f"Docker engine {engine.get('Version')} ({info.get('Driver')}, legacy builder), "
        f"base image {BASE_IMAGE} (relabelled each round), dependencies from PyPI",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print()
    print(f"{'build':<28}{'median':>10}")
    print(f"{'cold (fresh base)':<28}{cold:>9.1f}s")
    print(f"{'rebuild (one source edit)':<28}{rebuild:>9.1f}s")
    print(f"image_rebuild: {value:.3f} x (goal <= {GOAL})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
