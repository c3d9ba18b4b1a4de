"""The lock of a promotion lease: a registered model whose creation is the lease itself.

These are the small reads and writes :mod:`mlci.registry.lease` builds its protocol from:
the lock's name and tags, reading and deleting it, and the name of a break marker.
"""

from __future__ import annotations

import hashlib
import os
import socket
import uuid
from datetime import UTC, datetime
from typing import Any

LOCK_SUFFIX = ".mlci-lock"
BREAK_INFIX = ".break."
OWNER_TAG, EXPIRES_TAG = "mlci.lock_owner", "mlci.lock_expires"
# Under contention a create may also answer RESOURCE_DOES_NOT_EXIST (a create racing a
# delete of the same name): both mean "read who holds it and go on from there".
CONTENDED = ("RESOURCE_ALREADY_EXISTS", "RESOURCE_DOES_NOT_EXIST")


def new_owner() -> str:
    """Who holds a lease: host, process and a random part, readable in the registry UI."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def error_code(exc: BaseException) -> str:
    """MLflow's error code of ``exc`` (``RESOURCE_DOES_NOT_EXIST`` ...), or ""."""
    return str(getattr(exc, "error_code", "") or "")


def stamp(when: float) -> str:
    """An expiry as the lock's tag holds it."""
    return f"{when:.3f}"


def utc(when: float) -> str:
    """A time of day for messages, in UTC (agents may sit in different time zones)."""
    return f"{datetime.fromtimestamp(when, UTC):%H:%M:%S}"


def owner_of(holder: Any) -> str | None:
    """The owner tag of a lock (or marker) as read; None when there is none."""
    return None if holder is None else holder.tags.get(OWNER_TAG)


def expiry_of(holder: Any) -> float:
    """The expiry of a lock (or marker) as read; 0 (long expired) when unreadable."""
    try:
        return float(holder.tags.get(EXPIRES_TAG, "0") or 0)
    except ValueError:
        return 0.0


def short(exc: BaseException) -> str:
    """One line of an error, for the log."""
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return " ".join(str(text).split())[:300]


def read_lock(client: Any, lock: str) -> Any | None:
    """The registered model ``lock``, or None when it does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_registered_model(lock)
    except MlflowException as exc:
        if error_code(exc) == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise


def delete(client: Any, name: str) -> None:
    """Delete the registered model ``name``; one that is gone already is no error."""
    from mlflow.exceptions import MlflowException

    try:
        client.delete_registered_model(name)
    except MlflowException as exc:
        if error_code(exc) != "RESOURCE_DOES_NOT_EXIST":
            raise


def break_marker(lock: str, owner: str, expires: str, generation: int) -> str:
    """The registered model whose creation is the right to break one lease instance: the
    lock held by ``owner`` with the expiry tag ``expires`` (as read), ``generation`` 1, 2, ...
    (a next generation once a marker's own breaker died)."""
    key = hashlib.sha256(f"{owner}\n{expires}".encode()).hexdigest()[:16]
    return f"{lock}{BREAK_INFIX}{key}.{generation}"
