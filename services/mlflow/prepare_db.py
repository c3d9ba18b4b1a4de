"""Creates or upgrades MLflow's database schemas once, however many servers start together.

mlci's MLflow image runs this before `mlflow server` (services/mlflow/entrypoint.sh). With one
server it only saves a little start time; with several replicas of the tracking server on one
PostgreSQL (Kubernetes, services/kubernetes/) it is what lets them start at the same moment:
MLflow creates its tables when it finds an empty database and guards that only with a file
lock in the local temporary folder, which replicas on other machines (or in other containers)
never see, so all but one of them fail with "relation ... already exists" on a first start.
Here every replica takes the same PostgreSQL advisory lock first, so one creates the schema
and the others find it done. The lock is a session lock: it goes away with the connection,
also when this process is killed.

Environment:
  MLFLOW_BACKEND_STORE_URI        the tracking store (postgresql+psycopg://user[:pw]@host/db?...)
  MLCI_MLFLOW_AUTH_DATABASE_URI   optional: the basic-auth app's database, created when missing
  PGPASSWORD                      the password, when the URIs carry none

Exit status 0 when both schemas are at MLflow's current revision, 1 with a one-line reason.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from urllib.parse import urlsplit, urlunsplit

# One fixed advisory-lock key for "mlci: MLflow schema" (any 64-bit number both sides agree on).
LOCK_KEY = 0x6D6C6369_736368  # "mlci" "sch"
CONNECT_TIMEOUT = 10
LOCK_TIMEOUT_S = 600


def libpq_uri(sqlalchemy_uri: str, database: str | None = None) -> str:
    """The libpq form of a SQLAlchemy PostgreSQL URI, optionally naming another database."""
    parts = urlsplit(sqlalchemy_uri)
    if not parts.scheme.startswith("postgresql"):
        raise ValueError(f"not a PostgreSQL URI (scheme {parts.scheme!r})")
    path = f"/{database}" if database is not None else parts.path
    return urlunsplit(("postgresql", parts.netloc, path, parts.query, ""))


def database_name(uri: str) -> str:
    return urlsplit(uri).path.lstrip("/")


def ensure_database(tracking_uri: str, auth_uri: str) -> None:
    """Create the auth app's database next to the tracking one when it is missing."""
    import psycopg
    from psycopg import sql

    name = database_name(auth_uri)
    with psycopg.connect(
        libpq_uri(tracking_uri), autocommit=True, connect_timeout=CONNECT_TIMEOUT
    ) as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if found is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            print(f"mlflow prepare: created database {name}", flush=True)


def prepare(tracking_uri: str, auth_uri: str | None) -> None:
    import psycopg

    # Imported before the lock is taken (a few seconds), so that the lock is held only while
    # the schema is looked at or made.
    from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore as AuthStore
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    with psycopg.connect(
        libpq_uri(tracking_uri), autocommit=True, connect_timeout=CONNECT_TIMEOUT
    ) as conn:
        started = time.monotonic()
        # A bounded wait: a replica that hangs here is better told than left silent.
        conn.execute(f"SET lock_timeout = '{LOCK_TIMEOUT_S}s'")
        conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        waited = time.monotonic() - started
        try:
            if auth_uri:
                ensure_database(tracking_uri, auth_uri)
                AuthStore().init_db(auth_uri)  # runs the auth app's migrations when needed
            # Creating the store creates the tables on an empty database and checks the
            # revision of an existing one; the artifact root is not used here.
            store = SqlAlchemyStore(tracking_uri, tempfile.gettempdir())
            store.engine.dispose()
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
    print(f"mlflow prepare: schema ready (waited {waited:.1f} s for other replicas)", flush=True)


def main() -> int:
    tracking_uri = os.environ.get("MLFLOW_BACKEND_STORE_URI", "")
    if not tracking_uri.startswith("postgresql"):
        # Only PostgreSQL needs it (SQLite and files serve one server only).
        print("mlflow prepare: not a PostgreSQL backend store; nothing to prepare", flush=True)
        return 0
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    try:
        prepare(tracking_uri, os.environ.get("MLCI_MLFLOW_AUTH_DATABASE_URI") or None)
    except Exception as exc:  # one line for the container log; the URI (a secret) is not shown
        print(f"mlflow prepare: {type(exc).__name__}: {exc}".splitlines()[0], file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
