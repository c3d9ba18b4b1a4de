"""Per-step metrics sent in batches: one request per many values, not one per value.

A training loop reports every step through :meth:`MetricBuffer.add`; the buffer flushes
with one ``log_batch`` call when it holds ``max_values`` values or ``max_seconds`` have
passed, and once more at the end. MLflow accepts at most 1,000 metrics per batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

MLFLOW_BATCH_LIMIT = 1000


class MetricBuffer:
    def __init__(
        self,
        client: Any,
        run_id: str,
        *,
        max_values: int = MLFLOW_BATCH_LIMIT,
        max_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.run_id = run_id
        self.max_values = min(max_values, MLFLOW_BATCH_LIMIT)
        self.max_seconds = max_seconds
        self.clock = clock
        self.pending: list[Any] = []
        self.last_flush = clock()
        self.requests = 0
        self.values = 0
        self.seconds = 0.0  # time spent sending: the cost of logging during training

    def add(self, step: int, metrics: Mapping[str, float]) -> None:
        from mlflow.entities import Metric

        now_ms = int(time.time() * 1000)
        self.pending += [Metric(k, float(v), now_ms, int(step)) for k, v in metrics.items()]
        if (
            len(self.pending) >= self.max_values
            or self.clock() - self.last_flush >= self.max_seconds
        ):
            self.flush()

    def flush(self) -> None:
        while self.pending:
            chunk, self.pending = self.pending[: self.max_values], self.pending[self.max_values :]
            started = self.clock()
            self.client.log_batch(self.run_id, metrics=chunk)
            self.seconds += self.clock() - started
            self.requests += 1
            self.values += len(chunk)
        self.last_flush = self.clock()
