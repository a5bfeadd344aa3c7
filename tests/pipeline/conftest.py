"""Fixtures of the pipeline tests: the shared tiny project after ``dvc repro`` and an untrained model folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.helpers.pipeline import tiny_processor


@pytest.fixture(scope="module")
def shared(shared_project) -> Path:
    return shared_project


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """An untrained tiny MetalloNet saved as the train stage saves it (config, safetensors, preprocessor)."""
    from metallo.models import create_model

    out = tmp_path_factory.mktemp("tiny-model")
    torch.manual_seed(0)
    model = create_model(
        "metallonet",
        n_spectra=24,
        spectrum_length=64,
        grid=[6, 4],
        image_size=64,
        hidden_dim=16,
        label_mean=3.0,
        label_std=1.0,
    )
    model.save_pretrained(out)
    tiny_processor().save_pretrained(out)
    return out
