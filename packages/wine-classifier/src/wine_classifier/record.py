"""Which registered model version a release of this package ships.

`invoke release` writes ``model_record.json`` next to this module just before it builds
the package; an installed release can then say where its model came from.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any


def model_record() -> dict[str, Any] | None:
    """The record of the released model (registered model, version, run, metrics), if any."""
    try:
        text = resources.files(__package__).joinpath("model_record.json").read_text()
    except (FileNotFoundError, OSError):
        return None
    return json.loads(text)
