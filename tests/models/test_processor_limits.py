"""A model folder's preprocessor_config.json is validated on load (issue 24 item 11): a hostile value
(image_size 60000 made predict try to allocate 1.38 TB) is a MetalloError naming the field and file."""

from __future__ import annotations

import json

import pytest

from metallo.errors import MetalloError
from metallo.layout import MAX_IMAGE_SIZE
from metallo.prediction.loading import load_model, load_processor
from tests.helpers.models import save_tiny_model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("model"))


def _with(model_dir, tmp_path, **changes):
    folder = tmp_path / "model"
    folder.mkdir()
    for name in ("config.json", "model.safetensors", "preprocessor_config.json"):
        (folder / name).write_bytes((model_dir / name).read_bytes())
    data = json.loads((folder / "preprocessor_config.json").read_text())
    data.update(changes)
    (folder / "preprocessor_config.json").write_text(json.dumps(data))
    return folder


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"image_size": 60000}, "image_size"),
        ({"image_size": 0}, "image_size"),
        ({"image_size": "64"}, "image_size"),
        ({"resize": 60000, "crop": 64}, "resize"),
        ({"resize": 72, "crop": 0}, "crop"),
        ({"resize": 64, "crop": 72}, "crop"),
        ({"bit_depth": 40}, "bit_depth"),
        ({"fit": "stretch"}, "fit"),
        ({"image_std": [0.25, 0.0, 0.25]}, "image_std"),
        ({"image_mean": [0.5, 0.5]}, "image_mean"),
        ({"spectra_std": [1.0] * 63 + [float("nan")]}, "spectra_std"),
        ({"spectra_mean": [0.0] * 10}, "spectra_mean"),
        ({"raw_copies": "yes"}, "raw_copies"),
    ],
)
def test_hostile_processor_values_are_refused_naming_field_and_file(model_dir, tmp_path, changes, field):
    folder = _with(model_dir, tmp_path, **changes)
    with pytest.raises(MetalloError) as info:
        load_processor(folder)
    message = str(info.value)
    assert field in message and "preprocessor_config.json" in message, message
    with pytest.raises(MetalloError):
        load_model(folder, device="cpu")


def test_processor_must_match_the_model_config(model_dir, tmp_path):
    folder = _with(model_dir, tmp_path, image_size=96, spectra_mean=[0.0] * 32, spectra_std=[1.0] * 32)
    load_processor(folder)  # valid on its own
    with pytest.raises(MetalloError, match="image_size 96, but .*config.json describes a model for 64"):
        load_model(folder, device="cpu")


def test_the_saved_processor_loads(model_dir):
    model, processor = load_model(model_dir, device="cpu")
    assert processor.image_size == model.config.image_size <= MAX_IMAGE_SIZE
