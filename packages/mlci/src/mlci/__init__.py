"""mlci: CI/CD for machine-learning code, one Invoke task per pipeline stage."""

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the names below, for type checkers; at run time __getattr__ imports them
    from mlci.contract import ModelPackage, TrainResult

try:
    __version__ = version("mlci")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

# The model contract, for model packages that want to import it (a lazy import keeps
# `import mlci` cheap for the CLI).
__all__ = ["ModelPackage", "TrainResult", "__version__"]


def __getattr__(name: str) -> object:
    if name in ("ModelPackage", "TrainResult"):
        from mlci import contract

        return getattr(contract, name)
    raise AttributeError(f"module 'mlci' has no attribute {name!r}")
