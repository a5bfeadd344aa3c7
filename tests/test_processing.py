"""metallo.processing: the processor as a ``transformers`` image processor; the Auto-class registration."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers.project import REPO, project_env


def processor():
    from metallo.processing import MetalloProcessor

    return MetalloProcessor(
        [0.5] * 3, [0.25] * 3, [0.0] * 20, [1.0] * 20, image_size=16, resize=24, crop=20, fit="full", spectra_norm="snv"
    )


def test_processor_is_a_transformers_image_processor(tmp_path):
    from transformers import AutoImageProcessor, BatchFeature
    from transformers.image_processing_utils import BaseImageProcessor

    from metallo.models import create_model

    create_model(
        "toynet", n_spectra=6, spectrum_length=20, grid=[3, 2], image_size=32, label_mean=0.0, label_std=1.0
    ).config.save_pretrained(tmp_path)
    original = processor()
    assert isinstance(original, BaseImageProcessor)
    original.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert saved["image_processor_type"] == "MetalloProcessor"
    loaded = AutoImageProcessor.from_pretrained(tmp_path)
    assert type(loaded).__name__ == "MetalloProcessor" and loaded == original

    batch = loaded(
        [np.zeros((30, 40, 3), np.uint8), np.full((20, 20, 3), 255, np.uint8)],
        spectra=np.random.default_rng(0).random((2, 6, 20)),
    )
    assert isinstance(batch, BatchFeature)
    assert tuple(batch["pixel_values"].shape) == (2, 3, 16, 16) and tuple(batch["spectra"].shape) == (2, 6, 20)
    assert float(batch["pixel_values"][0].mean()) == pytest.approx(-2.0)  # (0 - 0.5) / 0.25


def test_processor_json_from_before_it_was_an_image_processor_still_loads(tmp_path):
    from transformers import AutoImageProcessor

    from metallo.models import create_model
    from metallo.prediction.loading import load_processor
    from metallo.processing import MetalloProcessor

    create_model(
        "toynet", n_spectra=6, spectrum_length=20, grid=[3, 2], image_size=32, label_mean=0.0, label_std=1.0
    ).config.save_pretrained(tmp_path)
    old = {k: v for k, v in processor().to_dict().items() if k != "image_processor_type"}
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(old))
    assert MetalloProcessor.from_pretrained(tmp_path) == processor()
    assert load_processor(tmp_path) == processor()
    assert AutoImageProcessor.from_pretrained(tmp_path) == processor()  # via config.json's model_type


def test_import_metallo_models_registers_the_auto_classes_and_import_metallo_stays_cheap(tmp_path):
    from metallo.models import create_model

    create_model(
        "toynet", n_spectra=6, spectrum_length=20, grid=[3, 2], image_size=32, label_mean=0.0, label_std=1.0
    ).save_pretrained(tmp_path)
    processor().save_pretrained(tmp_path)
    code = (
        "import sys; import metallo; assert 'transformers' not in sys.modules and 'torch' not in sys.modules\n"
        "import metallo.models\n"
        "from transformers import AutoImageProcessor, AutoModel\n"
        f"print(type(AutoImageProcessor.from_pretrained({str(tmp_path)!r})).__name__, "
        f"type(AutoModel.from_pretrained({str(tmp_path)!r})).__name__)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=project_env(PYTHONPATH=str(REPO)), capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["MetalloProcessor", "ToyNetModel"]
    assert "Warning" not in result.stderr


def test_no_import_hook():
    import metallo

    assert not [finder for finder in sys.meta_path if type(finder).__module__.startswith("metallo")]
    assert not hasattr(metallo, "register_auto_classes")
