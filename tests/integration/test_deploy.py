"""serve and deploy against a real `mlflow server`, with real slot processes and the real proxy.

One registered model goes through the story a team lives: v1 is promoted and deployed; v2 wins
promotion, but its deploy fails the smoke test (a latency limit no server meets), so traffic
stays on v1 and the champion goes back to v1 with the reason in the alias history; v2 is then
promoted again and deployed. A constant request stream runs through the proxy across both
deploys and must see no failed request.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter

import pytest

from mlci import deployment
from mlci.errors import StageFailed
from mlci.servers import free_port, poll
from mlci.stages import deploy, promote

from .conftest import REPO_ROOT, make_context, train_and_promote

pytestmark = pytest.mark.integration

MEDIUM = {"estimator": "random_forest", "n_estimators": 2, "max_depth": 2, "seed": 3}
STRONG = {"estimator": "random_forest", "n_estimators": 200, "seed": 42}


def _post(url: str, body: dict, timeout: float = 30.0) -> tuple[int, dict, dict]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers or {}), {}


class Stream:
    """Clients posting the input example through the proxy in a loop, counting answers."""

    def __init__(self, url: str, body: dict, clients: int = 3) -> None:
        self.url, self.body = url, body
        self.counts: Counter[str] = Counter()
        self.versions: Counter[str] = Counter()
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(clients)]

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                status, headers, _ = _post(self.url + "/invocations", self.body)
                version = {k.lower(): v for k, v in headers.items()}.get("x-mlci-served-version")
            except OSError as exc:
                status, version = 0, None
                with self._lock:
                    self.errors.append(str(exc))
            with self._lock:
                self.counts["ok" if status == 200 else "failed"] += 1
                if version:
                    self.versions[version] += 1

    def __enter__(self) -> Stream:
        for thread in self._threads:
            thread.start()
        return self

    def snapshot(self) -> tuple[Counter, Counter]:
        with self._lock:
            return Counter(self.counts), Counter(self.versions)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)


def _wait_for_ping(url: str, proc: subprocess.Popen[str], what: str) -> None:
    """Wait (up to 120 s) until ``url`` answers /ping; the process's output if it exits first."""

    def answered() -> bool:
        if deployment.answers(url + "/ping"):
            return True
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        return False

    assert poll(answered, bool, 120, 0.25), f"{what} did not answer /ping"


def _served(proxy_url: str) -> str | None:
    return deployment.Proxy(proxy_url, "").served_version()


@pytest.fixture(scope="module")
def deployed(tmp_path_factory, mlflow_server):
    """A registered model with v1 promoted and deployed locally (process slots)."""
    tmp = tmp_path_factory.mktemp("deploy")
    model = f"deploy-{uuid.uuid4().hex[:8]}"
    port = free_port()
    settings = {
        "serving.runtime": "process",
        "serving.port": port,
        "serving.smoke_requests": 10,
        "serving.smoke_p95_ms": 5000.0,
    }
    _, first, _ = train_and_promote(tmp, mlflow_server, model, MEDIUM)
    assert first.details["champion_after"] == "1", first.summary
    ctx, lines = make_context(
        tmp,
        **{
            "mlflow.tracking_uri": mlflow_server,
            "mlflow.registered_model": model,
            "mlflow.experiment": model,
            **settings,
        },
    )
    try:
        with ctx:
            result = deploy.deploy(ctx)
        assert result.status == "passed", lines
        yield {"tmp": tmp, "model": model, "port": port, "settings": settings, "ctx": ctx}
    finally:
        deployment.stop_local(ctx.settings, model, lambda: None)


def _example_body(tmp, model: str) -> dict:
    folder = deployment.model_folder(make_context(tmp)[0].settings, model, "1")
    example = deployment.input_example(folder)
    return {"dataframe_split": json.loads(example.to_json(orient="split", index=False))}


def test_first_deploy_serves_the_champion_through_the_proxy(deployed, mlflow_server):
    import mlflow.pyfunc
    import pandas as pd

    url = f"http://127.0.0.1:{deployed['port']}"
    assert _served(url) == "1"
    body = _example_body(deployed["tmp"], deployed["model"])
    status, _, answer = _post(url + "/invocations", body)
    assert status == 200
    frame = pd.DataFrame(**body["dataframe_split"])
    expected = mlflow.pyfunc.load_model(f"models:/{deployed['model']}/1").predict(frame)
    assert answer["predictions"] == list(expected)
    status = deployment.Proxy(url, "").status()
    assert (status["version"], status["slot"]) == ("1", "blue")


def test_deploys_under_a_request_stream(deployed, mlflow_server):
    """A failed smoke test keeps traffic and gives the alias back; a good deploy switches.
    Neither loses a request."""
    from mlflow import MlflowClient

    from mlci import registry

    tmp, model = deployed["tmp"], deployed["model"]
    url = f"http://127.0.0.1:{deployed['port']}"
    client = MlflowClient(mlflow_server, registry_uri=mlflow_server)
    _, second, _ = train_and_promote(tmp, mlflow_server, model, STRONG)
    assert second.details["champion_after"] == "2", second.summary
    common = {
        "mlflow.tracking_uri": mlflow_server,
        "mlflow.registered_model": model,
        "mlflow.experiment": model,
        **deployed["settings"],
    }
    body = _example_body(tmp, model)

    with Stream(url, body) as stream:
        while stream.snapshot()[0]["ok"] < 20:
            time.sleep(0.1)
        # 1. v2 is the champion, but no server meets a 0.001 ms p95: the deploy fails.
        ctx, lines = make_context(tmp, **{**common, "serving.smoke_p95_ms": 0.001})
        with ctx, pytest.raises(StageFailed) as failed:
            deploy.deploy(ctx)
        during_failed, _ = stream.snapshot()
        assert "failed its smoke test" in failed.value.what
        assert "traffic stays on v1" in failed.value.what
        assert _served(url) == "1"
        assert str(client.get_model_version_by_alias(model, "champion").version) == "1"
        last = registry.history(client, model)[-1]
        assert (last["kind"], last["from"], last["to"]) == ("rollback", "2", "1")
        assert "deploy of v2 failed its smoke test" in last["reason"]
        assert "p95 latency" in last["reason"]
        report = json.loads((tmp / "reports" / "models" / "wine" / "deploy.json").read_text())
        assert report["outcome"].startswith("smoke test failed")

        # 2. v2 wins promotion again and deploys: switch, drain, old slot stopped.
        ctx, lines = make_context(tmp, **common)
        with ctx:
            assert promote.run(ctx).details["champion_after"] == "2"
            result = deploy.deploy(ctx)
        assert result.status == "passed", lines
        before = stream.snapshot()[0]["ok"]
        while stream.snapshot()[0]["ok"] < before + 20:
            time.sleep(0.1)
    counts, versions = stream.snapshot()
    print(
        f"\nrequest stream: {dict(counts)}, by served version: {dict(versions)}; "
        f"at the failed deploy's end: {dict(during_failed)}"
    )
    assert stream.errors == []
    assert counts["failed"] == 0, counts
    assert versions["1"] > 0 and versions["2"] > 0, versions
    assert _served(url) == "2"
    status = deployment.Proxy(url, "").status()
    assert (status["version"], status["slot"]) == ("2", "green")
    facts = deployment.read_local(ctx.settings, model)
    assert set(facts["slots"]) == {"green"}, facts


def test_a_deploy_of_what_serves_changes_nothing(deployed, mlflow_server):
    ctx, _ = make_context(
        deployed["tmp"],
        **{
            "mlflow.tracking_uri": mlflow_server,
            "mlflow.registered_model": deployed["model"],
            "mlflow.experiment": deployed["model"],
            **deployed["settings"],
        },
    )
    with ctx:
        before = deployment.Proxy(f"http://127.0.0.1:{deployed['port']}", "").status()
        result = deploy.deploy(ctx)
    assert result.summary.endswith("already serves"), result.summary
    after = deployment.Proxy(f"http://127.0.0.1:{deployed['port']}", "").status()
    assert after["switched_at"] == before["switched_at"]


def test_the_pipeline_stage_skips_without_a_deployment(tmp_path, mlflow_server):
    ctx, _ = make_context(tmp_path, **{"mlflow.tracking_uri": mlflow_server})
    with ctx:
        result = deploy.run(ctx)
    assert result.status == "skipped"
    assert "no deployment runs here" in result.summary


def test_invoke_serve_answers_like_pyfunc(deployed, mlflow_server, tmp_path):
    """`invoke serve` (the real task, a foreground process) serves the champion; Ctrl-C stops it."""
    import mlflow.pyfunc
    import pandas as pd

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLCI_")}
    env.update(
        MLCI_PROJECT_ROOT=str(REPO_ROOT),
        MLCI_MODEL="wine",
        MLCI_MLFLOW_TRACKING_URI=mlflow_server,
        MLCI_MLFLOW_REGISTERED_MODEL=deployed["model"],
        MLCI_REPORTS_DIR=str(tmp_path / "reports"),
        MLCI_STATE_DIR=str(tmp_path / "state"),
        MLCI_SERVING_RUNTIME="process",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "invoke", "serve", "--port", str(port)],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_for_ping(url, proc, "invoke serve")
        champion = deployment.Proxy(f"http://127.0.0.1:{deployed['port']}", "").status()
        body = _example_body(deployed["tmp"], deployed["model"])
        status, _, answer = _post(url + "/invocations", body)
        frame = pd.DataFrame(**body["dataframe_split"])
        version = champion["version"]
        expected = mlflow.pyfunc.load_model(f"models:/{deployed['model']}/{version}").predict(frame)
        assert status == 200
        assert answer["predictions"] == list(expected)
        with urllib.request.urlopen(url + "/metrics", timeout=10) as resp:
            metrics = resp.read().decode()
        assert f'version="{version}"' in metrics
        os.killpg(proc.pid, signal.SIGINT)
        output, _ = proc.communicate(timeout=60)
        assert f"v{version} at {url}" in output
        assert "Traceback" not in output
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def test_a_replica_downloads_its_version_by_model_uri(deployed, mlflow_server, tmp_path):
    """The Kubernetes model-serving replica's command: --model-uri into an empty --model-dir,
    then the same answers as the version itself; a version that does not exist is one line."""
    import mlflow.pyfunc
    import pandas as pd

    model, port = deployed["model"], free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLCI_", "MLFLOW_"))}
    env.update(MLFLOW_TRACKING_URI=mlflow_server, MLFLOW_DISABLE_TELEMETRY="true")
    argv = [
        sys.executable,
        "-m",
        "mlci.serving_app",
        "--model-dir",
        str(tmp_path / "models"),
        "--model-name",
        model,
        "--version",
        "1",
        "--slot",
        "replica-0",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    missing = subprocess.run(
        [*argv, "--model-uri", f"models:/{model}/99"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode == 3, missing.stderr
    assert "ServingError: could not download models:/" in missing.stderr
    assert "Traceback" not in missing.stderr
    assert not (tmp_path / "models").exists()  # nothing half-downloaded left behind

    proc = subprocess.Popen(
        [*argv, "--model-uri", f"models:/{model}/1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_for_ping(url, proc, "the replica")
        assert (tmp_path / "models" / "MLmodel").is_file()
        body = _example_body(deployed["tmp"], model)
        status, _, answer = _post(url + "/invocations", body)
        frame = pd.DataFrame(**body["dataframe_split"])
        expected = mlflow.pyfunc.load_model(f"models:/{model}/1").predict(frame)
        assert status == 200
        assert answer["predictions"] == list(expected)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, output
    assert f"serving: models:/{model}/1 in " in output


def _two_versions(ctx, model: str, uri: str) -> tuple[str, str]:
    """Two versions of ``model`` (one is trained when only one exists)."""
    from mlflow import MlflowClient

    from mlci.stages import train

    def versions() -> list[str]:
        found = MlflowClient(uri, registry_uri=uri).search_model_versions(f"name='{model}'")
        return sorted((str(v.version) for v in found), key=int)

    if len(versions()) < 2:
        train.run(ctx)
    return tuple(versions()[:2])


@pytest.mark.docker
def test_slots_run_in_the_model_image(deployed, mlflow_server, tmp_path, docker_engine):
    """The same deploy with slots in containers of the model's image (the real engine)."""
    import docker

    from mlci.stages import image
    from mlci.stages.image import docker_client

    from .conftest import BASE_IMAGE

    port = free_port()
    common = {
        "mlflow.tracking_uri": mlflow_server,
        "mlflow.registered_model": deployed["model"],
        "mlflow.experiment": deployed["model"],
        "serving.runtime": "docker",
        "serving.port": port,
        "serving.smoke_p95_ms": 5000.0,
        "image.base_image": BASE_IMAGE,
        "image.network": "host",
    }
    ctx, lines = make_context(tmp_path, **common)
    try:
        with ctx:
            assert image.run(ctx).status == "passed"
            first, second = _two_versions(ctx, deployed["model"], mlflow_server)
            result = deploy.deploy(ctx, version=first)
        assert result.status == "passed", lines
        assert result.details["runtime"] == "docker"
        url = f"http://127.0.0.1:{port}"
        version = result.details["version"]
        body = _example_body(deployed["tmp"], deployed["model"])
        status, _, answer = _post(url + "/invocations", body)
        assert status == 200 and answer["predictions"], answer
        engine = docker.from_env(timeout=30)
        running = engine.containers.list(filters={"label": "org.mlci.role=serving-slot"})
        names = {c.name: c.labels["org.mlci.version"] for c in running}
        assert names.get(f"mlci-serving-{deployed['model']}-blue") == version, names
        # Another version into the green container while clients call: none sees a failure.
        with Stream(url, body) as stream:
            while stream.snapshot()[0]["ok"] < 10:
                time.sleep(0.1)
            with ctx:
                again = deploy.deploy(ctx, version=second)
            before = stream.snapshot()[0]["ok"]
            while stream.snapshot()[0]["ok"] < before + 10:
                time.sleep(0.1)
        counts, versions = stream.snapshot()
        print(f"\nrequest stream (docker slots): {dict(counts)}, by version: {dict(versions)}")
        assert again.status == "passed" and counts["failed"] == 0, (counts, lines)
        assert versions[first] > 0 and versions[second] > 0, versions
        running = engine.containers.list(filters={"label": "org.mlci.role=serving-slot"})
        names = {c.name for c in running if c.name.startswith(f"mlci-serving-{deployed['model']}")}
        assert names == {f"mlci-serving-{deployed['model']}-green"}, names
    finally:
        stopped = deployment.stop_local(ctx.settings, deployed["model"], lambda: docker_client(60))
    assert any(s.startswith("slot green") for s in stopped), stopped
    engine = docker.from_env(timeout=30)
    left = engine.containers.list(
        all=True, filters={"label": f"org.mlci.model={deployed['model']}"}
    )
    assert left == []
