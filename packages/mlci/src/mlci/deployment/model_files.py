"""A slot's model as files: the version's MLflow model folder, downloaded once into the state
folder, so that a slot needs neither the tracking server nor its credentials."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlci.errors import StageFailed
from mlci.settings import Settings


def model_folder(settings: Settings, name: str, version: str) -> Path:
    return settings.state_path / "serving" / name / "models" / f"v{version}"


def download_model(
    uri: str, name: str, version: str, dest: Path, log: Callable[[str], None]
) -> Path:
    """The version's MLflow model folder, downloaded once (a complete copy or none)."""
    if (dest / "MLmodel").is_file():
        return dest
    log(f"deploy: downloading {name} v{version} into {dest}")
    return download_model_uri(f"models:/{name}/{version}", dest, uri, f"{name} v{version}")


def download_model_uri(model_uri: str, dest: Path, tracking_uri: str | None, what: str) -> Path:
    """The MLflow model ``model_uri`` names, downloaded into ``dest`` (complete or not at all)."""
    if (dest / "MLmodel").is_file():
        return dest
    import shutil

    import mlflow.artifacts

    partial = dest.with_name(dest.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        mlflow.artifacts.download_artifacts(
            artifact_uri=model_uri, dst_path=str(partial), tracking_uri=tracking_uri
        )
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    found = next(partial.rglob("MLmodel"), None)
    if found is None:
        shutil.rmtree(partial, ignore_errors=True)
        raise StageFailed(
            f"{what} has no MLflow model (no MLmodel file in its artifacts)",
            "a slot serves what mlflow.pyfunc can load",
            "serve a version that train registered",
        )
    shutil.rmtree(dest, ignore_errors=True)
    found.parent.rename(dest)
    shutil.rmtree(partial, ignore_errors=True)
    return dest


def input_example(model_dir: Path) -> Any | None:
    """The version's saved input example as a DataFrame, or None when it has none."""
    import pandas as pd
    from mlflow.models import Model

    example = Model.load(str(model_dir)).load_input_example(str(model_dir))
    if example is None:
        return None
    return example if isinstance(example, pd.DataFrame) else pd.DataFrame(example)


def expected_outputs(model_dir: Path) -> int | None:
    """How many output columns the signature declares (None: no output schema)."""
    from mlflow.models import Model

    signature = Model.load(str(model_dir)).signature
    outputs = getattr(signature, "outputs", None) if signature is not None else None
    return len(outputs.inputs) if outputs is not None else None
