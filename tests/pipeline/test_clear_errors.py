"""Clear errors: misspelt params, a missing raw folder, another kind of model folder, data of another shape.

Real git, real DVC CLI, real MLflow SQLite stores, real subprocesses; nothing is mocked. The slow tests
work on copies of the shared tiny project (``shared``, tests/pipeline/conftest.py).
"""

from __future__ import annotations

import numpy as np
import pytest

from metallo.errors import MetalloError
from tests.helpers.data import synthesize_raw
from tests.helpers.pipeline import (
    clone,
    edit_params,
    error_message,
    stages_at_once,
)


def _rename(section: str, old: str, new: str):
    def edit(params):
        params[section] = {(new if k == old else k): v for k, v in params[section].items()}

    return edit


@pytest.mark.slow
def test_misspelt_params_and_a_missing_raw_folder_get_one_paragraph_messages(shared, tmp_path):
    cases = {  # name -> (params edit, stage, words the message must hold)
        "hiden_dim": (_rename("model", "hidden_dim", "hiden_dim"), "train", ("hiden_dim", "hidden_dim")),
        "learnig_rate": (
            _rename("train", "learning_rate", "learnig_rate"),
            "train",
            ("train.learnig_rate", "learning_rate"),
        ),
        "raw_dir": (
            lambda p: p["ingest"].update(raw_dir="data/nope"),
            "ingest",
            ("data/nope", "does not exist", "ingest.raw_dir"),
        ),  # what is wrong, and what to change
    }
    jobs = []
    for name, (edit, stage_name, _) in cases.items():
        root = clone(shared, tmp_path / name)
        edit_params(root, edit)
        jobs.append((root, stage_name, {}))
    for (name, (_, _, words)), result in zip(cases.items(), stages_at_once(*jobs)):
        message = error_message(result)
        for word in words:
            assert word in message, f"{name}: {word!r} not in {message!r}"


def test_model_directory_of_another_kind_is_refused(tmp_path):
    from transformers import BertConfig, BertModel, ViTConfig, ViTImageProcessor, ViTModel

    from metallo.prediction import load_model

    bert = tmp_path / "bert"
    BertModel(
        BertConfig(
            vocab_size=16,
            hidden_size=8,
            num_hidden_layers=1,
            num_attention_heads=1,
            intermediate_size=8,
            max_position_embeddings=16,
        )
    ).save_pretrained(bert)
    with pytest.raises(MetalloError, match="'bert' model, not a Metallo model") as err:
        load_model(bert, device="cpu")
    assert "metallonet" in str(err.value)

    # An image model folder even carries a preprocessor_config.json (of another format).
    vit = tmp_path / "vit"
    ViTModel(
        ViTConfig(
            hidden_size=8, num_hidden_layers=1, num_attention_heads=1, intermediate_size=8, image_size=16, patch_size=8
        )
    ).save_pretrained(vit)
    ViTImageProcessor().save_pretrained(vit)
    with pytest.raises(MetalloError, match="'vit' model, not a Metallo model"):
        load_model(vit, device="cpu")

    with pytest.raises(MetalloError, match="no config.json"):
        load_model(tmp_path / "nothing-here", device="cpu")


def test_data_of_another_shape_than_the_model_is_refused(model_dir, tmp_path):
    from metallo.prediction import load_model, predict, predict_arrays

    model, processor = load_model(model_dir, device="cpu")
    images = np.zeros((2, 64, 64, 3), dtype=np.uint8)
    with pytest.raises(MetalloError) as err:
        predict_arrays(model, processor, images, np.zeros((2, 24, 100), dtype=np.float32))
    assert "(24, 100)" in str(err.value) and "(24, 64)" in str(err.value)
    with pytest.raises(MetalloError) as err:
        predict_arrays(model, processor, np.zeros((2, 64, 64), dtype=np.uint8), np.zeros((2, 24, 64), np.float32))
    assert "(2, 64, 64)" in str(err.value)
    predictions, _ = predict_arrays(model, processor, images, np.zeros((2, 24, 64), dtype=np.float32))
    assert predictions.shape == (2,)

    raw = tmp_path / "raw"
    synthesize_raw(raw, samples_per_slice={"1": 2}, image_size=64, spectrum_length=100)
    with pytest.raises(MetalloError) as err:
        predict(model_dir, raw / "manifest.csv", on_error="fail", workers=1, show_progress=False)
    assert "(24, 100)" in str(err.value) and "(24, 64)" in str(err.value)
