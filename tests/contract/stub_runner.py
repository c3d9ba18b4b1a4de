"""Running jenkins_dsl_stub.groovy from the contract tests that build with it (--exec)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

STUB = Path(__file__).resolve().parent / "jenkins_dsl_stub.groovy"
# Debian's groovy (2.4) needs JAVA_HOME; this is the JDK it runs on.
JAVA_HOME = Path("/usr/lib/jvm/java-17-openjdk-amd64")


def require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{tool} is not on PATH; CI installs it for the Jenkinsfile contract")
        pytest.skip(f"{tool} is not on PATH (apt-get install {tool}; CI installs it)")
    return path


def run_stub(*options: str) -> subprocess.CompletedProcess[str]:
    """The stub with ``options``, in a short-lived JVM (C1 only, serial GC: faster starts)."""
    groovy = require("groovy")
    env = dict(os.environ)
    if JAVA_HOME.is_dir():
        env["JAVA_HOME"] = str(JAVA_HOME)
    env.setdefault("JAVA_OPTS", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")
    return subprocess.run(
        [groovy, str(STUB), *options], capture_output=True, text=True, env=env,
        timeout=180, check=False,
    )  # fmt: skip


def git(*args: str, cwd: Path) -> str:
    identity = ["-c", "user.name=t", "-c", "user.email=t@example.org"]
    return subprocess.run(
        ["git", *identity, *args], cwd=cwd, capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()
