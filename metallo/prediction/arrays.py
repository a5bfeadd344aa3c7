"""Predicting batches of samples held as arrays (uint8 images, raw spectra) with a loaded model."""

from __future__ import annotations

import numpy as np
import torch

from metallo.errors import MetalloError
from metallo.processing import MetalloProcessor


def check_compatible(model, images_shape: tuple, spectra_shape: tuple) -> None:
    """Refuse data whose spectra shape differs from what the model was trained on."""
    expected = (model.config.n_spectra, model.config.spectrum_length)
    if tuple(spectra_shape[1:]) != expected:
        raise MetalloError(
            f"the data's spectra are {tuple(spectra_shape[1:])} per sample, but the model was trained "
            f"on {expected} (n_spectra, spectrum_length). Use data with the model's shape, or retrain "
            "with data.n_spectra / data.spectrum_length set to your data."
        )
    if len(images_shape) != 4 or images_shape[-1] != 3:
        raise MetalloError(f"images must be uint8 (N, height, width, 3); got {tuple(images_shape)}")


@torch.inference_mode()
def predict_arrays(
    model,
    processor: MetalloProcessor,
    images: np.ndarray,
    spectra: np.ndarray,
    *,
    batch_size: int = 64,
    return_attention: bool = False,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Predict labels for uint8 images (N×H×W×3) and raw spectra (N×S×L); arrays may be memory maps."""
    check_compatible(model, images.shape, spectra.shape)
    device = next(model.parameters()).device
    predictions, attention = [], []
    for start in range(0, len(images), batch_size):
        stop = start + batch_size
        batch = processor(
            {
                "pixel_values": torch.from_numpy(np.ascontiguousarray(images[start:stop])).to(device),
                "spectra": torch.from_numpy(np.ascontiguousarray(spectra[start:stop], dtype=np.float32)).to(device),
            }
        )
        output = model(**batch, return_attention=return_attention)
        predictions.append(output.predictions.float().cpu().numpy())
        explanation = output.cell_contributions if output.cell_contributions is not None else output.attention
        if return_attention and explanation is not None:  # per-cell contributions (grid fusion) or attention
            attention.append(explanation.float().cpu().numpy())
    preds = np.concatenate(predictions) if predictions else np.zeros(0, dtype=np.float32)
    return preds, (np.concatenate(attention) if attention else None)
