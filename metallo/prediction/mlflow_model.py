"""The trained model as an MLflow pyfunc model.

``mlflow.pyfunc.load_model(uri).predict({"pixel_values": images, "spectra": spectra})``
takes uint8 micrographs (N×H×W×3, after the convert geometry) and raw spectra (N×S×L)
and returns a table with the predicted DOS per sample (``dos_pred``, the name ``metallo predict`` and
``metrics/predictions.csv`` use, see :mod:`metallo.metric_names`) and its split-conformal interval
(``dos_lower``, ``dos_upper``; level from ``params={"interval": 0.9}``).
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

from metallo import metric_names as names
from metallo.constants import INTERVAL_LEVEL
from metallo.prediction.predictor import load_predictor
from metallo.tracking.console import no_progress_bars

#: The LoggedModel's name is ``<ARTIFACT_NAME>-<DVC experiment or run id>``: one name per model in the UI.
ARTIFACT_NAME = "metallo"
OUTPUTS = (names.PREDICTION, names.LOWER, names.UPPER)


class MetalloPyfuncModel(mlflow.pyfunc.PythonModel):
    """Wraps a Metallo model directory (config, safetensors weights, preprocessor, calibration)."""

    def load_context(self, context) -> None:
        with no_progress_bars():
            self.predictor = load_predictor(context.artifacts["model"])

    def predict(self, context, model_input, params=None) -> pd.DataFrame:
        predictions = self.predictor.predict(
            np.asarray(model_input["pixel_values"], dtype=np.uint8),
            np.asarray(model_input["spectra"], dtype=np.float32),
        )
        half = self.predictor.halfwidth(float((params or {}).get("interval", INTERVAL_LEVEL)))
        return pd.DataFrame(dict(zip(OUTPUTS, (predictions, predictions - half, predictions + half), strict=True)))


def signature(n_spectra: int, spectrum_length: int):
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema, TensorSpec

    inputs = Schema(
        [
            TensorSpec(np.dtype(np.uint8), (-1, -1, -1, 3), "pixel_values"),
            TensorSpec(np.dtype(np.float32), (-1, n_spectra, spectrum_length), "spectra"),
        ]
    )
    outputs = Schema([ColSpec("double", name) for name in OUTPUTS])
    return ModelSignature(
        inputs=inputs, outputs=outputs, params=ParamSchema([ParamSpec("interval", "double", INTERVAL_LEVEL)])
    )


def pip_requirements() -> list[str]:
    """The pinned runtime requirements of this project (no inference from the environment)."""
    from importlib.metadata import version

    names = ("torch", "torchvision", "transformers", "safetensors", "mlflow", "numpy")
    return [f"{name}=={version(name)}" for name in names]


def logged_model_name(model_type: str, run_id: str) -> str:
    """``metallo-<DVC experiment>`` (else ``metallo-<model type>-<run id's first 8>``): a name per model."""
    import os
    import re

    experiment = os.environ.get("DVC_EXP_NAME", "")
    tail = experiment or f"{model_type.removeprefix('metallo_')}-{run_id[:8]}".strip("-")
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{ARTIFACT_NAME}-{tail}")


def log_pyfunc_model(tracker, model_dir: str | Path, input_example: dict | None = None) -> str | None:
    """Log ``model_dir`` as a pyfunc model into the tracker's run (no-op when tracking is off); return the
    MLflow LoggedModel id.

    The model is logged from code (:mod:`metallo.prediction.mlflow_entry`), not pickled; the
    ``metallo`` package travels with it as its code path. ``input_example``: one sample as the model's
    input dict (``pixel_values``, ``spectra``), stored with the model.
    """
    if not tracker.enabled:
        return None
    import json
    import warnings

    config = json.loads((Path(model_dir) / "config.json").read_text())
    name = logged_model_name(config.get("model_type", ""), tracker.run_id)
    package = Path(__file__).resolve().parents[1]  # metallo/

    def _log() -> str:
        with mlflow.start_run(run_id=tracker.run_id), warnings.catch_warnings():
            # The signature names both inputs; MLflow's hints about type hints and input examples don't apply.
            warnings.filterwarnings("ignore", message=".*(type hints|input example).*")
            info = mlflow.pyfunc.log_model(
                name=name,
                python_model=str(Path(__file__).with_name("mlflow_entry.py")),
                artifacts={"model": str(model_dir)},
                code_paths=[str(package)],
                signature=signature(config["n_spectra"], config["spectrum_length"]),
                input_example=input_example,
                pip_requirements=pip_requirements(),
            )
        return info.model_id

    return tracker.call("log the pyfunc model", _log)
