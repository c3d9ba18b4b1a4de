"""mlci used as a new user would: the built wheel in a fresh environment, a new git
repository with its own model package (not one of ours), `mlci pipeline`.

Two repositories share one environment: one with nothing of mlci's but a few settings (the
gate and the Dockerfile come from the wheel), one set up by `mlci init`. Both pipelines go
green, and neither leaves the work tree dirty.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from .conftest import REPO_ROOT

pytestmark = pytest.mark.integration

MODEL = textwrap.dedent(
    '''
    """acme-forecast: a ridge regression on synthetic data (nothing is downloaded)."""

    import hashlib

    from mlci import TrainResult


    def score(y_true, y_pred):
        from sklearn.metrics import mean_absolute_error, mean_squared_error

        return {
            "rmse": float(mean_squared_error(y_true, y_pred) ** 0.5),
            "mae": float(mean_absolute_error(y_true, y_pred)),
        }


    def train_and_evaluate(params):
        from sklearn.datasets import make_regression
        from sklearn.linear_model import Ridge
        from sklearn.model_selection import train_test_split

        x, y = make_regression(n_samples=300, n_features=4, noise=5.0, random_state=1)
        x_train, x_test, y_train, y_test = train_test_split(x, y, random_state=1)
        alpha = float(params.get("alpha", 1.0))
        model = Ridge(alpha=alpha).fit(x_train, y_train)
        return TrainResult(
            model=model,
            metrics=score(y_test, model.predict(x_test)),
            params={"alpha": alpha},
            data_hash="sha256:" + hashlib.sha256(x_train.tobytes()).hexdigest(),
            input_example=x_test[:3],
            feature_names=["f0", "f1", "f2", "f3"],
            eval_inputs=x_test,
            eval_targets=y_test,
        )
    '''
)

TESTS = textwrap.dedent(
    """
    from acme_forecast import train_and_evaluate


    def test_it_learns():
        assert train_and_evaluate({"alpha": 0.5}).metrics["rmse"] < 20
    """
)

# A few settings, nothing else of mlci's: the gate and the Dockerfile come from the wheel.
MODEL_SETTINGS = textwrap.dedent(
    """
    [tool.mlci.model]
    module = "acme_forecast"

    [tool.mlci.promotion]
    primary_metric = "rmse"
    directions = { rmse = "lower" }
    """
)

PYPROJECT = textwrap.dedent(
    """
    [build-system]
    requires = ["setuptools>=68"]
    build-backend = "setuptools.build_meta"

    [project]
    name = "acme-forecast"
    version = "1.0.0"
    description = "A forecast model"
    readme = "README.md"
    requires-python = ">=3.11"
    dependencies = ["mlci", "scikit-learn"]
    """
)


@pytest.fixture(scope="module")
def environment(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with the wheel of mlci built from this checkout."""
    folder = tmp_path_factory.mktemp("own-repository")
    dist = folder / "dist"
    build = [sys.executable, "-m", "build", "--wheel", "--outdir", str(dist)]
    subprocess.run(
        [*build, str(REPO_ROOT / "packages" / "mlci")], check=True, capture_output=True, timeout=600
    )
    (wheel,) = dist.glob("mlci-*.whl")
    venv = folder / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, f"{wheel}[all]", "scikit-learn"], check=True, timeout=900)
    return venv


def _repository(root: Path, venv: Path, tool_table: str = "") -> Path:
    package = root / "src" / "acme_forecast"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(MODEL.lstrip())
    (root / "tests").mkdir()
    (root / "tests" / "test_model.py").write_text(TESTS.lstrip())
    (root / "pyproject.toml").write_text(PYPROJECT.lstrip() + tool_table)
    (root / "README.md").write_text("# acme-forecast\n\nA forecast model.\n")
    (root / ".gitignore").write_text("reports/\n.mlci/\n")
    _run(venv, root, "pip", "install", "--quiet", "--no-deps", "-e", ".")
    return root


def _env(venv: Path) -> dict[str, str]:
    """A user's shell: this environment first on PATH, nothing of mlci's checkout or CI."""
    keep = ("HOME", "LANG", "TMPDIR", "PIP_CONFIG_FILE")
    env = {k: v for k, v in os.environ.items() if k in keep or k.startswith("PIP_")}
    env.update(
        PATH=f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        DOCKER_HOST="unix:///nonexistent/docker.sock",  # no engine: the image stage skips
        GIT_AUTHOR_NAME="Ada",
        GIT_AUTHOR_EMAIL="ada@example.org",
        GIT_COMMITTER_NAME="Ada",
        GIT_COMMITTER_EMAIL="ada@example.org",
    )
    return env


def _run(venv: Path, cwd: Path, program: str, *args: str, check: bool = True):
    proc = subprocess.run(
        [str(venv / "bin" / program), *args],
        cwd=cwd,
        env=_env(venv),
        capture_output=True,
        text=True,
        timeout=900,
    )
    if check and proc.returncode != 0:
        pytest.fail(
            f"{program} {' '.join(args)} exited {proc.returncode}:\n"
            f"{(proc.stdout + proc.stderr)[-4000:]}"
        )
    return proc


def _git(cwd: Path, venv: Path, *args: str) -> str:
    proc = subprocess.run(
        ["git", *args],
        cwd=cwd,
        env=_env(venv),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return proc.stdout


def _commit_and_tag(root: Path, venv: Path) -> None:
    _git(root, venv, "init", "-q", "-b", "main")
    _git(root, venv, "add", "-A")
    _git(root, venv, "commit", "-q", "-m", "acme-forecast 1.0.0")
    _git(root, venv, "tag", "v1.0.0")


def _pipeline(root: Path, venv: Path) -> dict:
    proc = _run(venv, root, "mlci", "pipeline", check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-5000:]
    assert "Traceback" not in output
    assert _git(root, venv, "status", "--porcelain", "--untracked-files=all") == ""
    summary = json.loads((root / "reports" / "summary.json").read_text())
    return {s["stage"]: (s["status"], s["summary"]) for s in summary["stages"]}


def test_the_wheel_alone_runs_the_pipeline_in_a_repository_with_no_mlci_files(
    environment, tmp_path
):
    settings = '\n[tool.mlci.test]\ncov = ["acme_forecast"]\n' + MODEL_SETTINGS
    root = _repository(tmp_path / "acme", environment, settings)
    _commit_and_tag(root, environment)
    where = _run(environment, root, "python", "-c", "import mlci; print(mlci.__file__)")
    assert where.stdout.startswith(str(environment))  # the wheel, not this checkout

    stages = _pipeline(root, environment)
    assert stages["gate"][0] == "passed"  # mlci's shipped gate: the repository has none
    assert stages["image"] == ("skipped", "skipped: no Docker engine")
    assert stages["train"][1].startswith("model v1 rmse=")
    assert stages["promote"] == ("passed", "champion -> v1")
    assert stages["release"][1] == "2 uploaded, 0 already there, verified"


def test_mlci_init_then_the_pipeline(environment, tmp_path):
    root = _repository(tmp_path / "acme", environment)
    init = _run(environment, root, "mlci", "init", "--primary-metric", "rmse", "--lower-is-better")
    assert "create Jenkinsfile" in init.stdout
    for path in (
        "Jenkinsfile",
        ".ci/bootstrap",
        "tasks.py",
        "sonarqube/quality-gate.toml",
        "Dockerfile",
        ".dockerignore",
    ):
        assert (root / path).is_file(), path
    again = _run(environment, root, "mlci", "init", check=False)
    assert again.returncode == 2
    assert "mlci init would overwrite pyproject.toml ([tool.mlci])" in again.stderr
    _commit_and_tag(root, environment)

    stages = _pipeline(root, environment)
    assert stages["train"][1].startswith("acme-forecast v1 rmse=")
    assert stages["promote"] == ("passed", "champion -> v1")
    # `invoke` works there too, through the tasks.py init wrote
    listed = _run(environment, root, "invoke", "--list")
    assert "pipeline" in listed.stdout


def _versions(root: Path) -> list[str]:
    """The versions of `model` in the repository's local store, read with MLflow's client."""
    from mlflow import MlflowClient

    store = f"sqlite:///{root / '.mlci' / 'mlflow' / 'mlflow.db'}"
    found = MlflowClient(tracking_uri=store, registry_uri=store).search_model_versions(
        "name='model'"
    )
    return sorted(str(v.version) for v in found)


def test_an_unchanged_rerun_is_cached_and_a_one_byte_model_change_trains_again(
    environment, tmp_path
):
    root = _repository(tmp_path / "acme", environment, MODEL_SETTINGS)
    _commit_and_tag(root, environment)
    cold = _pipeline(root, environment)
    assert cold["train"][0] == "passed" and cold["promote"] == ("passed", "champion -> v1")
    assert _versions(root) == ["1"]

    again = _pipeline(root, environment)
    assert {stage: status for stage, (status, _) in again.items()} == {
        "lint": "cached", "test": "cached", "scan": "skipped", "gate": "cached",
        "image": "skipped", "train": "cached", "promote": "cached", "deploy": "skipped",
        "release": "cached",
    }  # fmt: skip
    assert again["train"][1].startswith(cold["train"][1] + " [cached ")
    assert _versions(root) == ["1"]  # no new version of the same code, data and params

    model = root / "src" / "acme_forecast" / "__init__.py"
    model.write_bytes(model.read_bytes() + b"#")  # one byte: a comment on the last line
    trained = _run(environment, root, "mlci", "train")
    assert "train: passed: model v2 rmse=" in trained.stdout
    promoted = _run(environment, root, "mlci", "promote")
    assert "promote: passed:" in promoted.stdout
    assert _versions(root) == ["1", "2"]
    # and the same once more is cached again: the new inputs were recorded
    assert "train: cached: model v2 rmse=" in _run(environment, root, "mlci", "train").stdout
    assert _versions(root) == ["1", "2"]
