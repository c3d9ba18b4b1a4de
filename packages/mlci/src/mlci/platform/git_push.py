"""Pushing a local repository's HEAD to GitBucket over HTTP without exposing the password.

git asks for the user name and password through ``GIT_ASKPASS``: a two-line script that
prints them from its environment. They never appear in a URL, an argument list, git's
configuration or its output. ``credential.helper`` is reset for these commands so that no
helper of the user's stores the platform's password. The push is skipped when the remote
branch already has the local commit (``git ls-remote``).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mlci.clients.gitbucket import GitBucketError
from mlci.errors import ConfigError, ToolMissing

Runner = Callable[..., subprocess.CompletedProcess[str]]
USER_VARIABLE = "GITBUCKET_PUSH_USERNAME"
PASSWORD_VARIABLE = "GITBUCKET_PUSH_PASSWORD"
ASKPASS_SCRIPT = f"""#!/bin/sh
case "$1" in
  [Uu]sername*) printf '%s\\n' "${USER_VARIABLE}" ;;
  *) printf '%s\\n' "${PASSWORD_VARIABLE}" ;;
esac
"""


@dataclass(frozen=True)
class PushResult:
    local: str
    remote_before: str | None
    pushed: bool


def _git(
    runner: Runner, args: list[str], cwd: Path, env: dict[str, str], timeout: float, step: str
) -> subprocess.CompletedProcess[str]:
    try:
        return runner(["git", *args], cwd, capture=True, timeout=timeout, env=env)
    except FileNotFoundError:
        raise ToolMissing(
            f"GitBucket: {step}: git is not installed",
            "the project is pushed to GitBucket with git",
            "install git and run `invoke platform.wire` again",
        ) from None
    except subprocess.TimeoutExpired:
        raise GitBucketError(
            f"GitBucket: {step}: git did not finish within {timeout:g} s",
            f"git {args[-3] if len(args) >= 3 else args[0]} hung",
            "check that GitBucket answers (invoke platform.status); raise MLCI_PLATFORM_TIMEOUT",
        ) from None


def _stderr(result: subprocess.CompletedProcess[str]) -> str:
    lines = [ln for ln in (result.stderr or "").splitlines() if ln.strip()]
    return " / ".join(lines[-3:])[:400]


def push_head(
    source: Path,
    remote_url: str,
    branch: str,
    user: str,
    password: str,
    runner: Runner,
    timeout: float,
) -> PushResult:
    """Push ``source``'s HEAD to ``branch`` of ``remote_url`` unless it is there already."""
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    step = f"pushing {source.name} to {branch}"
    head = _git(runner, ["rev-parse", "--verify", "HEAD^{commit}"], source, base_env, timeout, step)
    if head.returncode != 0:
        raise ConfigError(
            f"GitBucket: {step}: {source} has no commit to push",
            _stderr(head) or "git rev-parse HEAD failed",
            "run `invoke platform.wire` in a git checkout with at least one commit, or pass "
            "--source PATH",
        )
    local = head.stdout.strip()
    with tempfile.TemporaryDirectory(prefix="mlci-askpass-") as folder:
        script = Path(folder) / "askpass"
        script.write_text(ASKPASS_SCRIPT)
        script.chmod(0o700)
        env = {
            **base_env,
            "GIT_ASKPASS": str(script),
            "GIT_TERMINAL_PROMPT": "0",
            USER_VARIABLE: user,
            PASSWORD_VARIABLE: password,
        }
        no_helper = ["-c", "credential.helper="]
        ref = f"refs/heads/{branch}"
        listed = _git(
            runner,
            [*no_helper, "ls-remote", remote_url, ref],
            source,
            env,
            timeout,
            f"{step} (reading the remote branch)",
        )
        if listed.returncode != 0:
            raise GitBucketError(
                f"GitBucket: {step}: git ls-remote {remote_url} failed",
                _stderr(listed),
                "check that the repository exists and GITBUCKET_ROOT_PASSWORD is root's password",
            )
        remote = next(
            (line.split()[0] for line in listed.stdout.splitlines() if line.endswith(ref)), None
        )
        if remote == local:
            return PushResult(local, remote, pushed=False)
        pushed = _git(
            runner,
            [*no_helper, "push", "--porcelain", remote_url, f"HEAD:{ref}"],
            source,
            env,
            timeout,
            step,
        )
        if pushed.returncode != 0:
            text = _stderr(pushed) + " " + (pushed.stdout or "")
            fix = "read git's message above and run `invoke platform.wire` again"
            if "rejected" in text or "non-fast-forward" in text or "fetch first" in text:
                fix = (
                    f"GitBucket's {branch} has commits your HEAD lacks: merge them first "
                    f"(git pull {remote_url} {branch}); wire never force-pushes"
                )
            raise GitBucketError(f"GitBucket: {step} was refused", text.strip()[:400], fix)
    return PushResult(local, remote, pushed=True)
