"""The train stage's parts built from params: the model, its input processor, the augmentation, the splits.

Everything here reads ``params.yaml`` sections and the files of earlier stages (``convert.json``,
``data/split/stats.json``) and builds objects; nothing trains or writes.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from metallo.augmentation import Augmentation
from metallo.data.convert import grid_extents, processor_settings
from metallo.data.dataset import MetalloDataset, load_splits
from metallo.errors import MetalloError
from metallo.layout import PATHS, TRAIN, VAL, DataShape, Paths, load_stats
from metallo.models import config_fields, create_model, list_models
from metallo.params import Section, section
from metallo.processing import MetalloProcessor


@dataclass(frozen=True)
class PreprocessParams(Section):
    """The ``preprocess:`` section: how raw inputs become model inputs, and the training augmentation's ranges.

    ``spectra``: ``snv`` | ``standard`` | ``none``; ``image``: ``dataset`` | ``per_image`` | ``none`` (see
    :class:`~metallo.processing.MetalloProcessor`); ``std_floor``: per-wavelength std floor relative to the median
    std. The ``augment_*`` keys are :class:`~metallo.augmentation.Augmentation`'s fields, defaults included.
    """

    NAME = "preprocess"
    spectra: str = "snv"
    std_floor: float = 0.01
    image: str = "dataset"
    augment_illumination: float = Augmentation.illumination
    augment_colour: float = Augmentation.colour
    augment_spectra_gain: float = Augmentation.spectra_gain
    augment_spectra_offset: float = Augmentation.spectra_offset
    augment_flips: str = Augmentation.flips

    def check(self) -> None:
        for field in fields(self):
            if field.type == "float":
                self._set(field.name, float(getattr(self, field.name)))

    def augmentation(self) -> Augmentation:
        """The ranges of the ``augment_*`` keys."""
        ranges = {f.name: getattr(self, f.name) for f in fields(self) if f.name.startswith("augment_")}
        return Augmentation(**{name.removeprefix("augment_"): value for name, value in ranges.items()})


def dataset_grid_extent(paths: Paths = PATHS) -> list[float]:
    """The measurement grid's place in the converted images (median over samples; see ``convert.fit``)."""
    return [round(float(v), 6) for v in np.median(grid_extents(paths.processed), axis=0)]


def build_model(params: dict, stats: dict, grid_extent: list[float] | None = None):
    """The model named by ``model.name`` with the data shape and the train label statistics.

    Keys of ``model:`` that belong to another registered model (e.g. ``backbone`` when the
    classical baseline is chosen) are left out, so one params file serves every model;
    a key no model knows is refused. ``grid_extent`` (from the convert geometry) goes to models
    that place spectra on the image.
    """
    cfg = dict(section(params, "model"))
    name = cfg.pop("name", None)
    if not name:
        raise MetalloError("model.name is missing; set it to one of metallo.models.list_models() (e.g. metallonet).")
    if name in list_models():
        own = set(config_fields(name))
        others = {field for other in list_models() for field in config_fields(other)} - own
        cfg = {key: value for key, value in cfg.items() if key not in others}
        if grid_extent is not None and "grid_extent" in own:
            cfg.setdefault("grid_extent", grid_extent)
    shape = DataShape.from_params(params)
    try:
        return create_model(
            name,
            n_spectra=shape.n_spectra,
            spectrum_length=shape.spectrum_length,
            grid=list(shape.grid),
            label_mean=stats["label"]["mean"],
            label_std=stats["label"]["std"] or 1.0,
            **cfg,
        )
    except ValueError as err:
        raise MetalloError(f"cannot build model {name!r} from the model: params: {err}") from None


def build_processor(params: dict, stats: dict, model_config, paths: Paths = PATHS) -> MetalloProcessor:
    """The input processor from ``preprocess:``, convert's geometry (``convert.json``) and the train statistics.

    A model whose config has ``raw_inputs`` (the classical baseline) normalises its inputs itself and gets
    images in [0, 1] and spectra as measured; one with ``raw_copies`` (a classical branch) gets both.
    """
    cfg = PreprocessParams.from_params(params)
    raw = model_config.raw_inputs
    return MetalloProcessor.from_stats(
        stats,
        image_size=model_config.image_size,
        **processor_settings(paths.processed),
        spectra_norm="none" if raw else cfg.spectra,
        image_norm="none" if raw else cfg.image,
        raw_copies=model_config.raw_copies,
        std_floor=cfg.std_floor,
    )


def build_augmentation(params: dict) -> Augmentation:
    """``preprocess.augment_*`` ranges (used when ``train.augment`` is on)."""
    return PreprocessParams.from_params(params).augmentation()


def validation_kind(paths: Paths = PATHS) -> str:
    """What the validation split holds, in words: the training specimens it holds out whole, if any."""
    import pandas as pd

    slices = pd.read_parquet(paths.samples, columns=["slice_id"])["slice_id"].astype(str)
    split = pd.read_parquet(paths.split_table, columns=["split", "index"])
    by_split = {name: set(slices.iloc[split.loc[split["split"] == name, "index"]]) for name in (TRAIN, VAL)}
    if by_split["val"] and not by_split["val"] & by_split["train"]:
        return f"held-out specimen {', '.join(sorted(by_split['val']))}"
    return "held-out samples"


def build_model_and_data(params: dict, paths: Paths = PATHS) -> tuple[object, MetalloProcessor, dict]:
    """The model, its processor (both from the train statistics) and the ``train``/``val``/``test`` splits."""
    stats = load_stats(paths)
    model = build_model(params, stats, dataset_grid_extent(paths))
    processor = build_processor(params, stats, model.config, paths)
    datasets: dict[str, MetalloDataset] = load_splits(paths)
    if len(datasets["val"]) == 0:
        raise MetalloError("the validation split is empty; raise split.val_fraction or add training samples.")
    return model, processor, datasets
