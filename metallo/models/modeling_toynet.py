"""PyTorch ToyNet model: the baseline Metallo regressor."""

import torch
from torch import nn

from .configuration_toynet import ToyNetConfig
from .modeling_common import MetalloPreTrainedModel, ResNetTrunk, SpectralEncoder
from .registry import register_model


class ToyNetImageEncoder(nn.Module):
    """ResNet trunk -> global average pool -> linear: (B, 3, H, W) -> (B, hidden_dim)."""

    def __init__(self, config: ToyNetConfig):
        super().__init__()
        self.trunk = ResNetTrunk(config.backbone)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.proj = nn.Linear(self.trunk.num_channels, config.hidden_dim)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.proj(self.pool(self.trunk(pixel_values)).flatten(1))


class ToyNetSpectralEncoder(nn.Module):
    """Shared Conv1d encoder per spectrum -> mean over spectra -> linear: (B, S, L) -> (B, hidden_dim)."""

    def __init__(self, config: ToyNetConfig):
        super().__init__()
        self.encoder = SpectralEncoder(
            config.spectral_channels, config.spectral_pool_size, config.hidden_dim, separable=False
        )
        self.proj = nn.Linear(config.hidden_dim, config.hidden_dim)

    def forward(self, spectra: torch.Tensor) -> torch.Tensor:
        return self.proj(self.encoder(spectra).mean(dim=1))


@register_model("toynet")
class ToyNetModel(MetalloPreTrainedModel):
    """Baseline: concatenation of the image and spectral vectors -> MLP -> one standardised output."""

    config_class = ToyNetConfig
    base_model_prefix = "toynet"

    def __init__(self, config: ToyNetConfig):
        super().__init__(config)
        self.image_encoder = ToyNetImageEncoder(config) if "image" in config.modalities else None
        self.spectral_encoder = ToyNetSpectralEncoder(config) if "spectra" in config.modalities else None
        width = config.hidden_dim * len(config.modalities)
        self.head = nn.Sequential(
            nn.Linear(width, config.hidden_dim),
            nn.GELU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.hidden_dim, 1),
        )
        self.post_init()
        self.load_backbone_weights(self.image_encoder.trunk if self.image_encoder is not None else None)

    def forward_features(
        self, pixel_values: torch.Tensor | None, spectra: torch.Tensor | None
    ) -> tuple[torch.Tensor, dict]:
        """Returns the concatenated branch vectors (B, hidden_dim * len(modalities)); ToyNet has no explanation map."""
        features = []
        if self.image_encoder is not None:
            features.append(self.image_encoder(pixel_values))
        if self.spectral_encoder is not None:
            features.append(self.spectral_encoder(spectra))
        return torch.cat(features, dim=-1), {}

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """MLP on the features: (B, D) -> (B,) in standardised label units."""
        return self.head(features).squeeze(-1)


__all__ = ["ToyNetModel"]
