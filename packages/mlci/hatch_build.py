"""Build hook: ships the repository's platform folders inside mlci (mlci/platform_files).

In the repository they live at the top level (services/, jenkins/, sonarqube/, gitbucket/),
two folders above this package; `invoke release` builds from a copy of the package and names
the repository in MLCI_BUILD_SOURCE_ROOT. The sdist takes them in as src/mlci/platform_files, so a
wheel built from the sdist has them as plain package files; an editable install reads them
from the repository itself and needs none.
"""

from __future__ import annotations

import os
from pathlib import Path

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

FOLDERS = ("services", "jenkins", "sonarqube", "gitbucket")
# Never shipped: generated secrets and caches.
SKIPPED_NAMES = {".env", "__pycache__"}


class PlatformFiles(BuildHookInterface):
    def initialize(self, version: str, build_data: dict) -> None:
        if version == "editable":
            return
        named = os.environ.get("MLCI_BUILD_SOURCE_ROOT")
        repository = Path(named) if named else Path(self.root).resolve().parents[1]
        prefix = "mlci/platform_files" if self.target_name == "wheel" else "src/mlci/platform_files"
        for folder in FOLDERS:
            top = repository / folder
            if not top.is_dir():
                continue
            for path in sorted(top.rglob("*")):
                parts = set(path.relative_to(repository).parts)
                if path.is_dir() or parts & SKIPPED_NAMES or path.name.endswith(".env"):
                    continue
                target = f"{prefix}/{path.relative_to(repository).as_posix()}"
                build_data["force_include"][str(path)] = target
