"""The PyTorch variant: a small MLP with a scikit-learn-like face.

PyTorch is an optional dependency (``pip install wine-classifier[torch]``); this module
imports it only inside functions, so importing the package never pulls it in.

The network is ``Linear(n_features, hidden) - ReLU - Linear(hidden, n_classes)`` on
features standardised with the mean and (population) standard deviation of the training
rows, like scikit-learn's ``StandardScaler``. It is trained with Adam on the cross-entropy
loss in shuffled mini-batches.

Reproducibility: on the CPU a fixed ``seed`` gives bit-identical weights, losses and
predictions (the weight initialisation and the batch order come from generators seeded
with it; the global torch random state is left as it was). On CUDA the same seed gives
the same initialisation and batch order, but GPU kernels (cuBLAS reductions, the fused
Adam step) are not guaranteed to be bit-for-bit reproducible, so weights can differ in
the last bits between runs and machines; metrics normally agree, but only the CPU path is
asserted to be deterministic.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from sklearn.base import BaseEstimator, ClassifierMixin

if TYPE_CHECKING:
    import numpy as np
    import torch

INSTALL_HINT = "install wine-classifier[torch] (pip install 'wine-classifier[torch]')"

EpochCallback = Callable[[int, dict[str, float]], None]

#: Up to this many multiply-adds per row-block of a step (batch_size x the widest layer),
#: CPU training runs on one thread: such steps are too small to gain from more, and
#: their thread hand-offs stall badly on a busy machine.
SINGLE_THREAD_WORK = 65_536


def require_torch() -> Any:
    """Import and return ``torch``, or raise :class:`ValueError` saying how to install it."""
    try:
        import torch
    except ImportError as exc:
        raise ValueError(
            f"estimator 'mlp_torch' needs PyTorch, which is not installed: {INSTALL_HINT}"
        ) from exc
    return torch


def resolve_device(device: str) -> str:
    """Turn the ``device`` hyper-parameter into ``"cpu"`` or ``"cuda"``.

    ``"auto"`` is CUDA when ``torch.cuda.is_available()``, else the CPU. Asking for
    ``"cuda"`` on a machine without a usable CUDA device raises :class:`ValueError`.
    """
    torch = require_torch()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        build = torch.version.cuda
        why = (
            f"this PyTorch {torch.__version__} is a CPU-only build"
            if build is None
            else f"PyTorch {torch.__version__} (CUDA {build}) finds no usable CUDA device"
        )
        raise ValueError(
            f"invalid value 'cuda' for hyper-parameter 'device': {why}; "
            "use device 'auto' (GPU when there is one) or 'cpu'"
        )
    if device not in ("cpu", "cuda"):
        raise ValueError(
            f"invalid value {device!r} for hyper-parameter 'device'; allowed: auto, cpu, cuda"
        )
    return device


@contextlib.contextmanager
def _single_threaded(enabled: bool) -> Iterator[None]:
    """Run torch's CPU kernels on one thread inside the block, then restore the setting."""
    import torch

    before = torch.get_num_threads()
    if not enabled or before == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def standardisation(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and scale of the columns of ``X`` as ``StandardScaler`` computes them.

    The scale is the population standard deviation; constant columns get a scale of 1.
    """
    import numpy as np

    x = np.asarray(X, dtype=np.float64)
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 10 * np.finfo(np.float64).eps] = 1.0
    return mean, scale


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Macro-averaged F1 over the labels present in either array.

    Equal to ``sklearn.metrics.f1_score(..., average="macro", zero_division=0)``, but
    cheap enough to call after every epoch.
    """
    import numpy as np

    labels, inverse = np.unique(np.concatenate([y_true, y_pred]), return_inverse=True)
    t, p = inverse[: len(y_true)], inverse[len(y_true) :]
    k = len(labels)
    tp = np.bincount(t[t == p], minlength=k).astype(np.float64)
    support = np.bincount(t, minlength=k)
    predicted = np.bincount(p, minlength=k)
    denom = support + predicted
    f1 = np.divide(2 * tp, denom, out=np.zeros(k), where=denom > 0)
    return float(f1.mean())


def _standardise_layer(mean: np.ndarray, scale: np.ndarray) -> torch.nn.Linear:
    """A frozen ``Linear`` that computes ``(x - mean) / scale``.

    Built from stock torch modules only, so the exported network loads wherever torch
    does, without this package.
    """
    import numpy as np
    import torch

    n = len(mean)
    # skip_init: no random initialisation, so the global random state is not touched.
    layer = torch.nn.utils.skip_init(torch.nn.Linear, n, n)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(np.diag(1.0 / scale)).float())
        layer.bias.copy_(torch.from_numpy(-mean / scale).float())
    layer.requires_grad_(False)
    return layer


class TorchMLPClassifier(ClassifierMixin, BaseEstimator):
    """A Linear-ReLU-Linear classifier trained with PyTorch, used like a scikit-learn one.

    After :meth:`fit`, :meth:`predict` and :meth:`predict_proba` take a 2-D float array
    of raw features and return numpy arrays; prediction runs on the CPU. Fitted
    attributes:

    ``module_``
        ``torch.nn.Sequential(standardise, Linear, ReLU, Linear)`` on the CPU in eval
        mode: raw features in, logits out. ``standardise`` is a frozen ``Linear`` holding
        the training split's normalisation, so the module is a complete model by itself.
    ``classes_``, ``n_features_in_``, ``mean_``, ``scale_``
        Class labels, number of features and the normalisation (float64).
    ``device_``
        ``"cpu"`` or ``"cuda"``: where the training ran.
    ``loss_curve_``
        Mean training cross-entropy per epoch.
    """

    def __init__(
        self,
        hidden: int = 64,
        epochs: int = 200,
        batch_size: int = 32,
        lr: float = 0.01,
        device: str = "auto",
        seed: int = 42,
    ) -> None:
        self.hidden = hidden
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.device = device
        self.seed = seed

    # -- training ----------------------------------------------------------------------

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        *,
        eval_set: tuple[np.ndarray, np.ndarray] | None = None,
        on_epoch: EpochCallback | None = None,
    ) -> TorchMLPClassifier:
        """Train on ``X``, ``y``.

        ``on_epoch(epoch, metrics)`` is called after every epoch (``epoch`` counts from 1)
        with ``loss``, the mean training cross-entropy of that epoch, and, when
        ``eval_set = (X_val, y_val)`` is given, ``accuracy`` and ``f1_macro`` on it.
        Held-out scores are only computed when there is a callback to receive them.

        Small CPU workloads (batch size times the widest layer up to
        :data:`SINGLE_THREAD_WORK`, as for the wine data) train on one thread; torch's
        thread setting is restored afterwards.
        """
        import numpy as np

        require_torch()
        device = resolve_device(self.device)
        widest = max(self.hidden, np.shape(X)[1] if np.ndim(X) == 2 else 0)
        small = device == "cpu" and self.batch_size * widest <= SINGLE_THREAD_WORK
        with _single_threaded(small):
            return self._fit(X, y, device, eval_set, on_epoch)

    def _fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        device_name: str,
        eval_set: tuple[np.ndarray, np.ndarray] | None,
        on_epoch: EpochCallback | None,
    ) -> TorchMLPClassifier:
        import numpy as np
        import torch

        device = torch.device(device_name)
        x = self._check_X(X, fitting=True)
        labels = np.asarray(y)
        if labels.ndim != 1 or len(labels) != len(x):
            raise ValueError(f"y must be 1-dimensional with {len(x)} entries, got {labels.shape}")
        self.classes_, targets = np.unique(labels, return_inverse=True)
        self.n_features_in_ = x.shape[1]
        self.mean_, self.scale_ = standardisation(x)

        with torch.random.fork_rng(devices=[]):
            # torch.manual_seed, limited to the CPU generator that nn.Linear draws its
            # initial weights from; fork_rng restores the caller's random state afterwards.
            torch.default_generator.manual_seed(self.seed)
            net = torch.nn.Sequential(
                torch.nn.Linear(self.n_features_in_, self.hidden),
                torch.nn.ReLU(),
                torch.nn.Linear(self.hidden, len(self.classes_)),
            )
        shuffle = torch.Generator().manual_seed(self.seed)

        def to_device(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(((a - self.mean_) / self.scale_).astype(np.float32)).to(device)

        # The data are standardised once, on the device; the exported module standardises
        # by itself (see module_).
        x_train = to_device(x)
        y_train = torch.from_numpy(targets.astype(np.int64)).to(device)
        x_val = y_val = None
        if eval_set is not None and on_epoch is not None:
            x_val = to_device(self._check_X(eval_set[0]))
            y_val = np.asarray(eval_set[1])

        net.to(device)
        fused = {"fused": True} if device.type == "cuda" else {}
        optimiser = torch.optim.Adam(net.parameters(), lr=self.lr, **fused)
        loss_fn = torch.nn.CrossEntropyLoss()
        n = len(x_train)
        self.loss_curve_: list[float] = []
        for epoch in range(1, self.epochs + 1):
            net.train()
            order = torch.randperm(n, generator=shuffle).to(device)
            xs, ys = x_train[order], y_train[order]
            total = torch.zeros((), device=device)
            for start in range(0, n, self.batch_size):
                xb, yb = xs[start : start + self.batch_size], ys[start : start + self.batch_size]
                optimiser.zero_grad(set_to_none=True)
                loss = loss_fn(net(xb), yb)
                loss.backward()
                optimiser.step()
                total += loss.detach() * len(xb)
            epoch_loss = float(total) / n  # the one host sync of the epoch
            self.loss_curve_.append(epoch_loss)
            if on_epoch is not None:
                metrics = {"loss": epoch_loss}
                if x_val is not None:
                    net.eval()
                    with torch.inference_mode():
                        index = net(x_val).argmax(dim=1).cpu().numpy()
                    y_hat = self.classes_[index]
                    metrics["accuracy"] = float(np.mean(y_hat == y_val))
                    metrics["f1_macro"] = macro_f1(y_val, y_hat)
                on_epoch(epoch, metrics)

        net.to("cpu").eval()
        self.module_ = torch.nn.Sequential(_standardise_layer(self.mean_, self.scale_), *net)
        self.module_.eval()
        self.device_ = device.type
        return self

    # -- prediction --------------------------------------------------------------------

    def _check_X(self, X: Any, *, fitting: bool = False) -> np.ndarray:
        import numpy as np

        x = np.asarray(X, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError(f"X must be a 2-D array of features, got shape {x.shape}")
        if not fitting and x.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {x.shape[1]} features, but this model was trained on {self.n_features_in_}"
            )
        return x

    def _fitted_module(self) -> torch.nn.Module:
        if not hasattr(self, "module_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError("this TorchMLPClassifier is not fitted yet; call fit() first")
        return self.module_

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities (float64, shape ``(n_rows, n_classes)``), computed on the CPU."""
        import numpy as np
        import torch

        module = self._fitted_module()
        x = torch.from_numpy(self._check_X(X).astype(np.float32))
        with torch.inference_mode():
            proba = torch.softmax(module(x), dim=1)
        return proba.numpy().astype(np.float64)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predicted class labels (shape ``(n_rows,)``, the dtype of the training labels)."""
        proba = self.predict_proba(X)
        return self.classes_[proba.argmax(axis=1)]
