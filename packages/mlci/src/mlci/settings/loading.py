"""Loading the settings: defaults < ``[tool.mlci]`` in pyproject.toml < ``MLCI_*`` < flags.

Kept by hand rather than pydantic-settings' sources (EnvSettingsSource,
PyprojectTomlConfigSettingsSource): those hand back one merged dict, while mlci records the
source of every value (``invoke config`` shows it, messages name it), refuses unknown keys and
MLCI_* variables with a did-you-mean, finds [tool.mlci] upwards, and checks a committed value
even where the environment overrides it.
"""

from __future__ import annotations

import difflib
import os
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlci.errors import ConfigError
from mlci.settings.coercion import _coerce
from mlci.settings.core import Settings
from mlci.settings.fields import (
    ENV_PREFIX,
    MODEL_ENV,
    MODEL_KEYS,
    PLAIN_ENV,
    RESERVED_ENV,
    ROOT_ENV,
    SOURCE_CLI,
    SOURCE_FILE,
)
from mlci.settings.specs import SPECS


def find_project_root(start: Path | None = None, environ: Mapping[str, str] | None = None) -> Path:
    """``MLCI_PROJECT_ROOT``, else the nearest folder upwards whose pyproject has [tool.mlci]."""
    env = os.environ if environ is None else environ
    if env.get(ROOT_ENV):
        root = Path(env[ROOT_ENV]).expanduser().resolve()
        if not root.is_dir():
            raise ConfigError(
                f"{ROOT_ENV}={env[ROOT_ENV]!r} is not a folder",
                "mlci reads its settings from that folder's pyproject.toml",
                f"point {ROOT_ENV} at the project's root folder, or unset it",
            )
        return root
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file() and "[tool.mlci" in candidate.read_text(errors="replace"):
            return folder
    return here


def _read_file_table(root: Path) -> dict[str, Any]:
    path = root / "pyproject.toml"
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path} is not UTF-8 text",
            f"byte {exc.start} cannot be decoded ({exc.reason}); TOML files are UTF-8",
            "save the file as UTF-8 (the byte offset above shows where)",
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"{path} is not valid TOML",
            str(exc),
            "fix the syntax at the line named above",
        ) from None
    table = data.get("tool", {}).get("mlci", {})
    if not isinstance(table, dict):
        raise ConfigError(f"[tool.mlci] in {path} must be a table", "", "see the README")
    return table


def _flatten_file_table(table: Mapping[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    sections = {s.section for s in SPECS.values() if s.section}
    for name, value in table.items():
        if name == "models":
            continue  # per-model tables: _model_entries
        if name in sections:
            if not isinstance(value, dict):
                raise ConfigError(
                    f"[tool.mlci] sets {name} = {value!r}",
                    f"{name} is a section of settings, not a value",
                    f"write its settings as a table: [tool.mlci.{name}]",
                )
            for sub, sub_value in value.items():
                flat[f"{name}.{sub}"] = sub_value
        elif isinstance(value, dict):
            # A table that is no section: [tool.mlci.mlfow] and the like.
            close = difflib.get_close_matches(name, sorted(sections), n=1, cutoff=0.6)
            raise ConfigError(
                f"unknown section [tool.mlci.{name}] in pyproject.toml",
                "mlci does not read it: none of its settings would apply",
                f"did you mean [tool.mlci.{close[0]}]?"
                if close
                else f"the sections are {', '.join(sorted(sections))}",
            )
        else:
            flat[name] = value
    return flat


def _unknown(key: str, where: str, known: list[str]) -> ConfigError:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    fix = f"did you mean {close[0]!r}?" if close else "see `invoke config` for every setting"
    return ConfigError(f"unknown setting {key!r} in {where}", "mlci does not read it", fix)


def load_settings(
    overrides: Mapping[str, Any] | None = None,
    *,
    root: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Build and validate the settings: command line > MLCI_* env > pyproject > defaults."""
    env = os.environ if environ is None else environ
    project_root = root.resolve() if root else find_project_root(environ=env)
    file_table = _read_file_table(project_root)
    file_values = _flatten_file_table(file_table)

    for key, value in file_values.items():
        if key not in SPECS:
            raise _unknown(key, "[tool.mlci] of pyproject.toml", list(SPECS))
        if SPECS[key].secret:  # refused even where the environment would win: it is committed
            raise ConfigError(
                f"{key} is set in pyproject.toml",
                "it is a secret and pyproject.toml is committed",
                f"remove it from the file and set {SPECS[key].env} in the environment instead",
            )
        # Validated even where the environment or a flag wins: the file is committed, and a
        # wrong value there must not wait for the day nothing overrides it.
        _coerce(SPECS[key], value, SOURCE_FILE, False)
    by_env = {spec.env: spec for spec in SPECS.values()}
    for name in env:
        if name.startswith(ENV_PREFIX) and name not in RESERVED_ENV and name not in by_env:
            raise _unknown(name, "the environment", list(by_env))
    for key in overrides or {}:
        if key not in SPECS:
            raise _unknown(key, "the command line", list(SPECS))

    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for key, spec in SPECS.items():
        if overrides and overrides.get(key) is not None:
            raw, source, from_text = overrides[key], SOURCE_CLI, isinstance(overrides[key], str)
        elif spec.env in env:
            raw, source, from_text = env[spec.env], f"env {spec.env}", True
        elif key in PLAIN_ENV and PLAIN_ENV[key] in env:
            raw, source, from_text = env[PLAIN_ENV[key]], f"env {PLAIN_ENV[key]}", True
        elif key in file_values:
            raw, source, from_text = file_values[key], SOURCE_FILE, False
        else:
            continue
        values[key] = _coerce(spec, raw, source, from_text)
        sources[key] = source

    models = _model_entries(file_table.get("models", {}))
    sections: dict[str, dict[str, Any]] = {}
    top: dict[str, Any] = {}
    for key, value in values.items():
        spec = SPECS[key]
        if spec.section:
            sections.setdefault(spec.section, {})[spec.name] = value
        else:
            top[key] = value
    hints = typing.get_type_hints(Settings)
    built = {name: hints[name](**kw) for name, kw in sections.items()}
    settings = Settings(project_root=project_root, sources=sources, models=models, **top, **built)
    chosen = env.get(MODEL_ENV, "").strip()
    if chosen:
        return settings.for_model(chosen)
    return settings


def _model_entries(table: Any) -> dict[str, dict[str, Any]]:
    """[tool.mlci.models.<name>] tables as {name: {setting key: validated value}}."""
    if not isinstance(table, dict) or not all(isinstance(v, dict) for v in table.values()):
        raise ConfigError(
            "[tool.mlci.models] must hold one table per model",
            "each model is a table: [tool.mlci.models.<name>] with module, params, ...",
            'write e.g. [tool.mlci.models.wine] module = "wine_classifier"',
        )
    known = [*MODEL_KEYS, "promotion"]
    promotion_keys = [s.name for s in SPECS.values() if s.section == "promotion"]
    entries: dict[str, dict[str, Any]] = {}
    for name, entry in table.items():
        where = f"[tool.mlci.models.{name}]"
        values: dict[str, Any] = {}
        for key, value in entry.items():
            if key == "promotion" and isinstance(value, dict):
                for sub, sub_value in value.items():
                    if sub not in promotion_keys:
                        raise _unknown(sub, f"{where} promotion", promotion_keys)
                    spec = SPECS[f"promotion.{sub}"]
                    values[spec.key] = _coerce(spec, sub_value, where, False)
            elif key in MODEL_KEYS:
                spec = SPECS[MODEL_KEYS[key]]
                values[spec.key] = _coerce(spec, value, where, False)
            else:
                raise _unknown(key, where, known)
        if not values.get("model.module"):
            raise ConfigError(
                f"{where} names no module",
                "each model's table says which package trains it",
                f'add module = "<import name>" to {where}',
            )
        entries[str(name)] = values
    return entries
