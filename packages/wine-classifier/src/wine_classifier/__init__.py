"""Reproducible scikit-learn classifier for the UCI wine data set.

Importing this package is cheap: scikit-learn and numpy are only imported
when data is loaded or a model is built; the optional PyTorch and matplotlib
only when the MLP is built or figures are drawn.
"""

from importlib.metadata import PackageNotFoundError, version

from .data import Split, load_split
from .evaluate import evaluate, score
from .model import DEFAULT_PARAMS, MLP_DEFAULT_PARAMS, build_model, validate_params
from .record import model_record
from .train import TrainingResult, train_and_evaluate

try:
    __version__ = version("wine-classifier")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

__all__ = [
    "DEFAULT_PARAMS",
    "MLP_DEFAULT_PARAMS",
    "Split",
    "TrainingResult",
    "__version__",
    "build_model",
    "evaluate",
    "load_split",
    "model_record",
    "score",
    "train_and_evaluate",
    "validate_params",
]
