"""Bad input through the real command line: one clear message, a specific exit code, no traceback.

Every case runs ``python -m invoke <task>`` in a subprocess from the repository root, the way
Jenkins and users call mlci, with the MLCI_* variables of the case only. The promise checked
for each one:

* exactly one ``ClassName: what`` message, followed by its ``why:`` and ``fix:`` lines;
* the exit code of that class (ConfigError 2, ServiceError 3, StageFailed 1);
* no Python traceback anywhere in stdout or stderr;
* nothing half-changed: no report of the failed stage, nothing uploaded, no secret written
  or printed, no process left running that belongs to the case's folder.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
CLI_TIMEOUT = 120
# A fast failure: the checks below connect once, they do not retry for minutes.
FAST = 60
SECRET = "wrong-secret-123"


# --- running the command line ---------------------------------------------------------------


@dataclass(frozen=True)
class CliRun:
    args: tuple[str, ...]
    code: int
    output: str
    seconds: float

    def shown(self) -> str:
        return f"`invoke {' '.join(self.args)}` exited {self.code}:\n{self.output}"


def cli_env(tmp_path: Path, root: Path, extra: dict[str, str]) -> dict[str, str]:
    # MLCI_* from the outer shell would change the settings under test, TWINE_* the
    # credentials of a release; the case sets what it needs.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLCI_", "TWINE_"))}
    env.update(
        MLCI_PROJECT_ROOT=str(root),
        MLCI_REPORTS_DIR=str(tmp_path / "reports"),
        MLCI_STATE_DIR=str(tmp_path / "state"),
    )
    if root == REPO_ROOT:  # this repository has two models: the cases use the wine one
        env["MLCI_MODEL"] = "wine"
    env.update(extra)
    return env


def invoke(tmp_path: Path, *args: str, root: Path = REPO_ROOT, **env: str) -> CliRun:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "invoke", *args],
        cwd=REPO_ROOT,
        env=cli_env(tmp_path, root, env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        check=False,
    )
    return CliRun(
        tuple(args), proc.returncode, proc.stdout + proc.stderr, time.monotonic() - started
    )


def assert_clear_error(run: CliRun, code: int, error_class: str, *words: str) -> None:
    """One ``error_class: what`` message with why/fix, exit ``code``, no traceback."""
    assert "Traceback" not in run.output, run.shown()
    assert run.code == code, run.shown()
    head = f"{error_class}: "
    assert run.output.count(head) == 1, run.shown()
    message = run.output[run.output.index(head) :]
    assert "\n  why: " in message, run.shown()
    assert "\n  fix: " in message, run.shown()
    for word in words:
        assert word in run.output, f"{word!r} is missing from the message\n{run.shown()}"


def assert_no_traceback(run: CliRun) -> None:
    assert "Traceback" not in run.output, run.shown()
    assert run.code != 0, run.shown()


# --- what a case may leave behind -------------------------------------------------------------


def files_under(folder: Path) -> list[str]:
    if not folder.exists():
        return []
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def processes_mentioning(text: str, grace: float = 3.0) -> list[str]:
    """Command lines of live processes that contain ``text`` (after a short grace period)."""
    deadline = time.monotonic() + grace
    while True:
        found = []
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                raw = cmdline.read_bytes()
            except OSError:
                continue
            args = raw.replace(b"\0", b" ").decode(errors="replace")
            if text in args and int(cmdline.parent.name) != os.getpid():
                found.append(f"{cmdline.parent.name}: {args}")
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def assert_no_leftover_processes(tmp_path: Path) -> None:
    assert processes_mentioning(str(tmp_path) + os.sep) == []


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound once, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fake_train_report(tmp_path: Path, uri: str) -> Path:
    """The train.json that `invoke train` leaves for `invoke promote` (this repository's
    first model, wine: reports/models/wine/)."""
    report = tmp_path / "reports" / "models" / "wine" / "train.json"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(
        json.dumps(
            {
                "registered_model": "m",
                "version": "1",
                "run_id": "0" * 32,
                "tracking_uri": uri,
                "tracking_is_local": False,
            }
        )
    )
    return report


def minimal_project(tmp_path: Path, pyproject: str) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    (root / "pyproject.toml").write_text(pyproject)
    return root


# --- settings: decided before any stage does work ---------------------------------------------


@pytest.mark.parametrize(
    ("task", "env", "words"),
    [
        pytest.param(
            "config",
            {"MLCI_PROMOTION_MODE": "sometimes"},
            ["promotion.mode", "'sometimes'", "disabled, dry-run, enabled"],
            id="mode-not-a-choice",
        ),
        pytest.param(
            "config",
            {"MLCI_SONAR_POLL_INTERVAL": "abc"},
            ["sonar.poll_interval", "MLCI_SONAR_POLL_INTERVAL", "'abc'", "give a number"],
            id="fail-under-not-a-number",
        ),
        pytest.param(
            "config",
            {"MLCI_SONAR_POLL_INTERVAL": "0"},
            ["sonar.poll_interval", "at least 0.05"],
            id="fail-under-out-of-range",
        ),
        pytest.param(
            "config",
            {"MLCI_MLFLOW_TRACKIN_URI": "x"},
            [
                "unknown setting 'MLCI_MLFLOW_TRACKIN_URI'",
                "did you mean 'MLCI_MLFLOW_TRACKING_URI'",
            ],
            id="misspelt-env-var",
        ),
        pytest.param(
            "train",
            {"MLCI_MLFLOW_TRACKIN_URI": "x"},
            [
                "unknown setting 'MLCI_MLFLOW_TRACKIN_URI'",
                "did you mean 'MLCI_MLFLOW_TRACKING_URI'",
            ],
            id="misspelt-env-var-stops-train",
        ),
        pytest.param(
            "config",
            {"MLCI_PROJECT_ROOT": "/nonexistent/mlci-project"},
            ["MLCI_PROJECT_ROOT", "is not a folder"],
            id="project-root-missing",
        ),
    ],
)
def test_bad_setting_in_the_environment_exits_2(tmp_path, task, env, words):
    run = invoke(tmp_path, task, **env)
    assert_clear_error(run, 2, "ConfigError", *words)
    assert "fitted" not in run.output  # train stopped before it fitted anything
    assert files_under(tmp_path) == []


@pytest.mark.parametrize(
    ("pyproject", "words"),
    [
        pytest.param(
            '[tool.mlci]\nreports_dri = "x"\n',
            ["unknown setting 'reports_dri'", "pyproject.toml", "did you mean 'reports_dir'"],
            id="unknown-key",
        ),
        pytest.param(
            "[tool.mlci\nreports_dir = 1\n",
            ["pyproject.toml is not valid TOML", "line 1"],
            id="invalid-toml",
        ),
        pytest.param(
            '[tool.mlci.release]\npassword = "committed-secret-456"\n',
            ["release.password is set in pyproject.toml", "MLCI_RELEASE_PASSWORD"],
            id="secret-in-file",
        ),
    ],
)
def test_bad_pyproject_exits_2(tmp_path, pyproject, words):
    root = minimal_project(tmp_path, pyproject)
    run = invoke(tmp_path, "config", root=root)
    assert_clear_error(run, 2, "ConfigError", *words)
    assert "committed-secret-456" not in run.output
    assert files_under(tmp_path / "reports") == files_under(tmp_path / "state") == []


# --- train and promote ------------------------------------------------------------------------


def test_file_tracking_uri_is_refused_before_training(tmp_path):
    run = invoke(tmp_path, "train", MLCI_MLFLOW_TRACKING_URI="file:///tmp/mlruns")
    assert_clear_error(
        run,
        2,
        "ConfigError",
        "'file:///tmp/mlruns', not an http(s) URL",
        "mlci trains against an MLflow tracking server",
        "MLCI_MLFLOW_TRACKING_URI",
    )
    assert "fitted" not in run.output
    assert files_under(tmp_path) == []


@pytest.mark.parametrize(
    ("args", "words"),
    [
        pytest.param(
            ["--params", "{bad json"],
            ["--params is not valid JSON", "quote it for the shell"],
            id="params-not-json",
        ),
        pytest.param(
            ["--params", '{"n_estimator": 3}'],
            [
                "the model package cannot train with these hyper-parameters here",
                "unknown hyper-parameter 'n_estimator'",
                "did you mean 'n_estimators'",
            ],
            id="misspelt-hyper-parameter",
        ),
    ],
)
def test_bad_hyper_parameters_exit_2_and_leave_no_server(tmp_path, args, words):
    # No tracking URI: the embedded default may start a local mlflow server under tmp_path.
    run = invoke(tmp_path, "train", *args)
    assert_clear_error(run, 2, "ConfigError", *words)
    assert files_under(tmp_path / "reports") == []
    assert_no_leftover_processes(tmp_path)


def test_model_package_that_cannot_be_imported_exits_2(tmp_path):
    run = invoke(tmp_path, "train", MLCI_MODEL_MODULE="no_such_package")
    assert_clear_error(
        run,
        2,
        "ConfigError",
        "the model package 'no_such_package' cannot be imported",
        "No module named 'no_such_package'",
        "MLCI_MODEL_MODULE",
    )
    assert_no_leftover_processes(tmp_path)


@pytest.mark.parametrize("task", ["train", "promote"])
def test_unreachable_tracking_server_exits_3_quickly(tmp_path, task):
    uri = f"http://127.0.0.1:{closed_port()}"
    report = fake_train_report(tmp_path, uri) if task == "promote" else None
    before = report.read_text() if report else None
    run = invoke(tmp_path, task, MLCI_MLFLOW_TRACKING_URI=uri)
    assert_clear_error(
        run,
        3,
        "TrackingServerError",
        f"the MLflow tracking server at {uri} cannot be reached",
        "GET /health failed",
        "MLCI_MLFLOW_TRACKING_URI",
    )
    assert run.seconds < FAST, f"took {run.seconds:.0f} s: a retry loop?\n{run.shown()}"
    reports = files_under(tmp_path / "reports")
    assert reports == (["models/wine/train.json"] if report else [])
    if report:
        assert report.read_text() == before
    assert_no_leftover_processes(tmp_path)


def test_promote_without_train_report_says_to_train_first(tmp_path):
    run = invoke(tmp_path, "promote")
    assert_clear_error(
        run, 1, "StageFailed", "train.json does not exist", "run `invoke train` first"
    )
    assert files_under(tmp_path / "reports") == []
    assert_no_leftover_processes(tmp_path)


# --- gate and image ---------------------------------------------------------------------------

BAD_OP_GATE = 'name = "g"\n[[conditions]]\nmetric = "coverage"\nop = "LE"\nerror = 80\n'


@pytest.mark.parametrize(
    ("gate_text", "words"),
    [
        pytest.param(None, ["missing.toml does not exist", "MLCI_GATE_FILE"], id="missing"),
        pytest.param(
            BAD_OP_GATE,
            ["condition 1 in the quality-gate file", "'LE'", "op (LT or GT)"],
            id="bad-op",
        ),
        pytest.param('name = "g"\nconditions = [', ["is not valid TOML"], id="invalid-toml"),
    ],
)
def test_bad_gate_file_exits_2(tmp_path, gate_text, words):
    gate_file = tmp_path / "missing.toml"
    if gate_text is not None:
        gate_file.write_text(gate_text)
    run = invoke(tmp_path, "gate", MLCI_GATE_FILE=str(gate_file))
    assert_clear_error(run, 2, "ConfigError", *words)
    assert files_under(tmp_path / "reports") == []


def test_missing_dockerfile_exits_2_before_docker_is_contacted(tmp_path):
    # A listening socket stands in for the Docker engine: it records whether mlci connected.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as engine:
        engine.bind(("127.0.0.1", 0))
        engine.listen(8)
        engine.setblocking(False)
        port = engine.getsockname()[1]
        run = invoke(
            tmp_path,
            "image",
            MLCI_IMAGE_DOCKERFILE="Nope.Dockerfile",
            MLCI_IMAGE_TIMEOUT="5",
            DOCKER_HOST=f"tcp://127.0.0.1:{port}",
        )
        with pytest.raises(BlockingIOError):
            engine.accept()
    assert_clear_error(
        run,
        2,
        "ConfigError",
        "Nope.Dockerfile does not exist",
        "MLCI_IMAGE_DOCKERFILE",
    )
    assert files_under(tmp_path / "reports") == []


# --- release ----------------------------------------------------------------------------------


def _wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with (
            contextlib.suppress(urllib.error.URLError, OSError),
            urllib.request.urlopen(url, timeout=2) as resp,
        ):
            if resp.status == 200:
                return
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"pypiserver did not come up:\n{log.read_text(errors='replace')}")
        time.sleep(0.2)


def _stop_group(proc: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=10)
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture(scope="module")
def refusing_index(tmp_path_factory):
    """A real pypiserver that wants a password for uploads; none of the case's users has one.

    Started with --disable-fallback so that a project it does not know is a 404 here, not a
    redirect to pypi.org.
    """
    base = tmp_path_factory.mktemp("refusing-index")
    packages = base / "packages"
    packages.mkdir()
    with warnings.catch_warnings():
        # passlib imports the stdlib crypt module, deprecated since Python 3.11.
        warnings.simplefilter("ignore", DeprecationWarning)
        from passlib.apache import HtpasswdFile

        htpasswd = HtpasswdFile(str(base / "htpasswd"), new=True, default_scheme="apr_md5_crypt")
        htpasswd.set_password("uploader", "the-right-password")
        htpasswd.save()
    port = closed_port()
    url = f"http://127.0.0.1:{port}"
    log_path = base / "pypiserver.log"
    argv = [
        sys.executable, "-m", "pypiserver", "run",
        "--host", "127.0.0.1",
        "--port", str(port),
        "-P", str(base / "htpasswd"),
        "-a", "update",
        "--disable-fallback",
        str(packages),
    ]  # fmt: skip
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        _wait_healthy(url + "/health", proc, log_path)
        yield url + "/", packages
    finally:
        _stop_group(proc)


@pytest.fixture(scope="module")
def refused_release(refusing_index, tmp_path_factory):
    """One `invoke release` with wrong credentials (it builds the real packages: run once)."""
    url, packages = refusing_index
    case = tmp_path_factory.mktemp("refused-release")
    run = invoke(
        case,
        "release",
        MLCI_RELEASE_REPOSITORY_URL=url,
        # mlci alone: the model package would first need a champion to ship
        MLCI_RELEASE_PACKAGES="packages/mlci",
        TWINE_USERNAME="someone",
        TWINE_PASSWORD=SECRET,
    )
    return run, case, packages


def test_release_refused_by_the_index_exits_3_and_uploads_nothing(refused_release):
    run, case, packages = refused_release
    assert_clear_error(
        run,
        3,
        "PackageIndexError",
        "refused the upload",
        "HTTP 403",
        "TWINE_USERNAME / TWINE_PASSWORD",
        "MLCI_RELEASE_USERNAME",
    )
    assert SECRET not in run.output
    assert list(packages.iterdir()) == []
    assert not (case / "reports" / "release.json").exists()
    leaked = [name for name in files_under(case) if SECRET.encode() in (case / name).read_bytes()]
    assert leaked == []
    assert_no_leftover_processes(case)


def test_release_refused_prints_only_mlci_message(refused_release):
    run, _, _ = refused_release
    assert "--verbose" not in run.output, run.shown()


def test_release_to_unreachable_index_exits_3(tmp_path):
    url = f"http://127.0.0.1:{closed_port()}/"
    run = invoke(
        tmp_path,
        "release",
        MLCI_RELEASE_REPOSITORY_URL=url,
        TWINE_USERNAME="someone",
        TWINE_PASSWORD=SECRET,
    )
    assert_clear_error(
        run,
        3,
        "PackageIndexError",
        f"the package index at {url.rstrip('/')} cannot be reached",
        "MLCI_RELEASE_REPOSITORY_URL",
    )
    assert SECRET not in run.output
    assert "uploading" not in run.output
    assert not (tmp_path / "reports" / "release.json").exists()
    assert_no_leftover_processes(tmp_path)


# --- values that once ended in a traceback or were accepted ------------------------------------


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_non_finite_mlflow_timeout_is_a_config_error(tmp_path, value):
    uri = f"http://127.0.0.1:{closed_port()}"
    fake_train_report(tmp_path, uri)
    run = invoke(tmp_path, "promote", MLCI_MLFLOW_TRACKING_URI=uri, MLCI_MLFLOW_TIMEOUT=value)
    assert_clear_error(run, 2, "ConfigError", "mlflow.timeout")


def test_nan_poll_interval_is_a_config_error(tmp_path):
    run = invoke(tmp_path, "config", MLCI_SONAR_POLL_INTERVAL="nan")
    assert_clear_error(run, 2, "ConfigError", "sonar.poll_interval")


def test_tracking_uri_with_bad_port_gives_a_clear_message(tmp_path):
    uri = "http://127.0.0.1:abc"
    fake_train_report(tmp_path, uri)
    run = invoke(tmp_path, "promote", MLCI_MLFLOW_TRACKING_URI=uri)
    assert_no_traceback(run)
    assert run.code in (2, 3), run.shown()
    assert "MLCI_MLFLOW_TRACKING_URI" in run.output, run.shown()


def test_gate_condition_that_is_not_a_table_exits_2(tmp_path):
    gate_file = tmp_path / "gate.toml"
    gate_file.write_text('name = "g"\nconditions = ["coverage"]\n')
    run = invoke(tmp_path, "gate", MLCI_GATE_FILE=str(gate_file))
    assert_clear_error(run, 2, "ConfigError", "condition 1")


@pytest.mark.parametrize(
    "content",
    [
        pytest.param("{}", id="empty-object"),
        pytest.param("[1]", id="not-an-object"),
        pytest.param('{"registered_model": "m", "version": "1"}', id="no-tracking-uri"),
    ],
)
def test_incomplete_train_report_gives_a_clear_message(tmp_path, content):
    uri = f"http://127.0.0.1:{closed_port()}"
    report = fake_train_report(tmp_path, uri)
    report.write_text(content)
    run = invoke(tmp_path, "promote", MLCI_MLFLOW_TRACKING_URI=uri)
    assert_no_traceback(run)
    assert run.code in (1, 2), run.shown()
    assert "train.json" in run.output, run.shown()
    assert "invoke train" in run.output, run.shown()


def test_embedded_index_answers_404_for_projects_it_does_not_have(tmp_path):
    from mlci import servers

    with servers.local_server(
        "package index (pypiserver)",
        servers.pypi_server_command(tmp_path / "packages"),
        "/health",
        tmp_path / "pypiserver.log",
        start_timeout=60,
    ) as server:
        parts = urlsplit(server.url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        try:
            conn.request("GET", "/simple/mlci-no-such-project/")
            resp = conn.getresponse()
            status, location = resp.status, resp.getheader("Location")
        finally:
            conn.close()
    assert (status, location) == (404, None)
