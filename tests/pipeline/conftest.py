"""Fixtures of the pipeline tests: the shared tiny project after ``dvc repro`` and an untrained model folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.models import save_tiny_model


@pytest.fixture(scope="module")
def shared(shared_project) -> Path:
    return shared_project


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """An untrained tiny MetalloNet saved as the train stage saves it (config, safetensors, preprocessor)."""
    return save_tiny_model(tmp_path_factory.mktemp("tiny-model"))
