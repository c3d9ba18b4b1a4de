"""image_size: the size of the multi-stage model image against a single-stage equivalent.

Both images are built through the Docker SDK from the repository root as build context (the
root .dockerignore), on the same base image (BASE_IMAGE=local/python:3.11-bookworm, network
mode host), with the same packages, extras, user, environment and entry point:

- multi-stage: the root Dockerfile, what the image stage builds;
- single-stage: benchmarks/single-stage.Dockerfile, the conventional one-stage build of the
  same thing: copy the sources, `pip install` them with their dependencies in one step, and
  keep what that keeps (pip's cache, the sources, the dependencies' test suites). The deps
  stage needs no build tools (every dependency is a wheel), so neither image has any.

The value is the final image's size over the single-stage image's, as the engine reports
them (the image's Size, base image included; goal: at most 0.40). Sizes do not vary from
build to build, so each image is built once per run, on the base image relabelled under a
new image id: no layer already on the engine serves as cache and every step is this run's
(nocache=True would do that too, but leaves images that other builds of the root Dockerfile
then take as cache: see image_rebuild.py). The table also shows what each image adds on top
of the base and its largest layers. Each image must still work (`mlci --version`; mlci, both
models, mlflow and sklearn import), or the run measures nothing. The images the run creates
are removed again.

pip's cache: PyPI serves its files as cacheable, so on an open network the single-stage
image keeps every wheel pip downloaded under /root/.cache/pip. Where a proxy strips those
headers, as on the machines this runs on, pip caches nothing. The value is what was
measured; the run also reports the ratio had pip kept what it downloaded (the sizes pip
printed), as an estimate, not the figure.

Run from the repository root: python benchmarks/image_size.py
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import sys
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path

GOAL = 0.40
BASE_IMAGE = "local/python:3.11-bookworm"
ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "image_size.json"
IMAGES = {  # kind -> Dockerfile, relative to the repository root (the build context)
    "multi-stage": "Dockerfile",
    "single-stage": "benchmarks/single-stage.Dockerfile",
}
STEP_IMAGE = re.compile(r"^ ---> ([0-9a-f]{12})\s*$")  # the legacy builder's step images
# pip's "Downloading pandas-2.3.3-....whl (12.4 MB)": what its HTTP cache would keep.
DOWNLOAD = re.compile(r"Downloading \S+ \(([\d.]+) (kB|MB|GB)\)")
UNITS = {"kB": 1e3, "MB": 1e6, "GB": 1e9}
KEPT = ("/root/.cache/pip", "/src")  # what a one-stage build leaves behind
IMPORTS = "import mlci, wine_classifier, diabetes_regressor, mlflow, sklearn"
MB = 1e6


class CannotMeasure(Exception):
    pass


def _fresh_base(api, tag: str) -> str:
    """The base image under a new image id (a label, no bytes): nothing is cached on it."""
    dockerfile = f"FROM {BASE_IMAGE}\nLABEL org.mlci.benchmark={tag.rpartition(':')[2]}\n"
    with tempfile.TemporaryDirectory(prefix="image-size-base-") as tmp:
        (Path(tmp) / "Dockerfile").write_text(dockerfile)
        return _build(api, tmp, "Dockerfile", base=BASE_IMAGE, tag=tag)[0]


def _build(
    api, context: str, dockerfile: str, *, base: str, tag: str | None = None
) -> tuple[str, list[str], int]:
    """(image id, the ids of every step's image, bytes pip downloaded) of one build."""
    steps: list[str] = []
    downloaded = 0.0
    image_id, errors = None, []
    for chunk in api.build(
        path=context,
        dockerfile=dockerfile,
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
            for amount, unit in DOWNLOAD.findall(line):
                downloaded += float(amount) * UNITS[unit]
        if "ID" in (chunk.get("aux") or {}):
            image_id = chunk["aux"]["ID"]
    if errors or image_id is None:
        raise CannotMeasure(
            f"the build of {dockerfile} failed: {errors[-1] if errors else 'no image id'}"
        )
    return image_id, steps, int(downloaded)


def _check_runs(client, image_id: str) -> None:
    """A smaller image counts only if it still works: mlci answers, the packages import."""
    from docker.errors import ContainerError

    try:
        client.containers.run(image_id, ["--version"], remove=True)
        client.containers.run(image_id, ["-c", IMPORTS], entrypoint=["python"], remove=True)
    except ContainerError as exc:
        raise CannotMeasure(f"the built image does not work: {exc}") from None


def _kept(client, image_id: str) -> dict[str, int]:
    """Bytes under the folders a one-stage build keeps, in the built image (0: absent)."""
    script = f'for d in {" ".join(KEPT)}; do du -sb "$d" 2>/dev/null || echo "0 $d"; done'
    out = client.containers.run(
        image_id, ["-c", script], entrypoint=["sh"], user="0", remove=True
    ).decode()
    return {path: int(size) for size, path in (line.split(maxsplit=1) for line in out.splitlines())}


def _layers(api, image_id: str, base_layers: int) -> list[dict]:
    """The layers above the base image that hold bytes, largest first."""
    history = api.history(image_id)  # newest first
    own = history[: len(history) - base_layers]
    rows = [
        {"bytes": h["Size"], "step": re.sub(r"\s+", " ", h["CreatedBy"])[:100]}
        for h in own
        if h["Size"]
    ]
    return sorted(rows, key=lambda r: -r["bytes"])


def _remove(api, created: list[str], existing: set[str]) -> list[str]:
    """Remove the images this run created, newest first; those that cannot go are returned."""
    from docker.errors import APIError

    left = []
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


def main() -> int:
    import docker
    from docker.errors import APIError, DockerException, ImageNotFound

    try:
        client = docker.from_env(timeout=1800)
        api = client.api
        api.ping()
        base = api.inspect_image(BASE_IMAGE)
    except ImageNotFound:
        print(f"image_size: cannot measure: the base image {BASE_IMAGE} is not on the engine")
        return 1
    except DockerException as exc:
        print(f"image_size: cannot measure: no Docker engine answers ({exc})")
        return 1
    engine, info = api.version(), api.info()
    base_layers = len(api.history(BASE_IMAGE))
    existing = {i.removeprefix("sha256:")[:12] for i in api.images(all=True, quiet=True)}
    runs, created = [], []
    fresh = f"mlci-benchmark/image-size-base:{uuid.uuid4().hex[:12]}"
    try:
        created.append(_fresh_base(api, fresh).removeprefix("sha256:")[:12])
        for kind, dockerfile in IMAGES.items():
            print(f"  building {kind} ({dockerfile}) ...")
            image_id, steps, downloaded = _build(api, str(ROOT), dockerfile, base=fresh)
            created += [*steps, image_id.removeprefix("sha256:")[:12]]
            _check_runs(client, image_id)
            size = api.inspect_image(image_id)["Size"]
            runs.append(
                {
                    "kind": kind,
                    "dockerfile": dockerfile,
                    "bytes": size,
                    "over_base_bytes": size - base["Size"],
                    "pip_downloaded_bytes": downloaded,  # 0 when every step came from cache
                    "layers": _layers(api, image_id, base_layers),
                    "kept_bytes": _kept(client, image_id),
                }
            )
    except CannotMeasure as exc:
        print(f"image_size: cannot measure: {exc}")
        return 1
    finally:
        with contextlib.suppress(APIError):
            api.remove_image(fresh, noprune=True)  # the tag; the image itself goes next
        left = _remove(api, created, existing)
    if left:
        print("images that could not be removed (in use by another build?):")
        for line in left:
            print(f"  {line}")
    multi, single = (next(r for r in runs if r["kind"] == kind) for kind in IMAGES)
    value = multi["bytes"] / single["bytes"]
    pip_cache = max(0, single["pip_downloaded_bytes"] - single["kept_bytes"]["/root/.cache/pip"])
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    result = {
        "name": "image_size",
        "value": round(value, 3),
        "unit": "x (multi-stage image / single-stage equivalent)",
        "goal": GOAL,
        "better": "lower",
        "base_image_bytes": base["Size"],
        "over_base_ratio": round(multi["over_base_bytes"] / single["over_base_bytes"], 3),
        # PyPI marks its files cacheable, so a one-stage build on an open network keeps them
        # in pip's cache; where a proxy drops those headers (here) pip caches nothing.
        "single_stage_with_pip_cache_estimate_bytes": single["bytes"] + pip_cache,
        "value_with_pip_cache_estimate": round(multi["bytes"] / (single["bytes"] + pip_cache), 3),
        "runs": runs,
        "machine": f"{os.cpu_count()} cores, {mem:.0f} GiB, Python {platform.python_version()}, "
        f"Docker engine {engine.get('Version')} ({info.get('Driver')}, legacy builder), "
        f"base image {BASE_IMAGE} (relabelled), dependencies from PyPI",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")

    print()
    print(f"{'image':<16}{'size':>10}{'over base':>12}")
    print(f"{'base':<16}{base['Size'] / MB:>8.0f}MB{'':>12}")
    for run in runs:
        print(f"{run['kind']:<16}{run['bytes'] / MB:>8.0f}MB{run['over_base_bytes'] / MB:>10.0f}MB")
    for run in runs:
        print(f"\nlargest layers of {run['kind']}:")
        for layer in run["layers"][:4]:
            print(f"  {layer['bytes'] / MB:>8.1f}MB  {layer['step']}")
    print(f"\nover the base alone: {result['over_base_ratio']:.2f} x")
    print(
        f"pip downloaded {single['pip_downloaded_bytes'] / MB:.0f} MB for the single-stage "
        f"image, and its cache holds {single['kept_bytes']['/root/.cache/pip'] / MB:.0f} MB of it; "
        f"had pip "
        f"kept it all: {result['value_with_pip_cache_estimate']:.2f} x"
    )
    print(f"image_size: {value:.3f} x (goal <= {GOAL})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
