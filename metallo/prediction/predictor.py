"""A trained model ready to predict: the one place a model directory becomes a predictor.

The model, its input processor and its validation residuals (``calibration.json``) come from the
folder the train stage wrote; :meth:`Predictor.predict` gives each prediction its split-conformal
interval (see :mod:`metallo.uncertainty`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from metallo.prediction.arrays import predict_arrays
from metallo.prediction.loading import load_model
from metallo.processing import MetalloProcessor
from metallo.uncertainty import conformal_halfwidth, load_calibration


@dataclass
class Predictor:
    """A loaded model, its processor and its calibration residuals (None for a model saved without them)."""

    model: object
    processor: MetalloProcessor
    residuals: np.ndarray | None

    @property
    def spectra_shape(self) -> tuple[int, int]:
        """``(n_spectra, spectrum_length)`` the model was trained on."""
        return (self.model.config.n_spectra, self.model.config.spectrum_length)

    def halfwidth(self, level: float) -> float:
        """Half-width of the interval at ``level``; NaN when the model has no calibration."""
        return conformal_halfwidth(self.residuals, level) if self.residuals is not None else math.nan

    def predict(self, images: np.ndarray, spectra: np.ndarray, *, batch_size: int = 64) -> np.ndarray:
        """Predictions (float64) for uint8 images (N×H×W×3) and raw spectra (N×S×L)."""
        predictions, _ = predict_arrays(self.model, self.processor, images, spectra, batch_size=batch_size)
        return predictions.astype(np.float64)


def load_predictor(directory: str | os.PathLike) -> Predictor:
    """Build the predictor from a model directory written by the train stage (calibration, then model)."""
    residuals = load_calibration(directory)
    model, processor = load_model(directory)
    return Predictor(model, processor, residuals)
