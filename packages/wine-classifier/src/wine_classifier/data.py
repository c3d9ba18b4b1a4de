"""Loading the wine data set and splitting it into a fixed train/test split."""

from __future__ import annotations

import hashlib
import numbers
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

# Bumped whenever the canonical byte form fed to the digest changes.
_DIGEST_FORMAT = b"wine-classifier/data-digest/v1"


@dataclass(frozen=True)
class Split:
    """A held-out split of the wine data set.

    ``digest`` identifies the *full* data set (not the split), so it is the
    same for every ``test_size`` and ``seed``.
    """

    X_train: np.ndarray
    X_test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray
    feature_names: tuple[str, ...]
    target_names: tuple[str, ...]
    digest: str

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    @property
    def n_classes(self) -> int:
        return len(self.target_names)


def dataset_digest(
    X: np.ndarray,
    y: np.ndarray,
    feature_names: tuple[str, ...],
    target_names: tuple[str, ...] = (),
) -> str:
    """Return ``"sha256:<hex>"`` of a canonical byte form of a data set.

    The byte form is independent of the platform and of the in-memory layout:
    shapes as little-endian int64, ``X`` as C-contiguous little-endian
    float64, ``y`` as little-endian int64, then the UTF-8 feature and target
    names, each list joined with a unit separator.
    """
    import numpy as np

    x = np.ascontiguousarray(np.asarray(X, dtype="<f8"))
    labels = np.ascontiguousarray(np.asarray(y, dtype="<i8"))
    if x.ndim != 2:
        raise ValueError(f"X must be 2-dimensional, got shape {x.shape}")
    if labels.ndim != 1 or labels.shape[0] != x.shape[0]:
        raise ValueError(
            f"y must be 1-dimensional with {x.shape[0]} entries, got shape {labels.shape}"
        )

    h = hashlib.sha256()
    h.update(_DIGEST_FORMAT)
    h.update(np.asarray(x.shape, dtype="<i8").tobytes())
    h.update(x.tobytes(order="C"))
    h.update(labels.tobytes(order="C"))
    h.update("\x1f".join(feature_names).encode("utf-8"))
    h.update(b"\x1e")
    h.update("\x1f".join(target_names).encode("utf-8"))
    return f"sha256:{h.hexdigest()}"


def _check_test_size(test_size: object) -> float:
    if isinstance(test_size, bool) or not isinstance(test_size, numbers.Real):
        raise ValueError(f"test_size must be a float strictly between 0 and 1, got {test_size!r}")
    value = float(test_size)
    if not 0.0 < value < 1.0:  # also rejects NaN
        raise ValueError(f"test_size must be a float strictly between 0 and 1, got {test_size!r}")
    return value


def _check_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"seed must be an integer in [0, 2**32 - 1], got {seed!r}")
    value = int(seed)
    if not 0 <= value <= 2**32 - 1:
        raise ValueError(f"seed must be an integer in [0, 2**32 - 1], got {seed!r}")
    return value


def load_split(test_size: float = 0.25, seed: int = 42) -> Split:
    """Load scikit-learn's bundled wine data set and split it.

    The data ships with scikit-learn, so nothing is downloaded. The split is
    stratified on the class label and fully determined by ``test_size`` and
    ``seed``.
    """
    test_size = _check_test_size(test_size)
    seed = _check_seed(seed)

    import numpy as np
    from sklearn.datasets import load_wine
    from sklearn.model_selection import train_test_split

    bunch = load_wine()
    X = np.asarray(bunch.data, dtype=np.float64)
    y = np.asarray(bunch.target, dtype=np.int64)
    feature_names = tuple(str(name) for name in bunch.feature_names)
    target_names = tuple(str(name) for name in bunch.target_names)

    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=test_size, random_state=seed, stratify=y
    )
    return Split(
        X_train=X_train,
        X_test=X_test,
        y_train=y_train,
        y_test=y_test,
        feature_names=feature_names,
        target_names=target_names,
        digest=dataset_digest(X, y, feature_names, target_names),
    )
