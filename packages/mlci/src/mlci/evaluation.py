"""What promotion checks with the models themselves, not only their logged numbers.

- :func:`validate` loads the candidate from the registry through ``mlflow.pyfunc``, as model
  serving will, and predicts its saved input example. A version that fails this is refused
  before any lease is taken: it never becomes champion.
- :class:`HeldoutScorer` scores the candidate *and* the champion on the candidate's held-out
  data (logged by train as ``heldout/heldout.csv``) with the model package's ``score``
  function, so that a champion trained on older data is judged on the same rows. Without a
  ``score`` function or held-out data it falls back to the logged metrics and says so.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from mlci.contract import HELDOUT, TARGET_COLUMN
from mlci.errors import ModelRejected


@dataclass
class Validation:
    version: str
    rows: int
    signature: str


def _load(name: str, version: str) -> Any:
    import mlflow.pyfunc

    return mlflow.pyfunc.load_model(f"models:/{name}/{version}")


def _signature_lines(model: Any) -> dict[str, str]:
    signature = getattr(model.metadata, "signature", None)
    if signature is None:
        return {}
    lines = {}
    for part in ("inputs", "outputs"):
        schema = getattr(signature, part, None)
        if schema is not None:
            for i, column in enumerate(schema.inputs):
                key = f"{part}:{column.name if column.name is not None else i}"
                kind = getattr(column, "type", "")
                lines[key] = str(getattr(kind, "name", None) or kind)  # DataType / dtype
    return lines


def signature_change(candidate: Any, champion: Any) -> list[str]:
    """How the candidate's signature differs from the champion's, one line per column."""
    new, old = _signature_lines(candidate), _signature_lines(champion)
    changes = [f"+ {k} {new[k]}" for k in sorted(new.keys() - old.keys())]
    changes += [f"- {k} {old[k]}" for k in sorted(old.keys() - new.keys())]
    changes += [
        f"~ {k} {old[k]} -> {new[k]}" for k in sorted(new.keys() & old.keys()) if new[k] != old[k]
    ]
    return changes


def validate(name: str, version: str, log: Callable[[str], None]) -> tuple[Any, Validation]:
    """Load ``name`` v``version`` as serving would and predict its input example."""
    try:
        model = _load(name, version)
    except Exception as exc:  # whatever MLflow or the flavour raises: the model does not load
        raise ModelRejected(
            f"{name} v{version} does not load from the registry",
            f"mlflow.pyfunc.load_model('models:/{name}/{version}') failed: "
            f"{type(exc).__name__}: {str(exc)[:600]}",
            "fix how the model is saved (or its dependencies), train again; it will not "
            "become champion",
        ) from None
    example = model.input_example
    if example is None:
        raise ModelRejected(
            f"{name} v{version} has no input example",
            "promotion predicts the saved input example to prove the model works",
            "log the model with an input example (mlci's train stage does)",
        )
    try:
        predictions = model.predict(example)
    except Exception as exc:
        raise ModelRejected(
            f"{name} v{version} loads but cannot predict its own input example",
            f"{type(exc).__name__}: {str(exc)[:600]}",
            "fix the model's predict (or its signature), train again; it will not become champion",
        ) from None
    rows = len(example)
    if predictions is None or len(predictions) != rows:
        raise ModelRejected(
            f"{name} v{version} answered {0 if predictions is None else len(predictions)} "
            f"predictions for {rows} input rows",
            "a model must predict one output per input row",
            "fix the model's predict, train again",
        )
    lines = _signature_lines(model)
    shown = ", ".join(f"{k.split(':', 1)[1]} {v}" for k, v in lines.items() if k.startswith("in"))
    log(f"promote: v{version} loads through mlflow.pyfunc and predicts its {rows}-row example")
    return model, Validation(version, rows, shown or "no signature")


def _finite(metrics: Mapping[str, Any]) -> dict[str, float]:
    return {
        str(k): float(v)
        for k, v in metrics.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(float(v))
    }


class HeldoutScorer:
    """Scores models on one candidate's held-out data with the model package's ``score``."""

    def __init__(self, module: ModuleType | None, candidate_run_id: str) -> None:
        score = getattr(module, "score", None) if module is not None else None
        #: The model package's ``score(y_true, y_pred)``; None when it has none.
        self.score: Callable[[Any, Any], Mapping[str, Any]] | None = (
            score if callable(score) else None
        )
        self.frame = self._heldout(candidate_run_id) if self.score is not None else None
        if self.score is None:
            self.why_not = "the model package has no score() function"
        elif self.frame is None:
            self.why_not = "the candidate's run has no held-out data (heldout/heldout.csv)"
        else:
            self.why_not = ""

    @staticmethod
    def _heldout(run_id: str) -> Any | None:
        import mlflow.artifacts
        import pandas as pd
        from mlflow.exceptions import MlflowException

        with tempfile.TemporaryDirectory() as tmp:
            try:
                path = mlflow.artifacts.download_artifacts(
                    run_id=run_id, artifact_path=HELDOUT, dst_path=tmp
                )
            except (MlflowException, OSError):
                return None
            return pd.read_csv(Path(path))

    @property
    def usable(self) -> bool:
        return self.frame is not None

    def scores(self, model: Any) -> dict[str, float]:
        """``model``'s figures on the held-out data (only when :attr:`usable`)."""
        frame, score = self.frame, self.score
        if frame is None or score is None:
            raise RuntimeError(f"no held-out scores: {self.why_not}")
        inputs = frame.drop(columns=[TARGET_COLUMN])
        predictions = model.predict(inputs)
        return _finite(score(frame[TARGET_COLUMN].to_numpy(), _as_array(predictions)))

    def champion(
        self, name: str, version: str, candidate_model: Any
    ) -> tuple[dict[str, float] | None, list[str]]:
        """The champion's figures on the candidate's data, or None (and why) if impossible."""
        try:
            model = _load(name, version)
            figures = self.scores(model)
        except Exception as exc:
            return None, [
                f"the champion v{version} could not be re-scored "
                f"({type(exc).__name__}: {str(exc)[:200]}); its logged figures are used"
            ]
        change = signature_change(candidate_model, model)
        notes = [f"signature changed against v{version}: " + "; ".join(change)] if change else []
        return figures, notes


def _as_array(predictions: Any) -> Any:
    import numpy as np

    if hasattr(predictions, "to_numpy"):
        predictions = predictions.to_numpy()
    array = np.asarray(predictions)
    return array.ravel() if array.ndim == 2 and array.shape[1] == 1 else array
