"""An MLflow pyfunc wrapper for models that are not scikit-learn estimators (the PyTorch
MLP of the model package): anything with ``predict(2-D array)``."""

from __future__ import annotations

from typing import Any

from mlflow.pyfunc.model import PythonModel


class PredictorModel(PythonModel):
    def __init__(self, predictor: Any) -> None:
        self.predictor = predictor

    def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:
        data = model_input.to_numpy() if hasattr(model_input, "to_numpy") else model_input
        return self.predictor.predict(data)
