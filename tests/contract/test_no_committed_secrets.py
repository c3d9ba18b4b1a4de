"""No secret is committed: no env file is tracked, and no tracked file assigns a credential.

Files under tests/ are left out (tests make throw-away secrets for servers they start).
A credential assignment is a name containing PASSWORD, SECRET or TOKEN given a literal value
(``NAME=value``, ``NAME: value``, ``name = "value"``); references (``${NAME}``, ``$NAME``,
``env.NAME``) and obvious placeholders are fine. Token literals are the shapes SonarQube,
GitHub and AWS issue.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.contract

ROOT = Path(__file__).resolve().parents[2]
ASSIGNMENT = re.compile(
    r"""(?ix)
    \b([A-Z0-9_]*(?:PASSWORD|SECRET|TOKEN)[A-Z0-9_]*)   # the name
    \s*[:=]\s*
    (["']?)([^\s"'`,;)}\]]{6,})\2                       # a literal value of 6+ characters
    """
)
TOKEN_LITERALS = re.compile(
    r"\b(squ_[0-9a-f]{40}|sq[ap]_[0-9a-f]{40}|ghp_[A-Za-z0-9]{36}|AKIA[0-9A-Z]{16})\b"
)
NOT_A_VALUE = re.compile(
    r"""(?ix)^(
        \$.*|%.*|<.*|\{.*|/.*|[?-].*           # ${REF}, $REF, templates, paths, ${X:?msg}
        |[A-Za-z_]\w*(\.\w+)+.*                # attribute access: settings.release.password
        |[A-Za-z_]\w*[([].*|\(.*               # calls, subscripts, expressions: quote(x), auth[1]
        |true|false|none|null|str|bytes|bool
        |\*+|x{3,}|\.\.\.+|set[-_\ ]by.*|created-by-.*
    )$"""
)


def tracked_files() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=60
    ).stdout.decode()
    return [name for name in out.split("\0") if name]


def findings(name: str, text: str) -> list[str]:
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        for match in ASSIGNMENT.finditer(line):
            value = match.group(3)
            if NOT_A_VALUE.match(value) or re.fullmatch(r"[A-Z_][A-Z0-9_]*", value):
                continue  # a reference, a type, or another variable's name
            if value.replace("_", "").replace("-", "").isalpha() and value.islower():
                continue  # prose or an identifier, e.g. `token: string`
            found.append(f"{name}:{number}: {match.group(1)} = {value[:4]}...")
        for match in TOKEN_LITERALS.finditer(line):
            found.append(f"{name}:{number}: token literal {match.group(1)[:6]}...")
    return found


def test_no_env_file_is_tracked() -> None:
    env_files = [
        f for f in tracked_files() if Path(f).name == ".env" or Path(f).name.endswith(".env")
    ]
    assert env_files == []


def test_no_tracked_file_outside_tests_assigns_a_credential() -> None:
    problems = []
    for name in tracked_files():
        if name.startswith("tests/") or "/tests/" in name:
            continue
        path = ROOT / name
        if not path.is_file() or path.stat().st_size > 1_000_000:
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        problems += findings(name, text)
    assert problems == []


def test_the_check_finds_what_it_should_and_passes_references() -> None:
    bad = (
        "DB_PASSWORD=hunter2hunter\n"
        'api_token = "a8f5f167f44f4964e6c998dee827110c"\n'
        "SONAR_TOKEN: squ_" + "0" * 40 + "\n"
    )
    assert len(findings("x", bad)) == 4
    good = (
        "JENKINS_ADMIN_PASSWORD: ${JENKINS_ADMIN_PASSWORD:?set by invoke platform.up}\n"
        'password: "${GITBUCKET_ROOT_PASSWORD}"\n'
        "TWINE_PASSWORD=$PYPI_PASSWORD\n"
        "token: str = option('', 'analysis token')\n"
    )
    assert findings("x", good) == []
