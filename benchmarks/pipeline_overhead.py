"""pipeline_overhead: a cold `invoke pipeline` against the raw tools it runs, done by hand.

The value is the wall time of a cold `invoke pipeline` over the sum of the wall times of the
plain tools a user would run for the same work (goal: <= 1.5, lower is better).

Snapshot. Both sides work on one copy of this repository, so that concurrent edits of the
work tree do not reach them: the files `git ls-files -co --exclude-standard` lists are copied
into a temporary folder, which becomes a git repository of its own with one commit (the
release stage versions the packages from git, as in a Jenkins checkout). PYTHONPATH names the
copy's three `src/` folders, so that mlci, wine_classifier and diabetes_regressor are the
copy's and not the editable installs' (which point at the live work tree); this script
imports mlci from the copy too (its servers helper, and the stage modules that compute what
the raw side runs). Before each side runs, `git clean -fdx` puts the copy back to its commit
(no __pycache__, .ruff_cache, build output from the other side).

Cold. Each run gets a fresh MLCI_STATE_DIR and MLCI_REPORTS_DIR (temporary folders): a new
SQLite store behind a new local `mlflow server`, a new local package index (pypiserver), no
ruff or pytest cache, no stage cache (MLCI_CACHE_ENABLED=false as well, when the snapshot has
that setting). The raw side gets its own fresh folders for the same things. Docker's own layer
cache is left as it is on both sides: one build of the snapshot's image before the rounds (not
counted) fills it, so neither side pays for the first build of the snapshot's sources. (On an
engine where others build the same Dockerfile at the same time, with nocache in particular,
the classic builder may pick their newer copies of the shared first steps as parents and miss
the rest of the cache; the raw side records how many of its build steps were cached.)
Python's bytecode: the copy's sources start uncompiled on both sides (the clean above), and
site-packages' compiled files are there for both, but the test stage points pytest's bytecode
at a fresh folder (PYTHONPYCACHEPREFIX under the state folder), so on the pipeline side pytest
compiles everything it imports again, the installed libraries included: a cost of that choice,
measured here, not a difference in setup. pip's cache (for `python -m build`'s isolated build
environments) is shared and left as it is. CPU time (user + system) of the processes each side
starts is reported beside the wall time: it varies less than wall time with other load on a
shared machine.

The pipeline side: `python -m invoke pipeline` in the copy with MLCI_PROJECT_ROOT=<copy>,
MLCI_IMAGE_BASE_IMAGE=local/python:3.11-bookworm, MLCI_IMAGE_NETWORK=host (no registry here,
and the engine's bridge has no route out) and no other MLCI_* variable. It must pass (scan
skipped: no SonarQube). Its per-stage durations come from reports/summary.json; the rest of
its wall time (invoke's start, settings, stopping the servers, the summary) is the row
"outside stages".

The raw side, per stage, read from the stage modules and [tool.mlci.*], each step timed from
process start to exit:
  lint     `python -m ruff check --output-format json <lint.paths>` (RUFF_CACHE_DIR fresh),
           and `hadolint <Dockerfiles>` (the lint stage's own list) when the snapshot's lint
           stage runs hadolint and the program is installed;
  test     the argv the stage builds (mlci.stages.test.pytest_argv: JUnit and Cobertura
           reports, cache_dir in the fresh folder), with COVERAGE_FILE in that folder too, as
           typed by hand: without the stage's PYTHONPYCACHEPREFIX;
  scan     skipped on both sides (no SonarQube here): 0;
  gate     evaluated locally inside mlci, no raw tool: 0;
  image    one build of the same Dockerfile, context and build arguments (VERSION, REVISION,
           CREATED, SOURCE, BASE_IMAGE) with the Docker SDK
           (`docker.from_env().api.build(..., network_mode="host", decode=True)`), in a small
           Python process, the stream consumed; tagged RAW_TAG;
  train    `mlflow server` started as mlci starts it (mlci.servers.local_server,
           mlflow_server_command, MLFLOW_SERVER_ENV; a fresh store), timed to /health; then one
           Python process that, per model of [tool.mlci.models], imports its module, calls
           train_and_evaluate(params), and in mlflow.start_run() logs params and metrics and
           the model (mlflow.sklearn.log_model with the stage's skops format and an input
           example, registered under the model's name; pyfunc as the stage does for other
           flavors);
  promote  one Python process: MlflowClient().set_registered_model_alias(name, alias, version)
           per model;
  release  pypiserver started as mlci starts it (local_server, pypi_server_command), then per
           release.packages entry `python -m build --sdist --wheel --outdir D <package>` (the
           stage's flags), `python -m twine check --strict D/*`, and
           `python -m twine upload --repository-url <index>/ -u x -p x D/*` (the local index
           takes any credentials);
  outside  stopping the two servers.
The two sides do the same work where it is comparable: the same number of tests, models
registered and files uploaded (checked). What mlci adds beyond that (lineage tags, model card,
held-out data, validation and re-scoring in promote, the release's index checks and
download-back verification) is the overhead being measured.

ROUNDS rounds (default 3, `--rounds N`; fewer than 3 is a trial and writes no result), the two
sides alternating which goes first; value = median(pipeline wall) / median(raw sum). The
images are left untagged at the end (the pipeline's two tags and RAW_TAG) unless a tag existed
before the run; no other image is touched. A round takes 8 minutes or more on 2 cores: a cold
pipeline is 2 to 3 minutes with the image cached, and the build alone takes minutes when not.

The pipeline must pass on the snapshot (the tests, and the quality gate: no lint finding); while
others edit the work tree it may not, and the script then says why and exits 2. `--commit REV`
measures a committed state instead (`git archive REV`), and the result names what was measured.

Run from the repository root: python benchmarks/pipeline_overhead.py [--rounds N] [--commit REV]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROUNDS = 3
GOAL = 1.5
ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "pipeline_overhead.json"
BASE_IMAGE = "local/python:3.11-bookworm"
RAW_TAG = "mlci-bench/pipeline-overhead:raw"
STAGES = ("lint", "test", "scan", "gate", "image", "train", "promote", "release")
OUTSIDE = "outside stages"
SOURCES = ("packages/mlci/src", "packages/wine-classifier/src", "packages/diabetes-regressor/src")
#: Left out of both sides' environment: bytecode writing stays on (as on a Jenkins agent), the
#: copy's sources come first on PYTHONPATH, and no server is named from outside (mlci reads
#: MLFLOW_TRACKING_URI; the SonarQube variables are Jenkins' withSonarQubeEnv).
LEFT_OUT = frozenset(
    {
        "PYTHONDONTWRITEBYTECODE",
        "PYTHONPATH",
        "MLFLOW_TRACKING_URI",
        "SONAR_HOST_URL",
        "SONAR_TOKEN",
        "SONAR_AUTH_TOKEN",
    }
)
PIPELINE_TIMEOUT = 1800  # seconds; a cold pipeline takes 2 to 3 minutes here
STEP_TIMEOUT = 900


class CannotMeasure(Exception):
    pass


# --- the snapshot ---------------------------------------------------------------------------


def _git(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, env=env, check=False
    )
    if proc.returncode != 0:
        raise CannotMeasure(f"git {' '.join(args)} failed in {cwd}: {proc.stderr.strip()}")
    return proc.stdout


def snapshot(target: Path, commit: str | None = None) -> Path:
    """This repository's tracked and not-ignored files (or those of ``commit``), committed in
    a repository of their own."""
    target.mkdir(parents=True)
    if commit:
        archive = subprocess.run(
            ["git", "archive", "--format=tar", commit], cwd=ROOT, capture_output=True, check=False
        )
        if archive.returncode != 0:
            raise CannotMeasure(f"git archive {commit} failed: {archive.stderr.decode().strip()}")
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    else:
        listed = _git(["ls-files", "-z", "--cached", "--others", "--exclude-standard"], ROOT)
        for name in sorted(set(filter(None, listed.split("\0")))):
            source = ROOT / name
            if not (source.is_file() or source.is_symlink()):
                continue  # deleted but still tracked
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name, follow_symlinks=False)
    who = {
        "GIT_AUTHOR_NAME": "pipeline_overhead",
        "GIT_AUTHOR_EMAIL": "benchmark@localhost",
        "GIT_COMMITTER_NAME": "pipeline_overhead",
        "GIT_COMMITTER_EMAIL": "benchmark@localhost",
    }
    env = {**os.environ, **who}
    _git(["init", "-q", "-b", "main"], target, env)
    _git(["add", "-A"], target, env)
    _git(
        ["-c", "commit.gpgsign=false", "commit", "-q", "-m", "pipeline_overhead snapshot"],
        target,
        env,
    )
    return target


def clean(copy: Path) -> None:
    """The copy back to its commit: nothing either side left behind reaches the other."""
    _git(["clean", "-fdxq"], copy)
    if _git(["status", "--porcelain"], copy).strip():
        raise CannotMeasure(f"the snapshot {copy} has changes to tracked files after a run")


def base_env(copy: Path) -> dict[str, str]:
    """This environment without MLCI_* settings, bytecode writing on, the copy's sources first."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("MLCI_") and key not in LEFT_OUT
    }
    env["PYTHONPATH"] = os.pathsep.join(str(copy / s) for s in SOURCES)
    return env


def import_mlci_from(copy: Path) -> None:
    """This process imports the copy's mlci (its servers helper and stage modules)."""
    for source in reversed(SOURCES):
        sys.path.insert(0, str(copy / source))
    import mlci

    if not Path(mlci.__file__).resolve().is_relative_to(copy.resolve()):
        raise CannotMeasure(f"mlci was imported from {mlci.__file__}, not from the snapshot")


def mlci_env(copy: Path, folder: Path, cache_setting: bool) -> dict[str, str]:
    env = {
        **base_env(copy),
        "MLCI_PROJECT_ROOT": str(copy),
        "MLCI_STATE_DIR": str(folder / "state"),
        "MLCI_REPORTS_DIR": str(folder / "reports"),
        "MLCI_IMAGE_BASE_IMAGE": BASE_IMAGE,
        "MLCI_IMAGE_NETWORK": "host",
    }
    if cache_setting:
        env["MLCI_CACHE_ENABLED"] = "false"
    return env


# --- what the raw side runs, from the snapshot's own settings and stage modules --------------


def plan(copy: Path, folder: Path, cache_setting: bool) -> dict[str, Any]:
    from mlci.context import StageContext
    from mlci.lineage import git_info
    from mlci.settings import load_settings
    from mlci.stages import image, lint, test
    from mlci.tools import find_program

    settings = load_settings(root=copy, environ=mlci_env(copy, folder, cache_setting))
    ctx = StageContext(settings, log=lambda line: None)
    root = settings.project_root
    hadolint_name = getattr(lint, "HADOLINT", None)
    hadolint = find_program(hadolint_name) if hadolint_name else None
    dockerfiles = []
    if hadolint and hasattr(lint, "dockerfiles"):
        dockerfiles = [os.path.relpath(p, root) for p in lint.dockerfiles(settings)]
    dockerfile, _ = image.dockerfile_for(settings)
    package, version = image.model_package(settings)
    git = git_info(root)
    build_args = {str(k): str(v) for k, v in settings.image.build_args.items()}
    build_args.update(VERSION=version, REVISION=git.sha, SOURCE=package)
    if settings.image.base_image:
        build_args["BASE_IMAGE"] = settings.image.base_image
    models = [
        {
            "name": each.model_name,
            "module": each.model.module,
            "params": each.model.params,
            "registered_model": each.mlflow.registered_model,
            "experiment": each.mlflow.experiment,
        }
        for each in settings.each_model()
    ]
    return {
        "lint_paths": list(settings.lint.paths),
        "hadolint": hadolint if dockerfiles else None,
        "dockerfiles": dockerfiles,
        "pytest": test.pytest_argv(ctx),
        "junit": str(ctx.reports / test.JUNIT),
        "state": str(ctx.state),
        "image": {
            "context": str(settings.path(settings.image.context)),
            "dockerfile": str(dockerfile),
            "buildargs": build_args,
            "network": settings.image.network,
            # what the image stage tags (its _build): version and short commit
            "tags": [
                f"{settings.image.name}:{version.replace('+', '-')}",
                f"{settings.image.name}:{git.short_sha}",
            ],
        },
        "models": models,
        "alias": settings.promotion.alias,
        "packages": [str(settings.path(p)) for p in settings.release.packages],
    }


BUILD = r"""
import json, sys
from datetime import UTC, datetime
import docker
spec = json.loads(sys.argv[1])
args = {**spec["buildargs"], "CREATED": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
image, errors, steps, cached = None, [], 0, 0
for chunk in docker.from_env().api.build(
    path=spec["context"], dockerfile=spec["dockerfile"], tag=spec["tag"], buildargs=args,
    network_mode=spec["network"] or None, rm=True, forcerm=True, decode=True,
):
    if "error" in chunk:
        errors.append(chunk["error"])
    elif "ID" in (chunk.get("aux") or {}):
        image = chunk["aux"]["ID"]
    text = chunk.get("stream", "")
    steps += text.startswith("Step ")
    cached += "Using cache" in text
if errors or image is None:
    sys.exit(f"build failed: {errors[-1] if errors else 'no image id'}")
print(f"CACHED={cached}/{steps}")
"""

TRAIN = r"""
import importlib, json, sys
import mlflow
import pandas as pd
versions = {}
for m in json.loads(sys.argv[1]):
    result = importlib.import_module(m["module"]).train_and_evaluate(m["params"])
    mlflow.set_experiment(m["experiment"])
    example = pd.DataFrame(result.input_example, columns=list(result.feature_names))
    with mlflow.start_run():
        mlflow.log_params({k: str(v) for k, v in result.params.items()})
        mlflow.log_metrics(result.metrics)
        if getattr(result, "flavor", "sklearn") == "sklearn":
            import mlflow.sklearn
            info = mlflow.sklearn.log_model(
                result.model, name="model", input_example=example,
                registered_model_name=m["registered_model"], serialization_format="skops",
                skops_trusted_types=list(getattr(result, "trusted_types", ())) or None,
            )
        else:
            import mlflow.pyfunc
            from mlci.pyfunc_model import PredictorModel
            info = mlflow.pyfunc.log_model(
                name="model", python_model=PredictorModel(result.model), input_example=example,
                registered_model_name=m["registered_model"],
            )
    versions[m["registered_model"]] = str(info.registered_model_version)
print("VERSIONS=" + json.dumps(versions))
"""

PROMOTE = r"""
import json, sys
from mlflow import MlflowClient
client = MlflowClient()
for name, version in json.loads(sys.argv[1]).items():
    client.set_registered_model_alias(name, sys.argv[2], version)
"""


# --- the two sides --------------------------------------------------------------------------


def run_pipeline(copy: Path, folder: Path, cache_setting: bool) -> dict[str, Any]:
    clean(copy)
    folder.mkdir(parents=True)
    env = mlci_env(copy, folder, cache_setting)
    log = folder / "pipeline.log"
    load = os.getloadavg()
    cpu = _children_cpu()
    with open(log, "wb") as out:
        started = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "invoke", "pipeline"],
            cwd=copy,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=PIPELINE_TIMEOUT,
            check=False,
        )
        seconds = time.perf_counter() - started
    cpu = _children_cpu() - cpu
    summary_file = folder / "reports" / "summary.json"
    if proc.returncode != 0 or not summary_file.is_file():
        raise CannotMeasure(
            f"`invoke pipeline` exited {proc.returncode} in the snapshot:\n{_tail(log)}"
        )
    summary = json.loads(summary_file.read_text())["stages"]
    statuses = {s["stage"]: s["status"] for s in summary}
    wanted = {stage: "passed" for stage in STAGES} | {"scan": "skipped"}
    if statuses != wanted:
        raise CannotMeasure(f"the pipeline's stages ended {statuses}, not {wanted}")
    stages = {s["stage"]: s["duration_s"] for s in summary}
    stages[OUTSIDE] = seconds - sum(stages.values())
    reports = folder / "reports"
    work = {
        "tests": _junit_tests(reports / "junit.xml"),
        "models": len(list(reports.glob("**/train.json"))),
        "files": len(json.loads((reports / "release.json").read_text())["files"]),
        "image_tags": json.loads((reports / "image.json").read_text())["tags"],
    }
    return {"seconds": seconds, "cpu_seconds": cpu, "stages": stages, "work": work, "loadavg": load}


def run_raw(copy: Path, folder: Path, cache_setting: bool) -> dict[str, Any]:
    from mlci import servers

    clean(copy)
    folder.mkdir(parents=True)
    todo = plan(copy, folder, cache_setting)
    state = Path(todo["state"])
    env = base_env(copy)
    steps: dict[str, tuple[str, float]] = {}  # step -> (stage, seconds)
    load = os.getloadavg()
    cpu = _children_cpu()

    def step(name: str, stage: str, argv: list[str], ok=(0,), extra=None) -> str:
        started = time.perf_counter()
        proc = subprocess.run(
            argv,
            cwd=copy,
            env={**env, **(extra or {})},
            capture_output=True,
            text=True,
            timeout=STEP_TIMEOUT,
            check=False,
        )
        steps[name] = (stage, time.perf_counter() - started)
        if proc.returncode not in ok:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
            raise CannotMeasure(f"raw step {name!r} exited {proc.returncode}:\n{tail}")
        return proc.stdout

    py = sys.executable
    ruff = [py, "-m", "ruff", "check", "--output-format", "json", *todo["lint_paths"]]
    step("ruff", "lint", ruff, ok=(0, 1), extra={"RUFF_CACHE_DIR": str(state / "ruff-cache")})
    if todo["hadolint"]:
        step("hadolint", "lint", [todo["hadolint"], *todo["dockerfiles"]], ok=(0, 1))
    (state / "coverage").mkdir(parents=True, exist_ok=True)
    coverage_file = {"COVERAGE_FILE": str(state / "coverage" / ".coverage")}
    step("pytest", "test", todo["pytest"], extra=coverage_file)
    spec = {**todo["image"], "tag": RAW_TAG}
    built = step("docker build", "image", [py, "-c", BUILD, json.dumps(spec)])

    tracking_server = servers.local_server(
        "mlflow server",
        servers.mlflow_server_command(state),
        "/health",
        state / "logs" / "mlflow-server.log",
        start_timeout=180,
        env=servers.MLFLOW_SERVER_ENV,
    )
    with _server(steps, "mlflow server", "train", tracking_server) as tracking:
        tracking_env = {"MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_TRACKING_URI": tracking.url}
        train = [py, "-c", TRAIN, json.dumps(todo["models"])]
        out = step("train script", "train", train, extra=tracking_env)
        versions = json.loads(out.rsplit("VERSIONS=", 1)[1])
        promote = [py, "-c", PROMOTE, json.dumps(versions), todo["alias"]]
        step("promote script", "promote", promote, extra=tracking_env)

    dist = folder / "dist"
    package_index = servers.local_server(
        "package index (pypiserver)",
        servers.pypi_server_command(state / "packages"),
        "/health",
        state / "logs" / "pypiserver.log",
        start_timeout=180,
    )
    with _server(steps, "pypiserver", "release", package_index) as index:
        for package in todo["packages"]:
            build = [py, "-m", "build", "--sdist", "--wheel", "--outdir", str(dist), package]
            step(f"build {Path(package).name}", "release", build)
        files = sorted(str(p) for p in dist.iterdir())
        step("twine check", "release", [py, "-m", "twine", "check", "--strict", *files])
        upload = [py, "-m", "twine", "upload", "--repository-url", index.url + "/"]
        upload += ["-u", "x", "-p", "x", "--non-interactive", "--disable-progress-bar", *files]
        step("twine upload", "release", upload)

    stages = {stage: 0.0 for stage in (*STAGES, OUTSIDE)}
    for stage, seconds in steps.values():
        stages[stage] += seconds
    work = {
        "tests": _junit_tests(Path(todo["junit"])),
        "models": len(versions),
        "files": len(files),
        # steps of the build that Docker's layer cache answered: concurrent builds of the same
        # base steps on this engine can leave the cache pointing elsewhere (see the docstring)
        "image_steps_cached": built.rsplit("CACHED=", 1)[1].strip(),
    }
    return {
        "seconds": sum(seconds for _, seconds in steps.values()),
        "cpu_seconds": _children_cpu() - cpu,
        "stages": stages,
        "steps": {name: seconds for name, (_, seconds) in steps.items()},
        "work": work,
        "loadavg": load,
    }


@contextlib.contextmanager
def _server(
    steps: dict[str, tuple[str, float]],
    name: str,
    stage: str,
    server: contextlib.AbstractContextManager[Any],
) -> Iterator[Any]:
    """A local server whose start counts in ``stage`` and whose stop outside the stages."""
    with contextlib.ExitStack() as stack:
        started = time.perf_counter()
        running = stack.enter_context(server)
        steps[f"{name} start"] = (stage, time.perf_counter() - started)
        yield running
        stopping = time.perf_counter()
        stack.close()
        steps[f"{name} stop"] = (OUTSIDE, time.perf_counter() - stopping)


def _children_cpu() -> float:
    """CPU seconds (user + system) of the finished processes this one started, theirs
    included; Docker builds run in the engine and are not in it, on either side."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _junit_tests(path: Path) -> int:
    from mlci.reports import read_junit

    return read_junit(path).tests


def _tail(path: Path, lines: int = 25) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


# --- images ---------------------------------------------------------------------------------


def _docker() -> Any:
    import docker

    try:
        client = docker.from_env(timeout=300)
        client.ping()
    except Exception as exc:  # the SDK's and requests' errors alike: no engine, no measure
        raise CannotMeasure(f"no Docker engine answers: {exc}") from None
    return client


def _existing_tags(client: Any) -> set[str]:
    return {tag for image in client.images.list() for tag in image.tags}


def untag(client: Any, tags: list[str], existed: set[str]) -> list[str]:
    """Remove the tags this run made (never one that existed before it); what was removed."""
    removed = []
    for tag in tags:
        if tag in existed:
            continue
        with contextlib.suppress(Exception):  # already gone, or in use by a container
            client.images.remove(tag)
            removed.append(tag)
    return removed


# --- the run --------------------------------------------------------------------------------


def _machine(client: Any) -> str:
    from importlib.metadata import version

    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    engine = client.version().get("Version", "?")
    return (
        f"{os.cpu_count()} cores, {mem:.0f} GiB, Python {platform.python_version()}, "
        f"Docker engine {engine}, mlflow {version('mlflow')} (SQLite), "
        f"pypiserver {version('pypiserver')}, build {version('build')}, "
        f"twine {version('twine')}, pytest {version('pytest')}, ruff {version('ruff')}"
    )


def measure(tmp: Path, rounds: int, commit: str | None) -> tuple[list[dict[str, Any]], str]:
    copy = snapshot(tmp / "copy", commit)
    import_mlci_from(copy)
    from mlci.settings import SPECS

    cache_setting = "cache.enabled" in SPECS
    client = _docker()
    machine = _machine(client)
    if not client.images.list(name=BASE_IMAGE):
        raise CannotMeasure(
            f"the base image {BASE_IMAGE} is not on this engine "
            "(docs: /work/shared/environment.md, 'Base images without a registry')"
        )
    first = plan(copy, tmp / "plan", cache_setting)
    ours = [*first["image"]["tags"], RAW_TAG]
    existed = _existing_tags(client) & set(ours)
    print(
        f"snapshot: {copy} ({_git(['rev-parse', '--short', 'HEAD'], copy).strip()}); "
        f"warming Docker's layer cache with one build (not counted)",
        flush=True,
    )
    runs: list[dict[str, Any]] = []
    try:
        clean(copy)
        warm = subprocess.run(
            [sys.executable, "-c", BUILD, json.dumps({**first["image"], "tag": RAW_TAG})],
            cwd=copy,
            env=base_env(copy),
            capture_output=True,
            text=True,
            check=False,
        )
        if warm.returncode != 0:
            raise CannotMeasure(f"the warm-up image build failed: {warm.stderr.strip()[-1500:]}")
        for i in range(rounds):
            order = ("pipeline", "raw") if i % 2 == 0 else ("raw", "pipeline")
            for kind in order:
                folder = tmp / f"round{i}-{kind}"
                side = run_pipeline if kind == "pipeline" else run_raw
                run = {"round": i, "kind": kind, **side(copy, folder, cache_setting)}
                runs.append(run)
                print(
                    f"  round {i + 1}: {kind:<8} {run['seconds']:7.1f} s  "
                    f"(load {run['loadavg'][0]:.1f})",
                    flush=True,
                )
                shutil.rmtree(folder, ignore_errors=True)
        pipeline_work = [r["work"] for r in runs if r["kind"] == "pipeline"]
        raw_work = [r["work"] for r in runs if r["kind"] == "raw"]
        for key in ("tests", "models", "files"):  # the same work on both sides
            seen = {w[key] for w in pipeline_work} | {w[key] for w in raw_work}
            if len(seen) != 1:
                raise CannotMeasure(f"the two sides did different work: {key} {sorted(seen)}")
        ours = sorted({*ours, *(t for w in pipeline_work for t in w["image_tags"])})
    finally:
        removed = untag(client, ours, existed)
    if removed:
        print(f"removed the tags this run made: {', '.join(removed)}")
    return runs, machine


def _median(runs: list[dict[str, Any]], kind: str, key: Callable[[dict[str, Any]], float]) -> float:
    return statistics.median(key(r) for r in runs if r["kind"] == kind)


def report(runs: list[dict[str, Any]]) -> tuple[float, float, float, list[str]]:
    pipeline = _median(runs, "pipeline", lambda r: r["seconds"])
    raw = _median(runs, "raw", lambda r: r["seconds"])
    notes = {
        "scan": "skipped on both sides (no SonarQube)",
        "gate": "no raw tool (local)",
        OUTSIDE: "invoke start, settings, server stops | raw: server stops",
    }
    lines = [f"{'stage':<15} {'pipeline':>9} {'raw':>9} {'ratio':>6}  note"]
    for stage in (*STAGES, OUTSIDE):
        p = _median(runs, "pipeline", lambda r, s=stage: r["stages"][s])
        q = _median(runs, "raw", lambda r, s=stage: r["stages"][s])
        ratio = f"{p / q:6.2f}" if q > 0.05 else f"{'-':>6}"
        lines.append(f"{stage:<15} {p:7.1f} s {q:7.1f} s {ratio}  {notes.get(stage, '')}")
    lines.append(
        f"{'total':<15} {pipeline:7.1f} s {raw:7.1f} s {pipeline / raw:6.2f}  "
        "median of each side's totals"
    )
    cpu = [_median(runs, kind, lambda r: r["cpu_seconds"]) for kind in ("pipeline", "raw")]
    lines.append(
        f"{'CPU time':<15} {cpu[0]:7.1f} s {cpu[1]:7.1f} s {cpu[0] / cpu[1]:6.2f}  "
        "user + system of the processes each side ran (not the Docker engine's)"
    )
    lines += ["", "raw steps (median):"]
    names = next(r["steps"] for r in runs if r["kind"] == "raw")
    for name in names:
        lines.append(f"  {name:<26} {_median(runs, 'raw', lambda r, n=name: r['steps'][n]):7.2f} s")
    lines += ["", f"{'round':>5} {'pipeline':>9} {'raw':>9} {'ratio':>6}  load (1 min) at start"]
    for i in sorted({r["round"] for r in runs}):
        pair = {r["kind"]: r["seconds"] for r in runs if r["round"] == i}
        load = {r["kind"]: r["loadavg"][0] for r in runs if r["round"] == i}
        lines.append(
            f"{i + 1:>5} {pair['pipeline']:7.1f} s {pair['raw']:7.1f} s "
            f"{pair['pipeline'] / pair['raw']:6.2f}  {load['pipeline']:.1f} / {load['raw']:.1f}"
        )
    return pipeline / raw, pipeline, raw, lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rounds",
        type=int,
        default=ROUNDS,
        help=f"rounds of both sides (default {ROUNDS}; below 3 writes no result)",
    )
    parser.add_argument(
        "--commit",
        help="measure this commit of the repository instead of its work tree (for a work tree "
        "that others are editing and that does not pass the pipeline now)",
    )
    args = parser.parse_args()
    rounds = max(1, args.rounds)
    source = "work tree"
    with tempfile.TemporaryDirectory(prefix="pipeline_overhead-") as tmp:
        try:
            if args.commit:
                source = f"commit {_git(['rev-parse', '--short', args.commit], ROOT).strip()}"
            runs, machine = measure(Path(tmp), rounds, args.commit)
        except (CannotMeasure, subprocess.TimeoutExpired) as exc:
            print(f"pipeline_overhead: cannot measure: {exc}")
            return 2
    value, pipeline, raw, lines = report(runs)
    print(f"\nmeasured on a snapshot of the repository's {source}")
    print("\n".join(lines))
    result = {
        "name": "pipeline_overhead",
        "value": round(value, 3),
        "unit": "x (cold invoke pipeline / sum of the raw tools it runs)",
        "goal": GOAL,
        "better": "lower",
        "measured": f"a snapshot of the repository's {source}",
        "pipeline_seconds": round(pipeline, 2),
        "raw_seconds": round(raw, 2),
        "table": lines,
        "runs": [_rounded(r) for r in runs],
        "machine": machine,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if rounds >= 3:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    else:
        print(f"\n(a trial of {rounds} round(s): {RESULTS.name} not written)")
    print(f"pipeline_overhead: {value:.2f} x (goal <= {GOAL:g})")
    return 0


def _rounded(run: dict[str, Any]) -> dict[str, Any]:
    out = dict(run)
    out["seconds"] = round(run["seconds"], 2)
    out["cpu_seconds"] = round(run["cpu_seconds"], 2)
    out["stages"] = {k: round(v, 2) for k, v in run["stages"].items()}
    if "steps" in run:
        out["steps"] = {k: round(v, 2) for k, v in run["steps"].items()}
    out["loadavg"] = [round(x, 2) for x in run["loadavg"]]
    return out


if __name__ == "__main__":
    sys.exit(main())
