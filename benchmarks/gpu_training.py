"""Benchmark ``gpu_training``: CPU epoch time / GPU epoch time of the PyTorch MLP.

Usage, from the repository root with the project's environment active:

    python benchmarks/gpu_training.py            # the measurement (needs a CUDA device)
    python benchmarks/gpu_training.py --smoke    # CPU against CPU on a small workload

The workload is fixed: the wine training split, repeated and jittered deterministically
to ``--rows`` rows (default 200,000), trained with the package's ``TorchMLPClassifier``
(hidden 512, batch 1,024). Each repeat fits a fresh model for one warm-up epoch, which
is not timed, plus ``--epochs`` timed epochs; an epoch's time runs from the end of the
previous epoch to the end of this one, with ``torch.cuda.synchronize()`` before each
clock reading on the GPU. The figure is the median CPU epoch time over all repeats
divided by the median GPU epoch time; CPU and GPU repeats alternate.

It also measures the share of the GPU training time spent logging: one more GPU fit
reports held-out ``loss``, ``accuracy`` and ``f1_macro`` after every epoch to a local
MLflow file store through ``MlflowClient.log_batch``, buffered like mlci's MetricBuffer
(one request per 1,000 values or 5 s, and one at the end); the time inside the
buffer's calls over the time of the whole fit is the share. Without mlflow the share is
reported as not measured.

Exit status: 0 when the ratio was measured (whether or not the goal is met; the result
is written to ``benchmarks/results/gpu_training.json``), 2 when it could not be (no
PyTorch or no CUDA device; nothing is written). ``--smoke`` exits 0 and writes nothing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

NAME = "gpu_training"
UNIT = "x"
GOAL = 10.0
BETTER = "higher"
ROOT = Path(__file__).resolve().parents[1]
RESULT_FILE = ROOT / "benchmarks" / "results" / f"{NAME}.json"
PACKAGE_SRC = ROOT / "packages" / "wine-classifier" / "src"

#: How mlci's MetricBuffer batches per-step metrics (MLflow takes 1,000 per request).
BATCH_VALUES = 1000
BATCH_SECONDS = 5.0


def not_measured(reason: str) -> int:
    print(f"{NAME}: not measured: {reason}")
    return 2


def import_package() -> Any:
    """The wine_classifier package: installed, or else from this source tree."""
    try:
        import wine_classifier.torch_mlp
    except ImportError:
        sys.path.insert(0, str(PACKAGE_SRC))
        for name in [m for m in sys.modules if m.split(".")[0] == "wine_classifier"]:
            del sys.modules[name]
        import wine_classifier.torch_mlp
    return wine_classifier


def workload(package: Any, rows: int, held_out_rows: int) -> tuple[Any, ...]:
    """Training and held-out sets grown from the wine split: repeated rows plus noise.

    Rows are drawn with a fixed seed and jittered by 5 % of each feature's standard
    deviation, so every run trains on the same data. Held-out rows come from the held-out
    part of the split only.
    """
    import numpy as np

    split = package.load_split(test_size=0.25, seed=42)
    rng = np.random.default_rng(2024)
    spread = split.X_train.std(axis=0)

    def grow(X: np.ndarray, y: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        index = rng.integers(0, len(X), size=n)
        noise = rng.normal(scale=0.05, size=(n, X.shape[1])) * spread
        return X[index] + noise, y[index]

    X, y = grow(split.X_train, split.y_train, rows)
    X_val, y_val = grow(split.X_test, split.y_test, held_out_rows)
    return X, y, X_val, y_val


def epoch_times(package: Any, device: str, X: Any, y: Any, args: argparse.Namespace) -> list[float]:
    """Seconds of each timed epoch of one fresh fit (the warm-up epoch left out)."""
    import torch

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    ticks: list[float] = []

    def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
        sync()
        ticks.append(time.perf_counter())

    model = package.torch_mlp.TorchMLPClassifier(
        hidden=args.hidden,
        epochs=1 + args.epochs,
        batch_size=args.batch_size,
        lr=0.01,
        device=device,
        seed=0,
    )
    sync()
    model.fit(X, y, on_epoch=on_epoch)
    return [b - a for a, b in itertools.pairwise(ticks)]


class LoggingBuffer:
    """Per-epoch metrics sent with ``MlflowClient.log_batch`` in batches, timed."""

    def __init__(self, client: Any, run_id: str) -> None:
        self.client = client
        self.run_id = run_id
        self.pending: list[Any] = []
        self.last_flush = time.monotonic()
        self.seconds = 0.0
        self.requests = 0
        self.values = 0

    def add(self, step: int, metrics: dict[str, float]) -> None:
        started = time.perf_counter()
        from mlflow.entities import Metric

        now_ms = int(time.time() * 1000)
        self.pending += [Metric(k, float(v), now_ms, step) for k, v in metrics.items()]
        if len(self.pending) >= BATCH_VALUES or time.monotonic() - self.last_flush >= BATCH_SECONDS:
            self._send()
        self.seconds += time.perf_counter() - started

    def flush(self) -> None:
        started = time.perf_counter()
        self._send()
        self.seconds += time.perf_counter() - started

    def _send(self) -> None:
        while self.pending:
            chunk, self.pending = self.pending[:BATCH_VALUES], self.pending[BATCH_VALUES:]
            self.client.log_batch(self.run_id, metrics=chunk)
            self.requests += 1
            self.values += len(chunk)
        self.last_flush = time.monotonic()


def logging_share(package: Any, device: str, data: tuple[Any, ...], args: argparse.Namespace):
    """Share of a fit's time spent logging per-epoch metrics to MLflow, or a reason why not."""
    try:
        from mlflow import MlflowClient
    except ImportError as exc:
        return {"share": None, "reason": f"mlflow is not importable ({exc})"}

    # MLflow 3 refuses a file store unless asked for one; it is the store that needs no
    # server or database on the GPU machine.
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    X, y, X_val, y_val = data
    with tempfile.TemporaryDirectory() as tmp:
        client = MlflowClient(tracking_uri=Path(tmp, "mlruns").as_uri())
        experiment = client.create_experiment(NAME)
        run_id = client.create_run(experiment).info.run_id
        buffer = LoggingBuffer(client, run_id)
        model = package.torch_mlp.TorchMLPClassifier(
            hidden=args.hidden,
            epochs=args.log_epochs,
            batch_size=args.batch_size,
            lr=0.01,
            device=device,
            seed=0,
        )
        started = time.perf_counter()
        model.fit(X, y, eval_set=(X_val, y_val), on_epoch=buffer.add)
        buffer.flush()
        total = time.perf_counter() - started
        logged = len(client.get_metric_history(run_id, "accuracy"))
        client.set_terminated(run_id)
    if logged != args.log_epochs:
        return {"share": None, "reason": f"{logged} of {args.log_epochs} epochs were logged"}
    return {
        "share": buffer.seconds / total,
        "logging_seconds": round(buffer.seconds, 4),
        "fit_seconds": round(total, 4),
        "epochs": args.log_epochs,
        "requests": buffer.requests,
        "values": buffer.values,
        "store": "local MLflow file store",
    }


def machine(torch: Any, gpu: str) -> str:
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
        mem = f"{memory:.0f} GiB memory"
    except (ValueError, OSError, AttributeError):
        mem = "memory unknown"
    return (
        f"{os.cpu_count()} cores ({torch.get_num_threads()} torch threads), {mem}, "
        f"GPU {gpu}, torch {torch.__version__}, CUDA {torch.version.cuda}, "
        f"Python {platform.python_version()}, {platform.platform(terse=True)}"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000, help="training rows (200000)")
    parser.add_argument("--hidden", type=int, default=512, help="hidden units (512)")
    parser.add_argument("--batch-size", type=int, default=1024, help="rows per step (1024)")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per repeat (3)")
    parser.add_argument("--repeats", type=int, default=3, help="fits per device (3)")
    parser.add_argument(
        "--log-epochs", type=int, default=20, help="epochs of the logging-share fit (20)"
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="check the script without a GPU: CPU against CPU, small workload, nothing written",
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.rows, args.hidden, args.log_epochs = min(args.rows, 20_000), 64, 5
    if args.repeats < 3 and not args.smoke:
        parser.error("--repeats must be at least 3 (the median of at least 3 repeats)")
    if min(args.rows, args.hidden, args.batch_size, args.epochs, args.log_epochs) < 1:
        parser.error("sizes and counts must be positive")
    return args


def table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import torch
    except ImportError:
        return not_measured("PyTorch is not installed (pip install 'wine-classifier[torch]')")
    if not args.smoke and not torch.cuda.is_available():
        build = (
            "a CPU-only build"
            if torch.version.cuda is None
            else f"built for CUDA {torch.version.cuda}, but it finds no usable device"
        )
        return not_measured(
            f"no CUDA device: torch {torch.__version__} is {build}; run it on a GPU machine"
        )

    package = import_package()
    fast = "cpu" if args.smoke else "cuda"
    gpu = "none (smoke run)" if args.smoke else torch.cuda.get_device_name(0)
    data = workload(package, args.rows, max(1, args.rows // 10))
    X, y = data[0], data[1]
    steps = -(-args.rows // args.batch_size)
    print(
        f"{NAME}: MLP 13-{args.hidden}-3 on {args.rows:,} rows, batch {args.batch_size} "
        f"({steps} steps/epoch); {args.repeats} repeats x (1 warm-up + {args.epochs} timed "
        f"epochs) per device; CPU vs {'CPU (smoke)' if args.smoke else gpu}"
    )

    runs: list[dict[str, Any]] = []
    cpu_epochs: list[float] = []
    fast_epochs: list[float] = []
    for repeat in range(1, args.repeats + 1):
        cpu = epoch_times(package, "cpu", X, y, args)
        other = epoch_times(package, fast, X, y, args)
        cpu_epochs += cpu
        fast_epochs += other
        runs.append(
            {
                "repeat": repeat,
                "cpu_epoch_seconds": [round(t, 5) for t in cpu],
                "gpu_epoch_seconds": [round(t, 5) for t in other],
                "ratio": round(statistics.median(cpu) / statistics.median(other), 3),
            }
        )

    cpu_median = statistics.median(cpu_epochs)
    fast_median = statistics.median(fast_epochs)
    value = cpu_median / fast_median
    logging = logging_share(package, fast, data, args)

    rows = [("repeat", "CPU s/epoch", "GPU s/epoch" if not args.smoke else "CPU' s/epoch", "ratio")]
    for run in runs:
        rows.append(
            (
                str(run["repeat"]),
                f"{statistics.median(run['cpu_epoch_seconds']):.4f}",
                f"{statistics.median(run['gpu_epoch_seconds']):.4f}",
                f"{run['ratio']:.2f}",
            )
        )
    rows.append(("median", f"{cpu_median:.4f}", f"{fast_median:.4f}", f"{value:.2f}"))
    print(table(rows))
    if logging["share"] is None:
        print(f"logging share: not measured ({logging['reason']})")
    else:
        print(
            f"logging share: {logging['share']:.2%} of a {logging['epochs']}-epoch fit "
            f"({logging['fit_seconds']:.3f} s) spent logging per-epoch metrics: "
            f"{logging['values']} values in {logging['requests']} log_batch request(s), "
            f"{logging['logging_seconds']:.4f} s, {logging['store']}"
        )

    if args.smoke:
        print(f"{NAME}: smoke run only (CPU against CPU), nothing written")
        return 0

    result = {
        "name": NAME,
        "value": round(value, 2),
        "unit": UNIT,
        "goal": GOAL,
        "better": BETTER,
        "runs": runs,
        "cpu_epoch_seconds": round(cpu_median, 5),
        "gpu_epoch_seconds": round(fast_median, 5),
        "workload": {
            "rows": args.rows,
            "features": int(X.shape[1]),
            "hidden": args.hidden,
            "batch_size": args.batch_size,
            "timed_epochs_per_repeat": args.epochs,
            "repeats": args.repeats,
        },
        "logging": {
            **logging,
            "share": None if logging["share"] is None else round(logging["share"], 5),
        },
        "machine": machine(torch, gpu),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    RESULT_FILE.parent.mkdir(parents=True, exist_ok=True)
    RESULT_FILE.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULT_FILE.relative_to(ROOT)}")
    print(f"{NAME}: {value:.1f} {UNIT} (goal >= {GOAL:g})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
