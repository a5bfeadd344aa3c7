"""Classical baseline: SNV band statistics + image statistics + ridge regression, as a Hugging Face model.

Being a `PreTrainedModel` lets the baseline go through the same stages, files and tools as the deep
models (`models/model`, `metallo predict`, the MLflow pyfunc): its "weights" are the feature
standardisation and the ridge coefficients, saved as safetensors.
"""

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from metallo.processing import snv

from .common import MetalloPreTrainedModel
from .configuration_classical import ClassicalConfig


def spectra_features(spectra: torch.Tensor, n_bands: int) -> torch.Tensor:
    """(B, S, L) raw spectra -> (B, 2 * n_bands): mean and std over the grid of the SNV band averages."""
    batch, n_spectra, length = spectra.shape
    bands = F.adaptive_avg_pool1d(snv(spectra.float()).reshape(batch * n_spectra, 1, length), n_bands)
    bands = bands.view(batch, n_spectra, n_bands)
    return torch.cat([bands.mean(dim=1), bands.std(dim=1, unbiased=False)], dim=1)


def image_features(pixel_values: torch.Tensor, bins: int, scales: list[int], dark_threshold: float) -> torch.Tensor:
    """(B, 3, H, W) intensities in [0, 1] -> (B, bins + 3 + 2 * len(scales)) grey-level and texture statistics."""
    grey = pixel_values.float().mean(dim=1, keepdim=True)
    grey = grey / grey.amax(dim=(2, 3), keepdim=True).clamp_min(1e-6)
    flat = grey.flatten(1)
    index = (flat * bins).long().clamp_(0, bins - 1)
    histogram = torch.zeros(flat.shape[0], bins, device=flat.device).scatter_add_(1, index, torch.ones_like(flat))
    columns = [histogram / flat.shape[1], flat.mean(1, keepdim=True), flat.std(1, unbiased=False, keepdim=True)]
    for scale in scales:
        level = F.avg_pool2d(grey, scale) if scale > 1 else grey
        dx = level[..., :-1, 1:] - level[..., :-1, :-1]
        dy = level[..., 1:, :-1] - level[..., :-1, :-1]
        magnitude = (dx.square() + dy.square()).sqrt().flatten(1)
        columns += [magnitude.mean(1, keepdim=True), magnitude.std(1, unbiased=False, keepdim=True)]
    columns.append((flat < dark_threshold).float().mean(1, keepdim=True))
    return torch.cat(columns, dim=1)


class ClassicalModel(MetalloPreTrainedModel):
    """Hand-made features -> standardisation -> ridge; fitted by `fit`, never by gradient descent."""

    config_class = ClassicalConfig
    base_model_prefix = "classical"

    def __init__(self, config: ClassicalConfig):
        super().__init__(config)
        n_features = 0
        if "image" in config.modalities:
            n_features += config.histogram_bins + 3 + 2 * len(config.gradient_scales)
        if "spectra" in config.modalities:
            n_features += 2 * config.n_bands
        self.register_buffer("feature_mean", torch.zeros(n_features))
        self.register_buffer("feature_std", torch.ones(n_features))
        self.head = nn.Linear(n_features, 1)
        self.post_init()

    def extract_features(self, pixel_values: torch.Tensor | None, spectra: torch.Tensor | None) -> torch.Tensor:
        """The raw (unstandardised) feature vector of each sample, (B, n_features)."""
        parts = []
        if "image" in self.config.modalities:
            parts.append(image_features(pixel_values, self.config.histogram_bins, self.config.gradient_scales,
                                        self.config.dark_threshold))
        if "spectra" in self.config.modalities:
            parts.append(spectra_features(spectra, self.config.n_bands))
        return torch.cat(parts, dim=1)

    def forward_features(self, pixel_values, spectra) -> tuple[torch.Tensor, dict]:
        """Standardised features (B, n_features); the baseline has no explanation map."""
        features = self.extract_features(pixel_values, spectra)
        return (features - self.feature_mean) / self.feature_std, {}

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Ridge prediction in standardised label units: (B, n_features) -> (B,)."""
        return self.head(features.to(self.head.weight.dtype)).squeeze(-1)

    @torch.no_grad()
    def fit(self, features: np.ndarray, labels: np.ndarray) -> float:
        """Fit standardisation and ridge on training `features` (from `extract_features`) and labels (label units).

        Returns the ridge penalty chosen by leave-one-out cross-validation among `config.ridge_alphas`.
        """
        from sklearn.linear_model import RidgeCV

        features = np.asarray(features, dtype=np.float64)
        mean = features.mean(axis=0)
        std = features.std(axis=0)
        std = np.where(std > 1e-12, std, 1.0)  # a constant feature carries nothing; keep it finite
        targets = (np.asarray(labels, dtype=np.float64) - self.config.label_mean) / self.config.label_std
        ridge = RidgeCV(alphas=self.config.ridge_alphas).fit((features - mean) / std, targets)
        as_tensor = lambda v: torch.as_tensor(v, dtype=torch.float32, device=self.head.weight.device)  # noqa: E731
        self.feature_mean.copy_(as_tensor(mean))
        self.feature_std.copy_(as_tensor(std))
        self.head.weight.copy_(as_tensor(ridge.coef_).view(1, -1))
        self.head.bias.fill_(float(ridge.intercept_))
        return float(ridge.alpha_)


__all__ = ["ClassicalModel"]
