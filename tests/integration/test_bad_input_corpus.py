"""The bad-input corpus: what a new user gets wrong, across every task, as a table.

Each case runs the real command line (the ``mlci`` program, the same tasks as ``invoke``) in a
subprocess on a small project of its own, with only its own MLCI_* variables, and asserts:

* the exit code of the error class (ConfigError 2, ServiceError 3, StageFailed 1, ToolMissing
  4; invoke's parser 1);
* no Python traceback, anywhere in the output;
* the message: exactly one ``ClassName: what`` line, whose text names the problem;
* nothing half-done: the project's files as they were, no report and no state file written,
  no process left behind, and (for cases that reach the session's MLflow server) the
  registry as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
MLCI = str(Path(sys.executable).with_name("mlci"))
WINE = REPO_ROOT / "packages" / "wine-classifier"
SECRET = "corpus-secret-5150"
GIT_ENV = {
    "GIT_AUTHOR_NAME": "dev", "GIT_AUTHOR_EMAIL": "dev@example.com",
    "GIT_COMMITTER_NAME": "dev", "GIT_COMMITTER_EMAIL": "dev@example.com",
    "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1",
}  # fmt: skip

GATE = 'name = "g"\n[[conditions]]\nmetric = "coverage"\nop = "LT"\nerror = 50\n'
PYPROJECT = """[project]
name = "demo"
version = "0.1.0"

[tool.mlci]

[tool.mlci.lint]
paths = ["src"]

[tool.mlci.test]
paths = ["tests"]

[tool.mlci.gate]
file = "gate.toml"

[tool.mlci.model]
module = "wine_classifier"
"""


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


DEAD = f"http://127.0.0.1:{closed_port()}"


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=root, env={"PATH": "/usr/bin:/bin", **GIT_ENV},
                   check=True, capture_output=True, timeout=60)  # fmt: skip


# ---- the project a case starts from, and what it changes ------------------------------------


Layout = Callable[[Path], None]


def write(name: str, text: str | bytes) -> Layout:
    def change(root: Path) -> None:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)

    return change


def pyproject(extra: str) -> Layout:
    """The base pyproject with ``extra`` appended (new tables, or keys of [tool.mlci.model])."""
    return write("pyproject.toml", PYPROJECT + extra)


def pyproject_replacing(old: str, new: str) -> Layout:
    return write("pyproject.toml", PYPROJECT.replace(old, new))


def train_report(report: dict[str, Any] | str) -> Layout:
    text = report if isinstance(report, str) else json.dumps(report)
    return write("out/reports/train.json", text)


def release_repo(*, commit: bool = True, tag: str | None = None, dirty: bool = False) -> Layout:
    """A project whose release packages one hatch-vcs package, in git (or not)."""

    def change(root: Path) -> None:
        write("pyproject.toml", PYPROJECT + '\n[tool.mlci.release]\npackages = ["pkg"]\n')(root)
        pkg = root / "pkg"
        (pkg / "src" / "pkg").mkdir(parents=True)
        (pkg / "src" / "pkg" / "__init__.py").write_text("VALUE = 1\n")
        (pkg / "pyproject.toml").write_text(
            '[build-system]\nrequires = ["hatchling", "hatch-vcs"]\n'
            'build-backend = "hatchling.build"\n[project]\nname = "pkg"\n'
            'dynamic = ["version"]\n[tool.hatch.version]\nsource = "vcs"\n'
            'raw-options = { root = "..", fallback_version = "0.0.0" }\n'
        )
        (root / ".gitignore").write_text("out/\n")
        git(root, "init", "-q", "-b", "main")
        if commit:
            git(root, "add", "-A")
            git(root, "commit", "-q", "-m", "first")
        if tag:
            git(root, "tag", tag)
        if dirty:
            (pkg / "src" / "pkg" / "__init__.py").write_text("VALUE = 2\n")

    return change


@dataclass(frozen=True)
class Case:
    id: str
    argv: tuple[str, ...]
    code: int
    error: str  # "ClassName: " + text the message's first line holds; "" for parser errors
    says: str = ""  # more text the output must hold
    env: dict[str, str] = field(default_factory=dict)
    layout: tuple[Layout, ...] = ()
    server: bool = False  # the case reaches the session's MLflow server
    writes: tuple[str, ...] = ()  # what a failing stage rightly leaves (failing tests' JUnit)


def case(id: str, argv: str, code: int, error: str, says: str = "", *layout: Layout,
         server: bool = False, writes: tuple[str, ...] = (), **env: str) -> Any:  # fmt: skip
    return pytest.param(
        Case(id, tuple(argv.split()), code, error, says, dict(env), tuple(layout), server, writes),
        id=id,
    )


CONFIG = [
    case("mode-not-a-choice", "config", 2, "ConfigError: promotion.mode (from env",
         "disabled, dry-run, enabled", MLCI_PROMOTION_MODE="sometimes"),
    case("timeout-not-a-number", "config", 2, "ConfigError: mlflow.timeout (from env",
         "give a number", MLCI_MLFLOW_TIMEOUT="abc"),
    case("timeout-negative", "config", 2, "ConfigError: mlflow.timeout (from env",
         "at least 1", MLCI_MLFLOW_TIMEOUT="-1"),
    case("timeout-nan", "config", 2, "ConfigError: mlflow.timeout", "not a finite number",
         MLCI_MLFLOW_TIMEOUT="nan"),
    case("timeout-inf", "train", 2, "ConfigError: mlflow.timeout", "not a finite number",
         MLCI_MLFLOW_TIMEOUT="inf"),
    case("retries-not-whole", "config", 2, "ConfigError: mlflow.retries", "",
         MLCI_MLFLOW_RETRIES="1.5"),
    case("misspelt-variable", "train", 2, "ConfigError: unknown setting 'MLCI_MLFLOW_TRACKIN_URI'",
         "did you mean 'MLCI_MLFLOW_TRACKING_URI'", MLCI_MLFLOW_TRACKIN_URI="http://x"),
    case("root-missing", "config", 2, "ConfigError: MLCI_PROJECT_ROOT=", "is not a folder",
         MLCI_PROJECT_ROOT="/nonexistent/mlci-project"),
    case("allow-dev-not-a-bool", "config", 2, "ConfigError: release.allow_dev",
         "true or false", MLCI_RELEASE_ALLOW_DEV="maybe"),
    case("list-not-json", "lint", 2, "ConfigError: lint.paths", "", MLCI_LINT_PATHS="[src"),
    case("params-not-pairs", "train", 2, "ConfigError: model.params", "key=value",
         MLCI_MODEL_PARAMS="n_estimators"),
    case("params-broken-json", "train", 2, "ConfigError: model.params", "",
         MLCI_MODEL_PARAMS='{"n_estimators":'),
    case("tracking-uri-ftp", "train", 2, "ConfigError: mlflow.tracking_uri", "not an http(s) URL",
         MLCI_MLFLOW_TRACKING_URI="ftp://mlflow.example"),
    case("tracking-uri-bad-port", "promote", 2, "ConfigError: mlflow.tracking_uri",
         "not a valid URL", MLCI_MLFLOW_TRACKING_URI="http://mlflow.example:50x0"),
    case("tracking-uri-no-host", "train", 2, "ConfigError: mlflow.tracking_uri", "names no host",
         MLCI_MLFLOW_TRACKING_URI="http://"),
    case("tracking-uri-with-password", "train", 2, "ConfigError: mlflow.tracking_uri (from env "
         "MLFLOW_TRACKING_URI) has a user name or password", "MLFLOW_TRACKING_PASSWORD",
         MLFLOW_TRACKING_URI=f"http://ci:{SECRET}@mlflow.example:5000"),
    case("tracking-uri-file-store", "train", 2, "ConfigError: mlflow.tracking_uri",
         "not a file or database store", MLCI_MLFLOW_TRACKING_URI="file:///tmp/mlruns"),
    case("sonar-url-not-a-url", "scan", 2, "ConfigError: sonar.host_url", "",
         MLCI_SONAR_HOST_URL="sonarqube"),
    case("in-image-not-a-choice", "train", 2, "ConfigError: train.in_image", "auto, always, never",
         MLCI_TRAIN_IN_IMAGE="sometimes"),
    case("image-timeout-zero", "image", 2, "ConfigError: image.timeout", "at least 1",
         MLCI_IMAGE_TIMEOUT="0"),
    case("min-not-a-number", "promote", 2, "ConfigError: promotion.min", "",
         MLCI_PROMOTION_MIN='{"f1_macro": "high"}'),
    case("start-timeout-zero", "train", 2, "ConfigError: server_start_timeout", "at least 1",
         MLCI_SERVER_START_TIMEOUT="0"),
    case("lease-ttl-zero", "promote", 2, "ConfigError: promotion.lease_ttl", "at least 1",
         MLCI_PROMOTION_LEASE_TTL="0"),
    case("orphan-after-too-short", "config", 2, "ConfigError: mlflow.orphan_after", "at least 120",
         MLCI_MLFLOW_ORPHAN_AFTER="30"),
]  # fmt: skip

PYPROJECT_CASES = [
    case("unknown-key", "config", 2, "ConfigError: unknown setting 'reports_dri'",
         "did you mean 'reports_dir'", pyproject_replacing("[tool.mlci]\n",
                                                           '[tool.mlci]\nreports_dri = "x"\n')),
    case("unknown-section", "config", 2, "ConfigError: unknown section [tool.mlci.mlfow]",
         "did you mean [tool.mlci.mlflow]", pyproject('[tool.mlci.mlfow]\nexperiment = "x"\n')),
    case("invalid-toml", "config", 2, "ConfigError:", "is not valid TOML",
         write("pyproject.toml", "[tool.mlci\nreports_dir = 1\n")),
    case("not-utf8", "train", 2, "ConfigError:", "is not UTF-8 text",
         write("pyproject.toml", PYPROJECT.encode() + b'\n# caf\xe9\n')),
    case("secret-in-file", "config", 2, "ConfigError: release.password is set in pyproject.toml",
         "MLCI_RELEASE_PASSWORD", pyproject(f'[tool.mlci.release]\npassword = "{SECRET}"\n')),
    case("section-as-value", "config", 2, "ConfigError: [tool.mlci] sets mlflow",
         "[tool.mlci.mlflow]", pyproject_replacing("[tool.mlci]\n", "[tool.mlci]\nmlflow = 1\n")),
    case("wrong-type-in-file", "config", 2, "ConfigError: mlflow.timeout (from pyproject.toml)",
         "", pyproject('[tool.mlci.mlflow]\ntimeout = "soon"\n')),
    case("list-for-text", "config", 2, "ConfigError: mlflow.experiment (from pyproject.toml)", "",
         pyproject('[tool.mlci.mlflow]\nexperiment = ["a"]\n')),
]  # fmt: skip

GATE_CASES = [
    case("gate-file-missing", "gate", 2, "ConfigError: the quality-gate file", "does not exist",
         write("gate.toml", GATE), MLCI_GATE_FILE="missing.toml"),
    case("gate-invalid-toml", "gate", 2, "ConfigError: the quality-gate file",
         "is not valid TOML", write("gate.toml", "name = \n")),
    case("gate-no-name", "gate", 2, "ConfigError: the quality-gate file", "has no name",
         write("gate.toml", GATE.replace('name = "g"\n', ""))),
    case("gate-no-conditions", "gate", 2, "ConfigError: the quality-gate file",
         "has no [[conditions]]", write("gate.toml", 'name = "g"\n')),
    case("gate-misspelt-metric", "gate", 2, "ConfigError: condition 1 in the quality-gate file",
         "did you mean 'coverage'", write("gate.toml", GATE.replace('"coverage"', '"coverge"'))),
    case("gate-unknown-key", "gate", 2, "ConfigError: condition 1",
         "unknown key(s): threshold", write("gate.toml", GATE + "threshold = 3\n")),
    case("gate-wrong-operator", "gate", 2, "ConfigError: condition 1", 'write op = "LT"',
         write("gate.toml", GATE.replace('op = "LT"', 'op = "GT"'))),
    case("gate-not-utf8", "gate", 2, "ConfigError: the quality-gate file", "is not UTF-8 text",
         write("gate.toml", GATE.encode() + b"# \xff\n")),
    case("gate-error-not-a-number", "gate", 2, "ConfigError: condition 1", "error (a number)",
         write("gate.toml", GATE.replace("error = 50", 'error = "fifty"'))),
    case("gate-twice-the-same-metric", "gate", 2, "ConfigError: the quality-gate file",
         "more than one condition on coverage", write("gate.toml", GATE + GATE.split("\n", 1)[1])),
    case("gate-unknown-top-level-key", "gate", 2, "ConfigError: the quality-gate file",
         "unknown key(s): owner", write("gate.toml", 'owner = "me"\n' + GATE)),
    case("gate-without-reports", "gate", 1, "StageFailed: the JUnit report", "run `invoke test`"),
    case("gate-broken-junit", "gate", 1, "StageFailed: the JUnit report", "not valid XML",
         write("out/reports/junit.xml", "<testsuite")),
]  # fmt: skip

LINT_TEST_CASES = [
    case("lint-paths-missing", "lint", 2, "ConfigError: lint.paths names paths that do not exist",
         "MLCI_LINT_PATHS", MLCI_LINT_PATHS="nowhere"),
    case("lint-broken-ruff-config", "lint", 1, "LintFailed: ruff could not check the code",
         "[tool.ruff]", write("src/a.py", "x = 1\n"),
         pyproject('[tool.ruff]\nline-length = "long"\n')),
    case("test-paths-missing", "test", 2, "ConfigError: test.paths names paths that do not exist",
         "MLCI_TEST_PATHS", MLCI_TEST_PATHS="nowhere"),
    case("test-no-tests", "test", 1, "TestsFailed: pytest collected no tests", "",
         write("tests/helpers.py", "X = 1\n"), writes=("out/reports/junit.xml", "out/state/")),
    case("reports-is-a-file", "lint", 2, "ConfigError: reports_dir", "is a file, not a folder",
         write("src/a.py", "x = 1\n"), write("out/reports", "not a folder\n")),
    case("reports-under-dev-null", "lint", 2, "ConfigError: reports_dir", "cannot be created",
         write("src/a.py", "x = 1\n"), MLCI_REPORTS_DIR="/dev/null/reports"),
    case("train-reports-is-a-file", "train", 2, "ConfigError: reports_dir",
         "is a file, not a folder", write("out/reports", "x")),
    case("train-state-under-dev-null", "train", 2, "ConfigError: state_dir", "cannot be created",
         MLCI_STATE_DIR="/dev/null/state"),
]  # fmt: skip

SCAN_IMAGE_CASES = [
    case("scan-without-token", "scan", 2, "ConfigError: SonarQube at", "no token",
         MLCI_SONAR_HOST_URL=DEAD),
    case("scan-unreachable", "scan", 3, "SonarQubeError: scan: SonarQube at", "cannot be reached",
         write("out/reports/junit.xml", "<testsuite/>"),
         write("out/reports/coverage.xml", "<coverage/>"),
         MLCI_SONAR_HOST_URL=DEAD, MLCI_SONAR_TOKEN=SECRET),
    case("scan-without-reports", "scan", 1, "StageFailed: the scan needs junit.xml, coverage.xml",
         "run `invoke test` first", MLCI_SONAR_HOST_URL=DEAD, MLCI_SONAR_TOKEN=SECRET),
    case("scanner-missing", "scan", 4, "ToolMissing: the scanner 'pysonar-nowhere'",
         "nor on PATH", write("out/reports/junit.xml", "<testsuite/>"),
         write("out/reports/coverage.xml", "<coverage/>"),
         MLCI_SONAR_HOST_URL=DEAD, MLCI_SONAR_TOKEN=SECRET, MLCI_SONAR_SCANNER="pysonar-nowhere"),
    case("image-no-dockerfile", "image", 2, "ConfigError: the Dockerfile", "does not exist",
         MLCI_IMAGE_DOCKERFILE="Nope.Dockerfile"),
    case("image-registry-without-engine", "image", 3, "DockerEngineError: no Docker engine",
         "must be pushed to 127.0.0.1:5001", write("Dockerfile", "FROM scratch\n"),
         MLCI_IMAGE_REGISTRY="127.0.0.1:5001", DOCKER_HOST="unix:///nonexistent/docker.sock"),
    case("image-username-without-password", "image", 2, "ConfigError: only one of",
         "MLCI_IMAGE_REGISTRY_PASSWORD", write("Dockerfile", "FROM scratch\n"),
         MLCI_IMAGE_REGISTRY="127.0.0.1:5001", MLCI_IMAGE_REGISTRY_USERNAME="ci"),
]  # fmt: skip

TRAIN_CASES = [
    case("no-model-module", "train", 2, "ConfigError: model.module is not set", "",
         MLCI_MODEL_MODULE=""),
    case("model-not-importable", "train", 2, "ConfigError: the model package 'no_such_model'",
         "cannot be imported", MLCI_MODEL_MODULE="no_such_model"),
    case("model-without-entry-point", "train", 2, "ConfigError: the model package 'json'",
         "train_and_evaluate", MLCI_MODEL_MODULE="json"),
    case("misspelt-hyper-parameter", "train", 2,
         "ConfigError: the model package cannot train with these hyper-parameters here",
         "did you mean 'n_estimators'", MLCI_MODEL_PARAMS='{"n_estimator": 3}'),
    case("unknown-estimator", "train", 2, "ConfigError: the model package cannot train",
         "estimator", MLCI_MODEL_PARAMS='{"estimator": "xgboost"}'),
    case("params-flag-not-json", "train --params {bad", 2,
         "ConfigError: --params is not valid JSON", "quote it for the shell"),
    case("train-unreachable-server", "train", 3, "TrackingServerError: the MLflow tracking server",
         "cannot be reached", MLCI_MLFLOW_TRACKING_URI=DEAD),
    case("train-always-in-image-without-one", "train", 1,
         "StageFailed: no pushed image to train in", "MLCI_IMAGE_REGISTRY",
         MLCI_TRAIN_IN_IMAGE="always"),
    case("train-context-garbage", "train", 2, "ConfigError: MLCI_TRAINING_CONTEXT is not what",
         "", MLCI_TRAINING_CONTEXT="{not json"),
    case("train-tag-not-a-version", "train", 2, "ConfigError: the version of pkg cannot be",
         "Can't parse version from tag 'v1.x'", release_repo(tag="v1.x"),
         MLCI_MODEL_PACKAGE="pkg"),
]  # fmt: skip

PROMOTE_CASES = [
    case("promote-without-report", "promote", 1, "StageFailed:", "run `invoke train` first"),
    case("promote-report-not-json", "promote", 1, "StageFailed:", "is not valid JSON",
         train_report("{nope")),
    case("promote-report-without-run", "promote", 1, "StageFailed:",
         "incomplete: no run_id", train_report({"registered_model": "m", "version": "1"})),
    case("promote-report-is-a-folder", "promote", 1, "StageFailed:", "is a folder",
         write("out/reports/train.json/x", "")),
    case("promote-unreachable-server", "promote", 3, "TrackingServerError: the MLflow tracking",
         "cannot be reached", train_report({"registered_model": "m", "version": "1",
                                             "run_id": "r"}), MLCI_MLFLOW_TRACKING_URI=DEAD),
    case("promote-mode-flag", "promote --mode sometimes", 2, "ConfigError: promotion.mode", ""),
]  # fmt: skip

RELEASE_CASES = [
    case("release-no-commit", "release --dry-run", 1, "ReleaseRefused:",
         "has no git commit to release from", release_repo(commit=False),
         MLCI_RELEASE_ALLOW_DEV="true"),
    case("release-exported-tree", "release --dry-run", 1, "ReleaseRefused:",
         "has no git commit", pyproject('[tool.mlci.release]\npackages = ["."]\n'),
         MLCI_RELEASE_ALLOW_DEV="true"),
    case("release-dirty", "release --dry-run", 1, "ReleaseRefused: the work tree has uncommitted",
         "", release_repo(tag="v1.0.0", dirty=True), MLCI_RELEASE_ALLOW_DEV="false"),
    case("release-untagged", "release --dry-run", 1, "ReleaseRefused: HEAD", "has no version tag",
         release_repo(), MLCI_RELEASE_ALLOW_DEV="false"),
    case("release-tag-not-a-version", "release --dry-run", 2, "ConfigError: the version of pkg",
         "'v1.x'", release_repo(tag="v1.x")),
    case("release-package-without-pyproject", "release --dry-run", 2,
         "ConfigError: release.packages names 'nowhere'", "", MLCI_RELEASE_PACKAGES="nowhere"),
    case("release-unreachable-index", "release", 3, "PackageIndexError:", "",
         release_repo(tag="v1.0.0"), MLCI_RELEASE_REPOSITORY_URL=DEAD + "/"),
    case("release-index-ftp", "release --repository-url ftp://index", 2,
         "ConfigError: release.repository_url", "not an http(s) URL"),
]  # fmt: skip

PLATFORM_CASES = [
    case("wire-without-env-file", "platform.wire", 2, "ConfigError: the platform's env file",
         "invoke platform.up", MLCI_PLATFORM_ENV_FILE="missing.env"),
    case("down-without-env-file", "platform.down", 2, "ConfigError: the platform's env file",
         "", MLCI_PLATFORM_ENV_FILE="missing.env"),
    case("status-env-not-utf8", "platform.status", 2, "ConfigError: the platform's env file",
         "is not UTF-8 text", write("p.env", b"A=\xff\n"), MLCI_PLATFORM_ENV_FILE="p.env"),
    case("wire-unanchored-ref-filter", "platform.wire", 2, "ConfigError:", "not anchored",
         MLCI_PLATFORM_ENV_FILE="missing.env", MLCI_PLATFORM_REF_FILTER="refs/heads/main"),
]  # fmt: skip

MODEL_CASES = [
    case("model-not-in-models", "train", 2, "ConfigError: there is no model 'wnie'",
         "did you mean 'wine'?", pyproject('[tool.mlci.models.wine]\nmodule = "wine_classifier"\n'),
         MLCI_MODEL="wnie"),
    case("models-table-misspelt-key", "config", 2,
         "ConfigError: unknown setting 'modul' in [tool.mlci.models.a]", "did you mean 'module'",
         pyproject('[tool.mlci.models.a]\nmodul = "x"\n')),
    case("two-models-info-without-model", "model.info", 2,
         "ConfigError: this project has several models: a, b", "--model NAME",
         pyproject('[tool.mlci.models.a]\nmodule = "x"\n[tool.mlci.models.b]\nmodule = "y"\n')),
    case("min-on-a-lower-metric", "promote", 2,
         "ConfigError: promotion.min sets a bound on rmse, a lower-is-better metric",
         "promotion.max", train_report({"registered_model": "m", "version": "1", "run_id": "r"}),
         MLCI_PROMOTION_PRIMARY_METRIC="rmse", MLCI_PROMOTION_DIRECTIONS='{"rmse": "lower"}',
         MLCI_PROMOTION_MIN='{"rmse": 50}'),
    case("direction-not-a-choice", "config", 2, "ConfigError: promotion.directions",
         "higher, lower", MLCI_PROMOTION_DIRECTIONS='{"rmse": "down"}'),
    case("result-missing-fields", "train", 2,
         "ConfigError: train_and_evaluate() of 'half_model' returned a result mlci cannot log",
         "it has no data_hash, input_example, feature_names",
         write("half_model.py", "class R:\n    model = None\n    metrics = {'a': 1.0}\n"
               "    params = {}\n\ndef train_and_evaluate(params):\n    return R()\n"),
         writes=("out/",), MLCI_MODEL_MODULE="half_model", PYTHONPATH="project"),
    case("init-over-existing", "init", 2, "ConfigError: mlci init would overwrite "
         "pyproject.toml ([tool.mlci])", "--dry-run"),
]  # fmt: skip

BATCH = "alcohol,ash\n13.2,2.4\n"
SCORE_CASES = [
    case("score-without-a-batch", "score", 2, "ConfigError: no batch to score",
         "MLCI_SCORE_INPUT"),
    case("score-missing-batch", "score --input nowhere.csv", 2, "ConfigError: the batch",
         "no such file"),
    case("score-not-csv-or-parquet", "score", 2, "ConfigError: the batch",
         "neither CSV nor Parquet", write("batch.txt", BATCH), MLCI_SCORE_INPUT="batch.txt"),
    case("score-empty-batch", "score", 2, "ConfigError: the batch", "is empty",
         write("batch.csv", ""), MLCI_SCORE_INPUT="batch.csv"),
    case("score-header-only", "score", 2, "ConfigError: the batch", "has no rows",
         write("batch.csv", "alcohol,ash\n"), MLCI_SCORE_INPUT="batch.csv"),
    case("score-broken-parquet", "score", 2, "ConfigError: the batch",
         "not a readable Parquet file", write("batch.parquet", BATCH),
         MLCI_SCORE_INPUT="batch.parquet"),
    case("score-threshold-above-one", "score", 2, "ConfigError: score.drift_threshold",
         "between 0 and 1", MLCI_SCORE_DRIFT_THRESHOLD="1.5"),
]  # fmt: skip

SERVING_CASES = [
    case("deploy-proxy-without-token", "deploy", 2, "ConfigError: serving.proxy_url is set",
         "MLCI_SERVING_PROXY_TOKEN", MLCI_SERVING_PROXY_URL="http://127.0.0.1:9"),
    case("deploy-negative-latency-limit", "deploy", 2, "ConfigError: serving.smoke_p95_ms",
         "MLCI_SERVING_SMOKE_P95_MS", MLCI_SERVING_SMOKE_P95_MS="-5"),
    case("serve-unknown-runtime", "serve --runtime kubernetes", 2,
         "ConfigError: serving.runtime", "docker"),
    case("serve-port-out-of-range", "serve --port 70000", 2, "ConfigError: serving.port",
         "65535"),
    case("serve-unknown-model", "serve --model wrong", 2, "ConfigError: there is no model",
         "[tool.mlci.models]"),
]  # fmt: skip

CLI_CASES = [
    case("unknown-task", "trian", 1, "", "did you mean 'train'"),
    case("unknown-flag", "train --paramz x", 1, "", "did you mean '--params'"),
    case("flag-without-value", "promote --mode", 1, "", "the flag --mode needs a value"),
]  # fmt: skip

SERVER_CASES = [
    case("primary-metric-not-logged", "promote", 2,
         "ConfigError: the promotion policy names metrics the model does not log",
         "f1 (promotion.primary_metric)", server=True, MLCI_PROMOTION_PRIMARY_METRIC="f1",
         MLCI_PROMOTION_MIN="{}"),
    case("min-metric-not-logged", "promote", 2,
         "ConfigError: the promotion policy names metrics the model does not log",
         "auc (promotion.min)", server=True, MLCI_PROMOTION_MIN='{"auc": 0.5}'),
    case("version-of-another-server", "promote", 3, "TrackingServerError: train.json names",
         "has no such version", server=True, CORPUS_VERSION="999"),
    case("info-unknown-version", "model.info --version 999", 1, "StageFailed:",
         "has no version 999", server=True),
    case("info-version-not-a-number", "model.info --version latest", 1, "StageFailed:",
         "is not a version number", server=True),
    case("info-unknown-model", "model.info", 1, "StageFailed: the registered model",
         "does not exist", server=True, MLCI_MLFLOW_REGISTERED_MODEL="no-such-model"),
    case("rollback-nothing-to-roll-back-to", "model.rollback", 1, "StageFailed:",
         "roll back", server=True),
    case("deploy-without-a-champion", "deploy", 1, "StageFailed:",
         "has no alias champion to deploy", server=True),
    case("deploy-unknown-version", "deploy --version 999", 1, "StageFailed:",
         "has no version 999", server=True),
    case("serve-without-a-champion", "serve", 1, "StageFailed:",
         "has no alias champion to serve", server=True),
    case("score-without-a-champion", "score", 1, "StageFailed:", "has no alias 'champion'",
         write("batch.csv", BATCH), server=True, MLCI_SCORE_INPUT="batch.csv"),
    case("score-unknown-version", "score --version 999", 1, "StageFailed:",
         "has no version 999", write("batch.csv", BATCH), server=True,
         MLCI_SCORE_INPUT="batch.csv"),
]  # fmt: skip

CASES = (
    CONFIG + PYPROJECT_CASES + GATE_CASES + LINT_TEST_CASES + SCAN_IMAGE_CASES + TRAIN_CASES
    + PROMOTE_CASES + RELEASE_CASES + PLATFORM_CASES + MODEL_CASES + SCORE_CASES
    + SERVING_CASES + CLI_CASES
    + SERVER_CASES
)  # fmt: skip


# ---- running a case ------------------------------------------------------------------------


def snapshot(folder: Path) -> dict[str, str]:
    if not folder.exists():
        return {}
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and ".git" not in p.parts
    }


def leftovers(marker: str) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in text and int(cmdline.parent.name) != os.getpid():
            found.append(text)
    return found


@pytest.fixture(scope="module")
def registered(mlflow_server: str) -> dict[str, str]:
    """A model with one version on the session's server, no champion: what server cases use."""
    from mlflow import MlflowClient

    client = MlflowClient(mlflow_server, registry_uri=mlflow_server)
    experiment = client.create_experiment(f"corpus-{os.getpid()}")
    run = client.create_run(experiment)
    client.log_metric(run.info.run_id, "f1_macro", 0.9)
    client.log_metric(run.info.run_id, "accuracy", 0.91)
    name = f"corpus-model-{os.getpid()}"
    client.create_registered_model(name)
    version = client.create_model_version(
        name, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id
    )
    client.set_terminated(run.info.run_id)
    return {"uri": mlflow_server, "model": name, "version": str(version.version),
            "run_id": run.info.run_id}  # fmt: skip


def registry_state(uri: str) -> list[tuple[Any, ...]]:
    from mlflow import MlflowClient

    client = MlflowClient(uri, registry_uri=uri)
    return sorted(
        (m.name, tuple(sorted(m.aliases.items())), tuple(sorted(m.tags.items())))
        for m in client.search_registered_models()
    ) + sorted(
        (v.name, v.version, v.status) for v in client.search_model_versions()
    )  # fmt: skip


def run_case(tmp_path: Path, c: Case, server: dict[str, str] | None) -> tuple[int, str]:
    root = tmp_path / "project"
    root.mkdir()
    (root / "pyproject.toml").write_text(PYPROJECT)
    (root / "gate.toml").write_text(GATE)
    (root / "src").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLCI_", "MLFLOW_", "TWINE_",
                                                                   "SONAR_"))}  # fmt: skip
    env.update(
        MLCI_PROJECT_ROOT=str(root),
        MLCI_REPORTS_DIR=str(root / "out" / "reports"),
        MLCI_STATE_DIR=str(root / "out" / "state"),
        MLCI_MLFLOW_RETRIES="0",
        MLCI_MLFLOW_TIMEOUT="10",
    )
    for change in c.layout:
        change(root)
    extra = dict(c.env)
    if server is not None:
        version = extra.pop("CORPUS_VERSION", server["version"])
        env.update(
            MLCI_MLFLOW_TRACKING_URI=server["uri"],
            MLCI_MLFLOW_REGISTERED_MODEL=server["model"],
        )
        train_report(
            {"registered_model": server["model"], "version": version,
             "run_id": server["run_id"] if version == server["version"] else "r" * 32,
             "tracking_uri": server["uri"]}
        )(root)  # fmt: skip
    for name, value in extra.items():
        env[name] = str(root / value) if name.endswith("_FILE") and value else value
    env["MLCI_PROJECT_ROOT"] = extra.get("MLCI_PROJECT_ROOT", env["MLCI_PROJECT_ROOT"])
    before = snapshot(root)
    registry_before = registry_state(server["uri"]) if server else None
    done = subprocess.run(
        [MLCI, *c.argv], cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, capture_output=True,
        text=True, timeout=180,
    )  # fmt: skip
    output = done.stdout + done.stderr
    shown = f"mlci {' '.join(c.argv)} exited {done.returncode}:\n{output}"
    after = {
        name: digest
        for name, digest in snapshot(root).items()
        if name in before or not name.startswith(c.writes or ("\0",))
    }
    assert after == before, f"files changed\n{shown}"
    assert leftovers(str(root)) == [], shown
    if server is not None:
        assert registry_state(server["uri"]) == registry_before, f"registry changed\n{shown}"
    return done.returncode, output


@pytest.mark.parametrize("c", CASES)
def test_bad_input_gets_one_clear_message_and_changes_nothing(
    tmp_path: Path, c: Case, request: pytest.FixtureRequest
) -> None:
    server = request.getfixturevalue("registered") if c.server else None
    code, output = run_case(tmp_path, c, server)
    shown = f"mlci {' '.join(c.argv)} exited {code}:\n{output}"
    assert "Traceback" not in output, shown
    assert code == c.code, shown
    if c.error:
        cls = c.error.split(":", 1)[0] + ": "
        assert output.count(cls) == 1, shown
        line = next(line for line in output.splitlines() if line.startswith(cls))
        assert line.startswith(c.error), f"first line: {line!r}\n{shown}"
        assert "\n  why: " in output and "\n  fix: " in output, shown
    assert c.says in output, shown
    assert SECRET not in output, shown


def test_the_corpus_is_large_and_covers_every_task() -> None:
    cases = [p.values[0] for p in CASES]
    assert len(cases) >= 80, len(cases)
    tasks = {c.argv[0] for c in cases}
    every = {"config", "lint", "test", "scan", "gate", "image", "train", "promote", "release",
             "model.info", "model.rollback", "platform.wire", "platform.status",
             "score", "serve", "deploy"}  # fmt: skip
    assert every <= tasks, every - tasks
