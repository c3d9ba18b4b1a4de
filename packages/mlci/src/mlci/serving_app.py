"""One serving slot: a model version behind MLflow's scoring server, with Prometheus metrics.

``invoke deploy`` runs one slot per model version (blue or green, a container or a local
process) and points the deployment's proxy (services/serving/proxy.py) at it once its smoke
test passed. A slot serves MLflow's own scoring app unchanged (``/ping``, ``/health``,
``/version``, ``/invocations`` in MLflow's scoring protocol) and adds ``GET /metrics``: the
``mlci_serving_*`` series the stack's Prometheus scrapes and its dashboard reads.

    python -m mlci.serving_app --model-dir DIR --model-name NAME --version N --slot SLOT \\
        --host H --port P [--model-uri models:/NAME/N]

With ``--model-uri`` the slot first downloads that model from the tracking server
(MLFLOW_TRACKING_URI, with MLFLOW_TRACKING_USERNAME / _PASSWORD when it asks for a login)
into ``--model-dir``, unless the folder already holds it: how a replica of the Kubernetes
``model-serving`` Deployment (services/kubernetes/) gets the version it serves.

SIGTERM stops it gracefully: no new connections, the requests in flight are answered (for at
most ``--graceful-timeout`` seconds), then it exits 0.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from typing import Any

INVOCATIONS = "/invocations"

#: Latency buckets (seconds) of ``mlci_serving_request_seconds``: fine below a second, where
#: the deploy's smoke test puts its p95 limit, coarse up to MLflow's own request timeout.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

#: Buckets of ``mlci_serving_prediction_value``. A slot does not know its regressor's range,
#: so they cover 0.01 to 50,000 in 1-2.5-5 steps. None is negative: Prometheus' client drops a
#: histogram's ``_sum`` when one is, and the dashboard's mean prediction is _sum / _count
#: (negative values count in ``le="0.0"`` and in the sum).
VALUE_BUCKETS = (0.0, *(m * 10.0**e for e in range(-2, 5) for m in (1, 2.5, 5)))

#: How long a slot keeps an idle keep-alive connection open. Longer than the proxy keeps an
#: idle connection in its pool (4 s), so the proxy never sends a request on a connection the
#: slot has just closed.
KEEP_ALIVE_SECONDS = 30


class SlotMetrics:
    """The ``mlci_serving_*`` series of one slot, in a registry of its own."""

    def __init__(self, model_name: str, version: str, slot: str) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry(auto_describe=True)
        self.labels = {"model": model_name, "version": version}
        labelnames = ("model", "version")
        self.requests = Counter(
            "mlci_serving_requests_total",
            "/invocations requests by HTTP status code",
            (*labelnames, "status"),
            registry=self.registry,
        )
        self.errors = Counter(
            "mlci_serving_errors_total",
            "/invocations requests answered with status >= 400",
            labelnames,
            registry=self.registry,
        )
        self.latency = Histogram(
            "mlci_serving_request_seconds",
            "/invocations latency in seconds",
            labelnames,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.classes = Counter(
            "mlci_serving_predictions_total",
            "predictions by predicted class (classifiers)",
            (*labelnames, "class"),
            registry=self.registry,
        )
        self.values = Histogram(
            "mlci_serving_prediction_value",
            "predicted values (regressors)",
            labelnames,
            buckets=VALUE_BUCKETS,
            registry=self.registry,
        )
        info = Gauge(
            "mlci_serving_model_info",
            "the model version this slot serves (always 1)",
            (*labelnames, "slot"),
            registry=self.registry,
        )
        info.labels(**self.labels, slot=slot).set(1)
        # Zero series from the start, so that rate() and "no errors yet" read as 0, not absent.
        self.errors.labels(**self.labels)
        self.latency.labels(**self.labels)

    def observe(self, status: int, seconds: float, body: bytes) -> None:
        """Count one answered /invocations request; ``body`` is its response (200s only)."""
        self.requests.labels(**self.labels, status=str(status)).inc()
        if status >= 400:
            self.errors.labels(**self.labels).inc()
        self.latency.labels(**self.labels).observe(seconds)
        for prediction in predictions_of(body):
            if isinstance(prediction, bool):
                self.classes.labels(**self.labels, **{"class": str(prediction).lower()}).inc()
            elif isinstance(prediction, int | str):
                self.classes.labels(**self.labels, **{"class": str(prediction)}).inc()
            elif isinstance(prediction, float):
                self.values.labels(**self.labels).observe(prediction)

    def exposition(self) -> tuple[bytes, str]:
        """The registry in Prometheus' text format, and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def predictions_of(body: bytes) -> list[Any]:
    """The scalar predictions of a scoring response ``{"predictions": [...]}``.

    A model that answers one column per row (``[[3], [1]]`` or ``[{"y": 3}]``) counts as its
    scalars; anything else (several outputs per row, LLM answers) is not counted.
    """
    if not body:
        return []
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return []
    predictions = document.get("predictions") if isinstance(document, dict) else None
    if not isinstance(predictions, list):
        return []
    scalars = []
    for item in predictions:
        if isinstance(item, list) and len(item) == 1:
            item = item[0]
        elif isinstance(item, dict) and len(item) == 1:
            item = next(iter(item.values()))
        if isinstance(item, bool | int | float | str):
            scalars.append(item)
    return scalars


class InvocationsMetrics:
    """ASGI middleware: status, latency and predictions of every ``POST /invocations``.

    It sits outside MLflow's app and only watches what passes: the status line, and the body
    of a successful answer for its predictions. A request that fails inside the app without
    an answer counts as the 500 the server then sends.
    """

    def __init__(self, app: Any, metrics: SlotMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != INVOCATIONS:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        chunks: list[bytes] = []

        async def watch(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and status == 200:
                chunks.append(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            self.metrics.observe(status, time.perf_counter() - started, b"".join(chunks))


def build_app(model: Any, model_name: str, version: str, slot: str) -> Any:
    """MLflow's scoring app for ``model`` with the slot's metrics and ``GET /metrics``."""
    from fastapi.responses import Response
    from mlflow.pyfunc import scoring_server

    app = scoring_server.init(model)
    metrics = SlotMetrics(model_name, str(version), slot)
    app.state.slot_metrics = metrics

    async def prometheus_metrics() -> Response:
        body, content_type = metrics.exposition()
        return Response(content=body, media_type=content_type)

    app.add_api_route("/metrics", prometheus_metrics, methods=["GET"])

    app.add_middleware(InvocationsMetrics, metrics=metrics)
    return app


def fetch_model(model_uri: str, model_dir: str) -> None:
    """Download ``model_uri`` into ``model_dir`` (nothing to do when it holds a model)."""
    from pathlib import Path

    from mlci.deployment import download_model_uri
    from mlci.errors import ServingError

    started = time.monotonic()
    try:
        download_model_uri(model_uri, Path(model_dir), None, model_uri)
    # The tracking client raises MlflowException, requests' errors or OSError for a server
    # that is away, a login that is refused or a version that does not exist.
    except Exception as exc:
        from mlci.errors import MlciError

        if isinstance(exc, MlciError):
            raise
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ServingError(
            f"could not download {model_uri}",
            reason,
            "check MLFLOW_TRACKING_URI, the login (MLFLOW_TRACKING_USERNAME / _PASSWORD) and "
            "that the version exists",
        ) from None
    seconds = time.monotonic() - started
    print(f"serving: {model_uri} in {model_dir} ({seconds:.1f} s)", file=sys.stderr, flush=True)


def load_model(model_dir: str) -> Any:
    """``mlflow.pyfunc.load_model(model_dir)``; a folder that does not load is a ConfigError."""
    from mlci.errors import ConfigError

    try:
        import mlflow.pyfunc

        return mlflow.pyfunc.load_model(model_dir)
    # A model's own loader may raise anything (a missing file, an unpickling error, a flavor
    # whose library is not installed); each means the same to the slot: nothing to serve.
    except Exception as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(
            f"the model in {model_dir} could not be loaded",
            reason,
            "pass --model-dir an MLflow model folder (the one with the MLmodel file) whose "
            "flavor's library is installed here",
        ) from exc


def parser() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(
        prog="python -m mlci.serving_app",
        description="Serve one model version (a deployment slot) with MLflow's scoring "
        "protocol and Prometheus metrics on /metrics.",
    )
    cli.add_argument("--model-dir", required=True, help="MLflow model folder (with MLmodel)")
    cli.add_argument(
        "--model-uri",
        default="",
        help="download this MLflow model (models:/NAME/VERSION) into --model-dir first, "
        "from MLFLOW_TRACKING_URI",
    )
    cli.add_argument("--model-name", required=True, help="registered model name (a label)")
    cli.add_argument("--version", required=True, help="model version (a label)")
    cli.add_argument("--slot", required=True, help="deployment slot, e.g. blue or green")
    cli.add_argument("--host", default="127.0.0.1", help="address to listen on")
    cli.add_argument("--port", type=int, default=8000, help="port to listen on")
    cli.add_argument(
        "--graceful-timeout",
        type=float,
        default=30.0,
        help="seconds the requests in flight may take after SIGTERM (default 30)",
    )
    return cli


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)

    from mlci.errors import MlciError
    from mlci.servers import disable_mlflow_telemetry

    disable_mlflow_telemetry()  # before mlflow is imported (see mlci.servers)
    try:
        if args.model_uri:
            fetch_model(args.model_uri, args.model_dir)
        model = load_model(args.model_dir)
    except MlciError as exc:
        print(f"{type(exc).__name__}: {exc.what}: {exc.why} ({exc.fix})", file=sys.stderr)
        return exc.exit_code

    import uvicorn

    app = build_app(model, args.model_name, args.version, args.slot)
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        timeout_graceful_shutdown=args.graceful_timeout,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        access_log=False,
        log_level="info",
    )
    # uvicorn drains on SIGTERM/SIGINT, restores the handlers it found and sends the signal
    # again; with these the drained slot then ends with 0 instead of dying by the signal.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _exit_drained)
    uvicorn.Server(config).run()
    return 0


def _exit_drained(signum: int, frame: Any) -> None:
    raise SystemExit(0)


if __name__ == "__main__":
    raise SystemExit(main())
