"""Loading a trained model directory and predicting batches of samples."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from metallo.errors import MetalloError
from metallo.processing import MetalloProcessor


def load_model(directory: str | os.PathLike, device: str | torch.device | None = None):
    """Load ``(model, processor)`` from a directory written by the train stage (safetensors only)."""
    import metallo.models  # noqa: F401 - registers the model classes with AutoModel
    from transformers import AutoConfig, AutoModel

    directory = Path(directory)
    if not (directory / "config.json").is_file():
        raise MetalloError(f"{directory} is not a model directory (no config.json); train one with `dvc repro train` "
                           "or pass the folder the train stage wrote (models/model).")
    try:
        config = AutoConfig.from_pretrained(directory)
    except (ValueError, KeyError) as err:
        raise MetalloError(f"{directory}/config.json does not describe a Metallo model ({err}). "
                           f"Known models: {', '.join(metallo.models.list_models())}.") from None
    metallo_types = {metallo.models.get_config_class(name).model_type for name in metallo.models.list_models()}
    if getattr(config, "model_type", None) not in metallo_types:
        raise MetalloError(f"{directory} holds a {config.model_type!r} model, not a Metallo model "
                           f"({', '.join(metallo.models.list_models())}); pass the folder Metallo's train stage "
                           "wrote (models/model), or retrain with `dvc repro train`.")
    if not (directory / "model.safetensors").is_file():
        raise MetalloError(f"{directory} has no model.safetensors; Metallo loads weights only from safetensors files.")
    model = AutoModel.from_pretrained(directory, config=config, use_safetensors=True)
    model.eval()
    device = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return model.to(device), MetalloProcessor.from_pretrained(directory)


def check_compatible(model, images_shape: tuple, spectra_shape: tuple) -> None:
    """Refuse data whose spectra shape differs from what the model was trained on."""
    expected = (model.config.n_spectra, model.config.spectrum_length)
    if tuple(spectra_shape[1:]) != expected:
        raise MetalloError(f"the data's spectra are {tuple(spectra_shape[1:])} per sample, but the model was trained "
                           f"on {expected} (n_spectra, spectrum_length). Use data with the model's shape, or retrain "
                           "with data.n_spectra / data.spectrum_length set to your data.")
    if len(images_shape) != 4 or images_shape[-1] != 3:
        raise MetalloError(f"images must be uint8 (N, height, width, 3); got {tuple(images_shape)}")


@torch.inference_mode()
def predict_arrays(model, processor: MetalloProcessor, images: np.ndarray, spectra: np.ndarray, *,
                   batch_size: int = 64, return_attention: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """Predict labels for uint8 images (N×H×W×3) and raw spectra (N×S×L); arrays may be memory maps."""
    check_compatible(model, images.shape, spectra.shape)
    device = next(model.parameters()).device
    predictions, attention = [], []
    for start in range(0, len(images), batch_size):
        batch = processor({
            "pixel_values": torch.from_numpy(np.ascontiguousarray(images[start:start + batch_size])).to(device),
            "spectra": torch.from_numpy(np.ascontiguousarray(spectra[start:start + batch_size], dtype=np.float32)).to(device),
        })
        output = model(**batch, return_attention=return_attention)
        predictions.append(output.predictions.float().cpu().numpy())
        explanation = output.cell_contributions if output.cell_contributions is not None else output.attention
        if return_attention and explanation is not None:  # per-cell contributions (grid fusion) or attention
            attention.append(explanation.float().cpu().numpy())
    preds = np.concatenate(predictions) if predictions else np.zeros(0, dtype=np.float32)
    return preds, (np.concatenate(attention) if attention else None)
