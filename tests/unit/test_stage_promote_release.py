"""promote, release and train logic with fake clients: no MLflow server, no package index.

The MLflow client and the HTTP session are replaced by small fakes, so what is tested here
is mlci's own decisions (move the alias or not, skip or refuse an upload), not MLflow's.
"""

from __future__ import annotations

import contextlib
import hashlib
import sys
import types
from types import SimpleNamespace

import pytest
import requests

from mlci import evaluation
from mlci.clients import mlflow as mlflow_client
from mlci.context import StageContext
from mlci.errors import (
    ConfigError,
    ModelRejected,
    PackageIndexError,
    ReleaseRefused,
    TrackingServerError,
)
from mlci.reports import read_json, write_json
from mlci.stages import PASSED, promote, release, train

URI = "http://mlflow.example:5000"

# ---------------------------------------------------------------------------------------------
# promote
# ---------------------------------------------------------------------------------------------


class FakeMlflow:
    """Model versions with run metrics and one alias, as an MlflowClient would return them."""

    def __init__(self, versions: dict[str, dict[str, float]], champion: str | None):
        self.versions = versions
        self.champion = champion
        self.alias_sets: list[tuple[str, str, str]] = []
        self.alias_sticks = True

    def get_model_version(self, name, version):
        return SimpleNamespace(version=version, run_id=f"run-{version}", tags={})

    def get_run(self, run_id):
        version = run_id.removeprefix("run-")
        return SimpleNamespace(data=SimpleNamespace(metrics=self.versions[version]))

    def get_experiment_by_name(self, name):
        return None  # no experiment here: promote finds no orphaned runs to close

    def set_registered_model_alias(self, name, alias, version):
        self.alias_sets.append((name, alias, version))
        if self.alias_sticks and alias == "champion":
            self.champion = version

    # the registry calls of the promotion lease and the alias history
    registered: dict

    def _models(self):
        if not hasattr(self, "registered"):
            self.registered = {"wine": {}}
        return self.registered

    def create_registered_model(self, name, tags=None, description=None):
        from mlflow.exceptions import MlflowException

        if name in self._models():
            raise MlflowException("exists", error_code="RESOURCE_ALREADY_EXISTS")
        self._models()[name] = dict(tags or {})

    def get_registered_model(self, name):
        from mlflow.exceptions import MlflowException

        if name not in self._models():
            raise MlflowException("missing", error_code="RESOURCE_DOES_NOT_EXIST")
        return SimpleNamespace(name=name, tags=dict(self._models()[name]), aliases={})

    def delete_registered_model(self, name):
        self._models().pop(name, None)

    def set_registered_model_tag(self, name, key, value):
        self._models()[name][key] = value

    def set_model_version_tag(self, name, version, key, value):
        self.version_tags = getattr(self, "version_tags", {})
        self.version_tags[(version, key)] = value


@pytest.fixture
def promote_ctx(write_project, load, tmp_path, monkeypatch):
    def make(client: FakeMlflow, mode: str = "enabled", version: str = "2"):
        write_project(
            f"""
            [tool.mlci.mlflow]
            tracking_uri = "{URI}"
            [tool.mlci.promotion]
            mode = "{mode}"
            primary_metric = "f1_macro"
            min = {{ f1_macro = 0.8 }}
            """
        )
        write_json(
            tmp_path / "reports" / "train.json",
            {
                "registered_model": "wine",
                "version": version,
                "run_id": f"run-{version}",
                "tracking_is_local": False,
                "tracking_uri": URI,
            },
        )
        monkeypatch.setattr(mlflow_client, "connect", lambda uri, settings: client)
        monkeypatch.setattr(
            mlflow_client, "server_errors", lambda action, uri: contextlib.nullcontext()
        )
        monkeypatch.setattr(
            mlflow_client,
            "alias_version",
            lambda c, name, alias: (
                SimpleNamespace(version=c.champion, run_id=f"run-{c.champion}")
                if c.champion
                else None
            ),
        )
        # The models themselves are not here: validation passes, and the logged metrics
        # are compared (tests/integration/test_fair_promotion.py loads real ones).
        monkeypatch.setattr(
            evaluation, "validate", lambda n, v, log: (None, evaluation.Validation(v, 5, "x"))
        )
        monkeypatch.setattr(evaluation.HeldoutScorer, "_heldout", staticmethod(lambda run: None))
        lines: list[str] = []
        return StageContext(load(), log=lines.append), lines

    return make


def test_promote_moves_the_alias_to_a_better_version(promote_ctx, tmp_path):
    client = FakeMlflow({"1": {"f1_macro": 0.85}, "2": {"f1_macro": 0.90}}, champion="1")
    ctx, lines = promote_ctx(client)
    result = promote.run(ctx)
    assert result.status == PASSED
    assert result.summary == "champion -> v2"
    assert client.alias_sets == [("wine", "previous", "1"), ("wine", "champion", "2")]
    assert "wine.mlci-lock" not in client.registered  # the lease was released
    history = [k for k in client.registered["wine"] if k.startswith("mlci.history.")]
    assert history == ["mlci.history.000001"]
    report = read_json(tmp_path / "reports" / "promote.json", "promote")
    assert report["champion_before"] == "1"
    assert report["champion_after"] == "2"
    assert report["promote"] is True
    assert "promote: wine v2 against the champion (mode enabled)" in lines
    assert any(line.startswith("promote: champion before: v1;") for line in lines)


def test_promote_keeps_a_better_champion(promote_ctx, tmp_path):
    client = FakeMlflow({"1": {"f1_macro": 0.95}, "2": {"f1_macro": 0.90}}, champion="1")
    ctx, lines = promote_ctx(client)
    result = promote.run(ctx)
    assert result.summary == "champion stays v1"
    assert client.alias_sets == []
    assert any("does not beat the champion (v1)" in line for line in lines)
    assert read_json(tmp_path / "reports" / "promote.json", "p")["champion_after"] == "1"


def test_promote_first_version_without_champion(promote_ctx):
    client = FakeMlflow({"1": {"f1_macro": 0.9}}, champion=None)
    ctx, lines = promote_ctx(client, version="1")
    assert promote.run(ctx).summary == "champion -> v1"
    assert any(line.startswith("promote: champion before: (none);") for line in lines)


def test_promote_dry_run_decides_but_does_not_move(promote_ctx):
    client = FakeMlflow({"1": {"f1_macro": 0.85}, "2": {"f1_macro": 0.90}}, champion="1")
    ctx, _ = promote_ctx(client, mode="dry-run")
    result = promote.run(ctx)
    assert result.summary == "dry-run: would move champion -> v2"
    assert client.alias_sets == []
    assert client.champion == "1"


def test_promote_rejects_a_model_below_the_thresholds(promote_ctx, tmp_path):
    client = FakeMlflow({"2": {"f1_macro": 0.5}}, champion=None)
    ctx, _ = promote_ctx(client)
    with pytest.raises(ModelRejected) as info:
        promote.run(ctx)
    assert info.value.what == "wine v2 does not meet the promotion thresholds"
    assert info.value.why == "f1_macro 0.5000 < 0.8"
    assert client.alias_sets == []
    # the decision is on record even though the stage failed
    assert read_json(tmp_path / "reports" / "promote.json", "p")["promote"] is False


def test_promote_dry_run_below_thresholds_only_reports(promote_ctx):
    client = FakeMlflow({"2": {"f1_macro": 0.5}}, champion=None)
    ctx, _ = promote_ctx(client, mode="dry-run")
    assert promote.run(ctx).summary == "champion stays none"


def test_promote_detects_an_alias_that_did_not_stay(promote_ctx):
    client = FakeMlflow({"1": {"f1_macro": 0.85}, "2": {"f1_macro": 0.90}}, champion="1")
    client.alias_sticks = False  # another promotion moved it back meanwhile
    ctx, _ = promote_ctx(client)
    with pytest.raises(TrackingServerError) as info:
        promote.run(ctx)
    assert info.value.what == "the alias champion of wine did not stay on v2"
    assert "read back: v1" in info.value.why


def test_promote_accepts_the_same_server_under_another_url(promote_ctx, tmp_path):
    # Train reached the server through a tunnel (localhost), promote by its service name:
    # the run behind the version proves it is the same server.
    ctx, _ = promote_ctx(FakeMlflow({"2": {"f1_macro": 0.9}}, champion=None))
    report = read_json(tmp_path / "reports" / "train.json", "train")
    write_json(
        tmp_path / "reports" / "train.json", {**report, "tracking_uri": "http://localhost:5000"}
    )
    assert promote.run(ctx).summary == "champion -> v2"


def test_promote_refuses_a_version_another_server_registered(promote_ctx, tmp_path):
    ctx, _ = promote_ctx(FakeMlflow({"2": {"f1_macro": 0.9}}, champion=None))
    report = read_json(tmp_path / "reports" / "train.json", "train")
    write_json(tmp_path / "reports" / "train.json", {**report, "run_id": "run-of-another-server"})
    with pytest.raises(TrackingServerError) as info:
        promote.run(ctx)
    assert "has it from run run-2" in info.value.what
    assert "run-of-another-server" in info.value.what
    assert ctx.settings.mlflow.tracking_uri in info.value.what


def test_promote_prints_the_decision_table(promote_ctx):
    client = FakeMlflow({"1": {"f1_macro": 0.85}, "2": {"f1_macro": 0.90}}, champion="1")
    ctx, lines = promote_ctx(client)
    promote.run(ctx)
    rows = [line.split() for line in lines if line.startswith("  f1_macro")]
    assert ["f1_macro", "0.9000", "0.8500", ">=", "0.8", "pass"] in rows
    assert ["f1_macro", "0.9000", "0.8500", ">", "champion", "pass"] in rows


# ---------------------------------------------------------------------------------------------
# release: index listing, plan (skip / refuse), verify
# ---------------------------------------------------------------------------------------------


class FakeResponse:
    def __init__(self, status_code=200, text="", content=b""):
        self.status_code = status_code
        self.text = text
        self.content = content or text.encode()
        self.reason = "Reason"
        self.headers = {"content-type": "text/html"}  # a PEP 503 page, as pypiserver's
        self.url = ""

    def raise_for_status(self):
        if self.status_code >= 400:
            raise requests.HTTPError(f"{self.status_code}", response=self)


class FakeSession:
    """URL -> FakeResponse (or an exception to raise); records every GET."""

    def __init__(self, pages):
        self.pages = pages
        self.gets: list[str] = []

    def get(self, url, timeout=None, headers=None):
        self.gets.append(url)
        answer = self.pages.get(url, FakeResponse(404))
        if isinstance(answer, Exception):
            raise answer
        answer.url = url  # pypi-simple resolves the page's links against it
        return answer


SIMPLE = "http://idx.example/simple/"


def _dist(tmp_path, name: str, data: bytes, package: str = "wine-classifier"):
    path = tmp_path / name
    path.write_bytes(data)
    return release.DistFile(package, path, hashlib.sha256(data).hexdigest())


def test_index_files_parses_links_and_hashes():
    page = (
        "<html><body>"
        '<a href="../../packages/wine_classifier-1.0.tar.gz#sha256=abc123">x</a>'
        '<a href="https://files.example/wine_classifier-1.0-py3-none-any.whl">y</a>'
        "<a>no href</a>"
        "</body></html>"
    )
    session = FakeSession({SIMPLE + "wine-classifier/": FakeResponse(200, page)})
    files = release.index_files(session, SIMPLE, "Wine_Classifier", timeout=1)
    assert session.gets == [SIMPLE + "wine-classifier/"]
    assert files == {
        "wine_classifier-1.0.tar.gz": (
            "http://idx.example/packages/wine_classifier-1.0.tar.gz",
            "abc123",
        ),
        "wine_classifier-1.0-py3-none-any.whl": (
            "https://files.example/wine_classifier-1.0-py3-none-any.whl",
            "",
        ),
    }


def test_index_files_for_an_unknown_project_is_empty():
    assert release.index_files(FakeSession({}), SIMPLE, "new", timeout=1) == {}


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (FakeResponse(401), "refused to list"),
        (FakeResponse(403), "refused to list"),
        (FakeResponse(500, "boom"), "answered HTTP 500"),
        (requests.ConnectionError("refused"), "cannot be reached"),
    ],
)
def test_index_files_errors(answer, message):
    session = FakeSession({SIMPLE + "wine/": answer})
    with pytest.raises(PackageIndexError, match=message) as info:
        release.index_files(session, SIMPLE, "wine", timeout=1)
    assert info.value.exit_code == 3


def test_plan_skips_identical_files_and_uploads_new_ones(tmp_path):
    same = _dist(tmp_path, "wine_classifier-1.0.tar.gz", b"sdist")
    new = _dist(tmp_path, "wine_classifier-1.0-py3-none-any.whl", b"wheel")
    page = f'<a href="/p/wine_classifier-1.0.tar.gz#sha256={same.sha256}">s</a>'
    session = FakeSession({SIMPLE + "wine-classifier/": FakeResponse(200, page)})
    release.plan(session, SIMPLE, [same, new], timeout=1)
    assert same.action == release.SKIP
    assert new.action == release.UPLOAD
    assert session.gets == [SIMPLE + "wine-classifier/"]  # one listing per package


def test_plan_downloads_when_the_index_gives_no_hash(tmp_path):
    same = _dist(tmp_path, "wine_classifier-1.0.tar.gz", b"sdist")
    page = '<a href="/p/wine_classifier-1.0.tar.gz">s</a>'
    session = FakeSession(
        {
            SIMPLE + "wine-classifier/": FakeResponse(200, page),
            "http://idx.example/p/wine_classifier-1.0.tar.gz": FakeResponse(content=b"sdist"),
        }
    )
    release.plan(session, SIMPLE, [same], timeout=1)
    assert same.action == release.SKIP


def test_plan_refuses_a_different_file_under_an_existing_name(tmp_path):
    ours = _dist(tmp_path, "wine_classifier-1.0.tar.gz", b"rebuilt")
    other = _dist(tmp_path, "wine_classifier-1.0-py3-none-any.whl", b"wheel")
    page = f'<a href="/p/wine_classifier-1.0.tar.gz#sha256={"0" * 64}">s</a>'
    session = FakeSession({SIMPLE + "wine-classifier/": FakeResponse(200, page)})
    with pytest.raises(ReleaseRefused) as info:
        release.plan(session, SIMPLE, [ours, other], timeout=1)
    assert "nothing was uploaded" in info.value.what
    assert "wine_classifier-1.0.tar.gz: index has sha256 0000000000000000" in info.value.why
    assert "bump the package version" in info.value.fix


def test_verify_accepts_files_that_match(tmp_path):
    f = _dist(tmp_path, "w-1.0.tar.gz", b"abc", package="w")
    session = FakeSession(
        {
            SIMPLE + "w/": FakeResponse(200, '<a href="/p/w-1.0.tar.gz">w</a>'),
            "http://idx.example/p/w-1.0.tar.gz": FakeResponse(content=b"abc"),
        }
    )
    release.verify(session, SIMPLE, [f], timeout=1)
    assert session.gets[-1] == "http://idx.example/p/w-1.0.tar.gz"


def test_verify_reports_missing_and_different_files(tmp_path):
    changed = _dist(tmp_path, "w-1.0.tar.gz", b"abc", package="w")
    missing = _dist(tmp_path, "w-1.0-py3-none-any.whl", b"whl", package="w")
    session = FakeSession(
        {
            SIMPLE + "w/": FakeResponse(200, '<a href="/p/w-1.0.tar.gz">w</a>'),
            "http://idx.example/p/w-1.0.tar.gz": FakeResponse(content=b"tampered"),
        }
    )
    with pytest.raises(PackageIndexError) as info:
        release.verify(session, SIMPLE, [changed, missing], timeout=1)
    assert info.value.what == "files downloaded back from the index differ from what was built"
    assert "w-1.0-py3-none-any.whl: missing" in info.value.why
    assert "w-1.0.tar.gz: " + hashlib.sha256(b"tampered").hexdigest()[:16] in info.value.why


def test_download_failure_is_a_package_index_error(tmp_path):
    session = FakeSession({"http://idx.example/f.whl": FakeResponse(502)})
    with pytest.raises(PackageIndexError, match=r"downloading f\.whl back"):
        release._download_sha(session, "http://idx.example/f.whl", timeout=1)


def test_credentials(write_project, load, monkeypatch):
    monkeypatch.delenv("TWINE_USERNAME", raising=False)
    monkeypatch.delenv("TWINE_PASSWORD", raising=False)
    ctx = StageContext(load(env={"MLCI_RELEASE_USERNAME": "u", "MLCI_RELEASE_PASSWORD": "p"}))
    assert release._credentials(ctx, local=True) == ("mlci", "unused")
    assert release._credentials(ctx, local=False) == ("u", "p")
    bare = StageContext(load())
    assert release._credentials(bare, local=False) == (None, None)
    monkeypatch.setenv("TWINE_USERNAME", "tu")
    monkeypatch.setenv("TWINE_PASSWORD", "tp")
    assert release._credentials(bare, local=False) == ("tu", "tp")
    assert release._credentials(ctx, local=False) == ("u", "p")  # settings win over TWINE_*


def test_release_names_built_files_with_packaging(tmp_path):
    from mlci.release.build import _is_built_from
    from mlci.release.preflight import PackagePlan, tag_version

    plan = PackagePlan("pkg", tmp_path, "Wine_Classifier", "1.0.0")
    assert _is_built_from("wine_classifier-1.0.0.tar.gz", plan)
    assert _is_built_from("wine_classifier-1.0-py3-none-any.whl", plan)  # 1.0 == 1.0.0
    assert not _is_built_from("wine_classifier-1.0.1.tar.gz", plan)
    assert not _is_built_from("other-1.0.0-py3-none-any.whl", plan)
    assert not _is_built_from("not a dist file", plan)
    assert str(tag_version("v1.2.0")) == "1.2.0"
    assert tag_version("nightly") is None
    assert tag_version("v1.x") is None


def test_package_metadata_asks_a_declared_backend(tmp_path, monkeypatch):
    from mlci import lineage

    # An in-tree backend that reports its version and what it was handed in its environment.
    (tmp_path / "pyproject.toml").write_text(
        '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n'
        '[project]\nname = "Odd.Name"\ndynamic = ["version"]\n'
    )
    (tmp_path / "backend.py").write_text(
        "import os\n"
        "def prepare_metadata_for_build_wheel(directory, config_settings=None):\n"
        "    info = os.path.join(directory, 'odd_name-7.1.dist-info')\n"
        "    os.mkdir(info)\n"
        "    seen = os.environ.get('TWINE_PASSWORD', 'none')\n"
        "    with open(os.path.join(info, 'METADATA'), 'w') as fh:\n"
        "        fh.write(f'Metadata-Version: 2.1\\nName: Odd.Name\\nVersion: 7.1+{seen}\\n')\n"
        "    return 'odd_name-7.1.dist-info'\n"
    )
    monkeypatch.setenv("TWINE_PASSWORD", "secret")
    assert lineage.package_metadata(tmp_path) == ("Odd.Name", "7.1+none")
    # A backend this environment does not have: the version is unknown, nothing raised.
    (tmp_path / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["nope"]\nbuild-backend = "mlci_no_such_backend"\n'
        '[project]\nname = "odd"\ndynamic = ["version"]\n'
    )
    assert lineage.package_metadata(tmp_path) == ("odd", lineage.UNKNOWN)


# ---------------------------------------------------------------------------------------------
# train: what happens before any server is contacted
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def fake_model_module(monkeypatch):
    module = types.ModuleType("mlci_fake_model")

    def train_and_evaluate(params):
        raise ValueError(f"unknown estimator {params.get('estimator')!r}")

    module.train_and_evaluate = train_and_evaluate
    module.validate_params = train_and_evaluate  # refuses before training, as the real one
    monkeypatch.setitem(sys.modules, "mlci_fake_model", module)
    return module


def test_train_turns_refused_hyper_parameters_into_a_config_error(
    fake_model_module, write_project, load
):
    write_project('[tool.mlci.model]\nmodule = "mlci_fake_model"\nparams = { estimator = "nope" }')
    ctx = StageContext(load(), log=lambda _: None)
    with pytest.raises(ConfigError) as info:
        train.run(ctx)
    assert info.value.what == "the model package cannot train with these hyper-parameters here"
    assert info.value.why == "unknown estimator 'nope'"
    assert ctx._tracking_uri is None  # no server was asked for


def test_build_lineage_reads_git_and_package_here(write_project, load, tmp_path, monkeypatch):
    from mlci import lineage

    monkeypatch.setattr(train, "git_info", lambda root: lineage.GitInfo("f" * 40, "main", False))
    monkeypatch.setenv("BUILD_URL", "http://jenkins.example/job/1/")
    monkeypatch.delenv("MLCI_TRAINING_CONTEXT", raising=False)
    write_project('[tool.mlci.model]\nmodule = "m"\npackage = "pkg"')
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "pyproject.toml").write_text('[project]\nname = "wine"\nversion = "3.1"\n')
    # A pushed image in the report does not make training here "in the image".
    write_json(tmp_path / "reports" / "image.json", {"pushed": "reg/wine@sha256:aa"})
    got = train.build_lineage(StageContext(load()), "datahash")
    assert got == lineage.Lineage(
        git_sha="f" * 40,
        git_branch="main",
        git_dirty=False,
        data_hash="datahash",
        package="wine",
        package_version="3.1",
        build_url="http://jenkins.example/job/1/",
        image_digest="none",
    )


def test_build_lineage_inside_the_image_takes_the_facts_passed_in(write_project, load, monkeypatch):
    import json

    from mlci import lineage

    # Inside the image there is no git: the facts come from the stage that started it.
    monkeypatch.setattr(train, "git_info", lambda root: pytest.fail("git must not be asked"))
    facts = {
        "git_sha": "a" * 40, "git_branch": "main", "git_dirty": False, "package": "wine",
        "package_version": "3.2", "image_digest": "reg/wine@sha256:bb",
    }  # fmt: skip
    monkeypatch.setenv("MLCI_TRAINING_CONTEXT", json.dumps(facts))
    monkeypatch.delenv("BUILD_URL", raising=False)
    write_project('[tool.mlci.model]\nmodule = "m"')
    got = train.build_lineage(StageContext(load()), "h")
    assert got == lineage.Lineage(data_hash="h", build_url="", **facts)
    monkeypatch.setenv("MLCI_TRAINING_CONTEXT", "{not json")
    with pytest.raises(ConfigError, match="MLCI_TRAINING_CONTEXT"):
        train.build_lineage(StageContext(load()), "h")


def test_build_lineage_without_package_or_image(write_project, load, monkeypatch):
    from mlci import lineage

    monkeypatch.setattr(train, "git_info", lambda root: lineage.GitInfo("unknown", "x", True))
    monkeypatch.delenv("BUILD_URL", raising=False)
    write_project('[tool.mlci.model]\nmodule = "m"')
    got = train.build_lineage(StageContext(load()), "h")
    assert (got.package, got.package_version, got.image_digest, got.build_url) == (
        "m",
        "unknown",
        "none",
        "",
    )


def test_a_policy_metric_the_model_does_not_log_is_a_setting_to_fix():
    client = FakeMlflow({"2": {"f1_macro": 0.9, "accuracy": 0.91}}, champion=None)
    trained = {"registered_model": "wine", "version": "2", "run_id": "run-2"}
    policy = SimpleNamespace(
        primary_metric="f1", min={"accuracy": 0.8}, max={"rmse": 9}, max_regression={"auc": 0.1}
    )
    with pytest.raises(ConfigError) as info:
        promote.check_metrics_logged(client, trained, policy)
    # Not "improve the model": name the settings, and what the model did log.
    assert info.value.what == (
        "the promotion policy names metrics the model does not log: "
        "auc (promotion.max_regression), f1 (promotion.primary_metric), rmse (promotion.max)"
    )
    assert info.value.why == "wine v2 logged: accuracy, f1_macro"
    policy.primary_metric, policy.max_regression, policy.max = "f1_macro", {}, {}
    promote.check_metrics_logged(client, trained, policy)  # all logged: no error
