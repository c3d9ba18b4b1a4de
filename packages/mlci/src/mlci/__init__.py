"""mlci: CI/CD for machine-learning code, one Invoke task per pipeline stage."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mlci")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
