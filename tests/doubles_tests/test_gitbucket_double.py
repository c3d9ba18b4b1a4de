"""Contract tests of the GitBucket double, driven by clients we did not write.

PyGithub speaks GitHub's v3 API, which GitBucket imitates; real ``git`` pushes over smart HTTP;
plain ``requests`` covers what neither reaches (the sign-in form that changes a password, error
shapes). Deliveries go to a small HTTP receiver run by the tests.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import github
import pytest
import requests

from tests.doubles import fixtures_gitbucket
from tests.doubles.gitbucket import Delivery, GitBucketDouble

gitbucket = fixtures_gitbucket.gitbucket  # the fixture, bound here for pytest to find

pytestmark = pytest.mark.contract

ROOT = ("root", "root")
NEW_PASSWORD = "S3cure-root-pw!"  # GitBucket's form allows at most 20 characters
SECRET = "hook-secret"


def api(gb: GitBucketDouble, method: str, path: str, *, auth: Any = ROOT, **kwargs: Any):
    return requests.request(method, f"{gb.url}/api/v3{path}", auth=auth, timeout=10, **kwargs)


def client(gb: GitBucketDouble, password: str = "root", token: str | None = None) -> github.Github:
    auth = github.Auth.Token(token) if token else github.Auth.Login("root", password)
    # No retries, and none of PyGithub's pauses between calls (meant for github.com).
    return github.Github(
        base_url=f"{gb.url}/api/v3",
        auth=auth,
        retry=None,
        seconds_between_requests=None,
        seconds_between_writes=None,
    )


# -- a receiver for deliveries and a git working copy ------------------------------------------


class Receiver:
    """An HTTP server on 127.0.0.1 that records every POST and answers 200."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, str], bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.received.append((self.path, dict(self.headers.items()), body))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    try:
        yield rec
    finally:
        rec.close()


GIT_ENV = {
    **{k: v for k, v in os.environ.items() if not k.startswith("GIT_")},
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_AUTHOR_NAME": "Dev Eloper",
    "GIT_AUTHOR_EMAIL": "dev@example.com",
    "GIT_COMMITTER_NAME": "Dev Eloper",
    "GIT_COMMITTER_EMAIL": "dev@example.com",
}


def git(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *args], cwd=cwd, env=GIT_ENV, capture_output=True, text=True, check=check, timeout=9
    )


def rev(cwd: Path, name: str = "HEAD") -> str:
    return git(cwd, "rev-parse", name).stdout.strip()


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """A working copy on ``main`` with two commits."""
    path = tmp_path / "work"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    (path / "app.py").write_text("print('one')\n")
    git(path, "add", "app.py")
    git(path, "commit", "-q", "-m", "first commit")
    (path / "app.py").write_text("print('two')\n")
    (path / "README.md").write_text("# demo\n")
    git(path, "add", "app.py", "README.md")
    git(path, "commit", "-q", "-m", "second commit")
    return path


def remote(gb: GitBucketDouble, full_name: str, password: str = "root") -> str:
    return f"http://root:{password}@127.0.0.1:{gb.port}/git/{full_name}.git"


def make_repo(gb: GitBucketDouble, name: str = "demo") -> None:
    assert api(gb, "POST", "/user/repos", json={"name": name}).status_code == 200


def add_hook(gb: GitBucketDouble, url: str, events: list[str], **config: Any) -> dict[str, Any]:
    body = {"name": "web", "config": {"url": url, **config}, "events": events, "active": True}
    response = api(gb, "POST", "/repos/root/demo/hooks", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def assert_signed(delivery: Delivery, secret: str = SECRET) -> None:
    key = secret.encode()
    sha1 = "sha1=" + hmac.new(key, delivery.body, hashlib.sha1).hexdigest()
    sha256 = "sha256=" + hmac.new(key, delivery.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(delivery.headers["X-Hub-Signature"], sha1)
    assert hmac.compare_digest(delivery.headers["X-Hub-Signature-256"], sha256)


def create_user(gb: GitBucketDouble, login: str, password: str) -> None:
    body = {"login": login, "password": password, "email": f"{login}@example.com"}
    response = api(gb, "POST", "/admin/users", json=body)
    assert response.status_code == 200, response.text


def client_as(gb: GitBucketDouble, login: str, password: str) -> github.Github:
    return github.Github(
        base_url=f"{gb.url}/api/v3",
        auth=github.Auth.Login(login, password),
        retry=None,
        seconds_between_requests=None,
        seconds_between_writes=None,
    )


def remote_as(gb: GitBucketDouble, full_name: str, login: str = "", password: str = "") -> str:
    """The git URL of a repository, with ``login:password`` when a login is given."""
    credentials = f"{login}:{password}@" if login else ""
    return f"http://{credentials}127.0.0.1:{gb.port}/git/{full_name}.git"


def git_probe(gb: GitBucketDouble, full_name: str, service: str, auth: Any = None) -> Any:
    """The first request of a fetch (git-upload-pack) or a push (git-receive-pack)."""
    return requests.get(
        f"{gb.url}/git/{full_name}.git/info/refs",
        params={"service": service},
        headers={"User-Agent": "git/2.39.5"},
        auth=auth,
        timeout=10,
    )


def assert_requires_authentication(response: Any) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json() == {"message": "Requires authentication"}


def assert_git_refused(probe: Any) -> None:
    """GitAuthenticationFilter's answer: 401 and a Basic challenge, never 403 or 404."""
    assert probe.status_code == 401
    assert probe.headers["WWW-Authenticate"] == 'BASIC realm="GitBucket"'


# -- users, credentials, error shapes ----------------------------------------------------------


def test_pygithub_reads_the_authenticated_user(gitbucket: GitBucketDouble) -> None:
    me = client(gitbucket).get_user()
    assert me.login == "root"
    assert me.type == "User"
    assert me.site_admin is True
    assert me.email == "root@localhost"
    assert gitbucket.default_password_in_use()


def test_wrong_password_answers_401_bad_credentials(gitbucket: GitBucketDouble) -> None:
    for path in ("/user", "/repos/root/none", "/no/such/api"):
        response = api(gitbucket, "GET", path, auth=("root", "wrong"))
        assert response.status_code == 401
        assert response.text == '{ "message": "Bad credentials" }'
    with pytest.raises(github.BadCredentialsException):
        client(gitbucket, "wrong").get_user("root")
    anonymous = api(gitbucket, "GET", "/user", auth=None)
    assert anonymous.status_code == 401
    assert anonymous.json() == {"message": "Requires authentication"}


def test_not_found_shapes(gitbucket: GitBucketDouble) -> None:
    for method, path in (
        ("GET", "/no/such/endpoint"),
        ("GET", "/repos/root/missing"),
        ("PATCH", "/admin/users/root"),
        ("PUT", "/user/password"),
    ):
        response = api(gitbucket, method, path, json={"password": "x"})
        assert response.status_code == 404, (method, path)
        assert response.headers["Content-Type"].startswith("application/json")
        assert response.json() == {"message": "Not Found"}
    page = requests.get(f"{gitbucket.url}/root/missing/settings", timeout=10)
    assert page.status_code == 404
    assert page.headers["Content-Type"].startswith("text/html")
    with pytest.raises(github.UnknownObjectException):
        client(gitbucket).get_repo("root/missing")


def test_personal_access_token_authenticates(gitbucket: GitBucketDouble) -> None:
    token = gitbucket.create_token("root")
    response = requests.get(
        f"{gitbucket.url}/api/v3/user", headers={"Authorization": f"token {token}"}, timeout=10
    )
    assert response.json()["login"] == "root"
    assert client(gitbucket, token=token).get_user().login == "root"
    bad = requests.get(
        f"{gitbucket.url}/api/v3/user", headers={"Authorization": "token nope"}, timeout=10
    )
    assert bad.status_code == 401


def test_root_password_changes_only_through_the_web_form(gitbucket: GitBucketDouble) -> None:
    # There is no API for it: the admin path is unknown, PATCH /user ignores "password".
    assert api(gitbucket, "PATCH", "/admin/users/root", json={"password": "x"}).status_code == 404
    patched = api(gitbucket, "PATCH", "/user", json={"password": NEW_PASSWORD})
    assert patched.status_code == 200
    assert gitbucket.default_password_in_use()

    web = requests.Session()
    form = {"password": NEW_PASSWORD, "fullName": "root", "mailAddress": "root@localhost"}
    # Without a session a non-browser client gets a bare 401.
    refused = web.post(f"{gitbucket.url}/root/_edit", data=form, allow_redirects=False)
    assert (refused.status_code, refused.text) == (401, "")

    bad_signin = web.post(f"{gitbucket.url}/signin", data={"userName": "root", "password": "nope"})
    assert bad_signin.url.endswith("/signin")
    signin = web.post(
        f"{gitbucket.url}/signin",
        data={"userName": "root", "password": "root"},
        allow_redirects=False,
    )
    assert signin.status_code == 302
    assert signin.headers["Location"] == f"{gitbucket.url}/"
    assert "JSESSIONID" in web.cookies

    too_long = dict(form, password="x" * 21)
    rejected = web.post(f"{gitbucket.url}/root/_edit", data=too_long, allow_redirects=False)
    assert (rejected.status_code, rejected.text) == (400, "")
    assert gitbucket.default_password_in_use()

    changed = web.post(f"{gitbucket.url}/root/_edit", data=form, allow_redirects=False)
    assert changed.status_code == 302
    assert changed.headers["Location"] == f"{gitbucket.url}/root/_edit"
    assert not gitbucket.default_password_in_use()
    assert gitbucket.users["root"] == NEW_PASSWORD
    assert api(gitbucket, "GET", "/user").status_code == 401
    assert client(gitbucket, NEW_PASSWORD).get_user().login == "root"
    assert gitbucket.calls["signin"] == 2
    assert gitbucket.calls["edit_account"] == 3


# -- repositories and organisations ------------------------------------------------------------


def test_create_repo_and_the_duplicate_answer(gitbucket: GitBucketDouble) -> None:
    g = client(gitbucket)
    repo = g.get_user().create_repo("demo", description="the demo")
    assert repo.full_name == "root/demo"
    assert repo.clone_url == f"{gitbucket.url}/git/root/demo.git"
    assert repo.html_url == f"{gitbucket.url}/root/demo"
    assert repo.default_branch == "main"
    assert repo.private is False
    assert "root/demo" in gitbucket.repos

    # A duplicate is also 200: PyGithub builds an empty Repository from the message body.
    again = g.get_user().create_repo("demo")
    assert again.name is None
    assert again.raw_data == {
        "message": "A repository with this name already exists on this account",
        "documentation_url": "https://developer.github.com/v3/repos/#create",
    }
    raw = api(gitbucket, "POST", "/user/repos", json={"name": "demo"})
    assert raw.status_code == 200
    assert "message" in raw.json()
    assert api(gitbucket, "POST", "/user/repos", json={"name": "-bad"}).status_code == 404
    assert gitbucket.calls["create_repo"] == 4

    fetched = g.get_repo("root/demo")
    assert fetched.description == "the demo"
    assert fetched.owner.login == "root"


def test_organisation_and_its_repository(gitbucket: GitBucketDouble) -> None:
    body = {"login": "mlci", "profile_name": "ML CI", "url": "http://example.com", "admin": "root"}
    created = api(gitbucket, "POST", "/admin/organizations", json=body)
    assert created.status_code == 200
    assert created.json()["login"] == "mlci"
    assert created.json()["description"] == "ML CI"
    assert api(gitbucket, "POST", "/admin/organizations", json=body).status_code == 500
    # A body that does not extract makes the action yield None, which Scalatra renders as an
    # empty 200 (not 400): nothing is created.
    missing_admin = api(gitbucket, "POST", "/admin/organizations", json={"login": "other"})
    assert (missing_admin.status_code, missing_admin.content) == (200, b"")
    assert gitbucket.orgs == {"mlci": {"root": True}}
    assert api(gitbucket, "GET", "/orgs/nope").status_code == 404

    g = client(gitbucket)
    org = g.get_organization("mlci")
    assert org.login == "mlci"
    repo = org.create_repo("service", private=True)
    assert repo.full_name == "mlci/service"
    assert repo.private is True
    assert repo.owner.type == "Organization"
    duplicate = api(gitbucket, "POST", "/orgs/mlci/repos", json={"name": "service"})
    message = "A repository with this name already exists for this group"
    assert duplicate.json()["message"] == message
    assert [r.name for r in org.get_repos()] == ["service"]


# -- hooks through the API ---------------------------------------------------------------------


def test_hooks_with_pygithub(gitbucket: GitBucketDouble) -> None:
    g = client(gitbucket)
    repo = g.get_user().create_repo("demo")
    config = {"url": "http://jenkins:8080/generic-webhook-trigger/invoke?token=t"}
    hook = repo.create_hook(
        "web", {**config, "content_type": "json", "secret": SECRET}, ["push", "create"], False
    )
    assert hook.name == "web"
    assert hook.active is True  # "active" is ignored
    assert hook.config == {"content_type": "json", "url": config["url"]}  # no secret
    assert sorted(hook.events) == ["create", "push"]
    # GitBucket's hook URL lacks "repos/", so PyGithub's edit/delete land on the 404 catch-all.
    assert hook.url == f"{gitbucket.url}/api/v3/root/demo/hooks/{hook.id}"
    with pytest.raises(github.UnknownObjectException):
        hook.edit("web", {**config, "content_type": "json"})
    with pytest.raises(github.UnknownObjectException):
        hook.delete()

    listed = list(repo.get_hooks())
    assert [h.config["url"] for h in listed] == [config["url"]]
    assert repo.get_hook(hook.id).id == hook.id
    assert gitbucket.hooks[0].secret == SECRET

    # PATCH at the real path works; without "secret" it clears it, events default to push.
    path = f"/repos/root/demo/hooks/{hook.id}"
    patched = api(gitbucket, "PATCH", path, json={"config": {**config, "content_type": "json"}})
    assert patched.status_code == 200
    assert patched.json()["events"] == ["push"]
    assert gitbucket.hooks[0].secret is None
    assert api(gitbucket, "DELETE", path).status_code == 204
    assert api(gitbucket, "DELETE", path).status_code == 404
    assert list(repo.get_hooks()) == []
    assert gitbucket.calls["create_hook"] == 1
    assert gitbucket.calls["update_hook"] == 1
    assert gitbucket.calls["delete_hook"] == 2
    assert gitbucket.calls["api_other"] == 2  # the two calls PyGithub sent to the bad URL


def test_hook_defaults_to_form_and_rejects_unknown_events(gitbucket: GitBucketDouble) -> None:
    make_repo(gitbucket)
    created = add_hook(gitbucket, "http://a.example/hook", ["push"])
    assert created["config"]["content_type"] == "form"
    repo = client(gitbucket).get_repo("root/demo")
    with pytest.raises(github.GithubException) as caught:
        repo.create_hook("web", {"url": "http://b.example/hook"}, ["push", "ping"])
    assert caught.value.status == 500
    assert [h.url for h in gitbucket.hooks] == ["http://a.example/hook"]
    dup = api(
        gitbucket,
        "POST",
        "/repos/root/demo/hooks",
        json={"config": {"url": "http://a.example/hook"}},
    )
    assert dup.status_code == 500
    xml = {"config": {"url": "http://c.example/hook", "content_type": "xml"}}
    assert api(gitbucket, "POST", "/repos/root/demo/hooks", json=xml).status_code == 404


# -- git push and deliveries -------------------------------------------------------------------


def test_push_needs_credentials(gitbucket: GitBucketDouble, work: Path) -> None:
    make_repo(gitbucket)
    probe = requests.get(
        f"{gitbucket.url}/git/root/demo.git/info/refs",
        params={"service": "git-receive-pack"},
        headers={"User-Agent": "git/2.39.5"},
        timeout=10,
    )
    assert probe.status_code == 401
    assert probe.headers["WWW-Authenticate"] == 'BASIC realm="GitBucket"'
    anonymous = f"http://127.0.0.1:{gitbucket.port}/git/root/demo.git"
    assert git(work, "push", anonymous, "main", check=False).returncode != 0
    wrong = git(work, "push", remote(gitbucket, "root/demo", "bad"), "main", check=False)
    assert wrong.returncode != 0
    assert gitbucket.calls["push"] == 0
    assert git(work, "push", remote(gitbucket, "root/demo"), "main").returncode == 0
    assert gitbucket.calls["push"] == 1
    assert api(gitbucket, "GET", "/repos/root/demo/branches").json() == [
        {"name": "main", "commit": {"sha": rev(work)}}
    ]


def test_first_push_delivers_a_signed_json_push(
    gitbucket: GitBucketDouble, receiver: Receiver, work: Path
) -> None:
    make_repo(gitbucket)
    add_hook(gitbucket, receiver.url, ["push"], content_type="json", secret=SECRET)
    git(work, "push", remote(gitbucket, "root/demo"), "main")

    (delivery,) = gitbucket.wait_for_deliveries(1)
    assert delivery.ok and delivery.event == "push"
    assert delivery.headers["Content-Type"] == "application/json"
    assert delivery.headers["X-Github-Event"] == "push"
    assert_signed(delivery)

    path, headers, body = receiver.received[0]
    assert path == "/hook"
    assert body == delivery.body
    assert headers["X-Github-Event"] == "push"
    assert hmac.compare_digest(
        headers["X-Hub-Signature-256"],
        "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest(),
    )

    payload = json.loads(body)
    first, second = rev(work, "HEAD~1"), rev(work)
    assert payload["ref"] == "refs/heads/main"
    assert payload["before"] == "0" * 40
    assert payload["after"] == second
    assert [c["id"] for c in payload["commits"]] == [first, second]
    assert [c["message"] for c in payload["commits"]] == ["first commit\n", "second commit\n"]
    assert payload["commits"][0]["added"] == ["app.py"]
    assert payload["commits"][1]["added"] == ["README.md"]
    assert payload["commits"][1]["modified"] == ["app.py"]
    assert payload["commits"][1]["author"]["email"] == "dev@example.com"
    assert payload["commits"][1]["timestamp"].endswith("Z")
    assert payload["head_commit"]["id"] == second
    assert payload["pusher"] == {"name": "root", "email": "root@localhost"}
    assert payload["sender"]["login"] == "root"
    repository = payload["repository"]
    assert repository["full_name"] == "root/demo"
    assert repository["clone_url"] == f"http://127.0.0.1:{gitbucket.port}/git/root/demo.git"
    assert repository["html_url"] == f"http://127.0.0.1:{gitbucket.port}/root/demo"
    assert payload["compare"].endswith(f"/root/demo/compare/{first}^...{second}")


def test_tag_push_sends_create_and_push_without_commits(
    gitbucket: GitBucketDouble, receiver: Receiver, work: Path
) -> None:
    make_repo(gitbucket)
    add_hook(gitbucket, receiver.url, ["push", "create"], content_type="json", secret=SECRET)
    git(work, "push", remote(gitbucket, "root/demo"), "main")
    branch_events = [d.event for d in gitbucket.wait_for_deliveries(2)]
    assert branch_events == ["push", "create"]

    git(work, "tag", "-a", "v1.0.0", "-m", "release 1.0.0")
    git(work, "push", remote(gitbucket, "root/demo"), "v1.0.0")
    deliveries = gitbucket.wait_for_deliveries(4)[2:]
    assert sorted(d.event for d in deliveries) == ["create", "push"]
    by_event = {d.event: d for d in deliveries}
    push = by_event["push"].payload
    assert push["ref"] == "refs/tags/v1.0.0"
    assert push["commits"] == []
    assert "head_commit" not in push
    assert push["after"] == rev(work, "v1.0.0")
    create = by_event["create"].payload
    assert (create["ref"], create["ref_type"]) == ("refs/tags/v1.0.0", "tag")
    assert create["master_branch"] == "main"
    assert create["pusher_type"] == "user"
    for delivery in deliveries:
        assert delivery.headers["X-Github-Event"] == delivery.event
        assert_signed(delivery)
    assert len(receiver.received) == 4


def test_form_hook_and_a_new_branch(
    gitbucket: GitBucketDouble, receiver: Receiver, work: Path
) -> None:
    make_repo(gitbucket)
    git(work, "push", remote(gitbucket, "root/demo"), "main")
    add_hook(gitbucket, receiver.url, ["push", "create"], secret=SECRET)  # form by default

    git(work, "checkout", "-q", "-b", "feature/x")
    (work / "feature.txt").write_text("new work\n")
    git(work, "add", "feature.txt")
    git(work, "commit", "-q", "-m", "feature work")
    git(work, "push", remote(gitbucket, "root/demo"), "feature/x")

    deliveries = gitbucket.wait_for_deliveries(2)
    assert [d.event for d in deliveries] == ["push", "create"]
    push = deliveries[0]
    assert push.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert push.body.startswith(b"payload=")
    assert_signed(push)
    fields = dict(parse_qsl(receiver.received[0][2].decode()))
    payload = json.loads(fields["payload"])
    assert payload == push.payload
    assert payload["ref"] == "refs/heads/feature/x"
    assert payload["before"] == "0" * 40
    assert payload["after"] == rev(work)
    # The branch's oldest commit was already on main, so GitBucket lists no commits.
    assert payload["commits"] == []
    create = deliveries[1].payload
    assert (create["ref"], create["ref_type"]) == ("refs/heads/feature/x", "branch")

    # A later push to the branch lists just the new commit.
    (work / "feature.txt").write_text("more work\n")
    git(work, "commit", "-q", "-am", "more feature work")
    git(work, "push", remote(gitbucket, "root/demo"), "feature/x")
    update = gitbucket.wait_for_deliveries(3)[2]
    assert update.event == "push"
    assert [c["message"] for c in update.payload["commits"]] == ["more feature work\n"]
    assert update.payload["compare"].endswith(f"/commit/{rev(work)}")


def test_unreachable_hook_is_recorded_as_failed(gitbucket: GitBucketDouble, work: Path) -> None:
    make_repo(gitbucket)
    add_hook(gitbucket, "http://127.0.0.1:9/nothing-listens", ["push"], content_type="json")
    assert git(work, "push", remote(gitbucket, "root/demo"), "main").returncode == 0
    (delivery,) = gitbucket.wait_for_deliveries(1)
    assert delivery.status is None and not delivery.ok
    assert delivery.error
    assert "X-Hub-Signature" not in delivery.headers  # no secret, no signature


# -- fault injection ---------------------------------------------------------------------------


def test_fault_injection(gitbucket: GitBucketDouble) -> None:
    gitbucket.fail_next("/api/v3/user", 2)
    assert api(gitbucket, "GET", "/user").status_code == 500
    failed = api(gitbucket, "GET", "/user")
    assert failed.json() == {"message": "Internal Server Error"}
    assert api(gitbucket, "GET", "/user").status_code == 200

    gitbucket.hang_next("/api/v3/user", 1.0)
    with pytest.raises(requests.Timeout):
        requests.get(f"{gitbucket.url}/api/v3/user", auth=ROOT, timeout=0.2)
    assert api(gitbucket, "GET", "/user").status_code == 200
    assert [r.status for r in gitbucket.requests][:3] == [500, 500, 200]


# -- users made by the administrator (ApiUserControllerBase) -----------------------------------


def test_admin_creates_users_as_gitbucket_does(gitbucket: GitBucketDouble) -> None:
    password = "a-long-clone-password-" * 2  # over the web form's 20 characters
    body = {"login": "jenkins", "password": password, "email": "jenkins@example.com"}
    created = api(gitbucket, "POST", "/admin/users", json=body)
    assert created.status_code == 200
    user = created.json()
    assert (user["login"], user["type"], user["site_admin"]) == ("jenkins", "User", False)
    assert user["email"] == "jenkins@example.com"
    assert (user["id"], user["avatar_url"]) == (0, f"{gitbucket.url}/jenkins/_avatar")
    assert "password" not in user
    # The API hashes whatever password it gets: no 20-character cap, and it signs in at once.
    me = api(gitbucket, "GET", "/user", auth=("jenkins", password))
    assert me.json()["login"] == "jenkins"

    # A duplicate name or mail address breaks ACCOUNT's keys: 500, nothing changes.
    for duplicate in (dict(body, email="other@example.com"), dict(body, login="other")):
        response = api(gitbucket, "POST", "/admin/users", json=duplicate)
        assert response.status_code == 500
        assert response.json() == {"message": "Internal Server Error"}
    # login, password and email are required; a body without one yields nothing: empty 200.
    for missing in ("login", "password", "email"):
        partial = dict(body, login="x", email="x@example.com")
        del partial[missing]
        response = api(gitbucket, "POST", "/admin/users", json=partial)
        assert (response.status_code, response.content) == (200, b"")
    # No body and no JSON content type: the JSON parser throws, 500.
    bare = requests.post(f"{gitbucket.url}/api/v3/admin/users", auth=ROOT, timeout=10)
    assert bare.status_code == 500
    # Administrators only: a user and nobody both get 401.
    other = dict(body, login="y", email="y@example.com")
    assert_requires_authentication(
        api(gitbucket, "POST", "/admin/users", auth=("jenkins", password), json=other)
    )
    assert_requires_authentication(api(gitbucket, "POST", "/admin/users", auth=None, json=other))
    assert gitbucket.users == {"root": "root", "jenkins": password}
    assert gitbucket.calls["create_user"] == 9


# -- collaborators (ApiRepositoryCollaboratorControllerBase) -----------------------------------


def test_collaborators_api_with_pygithub(gitbucket: GitBucketDouble) -> None:
    for login in ("jenkins", "dev", "ops"):
        create_user(gitbucket, login, f"{login}-pw")
    repo = client(gitbucket).get_user().create_repo("demo", private=True)

    # PUT {"permission": "pull"} stores the GUEST role and answers 204 with no body, so
    # PyGithub returns None (GitHub would answer 201 with an invitation).
    assert repo.add_to_collaborators("jenkins", permission="pull") is None
    put = api(gitbucket, "PUT", "/repos/root/demo/collaborators/dev", json={"permission": "push"})
    assert (put.status_code, put.content) == (204, b"")
    assert gitbucket.collaborators == {"root/demo": {"jenkins": "GUEST", "dev": "DEVELOPER"}}
    # The listing holds collaborators only: not the owner.
    assert [u.login for u in repo.get_collaborators()] == ["dev", "jenkins"]
    assert repo.has_in_collaborators("jenkins") and not repo.has_in_collaborators("root")
    assert not repo.has_in_collaborators("nobody")
    # The permission endpoint answers the stored role, not GitHub's read/write/admin, and has no
    # role_name (PyGithub's get_collaborator_role_name fails on it).
    assert repo.get_collaborator_permission("jenkins") == "GUEST"
    assert repo.get_collaborator_permission("dev") == "DEVELOPER"
    with pytest.raises(KeyError):
        repo.get_collaborator_role_name("jenkins")
    permission = api(gitbucket, "GET", "/repos/root/demo/collaborators/jenkins/permission")
    assert permission.json()["user"]["login"] == "jenkins"
    assert set(permission.json()) == {"permission", "user"}
    assert (
        api(gitbucket, "GET", "/repos/root/demo/collaborators/root/permission").status_code == 404
    )

    # PUT is a plain insert: a second one, whatever the permission, breaks the key (500) and the
    # role stays; changing a role takes DELETE then PUT.
    with pytest.raises(github.GithubException) as caught:
        repo.add_to_collaborators("jenkins", permission="admin")
    assert caught.value.status == 500
    # No body (PyGithub's default; GitHub would default to push): the JSON parser throws, 500.
    with pytest.raises(github.GithubException) as caught:
        repo.add_to_collaborators("ops")
    assert caught.value.status == 500
    # A permission other than pull/push/admin does not extract: an empty 200 and nothing stored,
    # which PyGithub takes for success.
    assert repo.add_to_collaborators("ops", permission="maintain") is None
    for body in ({"permission": "write"}, {"permission": "PULL"}, {}):
        ignored = api(gitbucket, "PUT", "/repos/root/demo/collaborators/ops", json=body)
        assert (ignored.status_code, ignored.content) == (200, b"")
    # An unknown user breaks the foreign key to ACCOUNT: 500.
    unknown = api(
        gitbucket, "PUT", "/repos/root/demo/collaborators/nobody", json={"permission": "pull"}
    )
    assert unknown.status_code == 500
    assert gitbucket.collaborators == {"root/demo": {"jenkins": "GUEST", "dev": "DEVELOPER"}}

    # Only the owner, administrators, group managers and ADMIN collaborators change them: the
    # others get 401 even when signed in. An unknown repository answers 404.
    for login in ("jenkins", "dev"):
        auth = (login, f"{login}-pw")
        path = "/repos/root/demo/collaborators/ops"
        assert_requires_authentication(
            api(gitbucket, "PUT", path, auth=auth, json={"permission": "pull"})
        )
        assert_requires_authentication(api(gitbucket, "DELETE", path, auth=auth))
    missing = api(
        gitbucket, "PUT", "/repos/root/none/collaborators/ops", json={"permission": "pull"}
    )
    assert (missing.status_code, missing.json()) == (404, {"message": "Not Found"})

    # DELETE answers 204 whether or not there was such a collaborator.
    repo.remove_from_collaborators("dev")
    assert not repo.has_in_collaborators("dev")
    gone = api(gitbucket, "DELETE", "/repos/root/demo/collaborators/nobody")
    assert (gone.status_code, gone.content) == (204, b"")

    # An ADMIN collaborator may manage the collaborators.
    admin = api(
        gitbucket, "PUT", "/repos/root/demo/collaborators/ops", json={"permission": "admin"}
    )
    assert admin.status_code == 204
    by_ops = api(
        gitbucket,
        "PUT",
        "/repos/root/demo/collaborators/dev",
        auth=("ops", "ops-pw"),
        json={"permission": "pull"},
    )
    assert by_ops.status_code == 204
    assert gitbucket.collaborators == {
        "root/demo": {"jenkins": "GUEST", "ops": "ADMIN", "dev": "GUEST"}
    }
    assert gitbucket.calls["add_collaborator"] == 14
    assert gitbucket.calls["remove_collaborator"] == 4


def test_what_collaborators_may_do_with_a_private_repository(
    gitbucket: GitBucketDouble, work: Path, tmp_path: Path
) -> None:
    for login in ("jenkins", "dev", "stranger"):
        create_user(gitbucket, login, f"{login}-pw")
    client(gitbucket).get_user().create_repo("demo", private=True)
    git(work, "push", remote(gitbucket, "root/demo"), "main")
    repo = client(gitbucket).get_repo("root/demo")
    repo.add_to_collaborators("jenkins", permission="pull")
    repo.add_to_collaborators("dev", permission="push")

    # API: collaborators read it; a signed-in stranger and nobody get 401 (not 404); an unknown
    # repository is 404.
    assert client_as(gitbucket, "jenkins", "jenkins-pw").get_repo("root/demo").private is True
    for login in ("jenkins", "dev"):
        auth = (login, f"{login}-pw")
        assert api(gitbucket, "GET", "/repos/root/demo", auth=auth).status_code == 200
    stranger = ("stranger", "stranger-pw")
    assert_requires_authentication(api(gitbucket, "GET", "/repos/root/demo", auth=stranger))
    assert_requires_authentication(api(gitbucket, "GET", "/repos/root/demo", auth=None))
    assert_requires_authentication(
        api(gitbucket, "GET", "/repos/root/demo/collaborators", auth=stranger)
    )
    assert api(gitbucket, "GET", "/repos/root/none", auth=stranger).status_code == 404
    mine = api(gitbucket, "GET", "/users/root/repos", auth=("jenkins", "jenkins-pw")).json()
    assert [r["full_name"] for r in mine] == ["root/demo"]
    assert api(gitbucket, "GET", "/users/root/repos", auth=stranger).json() == []

    # git: the pull collaborator clones; the stranger and nobody are refused with 401.
    clone = tmp_path / "jenkins-clone"
    git(
        tmp_path,
        "clone",
        "-q",
        remote_as(gitbucket, "root/demo", "jenkins", "jenkins-pw"),
        str(clone),
    )
    assert rev(clone) == rev(work)
    assert_git_refused(git_probe(gitbucket, "root/demo", "git-upload-pack", auth=stranger))
    assert_git_refused(git_probe(gitbucket, "root/demo", "git-upload-pack"))
    refused = git(
        tmp_path,
        "clone",
        remote_as(gitbucket, "root/demo", "stranger", "stranger-pw"),
        "stranger",
        check=False,
    )
    assert refused.returncode != 0 and "Authentication failed" in refused.stderr

    # The pull collaborator cannot push: the receive-pack advertisement answers 401 with the
    # challenge, so git reports failed authentication; nothing reaches the repository.
    auth = ("jenkins", "jenkins-pw")
    assert git_probe(gitbucket, "root/demo", "git-upload-pack", auth=auth).status_code == 200
    assert_git_refused(git_probe(gitbucket, "root/demo", "git-receive-pack", auth=auth))
    (clone / "ci.txt").write_text("from jenkins\n")
    git(clone, "add", "ci.txt")
    git(clone, "commit", "-q", "-m", "not allowed")
    pushes = gitbucket.calls["push"]
    denied = git(clone, "push", "origin", "HEAD:main", check=False)
    assert denied.returncode != 0 and "Authentication failed" in denied.stderr
    assert gitbucket.calls["push"] == pushes

    # The push collaborator pushes, and (writableUsersOnly) may add hooks; pull may only list.
    dev_url = remote_as(gitbucket, "root/demo", "dev", "dev-pw")
    assert git(clone, "push", dev_url, "HEAD:main").returncode == 0
    branches = api(gitbucket, "GET", "/repos/root/demo/branches").json()
    assert branches == [{"name": "main", "commit": {"sha": rev(clone)}}]
    hook = {"config": {"url": "http://a.example/hook", "content_type": "json"}}
    assert_requires_authentication(
        api(gitbucket, "POST", "/repos/root/demo/hooks", auth=auth, json=hook)
    )
    assert (
        api(
            gitbucket, "POST", "/repos/root/demo/hooks", auth=("dev", "dev-pw"), json=hook
        ).status_code
        == 200
    )
    assert len(api(gitbucket, "GET", "/repos/root/demo/hooks", auth=auth).json()) == 1

    # Removing the collaborator takes the access away again.
    repo.remove_from_collaborators("jenkins")
    assert_git_refused(git_probe(gitbucket, "root/demo", "git-upload-pack", auth=auth))


def test_removing_a_user_drops_its_collaborations(gitbucket: GitBucketDouble) -> None:
    create_user(gitbucket, "jenkins", "jenkins-pw")
    make_repo(gitbucket)
    put = api(
        gitbucket, "PUT", "/repos/root/demo/collaborators/jenkins", json={"permission": "pull"}
    )
    assert put.status_code == 204
    web = requests.Session()
    web.post(f"{gitbucket.url}/signin", data={"userName": "root", "password": "root"})
    form = {
        "userName": "jenkins",
        "fullName": "jenkins",
        "mailAddress": "jenkins@example.com",
        "isAdmin": "false",
        "removed": "true",
    }
    edited = web.post(
        f"{gitbucket.url}/admin/users/jenkins/_edituser", data=form, allow_redirects=False
    )
    assert edited.status_code == 302
    assert gitbucket.collaborators == {}
    assert api(gitbucket, "GET", "/repos/root/demo/collaborators").json() == []
    assert api(gitbucket, "GET", "/user", auth=("jenkins", "jenkins-pw")).status_code == 401


def test_collaborators_on_an_organisation_repository(
    gitbucket: GitBucketDouble, work: Path, tmp_path: Path
) -> None:
    for login in ("lead", "dev", "ci", "tester", "outsider"):
        create_user(gitbucket, login, f"{login}-pw")
    org = {"login": "mlci", "admin": "root"}
    assert api(gitbucket, "POST", "/admin/organizations", json=org).status_code == 200
    gitbucket.add_member("mlci", "lead", manager=True)
    gitbucket.add_member("mlci", "dev")
    assert (
        api(
            gitbucket, "POST", "/orgs/mlci/repos", json={"name": "service", "private": True}
        ).status_code
        == 200
    )
    collaborators = "/repos/mlci/service/collaborators"

    # Every member has the developer role: a plain member pushes without being a collaborator.
    git(work, "push", remote_as(gitbucket, "mlci/service", "dev", "dev-pw"), "main")
    # Managing collaborators is for managers: a plain member gets 401, a manager may.
    pull = {"permission": "pull"}
    assert_requires_authentication(
        api(gitbucket, "PUT", f"{collaborators}/ci", auth=("dev", "dev-pw"), json=pull)
    )
    added = api(gitbucket, "PUT", f"{collaborators}/ci", auth=("lead", "lead-pw"), json=pull)
    assert added.status_code == 204

    # The pull collaborator reads and clones, and cannot push; an outsider gets 401 everywhere.
    ci = ("ci", "ci-pw")
    assert api(gitbucket, "GET", "/repos/mlci/service", auth=ci).status_code == 200
    clone = tmp_path / "ci-clone"
    git(tmp_path, "clone", "-q", remote_as(gitbucket, "mlci/service", *ci), str(clone))
    assert rev(clone) == rev(work)
    assert_git_refused(git_probe(gitbucket, "mlci/service", "git-receive-pack", auth=ci))
    outsider = ("outsider", "outsider-pw")
    assert_requires_authentication(api(gitbucket, "GET", "/repos/mlci/service", auth=outsider))
    assert_git_refused(git_probe(gitbucket, "mlci/service", "git-upload-pack", auth=outsider))

    # A group can be a collaborator: its members get the role (and are listed, the group is
    # not); the permission endpoint knows only the group's own row.
    team = {"login": "qa", "admin": "tester"}
    assert api(gitbucket, "POST", "/admin/organizations", json=team).status_code == 200
    push = {"permission": "push"}
    assert api(gitbucket, "PUT", f"{collaborators}/qa", json=push).status_code == 204
    listed = client(gitbucket).get_repo("mlci/service").get_collaborators()
    assert [u.login for u in listed] == ["ci", "tester"]
    assert api(gitbucket, "GET", f"{collaborators}/tester").status_code == 204
    assert api(gitbucket, "GET", f"{collaborators}/qa").status_code == 404
    assert api(gitbucket, "GET", f"{collaborators}/qa/permission").json()["permission"] == (
        "DEVELOPER"
    )
    assert api(gitbucket, "GET", f"{collaborators}/tester/permission").status_code == 404
    tester = ("tester", "tester-pw")
    assert git_probe(gitbucket, "mlci/service", "git-receive-pack", auth=tester).status_code == 200


# -- anonymous access off (PreProcessController, GitAuthenticationFilter) ----------------------


@pytest.fixture
def closed_gitbucket() -> Iterator[GitBucketDouble]:
    double = GitBucketDouble(allow_anonymous_access=False)
    double.start()
    try:
        yield double
    finally:
        double.stop()


def test_anonymous_reads_of_a_public_repository_work_by_default(
    gitbucket: GitBucketDouble, work: Path, tmp_path: Path
) -> None:
    make_repo(gitbucket)
    git(work, "push", remote(gitbucket, "root/demo"), "main")
    assert api(gitbucket, "GET", "/repos/root/demo", auth=None).status_code == 200
    assert requests.get(f"{gitbucket.url}/root/demo", timeout=10).status_code == 200
    anonymous = git(tmp_path, "clone", "-q", remote_as(gitbucket, "root/demo"), "anon")
    assert anonymous.returncode == 0


def test_anonymous_access_off(
    closed_gitbucket: GitBucketDouble, work: Path, tmp_path: Path
) -> None:
    gb = closed_gitbucket
    make_repo(gb)  # public
    assert (
        api(gb, "POST", "/user/repos", json={"name": "secret", "private": True}).status_code == 200
    )
    git(work, "push", remote(gb, "root/demo"), "main")
    create_user(gb, "reader", "reader-pw")
    reader = ("reader", "reader-pw")

    # API: every anonymous GET under /api/v3/ answers 401 before any route, for a public
    # repository too, and even where the route would answer 404.
    for path in ("/repos/root/demo", "/repos/root/secret", "/users", "/users/root", "/no/such"):
        assert_requires_authentication(api(gb, "GET", path, auth=None))
    # The API root lies outside "/api/v3/*": the web's bare 401.
    root = requests.get(f"{gb.url}/api/v3", timeout=10)
    assert (root.status_code, root.content) == (401, b"")
    # Only GETs are filtered: other methods reach their routes (here the catch-all 404).
    deleted = api(gb, "DELETE", "/no/such", auth=None)
    assert (deleted.status_code, deleted.json()) == (404, {"message": "Not Found"})
    assert api(gb, "GET", "/user", auth=("reader", "wrong")).text == (
        '{ "message": "Bad credentials" }'
    )
    # With credentials everything reads as before; any user may read a public repository.
    assert client_as(gb, *reader).get_repo("root/demo").full_name == "root/demo"
    assert api(gb, "GET", "/users", auth=reader).status_code == 200
    assert_requires_authentication(api(gb, "GET", "/repos/root/secret", auth=reader))

    # Web: the sign-in page stays open; other pages answer a bare 401 (a redirect to the
    # sign-in page for browsers); POST /signin still works and its session reads.
    assert requests.get(f"{gb.url}/signin", timeout=10).status_code == 200
    for path in ("/", "/root/demo", "/signout"):
        page = requests.get(f"{gb.url}{path}", timeout=10, allow_redirects=False)
        assert (page.status_code, page.content) == (401, b""), path
    browser = requests.get(
        f"{gb.url}/root/demo",
        headers={"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"},
        timeout=10,
        allow_redirects=False,
    )
    assert browser.status_code == 302
    assert browser.headers["Location"] == f"{gb.url}/signin?redirect=%2Froot%2Fdemo"
    web = requests.Session()
    web.post(f"{gb.url}/signin", data={"userName": "reader", "password": "reader-pw"})
    assert web.get(f"{gb.url}/root/demo", timeout=10).status_code == 200

    # git: an anonymous clone of the public repository is refused (401 and the challenge);
    # any signed-in user clones it; the private one still needs a role.
    assert_git_refused(git_probe(gb, "root/demo", "git-upload-pack"))
    anonymous = git(tmp_path, "clone", remote_as(gb, "root/demo"), "anon", check=False)
    assert anonymous.returncode != 0
    assert not (tmp_path / "anon" / "app.py").exists()
    clone = tmp_path / "reader-clone"
    git(tmp_path, "clone", "-q", remote_as(gb, "root/demo", *reader), str(clone))
    assert rev(clone) == rev(work)
    assert_git_refused(git_probe(gb, "root/secret", "git-upload-pack", auth=reader))
    # An unknown repository is 404 before any authentication.
    assert git_probe(gb, "root/none", "git-upload-pack").status_code == 404


# -- deletion pushes (CommitLogHook, WebHookService) -------------------------------------------


def test_deleting_a_branch_or_a_tag_sends_one_push_with_zero_after(
    gitbucket: GitBucketDouble, receiver: Receiver, work: Path
) -> None:
    make_repo(gitbucket)
    add_hook(
        gitbucket, receiver.url, ["push", "create", "delete"], content_type="json", secret=SECRET
    )
    origin = remote(gitbucket, "root/demo")
    git(work, "push", origin, "main")
    git(work, "checkout", "-q", "-b", "feature")
    (work / "feature.txt").write_text("feature\n")
    git(work, "add", "feature.txt")
    git(work, "commit", "-q", "-m", "feature work")
    git(work, "push", origin, "feature")
    git(work, "tag", "-a", "v1", "-m", "release 1", "main")
    git(work, "push", origin, "v1")
    git(work, "tag", "light", "main")
    git(work, "push", origin, "light")
    created = gitbucket.settle_deliveries()
    # Creating a ref, tags included: push first, then create.
    assert [d.event for d in created] == ["push", "create"] * 4
    assert [d.payload["ref"] for d in created[6:]] == ["refs/tags/light"] * 2
    assert created[6].payload["after"] == rev(work, "main")  # a lightweight tag: the commit

    feature, tag = rev(work, "feature"), rev(work, "v1")
    assert tag != rev(work, "main")  # an annotated tag's id is the tag object's
    git(work, "push", origin, ":refs/heads/feature")
    git(work, "push", origin, ":refs/tags/v1")
    deliveries = gitbucket.settle_deliveries()
    # One push per deletion; no create and no delete event, though the hook asks for both.
    assert [d.event for d in deliveries[8:]] == ["push", "push"]
    base = f"http://127.0.0.1:{gitbucket.port}"
    for delivery, ref, before in zip(
        deliveries[8:], ("refs/heads/feature", "refs/tags/v1"), (feature, tag), strict=True
    ):
        payload = delivery.payload
        assert set(payload) == {
            "pusher",
            "sender",
            "ref",
            "before",
            "after",
            "commits",
            "repository",
            "compare",
        }  # no head_commit (no commits), no created/deleted/forced flags
        assert (payload["ref"], payload["before"], payload["after"]) == (ref, before, "0" * 40)
        assert payload["commits"] == []
        assert payload["compare"] == f"{base}/root/demo"
        assert payload["pusher"] == {"name": "root", "email": "root@localhost"}
        assert delivery.headers["X-Github-Event"] == "push"
        assert_signed(delivery)
    # The receiver got exactly those bytes, with signatures over them.
    for delivery, (path, headers, body) in zip(deliveries[8:], receiver.received[8:], strict=True):
        assert path == "/hook" and body == delivery.body
        key = SECRET.encode()
        assert headers["X-Hub-Signature"] == "sha1=" + hmac.new(key, body, hashlib.sha1).hexdigest()
        assert headers["X-Hub-Signature-256"] == (
            "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()
        )
    assert len(receiver.received) == 10
    assert api(gitbucket, "GET", "/repos/root/demo/branches").json() == [
        {"name": "main", "commit": {"sha": rev(work, "main")}}
    ]
