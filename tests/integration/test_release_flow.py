"""release from real git repositories to a real pypiserver that checks passwords.

Check -> act -> check again, safe to run twice: tags give the versions (hatch-vcs), a dirty,
untagged or mismatched work tree is refused before anything is built, a re-run finishes an
interrupted release, a changed file under a released version uploads nothing, the password
never shows on a command line or in the build backend's environment, and the model package
records the champion it ships.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mlci import servers
from mlci.errors import PackageIndexError, ReleaseRefused
from mlci.stages import StageResult, release

from .conftest import REPO_ROOT, make_context

pytestmark = pytest.mark.integration

USER = "uploader"
# Distinctive, so that a leak is found by a plain substring search.
PASSWORD = f"pw-{uuid.uuid4().hex}-do-not-leak"
TAG = "v1.2.0"


# --- servers ---------------------------------------------------------------------------


def _auth_index_command(packages: Path, htpasswd: Path) -> Callable[[int], list[str]]:
    def command(port: int) -> list[str]:
        return [
            *(sys.executable, "-m", "pypiserver", "run", "--host", "127.0.0.1"),
            *("--port", str(port), "-P", str(htpasswd), "-a", "update"),
            "--disable-fallback",
            str(packages),
        ]

    return command


@pytest.fixture(scope="module")
def auth_index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A pypiserver that lists and serves freely but demands USER/PASSWORD for uploads."""
    from passlib.apache import HtpasswdFile  # type: ignore[import-untyped]  # no stubs

    base = tmp_path_factory.mktemp("auth-index")
    packages = base / "packages"
    packages.mkdir()
    htpasswd = HtpasswdFile(str(base / "htpasswd"), new=True, default_scheme="apr_md5_crypt")
    htpasswd.set_password(USER, PASSWORD)
    htpasswd.save()
    command = _auth_index_command(packages, base / "htpasswd")
    with servers.local_server("pypiserver", command, "/health", base / "pypiserver.log") as index:
        yield index.url, packages


class FlakyProxy:
    """HTTP forwarder in front of the index: GETs always pass; after the first upload
    POST, further POSTs get the connection closed without an answer (until forward_all)."""

    def __init__(self, target: str) -> None:
        host, port = target.removeprefix("http://").split(":")
        self.target = (host, int(port))
        self.forward_all = False
        self.posts_forwarded = 0
        self.posts_dropped = 0
        self._lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep the test output quiet
                pass

            def do_GET(self) -> None:
                proxy._forward(self, b"")

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with proxy._lock:
                    allowed = proxy.forward_all or proxy.posts_forwarded == 0
                    if allowed:
                        proxy.posts_forwarded += 1
                    else:
                        proxy.posts_dropped += 1
                if allowed:
                    proxy._forward(self, body)
                else:  # the index "goes down": no status line, just a closed connection
                    self.close_connection = True
                    with contextlib.suppress(OSError):
                        self.connection.shutdown(socket.SHUT_RDWR)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _forward(self, handler: http.server.BaseHTTPRequestHandler, body: bytes) -> None:
        hop = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "host"}
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in hop}
        conn = http.client.HTTPConnection(*self.target, timeout=60)
        try:
            conn.request(handler.command, handler.path, body=body or None, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        handler.send_response(resp.status, resp.reason)
        for key, value in resp.getheaders():
            if key.lower() not in hop | {"content-length", "date", "server"}:
                handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def __enter__(self) -> FlakyProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- git repositories --------------------------------------------------------------------


def _git(repo: Path, *args: str) -> str:
    proc = subprocess.run(
        ["git", "-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return proc.stdout.strip()


def _commit(repo: Path, message: str, tag: str | None = None) -> None:
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", message)
    if tag:
        _git(repo, "tag", tag)


def _vcs_package(root: Path, name: str, body: str = "VALUE = 1\n") -> Path:
    """packages/<name>: hatchling + hatch-vcs, version from the repository's tags."""
    pkg = root / "packages" / name
    module = name.replace("-", "_")
    (pkg / "src" / module).mkdir(parents=True)
    (pkg / "src" / module / "__init__.py").write_text(body)
    (pkg / "README.md").write_text(f"# {name}\n\nA package mlci's release flow tests publish.\n")
    (pkg / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""\
            [build-system]
            requires = ["hatchling>=1.26", "hatch-vcs>=0.4"]
            build-backend = "hatchling.build"

            [project]
            name = "{name}"
            dynamic = ["version"]
            description = "release flow test package"
            readme = "README.md"
            requires-python = ">=3.11"
            license = "Apache-2.0"

            [tool.hatch.version]
            source = "vcs"
            raw-options = {{ root = "../..", fallback_version = "0.0.0" }}
            """
        )
    )
    return pkg


def _static_package(root: Path, name: str, version: str) -> Path:
    pkg = root / "packages" / name
    module = name.replace("-", "_")
    (pkg / "src" / module).mkdir(parents=True)
    (pkg / "src" / module / "__init__.py").write_text("STATIC = True\n")
    (pkg / "README.md").write_text(f"# {name}\n\nA package with a static version.\n")
    (pkg / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""\
            [build-system]
            requires = ["hatchling>=1.26"]
            build-backend = "hatchling.build"

            [project]
            name = "{name}"
            version = "{version}"
            description = "release flow test package"
            readme = "README.md"
            requires-python = ">=3.11"
            license = "Apache-2.0"
            """
        )
    )
    return pkg


def _repo(root: Path, packages: list[str], mlci_toml: str = "") -> Path:
    """A git repository with mlci's root pyproject, an Invoke tasks.py and a .gitignore."""
    root.mkdir(parents=True, exist_ok=True)
    _git(root, "init", "-q", "-b", "main")
    _git(root, "config", "user.name", "mlci tests")
    _git(root, "config", "user.email", "mlci-tests@example.invalid")
    listed = ", ".join(f'"packages/{p}"' for p in packages)
    (root / "pyproject.toml").write_text(
        f"[tool.mlci.release]\npackages = [{listed}]\n" + textwrap.dedent(mlci_toml)
    )
    (root / "tasks.py").write_text("from mlci.tasks import namespace\nns = namespace\n")
    (root / ".gitignore").write_text("__pycache__/\nmodel_record.json\n")
    return root


def _tagged_repo(tmp_path: Path, name: str, tag: str = TAG) -> Path:
    repo = _repo(tmp_path / "repo", [name])
    _vcs_package(repo, name)
    _commit(repo, "first", tag=tag)
    return repo


# --- checks ------------------------------------------------------------------------------


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _snapshot(packages_dir: Path) -> dict[str, str]:
    """Every file on the index with its sha256."""
    return {p.name: _sha(p) for p in sorted(packages_dir.iterdir()) if p.is_file()}


def _auth(url: str, password: str = PASSWORD) -> dict[str, Any]:
    return {
        "release.repository_url": url + "/",
        "release.username": USER,
        "release.password": password,
    }


def _wheel_and_sdist(name: str, version: str) -> set[str]:
    stem = f"{name.replace('-', '_')}-{version}"
    return {f"{stem}.tar.gz", f"{stem}-py3-none-any.whl"}


def _release(tmp_path: Path, repo: Path, **overrides: Any) -> tuple[StageResult, list[str]]:
    ctx, lines = make_context(tmp_path, root=repo, **overrides)
    with ctx:
        result = release.run(ctx)
    return result, lines


@pytest.fixture(autouse=True)
def _no_ambient_twine_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    # The release falls back to TWINE_* from the environment; only the tests set them.
    monkeypatch.delenv("TWINE_USERNAME", raising=False)
    monkeypatch.delenv("TWINE_PASSWORD", raising=False)


# --- 1, 5, 9: tag -> dry run -> upload -> re-run -> changed file under the same version ----


def test_tagged_release_dry_run_upload_rerun_and_moved_tag(
    tmp_path: Path, auth_index: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, packages_dir = auth_index
    repo = _tagged_repo(tmp_path, "flow-alpha")
    expected = _wheel_and_sdist("flow-alpha", "1.2.0")
    before = _snapshot(packages_dir)

    # --dry-run: the plan (names, version, hashes, target) and no change anywhere.
    result, lines = _release(tmp_path, repo, **_auth(url), **{"release.dry_run": True})
    assert result.summary == "dry run: 2 to upload, 0 there"
    log = "\n".join(lines)
    assert f"plan for {url}" in log
    for f in result.details["files"]:
        row = next(line for line in lines if f["name"] in line)
        assert "1.2.0" in row and f["sha256"][:16] in row and "upload" in row
    assert {f["name"] for f in result.details["files"]} == expected
    assert "nothing uploaded" in log
    assert _snapshot(packages_dir) == before
    assert not (tmp_path / "reports" / "release.json").exists()
    assert not (tmp_path / "reports" / "release-notes.md").exists()

    # The real release, credentials from the settings.
    result, _ = _release(tmp_path, repo, **_auth(url))
    assert result.summary == "2 uploaded, 0 already there, verified"
    assert result.details["packages"] == {"flow-alpha": "1.2.0"}
    after = _snapshot(packages_dir)
    assert set(after) - set(before) == expected
    built = {f["name"]: f["sha256"] for f in result.details["files"]}
    assert {n: after[n] for n in expected} == built
    report = json.loads((tmp_path / "reports" / "release.json").read_text())
    assert report["dry_run"] is False and {f["name"] for f in report["files"]} == expected

    # Safe to run twice: credentials from TWINE_* this time, nothing to upload.
    monkeypatch.setenv("TWINE_USERNAME", USER)
    monkeypatch.setenv("TWINE_PASSWORD", PASSWORD)
    again, _ = _release(tmp_path, repo, **{"release.repository_url": url + "/"})
    assert again.summary == "0 uploaded, 2 already there, verified"
    assert {f["action"] for f in again.details["files"]} == {release.SKIP}
    assert _snapshot(packages_dir) == after

    # Moving the tag onto different content: the index already has other bytes under
    # these names, so the whole release is refused and nothing is uploaded.
    (repo / "packages" / "flow-alpha" / "src" / "flow_alpha" / "__init__.py").write_text(
        "VALUE = 2\n"
    )
    _commit(repo, "second")
    _git(repo, "tag", "-f", TAG)
    with pytest.raises(ReleaseRefused, match="different files") as err:
        _release(tmp_path, repo, **_auth(url))
    assert "nothing was uploaded" in str(err.value)
    for name in expected:
        assert name in err.value.why
    assert _snapshot(packages_dir) == after


# --- 2, 3, 4: refused before anything is built --------------------------------------------


def _modified(tmp_path: Path) -> Path:
    repo = _tagged_repo(tmp_path, "flow-dirty")
    (repo / "packages" / "flow-dirty" / "README.md").write_text("# changed, not committed\n")
    return repo


def _untracked(tmp_path: Path) -> Path:
    repo = _tagged_repo(tmp_path, "flow-untracked")
    (repo / "packages" / "flow-untracked" / "src" / "flow_untracked" / "extra.py").write_text(
        "EXTRA = 1\n"
    )
    return repo


def _untagged(tmp_path: Path) -> Path:
    repo = _tagged_repo(tmp_path, "flow-untagged")
    (repo / "packages" / "flow-untagged" / "README.md").write_text("# flow-untagged\n\nNext.\n")
    _commit(repo, "after the tag")
    return repo


def _static_mismatch(tmp_path: Path) -> Path:
    repo = _repo(tmp_path / "repo", ["flow-vcs", "flow-static"])
    _vcs_package(repo, "flow-vcs")
    _static_package(repo, "flow-static", "9.9.9")
    _commit(repo, "first", tag=TAG)
    return repo


@pytest.mark.parametrize(
    ("make_repo", "message"),
    [
        (_modified, "uncommitted changes"),
        (_untracked, "uncommitted changes"),
        (_untagged, "has no version tag"),
        (_static_mismatch, "does not match"),
    ],
    ids=["modified-tracked-file", "untracked-file", "untagged-commit", "static-version"],
)
def test_preflight_refuses_before_building(
    tmp_path: Path, auth_index: tuple[str, Path], make_repo: Callable[[Path], Path], message: str
) -> None:
    url, packages_dir = auth_index
    repo = make_repo(tmp_path)
    before = _snapshot(packages_dir)
    with pytest.raises(ReleaseRefused, match=message) as err:
        _release(tmp_path, repo, **_auth(url))
    if make_repo is _static_mismatch:
        assert "flow-static 9.9.9" in err.value.why
    assert _snapshot(packages_dir) == before
    assert not (tmp_path / "state" / "dist").exists()
    assert not (tmp_path / "reports" / "release.json").exists()


def test_untagged_commit_with_allow_dev_uploads_a_dev_version(
    tmp_path: Path, auth_index: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, packages_dir = auth_index
    repo = _untagged(tmp_path)
    monkeypatch.setenv("TWINE_USERNAME", USER)
    monkeypatch.setenv("TWINE_PASSWORD", PASSWORD)
    before = _snapshot(packages_dir)
    result, _ = _release(
        tmp_path, repo, **{"release.repository_url": url + "/", "release.allow_dev": True}
    )
    assert result.summary == "2 uploaded, 0 already there, verified"
    version = result.details["packages"]["flow-untagged"]
    assert ".dev" in version
    added = set(_snapshot(packages_dir)) - set(before)
    assert len(added) == 2
    assert all(n.startswith("flow_untagged-") and ".dev" in n for n in added), added


def test_untracked_file_with_allow_dev_never_takes_the_tagged_version(
    tmp_path: Path, pypi_server: tuple[str, Path]
) -> None:
    url, packages_dir = pypi_server
    repo = _untracked(tmp_path)
    before = _snapshot(packages_dir)
    with pytest.raises(ReleaseRefused, match=r"would be released as flow-untracked 1\.2\.0"):
        _release(
            tmp_path,
            repo,
            **{
                "release.repository_url": url + "/",
                "release.username": "ci",
                "release.password": "not-checked-here",
                "release.allow_dev": True,
            },
        )
    added = set(_snapshot(packages_dir)) - set(before)
    # Uncommitted work may go out as a .devN, never under the released name 1.2.0.
    assert not added & _wheel_and_sdist("flow-untracked", "1.2.0"), added


# --- 6: the index goes down mid-upload; the re-run finishes ---------------------------------


def test_index_down_mid_upload_then_rerun_completes(
    tmp_path: Path, auth_index: tuple[str, Path]
) -> None:
    url, packages_dir = auth_index
    repo = _tagged_repo(tmp_path, "flow-proxy")
    expected = _wheel_and_sdist("flow-proxy", "1.2.0")
    before = _snapshot(packages_dir)
    with FlakyProxy(url) as proxy:
        with pytest.raises(PackageIndexError) as err:
            _release(tmp_path, repo, **_auth(proxy.url))
        assert err.value.exit_code == 3
        assert "invoke release` again" in err.value.fix
        assert (proxy.posts_forwarded, proxy.posts_dropped) == (1, 1)
        arrived = set(_snapshot(packages_dir)) - set(before)
        assert len(arrived) == 1 and arrived < expected
        assert not (tmp_path / "reports" / "release.json").exists()

        proxy.forward_all = True
        result, _ = _release(tmp_path, repo, **_auth(proxy.url))
    assert result.summary == "1 uploaded, 1 already there, verified"
    actions = {f["name"]: f["action"] for f in result.details["files"]}
    assert actions == {n: release.SKIP if n in arrived else release.UPLOAD for n in expected}
    assert set(_snapshot(packages_dir)) - set(before) == expected


# --- 7: wrong password ---------------------------------------------------------------------


def test_wrong_password_is_refused_and_names_the_variables(
    tmp_path: Path, auth_index: tuple[str, Path]
) -> None:
    url, packages_dir = auth_index
    repo = _tagged_repo(tmp_path, "flow-badpw")
    wrong = f"wrong-{uuid.uuid4().hex}"
    before = _snapshot(packages_dir)
    with pytest.raises(PackageIndexError) as err:
        _release(tmp_path, repo, **_auth(url, password=wrong))
    text = err.value.render()
    assert "TWINE_USERNAME / TWINE_PASSWORD" in text
    assert wrong not in text
    assert err.value.exit_code == 3
    assert _snapshot(packages_dir) == before


# --- 8, 9: `invoke release` as users run it: no password in argv, env of builds, output ----


def _invoke_env(tmp_path: Path, repo: Path, url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLCI_")}
    env.update(
        MLCI_PROJECT_ROOT=str(repo),
        MLCI_REPORTS_DIR=str(tmp_path / "reports"),
        MLCI_STATE_DIR=str(tmp_path / "state"),
        MLCI_RELEASE_REPOSITORY_URL=url + "/",
        TWINE_USERNAME=USER,
        TWINE_PASSWORD=PASSWORD,
    )
    return env


class ProcessWatcher(threading.Thread):
    """Samples every process's command line, and the environment of build processes."""

    KEYWORDS = (b"build", b"hatchling", b"pip")

    def __init__(self, secret: str) -> None:
        super().__init__(daemon=True)
        self.secret = secret.encode()
        self.stop = threading.Event()
        self.cmdlines: set[bytes] = set()
        self.leaks: set[str] = set()
        self.build_environs_read: set[bytes] = set()

    def run(self) -> None:
        while not self.stop.is_set():
            for pid in os.listdir("/proc"):
                if pid.isdigit():
                    self._sample(pid)
            time.sleep(0.02)

    def _sample(self, pid: str) -> None:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            return
        self.cmdlines.add(cmdline)
        if self.secret in cmdline:
            self.leaks.add(f"cmdline of {pid}: {cmdline[:200]!r}")
        if any(k in cmdline for k in self.KEYWORDS):
            try:
                environ = Path(f"/proc/{pid}/environ").read_bytes()
            except OSError:
                return
            self.build_environs_read.add(cmdline)
            if self.secret in environ:
                self.leaks.add(f"environ of {pid}: {cmdline[:200]!r}")


def test_invoke_release_keeps_the_password_secret_and_dry_run_changes_nothing(
    tmp_path: Path, auth_index: tuple[str, Path]
) -> None:
    url, packages_dir = auth_index
    repo = _tagged_repo(tmp_path, "flow-secret")
    env = _invoke_env(tmp_path, repo, url)
    expected = _wheel_and_sdist("flow-secret", "1.2.0")
    before = _snapshot(packages_dir)
    watcher = ProcessWatcher(PASSWORD)
    watcher.start()
    try:
        dry = subprocess.run(
            [sys.executable, "-m", "invoke", "release", "--dry-run"],
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert dry.returncode == 0, dry.stdout + dry.stderr
        assert _snapshot(packages_dir) == before
        assert not (tmp_path / "reports" / "release.json").exists()

        done = subprocess.run(
            [sys.executable, "-m", "invoke", "release"],
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        watcher.stop.set()
        watcher.join(timeout=10)

    # The dry run printed the plan: target, file names, version and hashes.
    assert "release: passed: dry run: 2 to upload, 0 there" in dry.stdout
    assert f"plan for {url}" in dry.stderr
    for name in expected:
        assert name in dry.stderr
    assert "1.2.0" in dry.stderr
    # The real run uploaded the same files the dry run planned.
    assert done.returncode == 0, done.stdout + done.stderr
    assert "release: passed: 2 uploaded, 0 already there, verified" in done.stdout
    assert set(_snapshot(packages_dir)) - set(before) == expected
    report = json.loads((tmp_path / "reports" / "release.json").read_text())
    for f in report["files"]:
        assert f["sha256"][:16] in dry.stderr

    # Never on a command line, in a build process's environment, or in the output.
    assert watcher.leaks == set()
    assert any(b" -m build " in c for c in watcher.build_environs_read), "no build sampled"
    assert any(b"invoke release" in c for c in watcher.cmdlines)
    for output in (dry.stdout, dry.stderr, done.stdout, done.stderr):
        assert PASSWORD not in output


# --- 10: the model package records the champion it ships -----------------------------------


def _model_repo(tmp_path: Path, model: str, uri: str) -> Path:
    repo = _repo(
        tmp_path / "repo",
        ["wine-classifier"],
        f"""
        [tool.mlci.model]
        module = "wine_classifier"
        package = "packages/wine-classifier"
        params = {{ estimator = "random_forest", n_estimators = 20, seed = 42 }}

        [tool.mlci.mlflow]
        tracking_uri = "{uri}"
        experiment = "{model}"
        registered_model = "{model}"
        """,
    )
    source = REPO_ROOT / "packages" / "wine-classifier"
    target = repo / "packages" / "wine-classifier"
    target.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(source / name, target / name)
    shutil.copytree(
        source / "src",
        target / "src",
        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "model_record.json"),
    )
    _commit(repo, "model package", tag="v2.0.0")
    return repo


def test_release_ships_the_champion_and_refuses_without_one(
    tmp_path: Path, mlflow_server: str, pypi_server: tuple[str, Path]
) -> None:
    from mlflow import MlflowClient

    from mlci.stages import promote, train

    url, packages_dir = pypi_server
    model = f"flow-wine-{uuid.uuid4().hex[:8]}"
    repo = _model_repo(tmp_path, model, mlflow_server)
    index = {
        "release.repository_url": url + "/",
        "release.username": "ci",
        "release.password": "not-checked-here",
    }
    record_in_tree = repo / "packages" / "wine-classifier" / "src" / "wine_classifier"
    record_in_tree = record_in_tree / "model_record.json"
    before = _snapshot(packages_dir)

    # No registered model at all, then a version without the champion alias: refused.
    with pytest.raises(ReleaseRefused, match="no validated model"):
        _release(tmp_path, repo, **index)
    ctx, _ = make_context(tmp_path, root=repo)
    with ctx:
        trained = train.run(ctx)
    with pytest.raises(ReleaseRefused, match="no validated model"):
        _release(tmp_path, repo, **index)
    assert _snapshot(packages_dir) == before
    assert not (tmp_path / "state" / "dist").exists()
    assert not record_in_tree.exists()

    ctx, _ = make_context(tmp_path, root=repo)
    with ctx:
        promote.run(ctx)
    version = str(trained.details["version"])
    client = MlflowClient(mlflow_server, registry_uri=mlflow_server)
    assert client.get_model_version_by_alias(model, "champion").version == version

    result, _ = _release(tmp_path, repo, **index)
    assert result.summary == "2 uploaded, 0 already there, verified"
    assert result.details["packages"] == {"wine-classifier": "2.0.0"}
    (wheel,) = (tmp_path / "state" / "dist" / "wine-classifier").glob("*.whl")
    assert wheel.name == "wine_classifier-2.0.0-py3-none-any.whl"
    assert _sha(packages_dir / wheel.name) == _sha(wheel)
    with zipfile.ZipFile(wheel) as zf:
        shipped = json.loads(zf.read("wine_classifier/model_record.json"))
    assert shipped["registered_model"] == model
    assert shipped["version"] == version
    assert shipped["run_id"] == trained.details["run_id"]
    assert shipped["alias"] == "champion"

    tags = client.get_model_version(model, version).tags
    assert tags["mlci.released_as"] == "wine-classifier==2.0.0"
    notes = (tmp_path / "reports" / "release-notes.md").read_text()
    assert f"{model} v{version}" in notes
    assert not record_in_tree.exists()
    assert _git(repo, "status", "--porcelain", "--ignored") == ""
