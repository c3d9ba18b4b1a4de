"""The smoke test a new slot must pass before it gets traffic."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from mlci.deployment.client import http
from mlci.deployment.model_files import expected_outputs, input_example


@dataclass
class Smoke:
    requests: int
    failures: int
    rows: int
    p50_ms: float
    p95_ms: float
    limit_ms: float
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems

    def line(self) -> str:
        return (
            f"{self.requests - self.failures}/{self.requests} answered, {self.rows} rows each, "
            f"p50 {self.p50_ms:.1f} ms, p95 {self.p95_ms:.1f} ms (limit {self.limit_ms:.0f} ms)"
        )


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def smoke_test(url: str, model_dir: Path, requests: int, limit_ms: float, timeout: float) -> Smoke:
    """The input example through the slot ``requests`` times: every answer 200, one
    prediction per row of the declared output shape, the p95 latency within the limit."""
    example = input_example(model_dir)
    if example is None:
        return Smoke(0, 0, 0, 0.0, 0.0, limit_ms, ["the version has no input example to send"])
    body = {"dataframe_split": json.loads(example.to_json(orient="split", index=False))}
    columns = expected_outputs(model_dir)
    times: list[float] = []
    problems: list[str] = []
    failures = 0
    for _ in range(requests):
        started = time.perf_counter()
        try:
            status, _, raw = http("POST", url + "/invocations", body=body, timeout=timeout)
        except OSError as exc:
            status, raw = 0, str(exc).encode()
        times.append((time.perf_counter() - started) * 1000)
        shape_problem = None if status != 200 else _shape_problem(raw, len(example), columns)
        if status != 200 or shape_problem:
            failures += 1
            if len(problems) < 3:
                problems.append(
                    shape_problem or f"HTTP {status}: {raw[:200].decode(errors='replace')}"
                )
    p50, p95 = _percentile(times, 0.5), _percentile(times, 0.95)
    smoke = Smoke(requests, failures, len(example), p50, p95, limit_ms, problems)
    if smoke.p95_ms > limit_ms:
        smoke.problems.append(
            f"p95 latency {smoke.p95_ms:.1f} ms is above serving.smoke_p95_ms ({limit_ms:.0f} ms)"
        )
    return smoke


def _shape_problem(raw: bytes, rows: int, columns: int | None) -> str | None:
    try:
        predictions = json.loads(raw)["predictions"]
    except (ValueError, KeyError, TypeError):
        return f"the answer is not MLflow's {{'predictions': ...}}: {raw[:120]!r}"
    if len(predictions) != rows:
        return f"{len(predictions)} predictions for {rows} rows"
    first = predictions[0] if predictions else None
    width = len(first) if isinstance(first, list | dict) else 1
    if columns is not None and width != columns:
        return f"predictions have {width} columns; the signature declares {columns}"
    return None
