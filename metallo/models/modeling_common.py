"""Modeling pieces shared by the Metallo regressors: ResNet trunk, spectral encoder, losses, outputs, base class."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn
from torchvision import models as tv_models
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from .configuration_common import BACKBONE_NAMES, LOSS_NAMES

#: torchvision constructor and output channels of each backbone in `BACKBONE_NAMES`.
BACKBONES = {"resnet18": (tv_models.resnet18, 512), "resnet50": (tv_models.resnet50, 2048)}
#: Each loss in `LOSS_NAMES` as a function of (output, target, huber delta).
LOSSES = {
    "mse": lambda output, target, delta: F.mse_loss(output, target),
    "huber": lambda output, target, delta: F.huber_loss(output, target, delta=delta),
    "l1": lambda output, target, delta: F.l1_loss(output, target),
}
assert tuple(BACKBONES) == BACKBONE_NAMES and tuple(LOSSES) == LOSS_NAMES, "one definition per backbone and loss"


class ResNetTrunk(nn.Module):
    """A torchvision ResNet without its pooling and classifier: (B, 3, H, W) -> (B, C, ceil(H/32), ceil(W/32)).

    With `depth` < 4 the trunk stops after that stage (and has no later layers). Submodule names match torchvision's,
    so torchvision state dicts load into it unchanged (minus `fc.*` and the stages it does not have).
    """

    def __init__(self, name: str, depth: int = 4):
        super().__init__()
        build, self.num_channels = BACKBONES[name]
        resnet = build(weights=None)
        self.depth = depth
        self.conv1, self.bn1, self.relu, self.maxpool = resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool
        expansion = self.num_channels // 512
        self.stage_channels = {stage: 64 * 2 ** (stage - 1) * expansion for stage in range(1, 5)}
        for stage in range(1, depth + 1):
            setattr(self, f"layer{stage}", getattr(resnet, f"layer{stage}"))
        self.num_channels = self.stage_channels[depth]

    def forward_stages(self, pixel_values: torch.Tensor) -> dict[int, torch.Tensor]:
        """Output of every stage the trunk has, keyed 1..depth."""
        hidden = self.maxpool(self.relu(self.bn1(self.conv1(pixel_values))))
        outputs = {}
        for stage in range(1, self.depth + 1):
            hidden = getattr(self, f"layer{stage}")(hidden)
            outputs[stage] = hidden
        return outputs

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.forward_stages(pixel_values)[self.depth]


def load_backbone_weights(trunk: ResNetTrunk, path: str) -> None:
    """Loads a local torchvision ResNet state dict (`.safetensors` or `.pth`/`.pt`) into `trunk`, ignoring `fc.*`."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(
            f"backbone_weights file not found: {str(file)!r}. It must be a local .safetensors or .pth ResNet "
            "state dict (nothing is downloaded); set backbone_weights to null for a randomly initialised backbone."
        )
    if file.suffix == ".safetensors":
        state_dict = load_file(file)
    elif file.suffix in (".pth", ".pt"):
        state_dict = torch.load(file, weights_only=True, map_location="cpu")
    else:
        raise ValueError(f"backbone_weights must end in .safetensors, .pth or .pt; got {str(file)!r}")
    absent = ("fc.", *(f"layer{stage}." for stage in range(trunk.depth + 1, 5)))
    state_dict = {key: value for key, value in state_dict.items() if not key.startswith(absent)}
    missing, unexpected = trunk.load_state_dict(state_dict, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"backbone_weights {str(file)!r} does not match the torchvision ResNet trunk: "
            f"missing keys {sorted(missing)[:5]}, unexpected keys {sorted(unexpected)[:5]}"
        )


class SpectralEncoder(nn.Module):
    """Encodes each spectrum with shared weights: (B, S, L) -> (B, S, out_dim).

    A stride-4 Conv1d stem, then one stride-2 block per further entry of `channels` (plain Conv1d, or depthwise +
    pointwise when `separable`), each followed by BatchNorm and GELU. Adaptive average pooling to `pool_size` bins
    keeps the coarse wavelength position before the flattening projection.
    """

    def __init__(self, channels: list[int], pool_size: int, out_dim: int, separable: bool):
        super().__init__()
        layers = [nn.Conv1d(1, channels[0], kernel_size=7, stride=4, padding=3, bias=False)]
        layers += [nn.BatchNorm1d(channels[0]), nn.GELU()]
        for in_channels, out_channels in zip(channels, channels[1:]):
            if separable:
                depthwise = nn.Conv1d(
                    in_channels, in_channels, kernel_size=5, stride=2, padding=2, groups=in_channels, bias=False
                )
                layers += [depthwise, nn.Conv1d(in_channels, out_channels, kernel_size=1, bias=False)]
            else:
                layers.append(nn.Conv1d(in_channels, out_channels, kernel_size=5, stride=2, padding=2, bias=False))
            layers += [nn.BatchNorm1d(out_channels), nn.GELU()]
        self.convs = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool1d(pool_size)
        self.proj = nn.Linear(channels[-1] * pool_size, out_dim)

    def forward(self, spectra: torch.Tensor) -> torch.Tensor:
        batch, n_spectra, length = spectra.shape
        hidden = self.pool(self.convs(spectra.reshape(batch * n_spectra, 1, length)))
        return self.proj(hidden.flatten(1)).view(batch, n_spectra, -1)


def check_inputs(config, pixel_values: torch.Tensor | None, spectra: torch.Tensor | None, modalities=None) -> None:
    """Raises a ValueError naming the expected shape when an input used by `modalities` (default
    `config.modalities`) is missing or wrong."""
    expected = {
        "image": ("pixel_values", pixel_values, (3, config.image_size, config.image_size), "image_size"),
        "spectra": ("spectra", spectra, (config.n_spectra, config.spectrum_length), "n_spectra, spectrum_length"),
    }
    batch_sizes = set()
    for modality in config.modalities if modalities is None else modalities:
        name, tensor, shape, fields = expected[modality]
        shape_text = f"(batch, {', '.join(map(str, shape))})"
        if tensor is None:
            raise ValueError(f"{name} is required for modalities {config.modalities}; expected shape {shape_text}")
        if tensor.dim() != len(shape) + 1 or tuple(tensor.shape[1:]) != shape:
            raise ValueError(
                f"{name} must have shape {shape_text} ({fields} from the model config); got {tuple(tensor.shape)}"
            )
        if not tensor.is_floating_point():
            raise ValueError(f"{name} must be a floating point tensor; got {tensor.dtype}")
        batch_sizes.add(tensor.shape[0])
    if len(batch_sizes) > 1:
        raise ValueError(
            f"pixel_values and spectra must have the same batch size; got {tuple(pixel_values.shape)} "
            f"and {tuple(spectra.shape)}"
        )


@dataclass
class RegressionOutput(ModelOutput):
    """Output of the Metallo regressors.

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*):
            Loss in standardised label units, returned when `labels` is given.
        predictions (`torch.FloatTensor` of shape `(batch,)`):
            Predictions in label units (`head * label_std + label_mean`).
        attention (`torch.FloatTensor` of shape `(batch, h, w)`, *optional*):
            A spatial-attention map over the image in [0, 1], for models that have one (none of the current ones).
        cell_contributions (`torch.FloatTensor` of shape `(batch, rows, cols)`, *optional*):
            Each measurement cell's share of the prediction, in label units (their mean is the local part of the
            prediction); returned by MetalloNet when `return_attention=True`.
    """

    loss: torch.FloatTensor | None = None
    predictions: torch.FloatTensor | None = None
    attention: torch.FloatTensor | None = None
    cell_contributions: torch.FloatTensor | None = None


class MetalloPreTrainedModel(PreTrainedModel):
    """Base class: input checks, label standardisation, loss and weight init shared by the Metallo regressors.

    Subclasses build their modules, call `post_init()` and then `load_backbone_weights()`, and implement
    `forward_features(pixel_values, spectra) -> (features, maps)` and `forward_head(features) -> (B,)`, where `maps`
    holds the explanation maps a model has (`attention`, `cell_contributions`; see `RegressionOutput`).
    """

    main_input_name = "pixel_values"

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            init.normal_(module.weight, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, std=std)
        elif isinstance(module, (nn.Conv1d, nn.Conv2d)):
            init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm)):
            init.ones_(module.weight)
            init.zeros_(module.bias)
            if getattr(module, "running_mean", None) is not None:
                init.zeros_(module.running_mean)
                init.ones_(module.running_var)
                init.zeros_(module.num_batches_tracked)

    def load_backbone_weights(self, trunk: ResNetTrunk | None) -> None:
        """Loads `config.backbone_weights` into `trunk` when the model is first built.

        Skipped when the model is built on the meta device (as `from_pretrained` does), whose saved weights win.
        """
        if self.config.backbone_weights and trunk is not None and not trunk.conv1.weight.is_meta:
            load_backbone_weights(trunk, self.config.backbone_weights)

    def forward_features(self, pixel_values, spectra):
        raise NotImplementedError

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_classical_branch(self, raw_pixel_values, raw_spectra) -> torch.Tensor | None:
        """A linear readout of classical features added to the head (models with a classical branch)."""
        return None

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        spectra: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        return_attention: bool = False,
        raw_pixel_values: torch.Tensor | None = None,
        raw_spectra: torch.Tensor | None = None,
    ) -> RegressionOutput:
        r"""
        Args:
            pixel_values (`torch.FloatTensor` of shape `(batch, 3, image_size, image_size)`):
                Normalised micrographs; may be None when `"image"` is not in `config.modalities`.
            spectra (`torch.FloatTensor` of shape `(batch, n_spectra, spectrum_length)`):
                Reflectance spectra, row-major over `config.grid`; may be None when `"spectra"` is not in
                `config.modalities`.
            labels (`torch.FloatTensor` of shape `(batch,)`, *optional*):
                Targets in label units; when given, the loss is computed on standardised units.
            return_attention (`bool`, *optional*, defaults to `False`):
                Whether to return the model's explanation maps (spatial attention or per-cell contributions; models
                without one return None).
            raw_pixel_values (`torch.FloatTensor` of shape `(batch, 3, image_size, image_size)`, *optional*):
                The micrographs before normalisation (intensities in [0, 1]), for a model's classical branch.
            raw_spectra (`torch.FloatTensor` of shape `(batch, n_spectra, spectrum_length)`, *optional*):
                The spectra as measured, for a model's classical branch.
        """
        check_inputs(self.config, pixel_values, spectra)
        features, maps = self.forward_features(pixel_values, spectra)
        head = self.forward_head(features).float()
        wide = self.forward_classical_branch(raw_pixel_values, raw_spectra)
        if wide is not None:
            head = head + wide.float()
        return self.regression_output(head, labels, maps if return_attention else {})

    def regression_output(self, head: torch.Tensor, labels: torch.Tensor | None, maps: dict) -> RegressionOutput:
        """The output for readout `head` (B,) in standardised units: predictions in label units, the loss against
        `labels` when given, and the explanation `maps`."""
        # Label standardisation in float32 also under bf16 autocast: labels like 1500 ± 40 need the precision.
        head = head.float()
        mean, std = self.config.label_mean, self.config.label_std
        loss = None
        if labels is not None:
            if labels.numel() != head.shape[0]:
                raise ValueError(f"labels must have shape ({head.shape[0]},); got {tuple(labels.shape)}")
            targets = (labels.reshape(head.shape).float() - mean) / std
            loss = LOSSES[self.config.loss](head, targets, self.config.huber_delta)
        return RegressionOutput(loss=loss, predictions=head * std + mean, **maps)
