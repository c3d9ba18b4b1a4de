"""The history of alias moves, kept on the registered model itself.

Every alias move is recorded as a registered-model tag ``mlci.history.NNNNNN`` (JSON, with
``kind`` promotion or rollback). A rollback replays that history as a stack (a promotion
pushes the champion it replaced, a rollback pops it), so rollbacks walk back one promotion
at a time.
"""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime
from typing import Any

HISTORY_PREFIX = "mlci.history."
PREVIOUS = "previous"
PROMOTION, ROLLBACK = "promotion", "rollback"


def history(client: Any, model: str) -> list[dict[str, Any]]:
    """The recorded moves of ``model``'s aliases, oldest first (unreadable entries skipped)."""
    tags = client.get_registered_model(model).tags
    entries = []
    for key in sorted(k for k in tags if k.startswith(HISTORY_PREFIX)):
        with contextlib.suppress(ValueError):
            entries.append(json.loads(tags[key]))
    return entries


def record_move(client: Any, model: str, entry: dict[str, Any]) -> None:
    """Append one alias move; called under the lease, so the sequence number is safe."""
    tags = client.get_registered_model(model).tags
    seq = 1 + sum(1 for k in tags if k.startswith(HISTORY_PREFIX))
    entry = {"at": datetime.now(UTC).isoformat(timespec="seconds"), **entry}
    client.set_registered_model_tag(model, f"{HISTORY_PREFIX}{seq:06d}", json.dumps(entry))


def _is_rollback(entry: dict[str, Any]) -> bool:
    # entries written before "kind" existed mark a rollback by its reason
    kind = entry.get("kind", ROLLBACK if entry.get("reason") == "rollback" else "")
    return bool(kind == ROLLBACK)


def replay(entries: list[dict[str, Any]], alias: str) -> tuple[str | None, list[str]]:
    """The holder of ``alias`` per its history, and the stack of champions to go back to.

    A promotion pushes the version it replaced; a rollback pops it. A rollback that does
    not go to the top of the stack (the one-step toggle of older mlci versions) counts as
    a plain move.
    """
    current: str | None = None
    stack: list[str] = []
    for entry in entries:
        if entry.get("alias") != alias:
            continue
        before = None if entry.get("from") is None else str(entry["from"])
        after = str(entry.get("to"))
        if _is_rollback(entry) and stack and stack[-1] == after:
            stack.pop()
        elif before is not None and before != after:
            stack.append(before)
        current = after
    return current, stack
