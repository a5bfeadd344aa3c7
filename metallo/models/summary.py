"""Parameter and FLOP counts of the registered models (backs the `metallo models` command)."""

import torch
from torch.utils.flop_counter import FlopCounterMode

from .configuration_common import BACKBONE_NAMES
from .registry import config_fields, create_model, list_models


def model_summary(names: list[str] | None = None, image_size: int = 300, **overrides) -> list[dict]:
    """Trainable parameters and forward FLOPs per sample for each model and backbone.

    Args:
        names: models to summarise (default: all registered).
        image_size: input resolution the FLOPs are counted at (300 is full resolution; MetalloNet's cells are read
            from the stored image, counted at this size too).
        **overrides: config overrides applied to every model; passing `backbone` restricts the backbones.

    Returns:
        One dict per (model, backbone): `model`, `backbone`, `image_size`, `params`, `flops` (multiply-adds count 2).
    """
    backbones = (overrides.pop("backbone"),) if "backbone" in overrides else BACKBONE_NAMES
    rows = []
    for name in names or list_models():
        has_backbone = "backbone" in config_fields(name)
        for backbone in backbones if has_backbone else ("—",):
            extra = {"backbone": backbone} if has_backbone else {}
            own = {key: value for key, value in overrides.items() if key in config_fields(name)}
            model = create_model(name, image_size=image_size, **extra, **own).eval()
            config = model.config
            pixel_values = torch.rand(1, 3, config.image_size, config.image_size)
            spectra = torch.rand(1, config.n_spectra, config.spectrum_length)
            raw = {"raw_pixel_values": pixel_values, "raw_spectra": spectra} if config.raw_copies else {}
            with torch.no_grad(), FlopCounterMode(display=False) as counter:
                model(pixel_values=pixel_values, spectra=spectra, **raw)
            rows.append(
                {
                    "model": name,
                    "backbone": backbone,
                    "image_size": image_size,
                    "params": sum(p.numel() for p in model.parameters() if p.requires_grad),
                    "flops": counter.get_total_flops(),
                }
            )
    return rows


def format_summary(rows: list[dict]) -> str:
    """Renders `model_summary` rows as a plain-text table."""
    header = ("model", "backbone", "image", "params (M)", "GFLOPs/sample")
    lines = [
        (
            row["model"],
            row["backbone"],
            f"{row['image_size']}x{row['image_size']}",
            f"{row['params'] / 1e6:.2f}",
            f"{row['flops'] / 1e9:.2f}",
        )
        for row in rows
    ]
    widths = [max(len(cell) for cell in column) for column in zip(header, *lines)]

    def render(cells) -> str:
        # text columns left-aligned, numbers right-aligned
        return "  ".join(cell.ljust(w) if i < 3 else cell.rjust(w) for i, (cell, w) in enumerate(zip(cells, widths)))

    return "\n".join([render(header), render(["-" * w for w in widths]), *map(render, lines)])
