"""The platform's env file: every secret Compose requires, generated once, kept at mode 0600.

Compose reads the secrets from this file (``--env-file``); they never travel on a command line.
The required names are read from services/compose.yaml itself (every ``${NAME:?...}``), plus the
secrets only the wiring uses, so a secret added to the Compose file is generated on the next
``invoke platform.up`` while every existing value is kept. Values follow the products' rules:
GitBucket's sign-in form accepts at most 20 characters, SonarQube wants at least 12 with upper
and lower case, a digit and a special character, MinIO's keys go into URLs (URL-safe only).

``SONARQUBE_TOKEN`` can only be made by SonarQube, ``JENKINS_AGENT_SECRET`` only by Jenkins:
they start as placeholders and ``invoke platform.wire`` replaces them (and recreates the
container that reads them). ``DOCKER_GID`` is no secret: the group of the Docker socket.
"""

from __future__ import annotations

import os
import re
import secrets
import stat
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mlci.errors import ConfigError
from mlci.settings import SECRET_MASK

FILE_MODE = 0o600
REQUIRED_REFERENCE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*):\?[^}]*\}")
ASSIGNMENT = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=(.*)$")

SONARQUBE_TOKEN = "SONARQUBE_TOKEN"
JENKINS_AGENT_SECRET = "JENKINS_AGENT_SECRET"
DOCKER_GID = "DOCKER_GID"
# A value Compose accepts (it is not empty) that says where the real one comes from.
PLACEHOLDER = "created-by-invoke-platform-wire"
# The file also carries values that are not secrets (user names, DOCKER_GID): a secret is
# what its name says is one.
SECRET_WORDS = ("PASSWORD", "TOKEN", "SECRET", "KEY")

# Secrets no container reads: the wiring uses them to configure the services.
WIRING_SECRETS = (
    "GITBUCKET_ROOT_PASSWORD",
    "SONARQUBE_ADMIN_PASSWORD",
    "SONARQUBE_CI_PASSWORD",
    "GITBUCKET_WEBHOOK_SECRET",
    "JENKINS_WEBHOOK_TOKEN",
    # On Kubernetes: the read-only MLflow user the serving replicas download their model with.
    "MLFLOW_SERVING_PASSWORD",
)
GITBUCKET_MAX_PASSWORD = 20
SONARQUBE_SPECIAL = "-_"


def masked(value: str) -> str:
    """What a secret looks like on screen: a fixed mask (its length is not shown either)."""
    return SECRET_MASK if value else ""


def url_safe(length: int = 32) -> str:
    """``length`` characters of [A-Za-z0-9_-] (safe in URLs, env files and form fields)."""
    return secrets.token_urlsafe(length)[:length]


def gitbucket_password() -> str:
    """GitBucket's account form refuses passwords over 20 characters (maxlength(20))."""
    return url_safe(GITBUCKET_MAX_PASSWORD)


def sonarqube_password_problem(password: str) -> str | None:
    """SonarQube's password policy (10.x): None when the password meets it."""
    if len(password) < 12:
        return "shorter than 12 characters"
    checks = (
        (str.isupper, "an upper-case letter"),
        (str.islower, "a lower-case letter"),
        (str.isdigit, "a digit"),
    )
    for check, what in checks:
        if not any(c.isascii() and check(c) for c in password):
            return f"has no {what}"
    if all(c.isascii() and c.isalnum() for c in password):
        return "has no special character"
    return None


def sonarqube_password() -> str:
    """32 URL-safe characters that meet SonarQube's policy (one of - _ guaranteed)."""
    while True:
        candidate = url_safe(31) + secrets.choice(SONARQUBE_SPECIAL)
        if sonarqube_password_problem(candidate) is None:
            return candidate


def _placeholder() -> str:
    return PLACEHOLDER


def docker_gid() -> str:
    """The group that owns the Docker engine's socket here: the agent container joins it."""
    host = os.environ.get("DOCKER_HOST", "")
    path = host.removeprefix("unix://") if host.startswith("unix://") else "/var/run/docker.sock"
    try:
        return str(os.stat(path).st_gid)
    except OSError:
        return "0"


GENERATORS: dict[str, Callable[[], str]] = {
    "GITBUCKET_ROOT_PASSWORD": gitbucket_password,
    "GITBUCKET_JENKINS_PASSWORD": gitbucket_password,
    "SONARQUBE_ADMIN_PASSWORD": sonarqube_password,
    "SONARQUBE_CI_PASSWORD": sonarqube_password,
    SONARQUBE_TOKEN: _placeholder,
    JENKINS_AGENT_SECRET: _placeholder,
    DOCKER_GID: docker_gid,
    "MLFLOW_FLASK_SERVER_SECRET_KEY": lambda: url_safe(48),
}


def generate(name: str) -> str:
    """A new value for the secret ``name`` (URL-safe, 32 characters unless a rule says else)."""
    return GENERATORS.get(name, url_safe)()


def required_names(compose_text: str) -> list[str]:
    """Every variable compose.yaml requires (``${NAME:?...}``), then the wiring's, in order."""
    names = list(dict.fromkeys(REQUIRED_REFERENCE.findall(compose_text)))
    return names + [n for n in WIRING_SECRETS if n not in names]


@dataclass
class EnvFile:
    """The env file's values (in file order) and what the last ensure() generated."""

    path: Path
    values: dict[str, str]
    generated: list[str] = field(default_factory=list)

    def __getitem__(self, name: str) -> str:
        try:
            return self.values[name]
        except KeyError:
            raise ConfigError(
                f"{self.path} has no {name}",
                "the platform's secrets are generated into that file by `invoke platform.up`",
                "run `invoke platform.up` (it adds missing secrets and keeps the others)",
            ) from None

    def is_placeholder(self, name: str) -> bool:
        return self.values.get(name, PLACEHOLDER) == PLACEHOLDER

    def secrets(self) -> list[str]:
        """Every value that is a secret (for masking checks): names with PASSWORD, TOKEN,
        SECRET or KEY; placeholders left out."""
        return [
            v
            for name, v in self.values.items()
            if v and v != PLACEHOLDER and any(word in name for word in SECRET_WORDS)
        ]


def _parse(text: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = ASSIGNMENT.match(line)
        if match:
            value = match.group(2).strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            values[match.group(1)] = value
    return values


def _check_mode(path: Path) -> None:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        # Someone widened it: narrow it again before anything reads or extends it.
        os.chmod(path, FILE_MODE)


def read_env_file(path: Path) -> EnvFile:
    """The existing env file; a clear error when ``invoke platform.up`` has not written it."""
    if not path.is_file():
        raise ConfigError(
            f"the platform's env file {path} does not exist",
            "it holds the secrets `invoke platform.up` generates for the services",
            "run `invoke platform.up` first (or set MLCI_PLATFORM_ENV_FILE to where it is)",
        )
    _check_mode(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"the platform's env file {path} is not UTF-8 text",
            f"byte {exc.start} cannot be decoded ({exc.reason})",
            "fix that line (the values invoke platform.up writes are plain ASCII), or move the "
            "file away and run `invoke platform.up` to write a new one",
        ) from None
    return EnvFile(path, _parse(text))


def _write_atomically(path: Path, text: str) -> None:
    """Write a sibling temp file created 0600, fsync it, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # created 0600
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _render(path: Path, updates: Mapping[str, str]) -> str:
    """The file's text with ``updates`` applied in place and new names appended."""
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    if not lines:
        lines = [
            "# Secrets of the mlci platform, generated by `invoke platform.up` (mode 0600).",
            "# Never commit or share this file. Compose reads it with --env-file.",
        ]
    pending = dict(updates)
    for index, line in enumerate(lines):
        match = ASSIGNMENT.match(line)
        if match and match.group(1) in pending:
            name = match.group(1)
            lines[index] = f"{name}={pending.pop(name)}"
    lines += [f"{name}={value}" for name, value in pending.items()]
    return "\n".join(lines) + "\n"


def ensure_env_file(path: Path, required: Iterable[str]) -> EnvFile:
    """Generate every required secret the file lacks; keep every value it has."""
    existing = read_env_file(path).values if path.exists() else {}
    missing = [name for name in required if not existing.get(name)]
    if missing or not path.exists():
        updates = {name: generate(name) for name in missing}
        _write_atomically(path, _render(path, updates))
    env = read_env_file(path)
    env.generated = missing
    return env


def ensure_for_compose(path: Path, compose_file: Path) -> EnvFile:
    """:func:`ensure_env_file` for the names ``compose_file`` requires."""
    try:
        text = compose_file.read_text()
    except OSError as exc:
        raise ConfigError(
            f"cannot read the platform's Compose file {compose_file}",
            str(exc),
            "set MLCI_PLATFORM_COMPOSE_FILE to services/compose.yaml of the mlci checkout",
        ) from None
    return ensure_env_file(path, required_names(text))


def set_value(path: Path, name: str, value: str) -> None:
    """Replace (or add) one value, atomically, keeping the file at 0600."""
    _write_atomically(path, _render(path, {name: value}))
