"""The reading side of `invoke score`: the batch file, the registered model and its
predictions, and the reference data the version was trained on. Nothing here writes a file
or starts a run; :mod:`mlci.stages.score` does that once all of it has succeeded.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlci.contract import HELDOUT, TARGET_COLUMN, TRAIN_INPUTS
from mlci.errors import ConfigError, StageFailed

#: Readers by file suffix.
FORMATS = {".csv": "CSV", ".parquet": "Parquet"}
PREDICTION = "prediction"
INPUT_FIX = "pass another file with --input, or fix score.input (MLCI_SCORE_INPUT)"


def read_batch(path: Path) -> Any:
    """The batch as a data frame; a clear ConfigError for anything that is not a non-empty
    CSV or Parquet file."""
    import pandas as pd

    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise ConfigError(
            f"the batch {path} is neither CSV nor Parquet",
            f"score reads files ending in {' or '.join(FORMATS)}, not {path.suffix or 'none'}",
            f"convert it, or give it the suffix of its format; {INPUT_FIX}",
        )
    if not path.is_file():
        why = "it is a folder" if path.is_dir() else "no such file"
        raise ConfigError(f"the batch {path} cannot be read", why, INPUT_FIX)
    if path.stat().st_size == 0:
        raise ConfigError(f"the batch {path} is empty", "the file has 0 bytes", INPUT_FIX)
    try:
        frame = pd.read_csv(path) if kind == "CSV" else pd.read_parquet(path)
    except pd.errors.EmptyDataError:
        raise ConfigError(
            f"the batch {path} is empty", "the CSV file has no header and no rows", INPUT_FIX
        ) from None
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        # pyarrow's ArrowInvalid is a ValueError; the CSV parser's errors are ParserErrors
        raise ConfigError(
            f"the batch {path} is not a readable {kind} file",
            f"{type(exc).__name__}: {str(exc)[:300]}",
            INPUT_FIX,
        ) from None
    if len(frame) == 0:
        raise ConfigError(
            f"the batch {path} has no rows",
            f"it has the columns {', '.join(map(str, frame.columns)) or 'none'} and no data",
            INPUT_FIX,
        )
    frame.columns = [str(c) for c in frame.columns]
    return frame


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_model(name: str, version: str) -> Any:
    import mlflow.pyfunc

    try:
        return mlflow.pyfunc.load_model(f"models:/{name}/{version}")
    except Exception as exc:  # whatever MLflow or the flavour raises: it does not load
        raise StageFailed(
            f"{name} v{version} does not load from the registry",
            f"mlflow.pyfunc.load_model('models:/{name}/{version}') failed: "
            f"{type(exc).__name__}: {str(exc)[:600]}",
            "install what the model needs into this environment, or score another version "
            "(--version N)",
        ) from None


def input_columns(model: Any) -> list[str] | None:
    """The input column names of the model's signature (None: it names none)."""
    schema = model.metadata.get_input_schema()
    if schema is None or not schema.has_input_names():
        return None
    return [str(name) for name in schema.input_names()]


def predict(model: Any, frame: Any, label: str) -> Any:
    """One prediction per row, as a 1-D array or a data frame of prediction columns."""
    import numpy as np
    import pandas as pd
    from mlflow.exceptions import MlflowException

    try:
        raw = model.predict(frame)
    except MlflowException as exc:  # the schema enforcement: values of the wrong type
        raise ConfigError(
            f"{label}: the batch's values do not fit the model's signature",
            str(getattr(exc, "message", exc))[:600],
            f"give each column the type the signature names; {INPUT_FIX}",
        ) from None
    except Exception as exc:  # whatever the flavour raises on these rows (missing values?)
        raise StageFailed(
            f"{label} cannot predict the batch",
            f"{type(exc).__name__}: {str(exc)[:600]}",
            f"fix the rows the message points at (the model may not take missing values); "
            f"{INPUT_FIX}",
        ) from None
    if isinstance(raw, pd.DataFrame):
        values = raw.iloc[:, 0].to_numpy() if raw.shape[1] == 1 else raw
    else:
        values = np.asarray(raw)
        if values.ndim == 2 and values.shape[1] == 1:
            values = values[:, 0]
    if len(values) != len(frame):
        raise StageFailed(
            f"{label} answered {len(values)} predictions for {len(frame)} rows",
            "a model must predict one output per input row",
            "fix the model's predict, train and promote again",
        )
    return values


def with_predictions(batch: Any, values: Any) -> Any:
    """The batch's columns, then ``prediction`` (or ``prediction_<name>`` per output)."""
    import pandas as pd

    out = batch.copy()
    if isinstance(values, pd.DataFrame):
        for column in values.columns:
            out[f"{PREDICTION}_{column}"] = values[column].to_numpy()
    elif values.ndim == 2:
        for index in range(values.shape[1]):
            out[f"{PREDICTION}_{index}"] = values[:, index]
    else:
        out[PREDICTION] = values
    assert len(out) == len(batch), "one output row per input row"
    return out


def load_reference(client: Any, run_id: str, log: Callable[[str], None]) -> tuple[Any, str]:
    """(the reference inputs, where they come from): the training inputs the run logged, else
    its held-out inputs; an error when it has neither."""
    import mlflow.artifacts
    import pandas as pd

    def listed(folder: str) -> set[str]:
        return {a.path for a in client.list_artifacts(run_id, folder)}

    with tempfile.TemporaryDirectory() as tmp:
        if TRAIN_INPUTS in listed(str(Path(TRAIN_INPUTS).parent)):
            path = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=TRAIN_INPUTS, dst_path=tmp
            )
            return pd.read_parquet(path), f"training inputs ({TRAIN_INPUTS})"
        if HELDOUT in listed(str(Path(HELDOUT).parent)):
            path = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=HELDOUT, dst_path=tmp
            )
            frame = pd.read_csv(path).drop(columns=[TARGET_COLUMN], errors="ignore")
            log(
                f"score: the version's run has no {TRAIN_INPUTS} (trained before mlci logged "
                f"it): comparing with its held-out inputs ({HELDOUT}) instead"
            )
            return frame, f"held-out inputs ({HELDOUT}; fallback: the run has no {TRAIN_INPUTS})"
    raise StageFailed(
        f"the training run {run_id} has neither {TRAIN_INPUTS} nor {HELDOUT}",
        "score measures drift against the data the version was trained on",
        "train a new version with this mlci (it logs the reference), promote it, score again",
    )
