"""The MLflow image's entrypoint, run for real: replicas that start together on an empty database.

services/mlflow/entrypoint.sh is what the platform's `mlflow` container (Compose) and every
tracking replica (Kubernetes) runs. Here three copies start at the same moment on one new
PostgreSQL database with the basic-auth app, as three replicas of a fresh deployment would.
Without prepare_db.py's advisory lock two of them die with "relation ... already exists"
(MLflow guards table creation with a lock file in the local temporary folder only); with it,
all three serve, share one schema and one admin user, and no password is on a command line.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from mlci import servers

from .conftest import REPO_ROOT, _postgres_running

pytestmark = pytest.mark.integration

ENTRYPOINT = REPO_ROOT / "services" / "mlflow" / "entrypoint.sh"
PREPARE = REPO_ROOT / "services" / "mlflow" / "prepare_db.py"
REPLICAS = 3


def _psql(statement: str, database: str = "postgres") -> None:
    subprocess.run(
        ["runuser", "-u", "postgres", "--", "psql", "-q", "-d", database, "-c", statement],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip


@pytest.fixture
def empty_database():
    if not _postgres_running():
        if os.environ.get("CI"):
            pytest.fail("CI must provide PostgreSQL (.ci/provision starts it)")
        pytest.skip("no PostgreSQL cluster online (run .ci/provision)")
    suffix = secrets.token_hex(4)
    role, database, password = f"mlci_{suffix}", f"mlflow_{suffix}", secrets.token_urlsafe(18)
    # CREATEDB: the entrypoint creates the auth app's database next to the tracking one, as
    # the platform's database owner (POSTGRES_USER of the mlflow-db service) may.
    _psql(f"create role {role} login createdb password '{password}'")
    _psql(f"create database {database} owner {role}")
    try:
        yield role, database, password
    finally:
        for statement in (
            f"drop database if exists {database}_auth",
            f"drop database if exists {database}",
            f"drop role if exists {role}",
        ):
            subprocess.run(
                ["runuser", "-u", "postgres", "--", "psql", "-q", "-c", statement],
                check=False, capture_output=True, timeout=60,
            )  # fmt: skip


def test_three_replicas_start_together_on_an_empty_database(tmp_path, empty_database):
    role, database, password = empty_database
    admin_password = secrets.token_urlsafe(18)
    venv_bin = str(Path(sys.executable).parent)
    ports = [servers.free_port() for _ in range(REPLICAS)]
    procs: list[subprocess.Popen] = []
    logs = [tmp_path / f"replica-{i}.log" for i in range(REPLICAS)]
    base_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MLCI_"))},
        "PATH": f"{venv_bin}:{os.environ['PATH']}",  # `python` and `mlflow` of this venv
        "MLFLOW_DB_HOST": "127.0.0.1",
        "MLFLOW_DB_NAME": database,
        "MLFLOW_DB_USER": role,
        "MLFLOW_DB_PASSWORD": password,
        "MLFLOW_ARTIFACTS_DESTINATION": str(tmp_path / "artifacts"),
        "MLFLOW_AUTH": "basic",
        "MLFLOW_ADMIN_USERNAME": "admin",
        "MLFLOW_ADMIN_PASSWORD": admin_password,
        "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16),
        "MLFLOW_WORKERS": "1",
        "MLFLOW_HOST": "127.0.0.1",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLCI_MLFLOW_PREPARE": str(PREPARE),
    }
    try:
        for i, (port, log) in enumerate(zip(ports, logs, strict=True)):
            env = {
                **base_env,
                "MLFLOW_PORT": str(port),
                "MLFLOW_ALLOWED_HOSTS": f"127.0.0.1:{port},localhost:{port}",
                # MLflow's periodic server jobs on exactly one replica
                "MLFLOW_SERVER_JOB_ENABLE_PERIODIC_TASKS": "true" if i == 0 else "false",
            }
            with open(log, "wb") as out:
                procs.append(subprocess.Popen(
                    ["bash", str(ENTRYPOINT)], env=env, stdout=out, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL, start_new_session=True,
                ))  # fmt: skip
        deadline = time.monotonic() + 240
        pending = set(range(REPLICAS))
        while pending and time.monotonic() < deadline:
            for i in sorted(pending):
                assert procs[i].poll() is None, (
                    f"replica {i} exited ({procs[i].returncode}):\n{logs[i].read_text()[-3000:]}"
                )
                with contextlib.suppress(requests.RequestException):
                    if requests.get(f"http://127.0.0.1:{ports[i]}/health", timeout=2).ok:
                        pending.discard(i)
            time.sleep(0.5)
        assert not pending, f"replicas {sorted(pending)} not healthy after 240 s"

        texts = [log.read_text() for log in logs]
        assert not any("already exists" in t for t in texts), "\n---\n".join(texts)
        assert sum("mlflow prepare: schema ready" in t for t in texts) == REPLICAS
        # one replica created the auth database; the others found it
        assert sum("created database" in t for t in texts) == 1
        for port in ports:
            # the same admin user, with the generated password, on every replica
            answer = requests.get(
                f"http://127.0.0.1:{port}/api/2.0/mlflow/users/get",
                params={"username": "admin"}, auth=("admin", admin_password), timeout=10,
            )  # fmt: skip
            assert answer.status_code == 200, answer.text
            assert answer.json()["user"]["is_admin"] is True
            refused = requests.get(f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search",
                                   params={"max_results": 1}, timeout=10)  # fmt: skip
            assert refused.status_code == 401
        # an experiment made through one replica is seen through the others: one store
        made = requests.post(
            f"http://127.0.0.1:{ports[0]}/api/2.0/mlflow/experiments/create",
            json={"name": "through-replica-0"}, auth=("admin", admin_password), timeout=10,
        )  # fmt: skip
        assert made.status_code == 200, made.text
        for port in ports[1:]:
            seen = requests.get(
                f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/get-by-name",
                params={"experiment_name": "through-replica-0"},
                auth=("admin", admin_password), timeout=10,
            )  # fmt: skip
            assert seen.status_code == 200, seen.text
        # no password on any command line of the replicas' process trees
        for proc in procs:
            for pid in _tree(proc.pid):
                with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
                    assert password not in cmdline and admin_password not in cmdline
    finally:
        for proc in procs:
            servers.stop_process_group(proc)


def _tree(root: int) -> list[int]:
    """``root`` and its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found
