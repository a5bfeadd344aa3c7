"""Predicting with a trained model, one job per module.

* :mod:`~metallo.prediction.loading`: a model directory → the model and its processor (safe loading).
* :mod:`~metallo.prediction.arrays`: predictions for arrays of uint8 images and raw spectra.
* :mod:`~metallo.prediction.predictor`: :func:`load_predictor`, the one place a model directory becomes
  a :class:`Predictor` (model, processor and calibration, predictions with intervals).
* :mod:`~metallo.prediction.manifest`: predictions for a new manifest (``metallo predict``).
* :mod:`~metallo.prediction.mlflow_model` and :mod:`~metallo.prediction.mlflow_entry`: the model as an
  MLflow pyfunc model, logged from code.
"""

from metallo.prediction.arrays import check_compatible, predict_arrays
from metallo.prediction.loading import load_model, load_processor
from metallo.prediction.manifest import PredictResult, predict, write_predictions
from metallo.prediction.predictor import Predictor, load_predictor

__all__ = [
    "PredictResult",
    "Predictor",
    "check_compatible",
    "load_model",
    "load_predictor",
    "load_processor",
    "predict",
    "predict_arrays",
    "write_predictions",
]
