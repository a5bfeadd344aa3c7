"""PyTorch MetalloNet model: the main Metallo regressor."""

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from .cell_path import CellContrast, CellFusion, CellImageEncoder, CellPatches, SpectrumShapeEncoder
from .cells import CellInteractionFeatures
from .configuration_classical import FEATURE_DEFAULTS, RIDGE_ALPHAS
from .configuration_metallonet import MetalloNetConfig
from .modeling_classical import ClassicalFeatures, fit_ridge, set_linear
from .modeling_common import MetalloPreTrainedModel, RegressionOutput, check_inputs
from .registry import register_model


def standardise_images(images: torch.Tensor) -> torch.Tensor:
    """Each image's channels to zero mean and unit variance over the image: a lamp, camera gain or black level
    of one specimen does not reach the cell encoder, the structure does."""
    images = images.float()
    mean = images.mean(dim=(2, 3), keepdim=True)
    std = images.std(dim=(2, 3), keepdim=True, correction=0).clamp_min(1e-3)
    return (images - mean) / std


@register_model("metallonet")
class MetalloNetModel(MetalloPreTrainedModel):
    """Each measurement cell's micrograph region and spectrum, fused where the spectrum was measured.

    The learned per-cell path (:mod:`~metallo.models.cell_path`): the stored-resolution image (``raw_pixel_values``,
    standardised per image) is cut into the grid's cells and every region goes through one CNN shared by all cells;
    every spectrum (``spectra``, normalised by the processor) through one 1-D CNN that keeps wavelength positions;
    each cell's two vectors are fused into its contribution, the cells' mean vectors into a global part. The
    prediction is the global part plus the mean contribution, plus the closed-form classical branch when the config
    has one. ``pixel_values`` (the model-size image other Metallo models read) is not used.
    """

    config_class = MetalloNetConfig
    base_model_prefix = "metallonet"
    main_input_name = "raw_pixel_values"

    def __init__(self, config: MetalloNetConfig):
        super().__init__(config)
        width = config.hidden_dim
        self.cell_patches = CellPatches(config.grid, config.grid_extent)
        self.image_encoder = CellImageEncoder(config.cell_channels, width) if "image" in config.modalities else None
        self.spectral_encoder = (
            SpectrumShapeEncoder(config.spectral_channels, config.spectral_resolution, width)
            if "spectra" in config.modalities
            else None
        )
        self.fusion = CellFusion(width, config.dropout)
        self.cell_contrast = (
            CellContrast(width, config.cell_contrast_temperature, config.cell_view_crop, config.cell_contrast_views)
            if self.image_encoder is not None and config.cell_contrast_weight > 0
            else None
        )
        if config.classical_branch and config.classical_features == "cells":
            self.classical_branch = CellInteractionFeatures(
                config.grid, config.grid_extent, config.cell_bands, config.cell_texture_scales
            )
            self.classical_head = nn.Linear(self.classical_branch.n_features, 1)
        elif config.classical_branch:
            settings = {**FEATURE_DEFAULTS, "n_bands": min(FEATURE_DEFAULTS["n_bands"], config.spectrum_length)}
            self.classical_branch = ClassicalFeatures(config.modalities, **settings)
            self.classical_head = nn.Linear(self.classical_branch.n_features, 1)
        self.contrast_only = False
        self.post_init()

    @property
    def pretrains_cells(self) -> bool:
        """Whether the cell image encoder has a self-supervised loss to be pretrained with."""
        return self.cell_contrast is not None

    @contextmanager
    def cell_pretraining(self) -> Iterator[None]:
        """Within: the training loss is the cell encoder's self-supervised loss alone (labels are not used), so a
        ``Trainer`` pretrains the encoder on what tells cells apart before the label is fitted."""
        if not self.pretrains_cells:
            raise ValueError("this MetalloNet has no cell contrast (cell_contrast_weight 0 or no image modality)")
        self.contrast_only = True
        try:
            yield
        finally:
            self.contrast_only = False

    def forward_cells(self, raw_pixel_values, spectra) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The learned path: its global part (B,) and every cell's contribution (B, S), standardised label units,
        and in training the cell encoder's self-supervised loss (None otherwise)."""
        reference = raw_pixel_values if raw_pixel_values is not None else spectra
        zeros = reference.new_zeros(reference.shape[0], self.config.n_spectra, self.config.hidden_dim)
        contrast = None
        if self.image_encoder is not None:
            patches = self.cell_patches(standardise_images(raw_pixel_values))
            image_cells = self.image_encoder(patches)
            if self.training and self.cell_contrast is not None and torch.is_grad_enabled():
                contrast = self.cell_contrast(self.image_encoder, patches, image_cells)
        else:
            image_cells = zeros
        spectral_cells = self.spectral_encoder(spectra) if self.spectral_encoder is not None else zeros
        return (*self.fusion(image_cells, spectral_cells), contrast)

    def forward_classical_branch(self, raw_pixel_values, raw_spectra) -> torch.Tensor | None:
        """Linear readout of the classical features of the raw inputs, (B,) in standardised label units."""
        if not self.config.classical_branch:
            return None
        return self.classical_head(self.classical_branch(raw_pixel_values, raw_spectra)).squeeze(-1)

    def classical_cell_terms(self, raw_pixel_values, raw_spectra) -> torch.Tensor | None:
        """The `"cells"` classical branch split into measurement cells, (B, S) in standardised label units."""
        if not (self.config.classical_branch and self.config.classical_features == "cells"):
            return None
        return self.classical_branch.cell_terms(raw_pixel_values, raw_spectra, self.classical_head)

    def _check_raw_inputs(self, raw_pixel_values, raw_spectra, spectra) -> None:
        """ValueErrors naming the expected shapes: MetalloNet reads the stored-resolution image (and, with a
        classical branch that reads spectra, the spectra as measured) besides the normalised spectra."""
        config, where = self.config, "as MetalloProcessor(raw_copies=True) returns them"
        reads_spectra = config.classical_branch and (
            config.classical_features == "cells" or "spectra" in config.modalities
        )
        batch = {tensor.shape[0] for tensor in (raw_pixel_values, spectra) if tensor is not None}
        if "image" in config.modalities:
            if raw_pixel_values is None or raw_pixel_values.dim() != 4 or raw_pixel_values.shape[1] != 3:
                got = None if raw_pixel_values is None else tuple(raw_pixel_values.shape)
                raise ValueError(
                    "MetalloNet reads raw_pixel_values: the micrographs at the stored resolution, intensities in "
                    f"[0, 1], shape (batch, 3, height, width), {where}; got {got}"
                )
        if reads_spectra:
            expected = (config.n_spectra, config.spectrum_length)
            if raw_spectra is None or tuple(raw_spectra.shape[1:]) != expected or raw_spectra.dim() != 3:
                got = None if raw_spectra is None else tuple(raw_spectra.shape)
                raise ValueError(
                    f"MetalloNet's classical branch reads raw_spectra: the spectra as measured, shape (batch, "
                    f"{expected[0]}, {expected[1]}), {where}; got {got}"
                )
            batch.add(raw_spectra.shape[0])
        if len(batch) > 1:
            raise ValueError(f"raw_pixel_values, spectra and raw_spectra must have one batch size; got {sorted(batch)}")

    @torch.no_grad()
    def initialise_classical_branch(self, features, targets) -> float:
        """Fit the classical branch by ridge on training `features` (its `prepare`d rows) / standardised `targets`
        and zero the learned readouts, so the model starts at the branch's predictions. Returns the ridge penalty."""
        fitted = fit_ridge(features, targets, list(RIDGE_ALPHAS))
        self.classical_branch.set_statistics(fitted["mean"], fitted["std"])
        set_linear(self.classical_head, fitted["coef"], fitted["intercept"])
        for layer in self.fusion.readouts:
            layer.weight.zero_()
            layer.bias.zero_()
        return fitted["alpha"]

    def forward(
        self,
        pixel_values=None,
        spectra=None,
        labels=None,
        return_attention=False,
        raw_pixel_values=None,
        raw_spectra=None,
    ) -> RegressionOutput:
        r"""
        Args:
            pixel_values (`torch.FloatTensor`, *optional*):
                Not used (accepted so that every Metallo processor output can be passed as is).
            spectra (`torch.FloatTensor` of shape `(batch, n_spectra, spectrum_length)`):
                Normalised spectra, row-major over `config.grid`.
            labels (`torch.FloatTensor` of shape `(batch,)`, *optional*):
                Targets in label units; when given, the loss is computed on standardised units.
            return_attention (`bool`, *optional*, defaults to `False`):
                Whether to return `cell_contributions`: each cell's share of the prediction in label units (learned
                contribution plus the classical branch's per-cell term), whose mean plus the global part is the
                prediction.
            raw_pixel_values (`torch.FloatTensor` of shape `(batch, 3, height, width)`):
                The micrographs at the stored resolution, intensities in [0, 1].
            raw_spectra (`torch.FloatTensor` of shape `(batch, n_spectra, spectrum_length)`, *optional*):
                The spectra as measured, for the classical branch.
        """
        self._check_raw_inputs(raw_pixel_values, raw_spectra, spectra)
        check_inputs(self.config, None, spectra, modalities=[m for m in self.config.modalities if m == "spectra"])
        global_part, contributions, contrast = self.forward_cells(raw_pixel_values, spectra)
        head = global_part.float() + contributions.float().mean(dim=1)
        wide = self.forward_classical_branch(raw_pixel_values, raw_spectra)
        if wide is not None:
            head = head + wide.float()
        maps = {}
        if return_attention:
            cells = contributions.float()
            terms = self.classical_cell_terms(raw_pixel_values, raw_spectra)
            if terms is not None:
                cells = cells + terms
            maps["cell_contributions"] = (cells * self.config.label_std).view(-1, *self.config.grid)
        output = self.regression_output(head, labels, maps)
        if contrast is not None and self.contrast_only:
            output.loss = contrast
        elif output.loss is not None and contrast is not None:  # training: what tells cells apart, beside the label
            output.loss = output.loss + self.config.cell_contrast_weight * contrast
        return output


__all__ = ["MetalloNetModel", "standardise_images"]
