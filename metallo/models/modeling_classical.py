"""Classical baseline: SNV band statistics + image statistics + ridge regression, as a Hugging Face model.

Being a `PreTrainedModel` lets the baseline go through the same stages, files and tools as the deep
models (`models/model`, `metallo predict`, the MLflow pyfunc): its "weights" are the feature
standardisation and the ridge coefficients, saved as safetensors.
"""

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .cells import cell_spectra_bands
from .configuration_classical import ClassicalConfig
from .modeling_common import MetalloPreTrainedModel
from .registry import register_model


def spectra_features(spectra: torch.Tensor, n_bands: int) -> torch.Tensor:
    """(B, S, L) raw spectra -> (B, 2 * n_bands): mean and std over the grid of the SNV band averages."""
    bands = cell_spectra_bands(spectra, n_bands)
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


def fit_ridge(features: np.ndarray, targets: np.ndarray, alphas: list[float]) -> dict[str, np.ndarray | float]:
    """Standardise `features` and fit ridge regression to `targets`, the penalty chosen by leave-one-out CV."""
    from sklearn.linear_model import RidgeCV

    features = np.asarray(features, dtype=np.float64)
    mean = features.mean(axis=0)
    std = features.std(axis=0)
    std = np.where(std > 1e-12, std, 1.0)  # a constant feature carries nothing; keep it finite
    ridge = RidgeCV(alphas=alphas).fit((features - mean) / std, np.asarray(targets, dtype=np.float64))
    return {
        "mean": mean,
        "std": std,
        "coef": ridge.coef_,
        "intercept": float(ridge.intercept_),
        "alpha": float(ridge.alpha_),
    }


class ClassicalFeatures(nn.Module):
    """The classical feature vector of raw inputs, standardised with training statistics (buffers).

    (B, 3, H, W) intensities in [0, 1] and (B, S, L) spectra as measured -> (B, n_features).
    """

    def __init__(self, modalities, n_bands: int, histogram_bins: int, gradient_scales, dark_threshold: float):
        super().__init__()
        self.modalities = list(modalities)
        self.n_bands, self.histogram_bins = n_bands, histogram_bins
        self.gradient_scales, self.dark_threshold = list(gradient_scales), dark_threshold
        n_features = (histogram_bins + 3 + 2 * len(self.gradient_scales)) * ("image" in self.modalities)
        n_features += 2 * n_bands * ("spectra" in self.modalities)
        self.register_buffer("feature_mean", torch.zeros(n_features))
        self.register_buffer("feature_std", torch.ones(n_features))

    @property
    def n_features(self) -> int:
        return self.feature_mean.numel()

    def extract(self, raw_pixel_values: torch.Tensor | None, raw_spectra: torch.Tensor | None) -> torch.Tensor:
        """The raw (unstandardised) features, (B, n_features)."""
        parts = []
        with torch.autocast(self.feature_mean.device.type, enabled=False):
            if "image" in self.modalities:
                parts.append(
                    image_features(raw_pixel_values, self.histogram_bins, self.gradient_scales, self.dark_threshold)
                )
            if "spectra" in self.modalities:
                parts.append(spectra_features(raw_spectra, self.n_bands))
        return torch.cat(parts, dim=1)

    def extract_raw(self, raw_pixel_values: torch.Tensor | None, raw_spectra: torch.Tensor | None) -> torch.Tensor:
        """What a closed-form fit collects per sample (the raw features)."""
        return self.extract(raw_pixel_values, raw_spectra)

    def prepare(self, raw: np.ndarray) -> np.ndarray:
        """Training rows of :meth:`extract_raw` -> the feature matrix to fit on (here the same)."""
        return raw

    def forward(self, raw_pixel_values: torch.Tensor | None, raw_spectra: torch.Tensor | None) -> torch.Tensor:
        return (self.extract(raw_pixel_values, raw_spectra) - self.feature_mean) / self.feature_std

    @torch.no_grad()
    def set_statistics(self, mean: np.ndarray, std: np.ndarray) -> None:
        self.feature_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.feature_std.copy_(torch.as_tensor(std, dtype=torch.float32))


def classical_features(config) -> ClassicalFeatures:
    """The feature module described by a config's `n_bands`, `histogram_bins`, ... fields."""
    return ClassicalFeatures(
        config.modalities, config.n_bands, config.histogram_bins, config.gradient_scales, config.dark_threshold
    )


@torch.no_grad()
def set_linear(layer: nn.Linear, coef: np.ndarray, intercept: float) -> None:
    layer.weight.copy_(torch.as_tensor(coef, dtype=layer.weight.dtype).view(1, -1))
    layer.bias.fill_(float(intercept))


@register_model("classical")
class ClassicalModel(MetalloPreTrainedModel):
    """Hand-made features -> standardisation -> ridge; fitted by `fit`, never by gradient descent."""

    config_class = ClassicalConfig
    base_model_prefix = "classical"

    def __init__(self, config: ClassicalConfig):
        super().__init__(config)
        self.features = classical_features(config)
        self.head = nn.Linear(self.features.n_features, 1)
        self.post_init()

    def extract_features(self, pixel_values: torch.Tensor | None, spectra: torch.Tensor | None) -> torch.Tensor:
        """The raw (unstandardised) feature vector of each sample, (B, n_features)."""
        return self.features.extract(pixel_values, spectra)

    def forward_features(self, pixel_values, spectra) -> tuple[torch.Tensor, dict]:
        """Standardised features (B, n_features); the baseline has no explanation map."""
        return self.features(pixel_values, spectra), {}

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Ridge prediction in standardised label units: (B, n_features) -> (B,)."""
        return self.head(features.to(self.head.weight.dtype)).squeeze(-1)

    def fit(self, features: np.ndarray, labels: np.ndarray) -> float:
        """Fit standardisation and ridge on training `features` (from `extract_features`) and labels (label units).

        Returns the ridge penalty chosen by leave-one-out cross-validation among `config.ridge_alphas`.
        """
        targets = (np.asarray(labels, dtype=np.float64) - self.config.label_mean) / self.config.label_std
        fitted = fit_ridge(features, targets, self.config.ridge_alphas)
        self.features.set_statistics(fitted["mean"], fitted["std"])
        set_linear(self.head, fitted["coef"], fitted["intercept"])
        return fitted["alpha"]


__all__ = ["ClassicalFeatures", "ClassicalModel", "fit_ridge"]
