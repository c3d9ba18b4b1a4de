"""What a stage gets: the settings, a progress printer, and the servers it talks to.

The servers are resolved lazily: a configured URL is used as it is; with none configured
the embedded default starts a real local server the first time a stage asks for it, and
stops it when the context closes (so `invoke pipeline` starts each one at most once).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlci import servers
from mlci.settings import SPECS, Settings


def print_progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def writable_folder(path: Path, setting: str) -> Path:
    """``path`` as a folder this process can write into, or one clear ConfigError."""
    from mlci.errors import ConfigError

    variable = "MLCI_" + setting.upper()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ConfigError(
            f"{setting} {path} is a file, not a folder",
            "mlci writes its files into that folder",
            f"remove or rename the file, or set {variable} to another folder",
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"{setting} {path} cannot be created",
            exc.strerror or type(exc).__name__,
            f"set {variable} to a folder this user may create and write",
        ) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(
            f"{setting} {path} is not writable",
            "mlci writes its files into that folder (a read-only checkout?)",
            f"make it writable, or set {variable} to a writable folder",
        )
    return path


def require_paths(settings: Settings, key: str, where: str) -> list[str]:
    """The paths of setting ``key`` (a list), or one ConfigError naming those that do not
    exist; ``where`` is the table that sets it, for the fix."""
    from mlci.errors import ConfigError

    paths: list[str] = settings.get(key)
    missing = [p for p in paths if not settings.path(p).exists()]
    if missing:
        raise ConfigError(
            f"{key} names paths that do not exist: {', '.join(missing)}",
            f"they are resolved against the project root {settings.project_root}",
            f"fix {where} or {SPECS[key].env}",
        )
    return paths


@dataclass
class StageContext:
    settings: Settings
    log: Callable[[str], None] = print_progress
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack, repr=False)
    _tracking_uri: str | None = field(default=None, repr=False)
    _index: tuple[str, str] | None = field(default=None, repr=False)
    #: The pipeline's context, for a model's own (see :meth:`for_model`): servers are shared.
    _parent: StageContext | None = field(default=None, repr=False)

    def for_model(self, settings: Settings) -> StageContext:
        """A context for one model of several, sharing this one's servers and cleanup."""
        return StageContext(settings, log=self.log, _stack=self._stack, _parent=self)

    def __enter__(self) -> StageContext:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self._stack.close()

    @property
    def reports(self) -> Path:
        """The reports folder, created; a clear error when it cannot be written."""
        return writable_folder(self.settings.reports_path, "reports_dir")

    @property
    def model_reports(self) -> Path:
        """Where train and promote write: the reports folder, or reports/models/<name>."""
        return writable_folder(self.settings.model_reports_path, "reports_dir")

    @property
    def state(self) -> Path:
        """The state folder (local servers' data and logs), created and writable."""
        return writable_folder(self.settings.state_path, "state_dir")

    def tracking_uri(self) -> str:
        """The MLflow tracking server: the configured one, or a local `mlflow server`."""
        if self._parent is not None:
            return self._parent.tracking_uri()
        if self._tracking_uri is None:
            configured = self.settings.mlflow.tracking_uri
            lasting = None if configured else servers.running_lasting_server(self.state)
            if configured:
                self._tracking_uri = configured
            elif lasting:
                self.log(f"using the local mlflow server at {lasting} (`mlci server` started it)")
                self._tracking_uri = lasting
            else:
                state = self.state
                server = self._stack.enter_context(
                    servers.local_server(
                        "mlflow server",
                        servers.mlflow_server_command(state),
                        "/health",
                        state / "logs" / "mlflow-server.log",
                        start_timeout=self.settings.server_start_timeout,
                        env=servers.MLFLOW_SERVER_ENV,
                        progress=self.log,
                    )
                )
                self._tracking_uri = server.url
        return self._tracking_uri

    @property
    def tracking_is_local(self) -> bool:
        return not self.settings.mlflow.tracking_uri

    def browse_url(self) -> str:
        """Where people open the tracking server: the configured one; for the local store,
        the lasting server's stable address (`mlci server`), so that links in reports
        still open after the run that wrote them."""
        if not self.tracking_is_local:
            return self.settings.mlflow.tracking_uri.rstrip("/")
        return f"http://{servers.LOOPBACK}:{self.settings.mlflow.server_port}"

    def package_index(self) -> tuple[str, str]:
        """(upload URL, simple-API URL): the configured index, or a local pypiserver."""
        if self._parent is not None:
            return self._parent.package_index()
        if self._index is None:
            release = self.settings.release
            if release.repository_url:
                upload = release.repository_url
                simple = release.index_url or upload.rstrip("/") + "/simple/"
            else:
                from mlci.tools import require_module

                require_module(
                    "pypiserver", "with no release.repository_url mlci starts a local index"
                )
                state = self.state
                server = self._stack.enter_context(
                    servers.local_server(
                        "package index (pypiserver)",
                        servers.pypi_server_command(state / "packages"),
                        "/health",
                        state / "logs" / "pypiserver.log",
                        start_timeout=self.settings.server_start_timeout,
                        progress=self.log,
                    )
                )
                upload, simple = server.url + "/", server.url + "/simple/"
            self._index = (upload, simple)
        return self._index
