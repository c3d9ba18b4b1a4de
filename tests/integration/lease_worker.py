"""One pipeline in the lease fault tests, as its own process: ``python lease_worker.py JSON``.

It imports everything first and signals ``ready`` (a file), waits for ``go`` (a file), takes
the promotion lease of ``model`` on ``uri`` and holds it ``hold`` seconds, and appends its
hold interval to ``record`` as one JSON line: {"owner", "start", "end"}. Every line the
lease logs goes to ``log`` (a file, one line each, flushed at once), so the test and other
workers can wait for a line instead of sleeping. With ``pause`` set, the breaker's hook
between its re-check and its delete touches ``pause["started"]``, waits until the file
``pause["until_file"]`` holds one of ``pause["until_lines"]``, then sleeps
``pause["seconds"]``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from mlflow import MlflowClient

from mlci import registry


def _wait_for(path: Path, texts: tuple[str, ...] = (), timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and (not texts or any(t in path.read_text() for t in texts)):
            return
        time.sleep(0.01)
    raise TimeoutError(f"{path} did not show {texts or 'up'} within {timeout:.0f} s")


def main(config: dict) -> int:
    client = MlflowClient(config["uri"], registry_uri=config["uri"])
    log_path = Path(config["log"])

    def log(line: str) -> None:
        with log_path.open("a") as f:
            f.write(line + "\n")

    def pause() -> None:
        spec = config.get("pause")
        if not spec:
            return
        Path(spec["started"]).touch()
        _wait_for(Path(spec["until_file"]), tuple(spec["until_lines"]))
        time.sleep(spec["seconds"])

    Path(config["ready"]).touch()
    _wait_for(Path(config["go"]))
    with registry.promotion_lease(
        client, config["model"], config["owner"], ttl=config["ttl"], wait=config["wait"],
        log=log, pause_before_break=pause,
    ):  # fmt: skip
        start = time.time()
        with Path(config["record"]).open("a") as f:
            f.write(json.dumps({"owner": config["owner"], "event": "start", "t": start}) + "\n")
        time.sleep(config["hold"])
        end = time.time()
        with Path(config["record"]).open("a") as f:
            f.write(json.dumps({"owner": config["owner"], "start": start, "end": end}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(json.loads(sys.argv[1])))
