"""The model registry and configs: which fields each model has, how bad values are refused, ToyNet's local backbone
weights and the `metallo models` summary table."""

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torchvision.models import resnet18
from transformers import AutoModel

import metallo.models as mm
from tests.helpers.models import make_model, tiny_overrides

#: Fields only ToyNet has (its ResNet trunk and pooled spectral encoder).
TOYNET_ONLY = ["backbone", "backbone_weights", "spectral_pool_size"]
#: Fields only MetalloNet has (its per-cell path and classical branch).
METALLONET_ONLY = [
    "grid_extent",
    "cell_channels",
    "spectral_resolution",
    "classical_branch",
    "classical_features",
    "cell_bands",
    "cell_texture_scales",
]
#: Fields of the old MetalloNet design (ResNet trunk, BERT fusion), gone from every model.
RETIRED = ["fusion", "cell_feature_stages", "num_fusion_layers", "num_attention_heads", "intermediate_size"]


@pytest.mark.parametrize("name", mm.list_models(closed_form=False))
@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"loss": "mae"}, "loss must be one of"),
        ({"modalities": ["image", "text"]}, "modalities entries must be one of"),
        ({"modalities": "image"}, "modalities must be a list"),
        ({"modalities": []}, "at least one"),
        ({"grid": (5, 4)}, "rows \\* cols must equal n_spectra"),
        ({"grid": (6.0, 4.0)}, "grid entries must be a positive integer"),
        ({"hidden_dim": np.int64(64)}, "hidden_dim must be a positive integer"),  # config.json must stay JSON
        ({"image_size": 16}, "image_size must be 32..2048"),
        ({"label_std": 0.0}, "label_std must be > 0"),
        ({"spectral_channels": []}, "spectral_channels must list at least one"),
        ({"spectral_channels": [8, 0]}, "spectral_channels must be a positive integer"),
        ({"dropout": 1.0}, "dropout must be in"),
        ({"huber_delta": 0.0}, "huber_delta must be > 0"),
    ],
)
def test_shared_config_validation(name, overrides, message):
    with pytest.raises(ValueError, match=message):
        mm.create_config(name, **overrides)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"cell_channels": []}, "cell_channels must list at least one"),
        ({"cell_channels": [8, 0]}, "cell_channels must be a positive integer"),
        ({"cell_channels": [8.0]}, "cell_channels must be a positive integer"),
        ({"spectral_resolution": 0}, "spectral_resolution must be a positive integer"),
        ({"spectral_resolution": 64.0}, "spectral_resolution must be a positive integer"),
        ({"cell_bands": 0}, "cell_bands must be a positive integer"),
        ({"grid_extent": (0.0, 0.0, 0.0, 1.0)}, "grid_extent must be"),
        ({"grid_extent": (0.0, 0.6, 1.0, 0.4)}, "grid_extent must be"),
        ({"grid_extent": (0.0, 0.0, 1.0)}, "grid_extent must be"),
        ({"classical_features": "pixels"}, "classical_features must be one of \\['cells', 'global'\\]"),
        ({"classical_branch": True, "modalities": ["image"]}, "with one modality use 'global'"),
        ({"cell_texture_scales": []}, "cell_texture_scales must be positive integers"),
        ({"cell_texture_scales": [1, 0]}, "cell_texture_scales must be positive integers"),
        ({"cell_contrast_views": "rotations"}, "cell_contrast_views must be one of \\['crop', 'halves'\\]"),
    ],
)
def test_metallonet_config_validation(overrides, message):
    with pytest.raises(ValueError, match=message):
        mm.create_config("metallonet", **overrides)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"backbone": "vit"}, "backbone must be one of \\['resnet18', 'resnet50'\\]"),
        ({"spectral_pool_size": 0}, "spectral_pool_size must be a positive integer"),
    ],
)
def test_toynet_config_validation(overrides, message):
    with pytest.raises(ValueError, match=message):
        mm.create_config("toynet", **overrides)


def test_each_model_has_only_its_own_fields():
    toynet, metallonet = mm.config_fields("toynet"), mm.config_fields("metallonet")
    assert set(TOYNET_ONLY) <= set(toynet) and not set(TOYNET_ONLY) & set(metallonet)
    assert set(METALLONET_ONLY) <= set(metallonet) and not set(METALLONET_ONLY) & set(toynet)
    assert not set(RETIRED) & (set(toynet) | set(metallonet))
    assert metallonet[: len(METALLONET_ONLY)] == METALLONET_ONLY  # the model's own fields first


@pytest.mark.parametrize(
    "name, field", [*(("metallonet", f) for f in TOYNET_ONLY + RETIRED), ("toynet", "cell_channels")]
)
def test_fields_a_model_lacks_are_refused(name, field):
    with pytest.raises(ValueError, match=rf"Unknown config field '{field}' for model '{name}'"):
        mm.create_config(name, **{field: "resnet18"})


def test_metallonet_config_defaults_and_normalisation():
    config = mm.create_config("metallonet", spectrum_length=8, grid_extent=(0, 0, 1, 1), cell_texture_scales=(1, 3))
    assert config.cell_bands == 8  # at most spectrum_length
    assert config.grid_extent == [0.0, 0.0, 1.0, 1.0] and config.cell_texture_scales == [1, 3]
    assert config.cell_channels == [16, 32, 64] and config.spectral_resolution == 128
    assert config.classical_branch is False and config.classical_features == "cells"
    assert config.raw_copies and config.explanation_maps == "cells"
    assert not mm.create_config("toynet").raw_copies and mm.create_config("toynet").explanation_maps is None


def test_create_model_errors():
    with pytest.raises(ValueError, match="available models: classical, metallonet, toynet"):
        mm.create_model("resnet")
    with pytest.raises(ValueError, match="'hiden_dim'.*Did you mean: hidden_dim.*Valid fields:.*image_size"):
        mm.create_model("toynet", hiden_dim=8)
    with pytest.raises(ValueError, match="'cell_chanels'.*Did you mean: cell_channels"):
        mm.create_model("metallonet", cell_chanels=[8])
    assert mm.list_models() == ["classical", "metallonet", "toynet"]
    assert mm.get_config_class("toynet").model_type == "metallo_toynet"
    assert mm.get_config_class("metallonet").model_type == "metallo_metallonet"
    assert mm.get_model_class("metallonet") is mm.MetalloNetModel


def save_state_dict(state_dict: dict, path):
    if path.suffix == ".safetensors":
        save_file({key: value.contiguous() for key, value in state_dict.items()}, path)
    else:
        torch.save(state_dict, path)
    return path


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_toynet_backbone_weights_from_local_file(suffix, tmp_path):
    torch.manual_seed(123)
    state_dict = resnet18(weights=None).state_dict()
    path = save_state_dict(state_dict, tmp_path / f"resnet18{suffix}")
    model = make_model("toynet", backbone_weights=str(path))
    trunk_state = model.image_encoder.trunk.state_dict()
    assert set(trunk_state) == {key for key in state_dict if not key.startswith("fc.")}
    for key, value in trunk_state.items():
        torch.testing.assert_close(value, state_dict[key], rtol=0, atol=0, msg=key)
    from_config = AutoModel.from_config(model.config)
    torch.testing.assert_close(from_config.image_encoder.trunk.conv1.weight, state_dict["conv1.weight"], rtol=0, atol=0)

    model.save_pretrained(tmp_path / "saved")
    path.unlink()  # from_pretrained reads the saved weights, not the file
    loaded = AutoModel.from_pretrained(tmp_path / "saved")
    torch.testing.assert_close(loaded.image_encoder.trunk.conv1.weight, state_dict["conv1.weight"], rtol=0, atol=0)


def test_toynet_backbone_weights_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="backbone_weights file not found"):
        make_model("toynet", backbone_weights=str(tmp_path / "nope.safetensors"))
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(ValueError, match="must end in .safetensors, .pth or .pt"):
        make_model("toynet", backbone_weights=str(tmp_path / "weights.bin"))
    state_dict = resnet18(weights=None).state_dict()
    state_dict["stem.weight"] = state_dict.pop("conv1.weight")
    renamed = save_state_dict(state_dict, tmp_path / "renamed.safetensors")
    with pytest.raises(ValueError, match=r"does not match .*missing keys \['conv1.weight'\], unexpected keys \['stem"):
        make_model("toynet", backbone_weights=str(renamed))


def test_model_summary_rows_and_table():
    rows = mm.model_summary(names=["toynet", "metallonet"], **tiny_overrides("metallonet"))
    assert [(row["model"], row["backbone"]) for row in rows] == [
        ("toynet", "resnet18"),
        ("toynet", "resnet50"),
        ("metallonet", "—"),
    ]
    models = [make_model("toynet"), make_model("toynet", backbone="resnet50"), make_model("metallonet")]
    for row, model in zip(rows, models):
        assert row["params"] == sum(p.numel() for p in model.parameters() if p.requires_grad)
        assert row["image_size"] == 32 and row["flops"] > 0
    assert rows[1]["flops"] > rows[0]["flops"] > rows[2]["flops"]
    table = mm.format_summary(rows).splitlines()
    assert "GFLOPs/sample" in table[0] and set(table[1]) <= {"-", " "} and len(table) == 5
    assert table[4].startswith("metallonet  —") and "32x32" in table[4]
    only = mm.model_summary(names=["toynet"], backbone="resnet18", **tiny_overrides("toynet"))
    assert [row["backbone"] for row in only] == ["resnet18"] and only[0]["params"] == rows[0]["params"]
