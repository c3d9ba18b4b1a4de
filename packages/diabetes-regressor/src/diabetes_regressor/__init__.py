"""Reproducible scikit-learn regressor for the diabetes data set bundled with scikit-learn.

mlci's model contract: :func:`train_and_evaluate` returns an :class:`mlci.TrainResult`,
:func:`score` gives the metrics of any predictions (promotion re-scores the champion with
it), :func:`validate_params` refuses bad hyper-parameters before anything starts. The
primary metric, ``rmse``, is better lower.
"""

from importlib.metadata import PackageNotFoundError, version

from .model import DEFAULT_PARAMS, ESTIMATORS, build_model, validate_params
from .train import load_split, score, train_and_evaluate

try:
    __version__ = version("diabetes-regressor")
except PackageNotFoundError:  # a source tree that is not installed
    __version__ = "0.0.0"

__all__ = [
    "DEFAULT_PARAMS",
    "ESTIMATORS",
    "__version__",
    "build_model",
    "load_split",
    "score",
    "train_and_evaluate",
    "validate_params",
]
