"""The yardsticks every evaluation reports beside the model: the mean of the training labels and
the classical baseline (SNV band statistics + image statistics + ridge), fitted on the same train split."""

from __future__ import annotations

import numpy as np

from metallo.data.dataset import MetalloDataset
from metallo.metrics import regression_metrics
from metallo.models import create_model
from metallo.prediction import predict_arrays
from metallo.processing import MetalloProcessor
from metallo.training.closed_form import fit_closed_form


def mean_baseline(stats: dict, test: MetalloDataset) -> np.ndarray:
    """The mean training label for every test sample."""
    return np.full(len(test), stats["label"]["mean"], dtype=np.float64)


def classical_baseline(
    stats: dict,
    train: MetalloDataset,
    test: MetalloDataset,
    *,
    n_spectra: int,
    spectrum_length: int,
    grid: tuple[int, int],
    image_size: int,
    geometry: dict,
) -> np.ndarray:
    """Fit the classical model (default config, image statistics at ``image_size``) on ``train``; its predictions
    for ``test``.

    ``geometry`` holds the processor's ``fit``, ``resize``, ``crop`` and ``bit_depth``.
    """
    model = create_model(
        "classical",
        n_spectra=n_spectra,
        spectrum_length=spectrum_length,
        grid=list(grid),
        image_size=image_size,
        label_mean=stats["label"]["mean"],
        label_std=stats["label"]["std"] or 1.0,
    )
    processor = MetalloProcessor.from_stats(
        stats, image_size=model.config.image_size, **geometry, spectra_norm="none", image_norm="none"
    )
    fit_closed_form(model, processor, train)
    images, spectra = test.arrays()
    predictions, _ = predict_arrays(model, processor, images.numpy(), spectra.numpy())
    return predictions.astype(np.float64)


def baseline_metrics(stats: dict, train: MetalloDataset, test: MetalloDataset, model_config, processor) -> dict:
    """``{"mean": metrics, "classical": metrics}`` on ``test`` for the model described by ``model_config``."""
    y_true = test.labels.astype(np.float64)
    classical = classical_baseline(
        stats,
        train,
        test,
        n_spectra=model_config.n_spectra,
        spectrum_length=model_config.spectrum_length,
        grid=tuple(model_config.grid),
        image_size=processor.crop,  # the stored resolution: the strongest yardstick
        geometry={k: getattr(processor, k) for k in ("fit", "resize", "crop", "bit_depth")},
    )
    return {
        "mean": regression_metrics(y_true, mean_baseline(stats, test)),
        "classical": regression_metrics(y_true, classical),
    }
