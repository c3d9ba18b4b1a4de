"""Small pieces around the stages: servers' helpers, the MLflow client's checks, lineage tags,
tools, tables, the stage context and the stage registry. No server is started here."""

from __future__ import annotations

import hashlib
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from mlci import servers
from mlci.clients import mlflow as mlflow_client
from mlci.context import StageContext
from mlci.errors import ConfigError, ToolMissing, TrackingServerError
from mlci.lineage import UNKNOWN, GitInfo, Lineage, package_metadata
from mlci.reports import write_json
from mlci.stages import PIPELINE_STAGES, SKIPPED, stage_function
from mlci.table import format_table
from mlci.tools import python_module_command

# ---------------------------------------------------------------------------------------------
# servers: free_port, stop_process_group
# ---------------------------------------------------------------------------------------------


def test_free_port_is_a_bindable_loopback_port():
    port = servers.free_port()
    assert 1024 <= port <= 65535
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((servers.LOOPBACK, port))


class FakeProc:
    """Stands in for subprocess.Popen: ``exited`` is what poll() says; wait() may time out."""

    def __init__(self, exited: bool, wait_times_out: int = 0):
        self.pid = 424242
        self.exited = exited
        self.wait_times_out = wait_times_out
        self.waits: list[float] = []

    def poll(self):
        return 0 if self.exited else None

    def wait(self, timeout=None):
        self.waits.append(timeout)
        if len(self.waits) <= self.wait_times_out:
            raise subprocess.TimeoutExpired("server", timeout)
        return -15


@pytest.fixture
def killpg_calls(monkeypatch):
    calls: list[tuple[int, int]] = []
    monkeypatch.setattr(servers.os, "killpg", lambda pid, sig: calls.append((pid, sig)))
    return calls


def test_stop_process_group_sweeps_the_group_of_a_leader_that_already_exited(killpg_calls):
    # The leader is gone, but helpers it started (mlflow's workers) may still be in its group.
    proc = FakeProc(exited=True)
    servers.stop_process_group(proc)
    assert killpg_calls == [(424242, signal.SIGKILL)]
    assert proc.waits == []


def test_stop_process_group_terminates_then_sweeps_the_group(killpg_calls):
    proc = FakeProc(exited=False)
    servers.stop_process_group(proc, grace=3.0)
    assert killpg_calls == [(424242, signal.SIGTERM), (424242, signal.SIGKILL)]
    assert proc.waits == [3.0]


def test_stop_process_group_kills_when_terminate_is_ignored(killpg_calls):
    proc = FakeProc(exited=False, wait_times_out=1)
    servers.stop_process_group(proc, grace=2.0)
    assert killpg_calls == [
        (424242, signal.SIGTERM),
        (424242, signal.SIGKILL),
        (424242, signal.SIGKILL),
    ]
    assert proc.waits == [2.0, 5.0]


def test_stop_process_group_tolerates_a_group_that_is_already_gone(monkeypatch):
    def gone(pid, sig):
        raise ProcessLookupError

    monkeypatch.setattr(servers.os, "killpg", gone)
    proc = FakeProc(exited=False)
    servers.stop_process_group(proc, grace=1.0)
    assert proc.waits == [1.0]


def test_server_commands_bind_to_loopback(tmp_path):
    mlflow_argv = servers.mlflow_server_command(tmp_path / "state")(5123)
    assert mlflow_argv[:4] == [sys.executable, "-m", "mlflow", "server"]
    assert mlflow_argv[mlflow_argv.index("--host") + 1] == "127.0.0.1"
    assert mlflow_argv[mlflow_argv.index("--port") + 1] == "5123"
    assert (tmp_path / "state" / "mlflow" / "artifacts").is_dir()
    pypi_argv = servers.pypi_server_command(tmp_path / "pkgs")(5124)
    assert pypi_argv[pypi_argv.index("--host") + 1] == "127.0.0.1"
    assert pypi_argv[-1] == str(tmp_path / "pkgs")
    # an unknown project must be a 404 from the local index, not a redirect to pypi.org
    assert "--disable-fallback" in pypi_argv


# ---------------------------------------------------------------------------------------------
# clients.mlflow: _redact, check_reachable
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("http://user:secret@mlflow.example:5000/x", "http://mlflow.example:5000/x"),
        ("https://token@mlflow.example", "https://mlflow.example"),
        ("http://mlflow.example:5000", "http://mlflow.example:5000"),
        ("http://mlflow.example/path@v2", "http://mlflow.example/path@v2"),
        ("databricks", "databricks"),
    ],
)
def test_redact(uri, shown):
    assert mlflow_client._redact(uri) == shown


def test_check_reachable_against_a_closed_port():
    port = servers.free_port()  # bound and released: nothing listens there now
    with pytest.raises(TrackingServerError) as info:
        mlflow_client.check_reachable(f"http://127.0.0.1:{port}/", timeout=5)
    err = info.value
    assert err.what == f"the MLflow tracking server at http://127.0.0.1:{port}/ cannot be reached"
    assert err.why.startswith("GET /health failed: ")
    assert "MLCI_MLFLOW_TRACKING_URI" in err.fix
    assert err.exit_code == 3


@pytest.fixture
def fake_urlopen(monkeypatch):
    state: dict = {"urls": []}

    def urlopen(url, timeout=None):
        state["urls"].append(url)
        return state["answer"](url)

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    return state


class _Response:
    def __init__(self, status):
        self.status = status

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_check_reachable_accepts_200_on_health(fake_urlopen):
    fake_urlopen["answer"] = lambda url: _Response(200)
    mlflow_client.check_reachable("http://m.example:5000/", timeout=1)
    assert fake_urlopen["urls"] == ["http://m.example:5000/health"]


def test_check_reachable_reports_other_statuses(fake_urlopen):
    fake_urlopen["answer"] = lambda url: _Response(204)
    with pytest.raises(TrackingServerError, match="HTTP 204"):
        mlflow_client.check_reachable("http://m.example", timeout=1)


def test_check_reachable_reports_http_errors_without_credentials(fake_urlopen):
    def deny(url):
        raise urllib.error.HTTPError(url, 401, "Unauthorized", {}, None)

    fake_urlopen["answer"] = deny
    with pytest.raises(TrackingServerError) as info:
        mlflow_client.check_reachable("http://u:pw@m.example", timeout=1)
    assert info.value.why == "GET /health failed: HTTP 401 Unauthorized"
    assert "pw" not in info.value.render()
    assert "http://m.example" in info.value.what


def test_check_reachable_skips_databricks(fake_urlopen):
    mlflow_client.check_reachable("databricks://profile", timeout=1)
    assert fake_urlopen["urls"] == []


# ---------------------------------------------------------------------------------------------
# lineage
# ---------------------------------------------------------------------------------------------


def test_lineage_tags_are_prefixed_strings_with_lowercase_booleans():
    lineage = Lineage(
        git_sha="abc",
        git_branch="main",
        git_dirty=True,
        data_hash="d1",
        package="wine-classifier",
        package_version="1.2.3",
        build_url="",
        image_digest="none",
    )
    assert lineage.tags() == {
        "mlci.git_sha": "abc",
        "mlci.git_branch": "main",
        "mlci.git_dirty": "true",
        "mlci.data_hash": "d1",
        "mlci.package": "wine-classifier",
        "mlci.package_version": "1.2.3",
        "mlci.build_url": "",
        "mlci.image_digest": "none",
    }
    clean = Lineage("a", "b", False, "c", "d", "e", "f", "g")
    assert clean.tags()["mlci.git_dirty"] == "false"


def test_short_sha():
    assert GitInfo("0123456789abcdef0123", "main", False).short_sha == "0123456789ab"
    assert GitInfo(UNKNOWN, "main", False).short_sha == UNKNOWN


def test_package_metadata(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "wine"\nversion = "2.0"\n')
    assert package_metadata(tmp_path) == ("wine", "2.0")
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "pyproject.toml").write_text("[build-system]\nrequires = []\n")
    assert package_metadata(bare) == ("bare", UNKNOWN)


# ---------------------------------------------------------------------------------------------
# tools, table
# ---------------------------------------------------------------------------------------------


def test_python_module_command_uses_this_interpreter():
    assert python_module_command("json.tool", "--help") == [
        sys.executable,
        "-m",
        "json.tool",
        "--help",
    ]


def test_python_module_command_for_a_missing_module():
    with pytest.raises(ToolMissing) as info:
        python_module_command("mlci_no_such_module_xyz")
    assert "'mlci_no_such_module_xyz' is not installed" in info.value.what
    assert f"{sys.executable} -m pip install mlci_no_such_module_xyz" in info.value.fix
    assert info.value.exit_code == 4


def test_format_table_aligns_columns():
    lines = format_table(("a", "longer"), [("xyz", 1), ("q", "")])
    assert lines == [
        "a    longer",
        "---  ------",
        "xyz  1",
        "q",
    ]


def test_format_table_with_no_rows():
    assert format_table(("stage", "status"), []) == ["stage  status", "-----  ------"]


# ---------------------------------------------------------------------------------------------
# StageContext without servers
# ---------------------------------------------------------------------------------------------


def test_reports_folder_is_created_on_first_use(write_project, load, tmp_path):
    write_project('reports_dir = "out/rep"')
    ctx = StageContext(load(), log=lambda _: None)
    assert not (tmp_path / "out").exists()
    assert ctx.reports == tmp_path.resolve() / "out" / "rep"
    assert ctx.reports.is_dir()


def test_configured_tracking_uri_is_used_as_it_is(load):
    ctx = StageContext(load(env={"MLCI_MLFLOW_TRACKING_URI": "http://m.example:5000"}))
    assert ctx.tracking_uri() == "http://m.example:5000"
    assert ctx.tracking_is_local is False
    assert StageContext(load()).tracking_is_local is True


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"MLCI_RELEASE_REPOSITORY_URL": "http://idx.example:8080/"},
            ("http://idx.example:8080/", "http://idx.example:8080/simple/"),
        ),
        (
            {"MLCI_RELEASE_REPOSITORY_URL": "http://idx.example:8080"},
            ("http://idx.example:8080", "http://idx.example:8080/simple/"),
        ),
        (
            {
                "MLCI_RELEASE_REPOSITORY_URL": "https://up.example/legacy/",
                "MLCI_RELEASE_INDEX_URL": "https://down.example/simple/",
            },
            ("https://up.example/legacy/", "https://down.example/simple/"),
        ),
    ],
)
def test_configured_package_index(load, env, expected):
    assert StageContext(load(env=env)).package_index() == expected


def test_context_close_runs_registered_cleanups(load):
    done: list[str] = []
    with StageContext(load()) as ctx:
        ctx._stack.callback(done.append, "stopped")
        assert done == []
    assert done == ["stopped"]


# ---------------------------------------------------------------------------------------------
# The stage registry and the stages' checks that come before any server
# ---------------------------------------------------------------------------------------------


def test_pipeline_order():
    from mlci.settings import STAGE_NAMES

    assert STAGE_NAMES == PIPELINE_STAGES  # cache.force names them
    assert PIPELINE_STAGES == (
        "lint", "test", "scan", "gate", "image", "train", "promote", "deploy", "release",
    )  # fmt: skip


def test_stage_function_finds_each_stage_module():
    import mlci.stages.deploy
    import mlci.stages.scan

    # scan declares no inputs (SonarQube holds its truth), nor does deploy (the proxy holds
    # its): their run, uncached
    assert stage_function("scan") is mlci.stages.scan.run
    assert stage_function("deploy") is mlci.stages.deploy.run
    for name in PIPELINE_STAGES:
        assert callable(stage_function(name))
        module = mlci.stages.stage_module(name)
        declares = hasattr(module, "inputs") or hasattr(module, "model_inputs")
        assert declares == (name not in ("scan", "deploy")), name
        if declares:
            assert isinstance(module.OUTPUTS, tuple), name


@pytest.mark.parametrize("name", ["pipeline", "config", "os", "__init__"])
def test_stage_function_refuses_other_names(name):
    with pytest.raises(KeyError):
        stage_function(name)


def test_promote_disabled_is_skipped_without_reading_anything(write_project, load):
    from mlci.stages import promote

    write_project('[tool.mlci.promotion]\nmode = "disabled"')
    lines: list[str] = []
    result = promote.run(StageContext(load(), log=lines.append))
    assert result.status == SKIPPED
    assert "disabled" in result.summary
    assert lines == ["promote: skipped: promotion.mode is disabled"]


def test_promote_without_train_report_says_run_train(write_project, load):
    from mlci.errors import StageFailed
    from mlci.stages import promote

    write_project("")
    with pytest.raises(StageFailed, match=r"train\.json") as info:
        promote.run(StageContext(load()))
    assert "invoke train" in info.value.fix


@pytest.mark.parametrize(
    ("report", "missing"),
    [
        ({"version": 3, "run_id": "r"}, "registered_model"),
        ({"registered_model": "m", "run_id": "r"}, "version"),
        ({"registered_model": "m", "version": 3}, "run_id"),
        ({}, "registered_model, version, run_id"),
        ([1, 2], "registered_model, version, run_id"),
    ],
)
def test_promote_with_an_incomplete_train_report(write_project, load, tmp_path, report, missing):
    from mlci.errors import StageFailed
    from mlci.stages import promote

    write_project("")
    write_json(tmp_path / "reports" / "train.json", report)
    with pytest.raises(StageFailed) as info:
        promote.run(StageContext(load()))
    assert info.value.what.endswith(f"train.json is incomplete: no {missing}")
    assert "invoke train" in info.value.fix


def test_image_without_a_dockerfile_is_a_config_error(write_project, load, tmp_path):
    from mlci.stages import image

    write_project('[tool.mlci.image]\ncontext = "pkg"\ndockerfile = "Dockerfile"')
    (tmp_path / "pkg").mkdir()
    with pytest.raises(ConfigError, match="Dockerfile") as info:
        image.dockerfile_for(load())
    assert "MLCI_IMAGE_CONTEXT" in info.value.fix


def test_a_repository_without_a_dockerfile_uses_mlcis_and_skips_without_an_engine(
    write_project, load, tmp_path, monkeypatch
):
    from mlci.resources import shipped
    from mlci.stages import image

    write_project('[tool.mlci.model]\nmodule = "m"')
    path, is_shipped = image.dockerfile_for(load())
    assert is_shipped and path == shipped("templates/Dockerfile")
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    assert image.dockerfile_for(load()) == (tmp_path / "Dockerfile", False)  # its own wins
    (tmp_path / "Dockerfile").unlink()
    monkeypatch.setattr(image, "docker_client", lambda timeout: None)
    result = image.run(StageContext(load(), log=lambda _: None))
    assert result.status == "skipped"


@pytest.mark.parametrize(
    ("module", "message"),
    [
        ("", "model.module is not set"),
        ("mlci_no_such_model_xyz", "cannot be imported"),
        ("json", "does not follow mlci.s model contract"),
    ],
)
def test_train_needs_an_importable_model_module(module, message):
    from mlci.stages import train

    with pytest.raises(ConfigError, match=message):
        train.load_model_module(module)


def test_release_helpers(tmp_path):
    from mlci.stages import release

    assert release.normalize("Wine_Classifier.Extra--x") == "wine-classifier-extra-x"
    blob = tmp_path / "f.whl"
    blob.write_bytes(b"x" * 3_000_000)
    assert release.sha256_of(blob) == hashlib.sha256(b"x" * 3_000_000).hexdigest()
    assert release._host("https://u:p@idx.example:8443/simple/") == "https://idx.example:8443"
    assert release._host("http://idx.example/x") == "http://idx.example"
