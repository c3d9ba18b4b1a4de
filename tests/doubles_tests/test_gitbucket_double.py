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
    missing_admin = api(gitbucket, "POST", "/admin/organizations", json={"login": "other"})
    assert missing_admin.status_code == 400
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
