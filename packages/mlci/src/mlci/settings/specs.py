"""The table of every setting: its dotted key, section, type, help and validation facts.

Read from the Settings dataclass and its sections, so declaring a field declares the setting.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from mlci.settings.core import Settings
from mlci.settings.fields import ENV_PREFIX

#: Fields of Settings that are bookkeeping, not settings.
_NOT_SETTINGS = ("project_root", "sources", "models", "model_name")


@dataclass(frozen=True)
class _Spec:
    key: str
    section: str | None
    name: str
    type: Any
    meta: Mapping[str, Any]

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.key.replace(".", "_").replace("-", "_").upper()

    @property
    def help(self) -> str:
        return str(self.meta["help"])

    @property
    def secret(self) -> bool:
        return bool(self.meta.get("secret"))


def _collect_specs() -> dict[str, _Spec]:
    specs: dict[str, _Spec] = {}
    hints = typing.get_type_hints(Settings)
    for f in fields(Settings):
        if f.name in _NOT_SETTINGS:
            continue
        if f.metadata.get("section"):
            cls = hints[f.name]
            sub_hints = typing.get_type_hints(cls)
            for sf in fields(cls):
                key = f"{f.name}.{sf.name}"
                specs[key] = _Spec(key, f.name, sf.name, sub_hints[sf.name], sf.metadata)
        else:
            specs[f.name] = _Spec(f.name, None, f.name, hints[f.name], f.metadata)
    return specs


SPECS: dict[str, _Spec] = _collect_specs()
