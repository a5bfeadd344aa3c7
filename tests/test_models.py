"""Tests of metallo.models on tiny real models (random init, CPU)."""

import math

import pytest
import torch
from safetensors.torch import save_file
from torchvision.models import resnet18
from transformers import AutoConfig, AutoModel

import metallo.models as mm
from metallo.models.common import feature_map_size

TINY = dict(image_size=64, spectrum_length=256, hidden_dim=32, intermediate_size=64)
BATCH = 4


def tiny_overrides(name: str, **overrides) -> dict:
    fields = mm.config_fields(name)
    return {key: value for key, value in {**TINY, **overrides}.items() if key in fields}


def make_model(name: str, **overrides):
    torch.manual_seed(0)
    return mm.create_model(name, **tiny_overrides(name, **overrides))


def make_batch(config, batch: int = BATCH, seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    pixel_values = torch.randn(batch, 3, config.image_size, config.image_size, generator=generator)
    spectra = torch.randn(batch, config.n_spectra, config.spectrum_length, generator=generator)
    labels = torch.randn(batch, generator=generator) * 3 + 10
    return pixel_values, spectra, labels


@pytest.fixture(scope="module", params=["toynet", "metallonet"])
def name(request):
    return request.param


@pytest.mark.parametrize("backbone", ["resnet18", "resnet50"])
def test_output_shapes(name, backbone):
    model = make_model(name, backbone=backbone).eval()
    pixel_values, spectra, labels = make_batch(model.config, batch=2)
    output = model(pixel_values, spectra, labels=labels, return_attention=True)
    assert isinstance(output, mm.RegressionOutput)
    assert output.predictions.shape == (2,)
    assert output.loss.shape == () and torch.isfinite(output.loss)
    side = feature_map_size(model.config.image_size)
    if name == "metallonet":
        assert output.attention.shape == (2, side, side)
    else:
        assert output.attention is None
    assert model(pixel_values, spectra).attention is None


@pytest.mark.parametrize("modalities", [["image", "spectra"], ["image"], ["spectra"]])
def test_backward_reaches_every_parameter(name, modalities):
    model = make_model(name, modalities=modalities).train()
    pixel_values, spectra, labels = make_batch(model.config)
    model(pixel_values, spectra, labels=labels).loss.backward()
    for param_name, param in model.named_parameters():
        assert param.grad is not None, f"{param_name} got no gradient"
        assert torch.isfinite(param.grad).all(), f"{param_name} has a non-finite gradient"
    for branch, modality in (("image_encoder", "image"), ("spectral_encoder", "spectra")):
        assert (getattr(model, branch) is None) == (modality not in modalities)


@pytest.mark.parametrize("modalities", [["image"], ["spectra"]])
def test_ablation_runs_without_unused_input(name, modalities):
    model = make_model(name, modalities=modalities).eval()
    pixel_values, spectra, _ = make_batch(model.config, batch=2)
    if modalities == ["image"]:
        output = model(pixel_values, None, return_attention=True)
        assert (output.attention is not None) == (name == "metallonet")
    else:
        output = model(None, spectra, return_attention=True)
        assert output.attention is None
    assert output.predictions.shape == (2,)
    with pytest.raises(ValueError, match="is required"):
        model(None, None)


def test_metallonet_ablations_build_no_unused_fusion_parts():
    both = make_model("metallonet")
    image_only = make_model("metallonet", modalities=["image"])
    assert all(hasattr(layer, "crossattention") for layer in both.fusion.layers)
    assert not any(hasattr(layer, "crossattention") for layer in image_only.fusion.layers)
    assert not any("crossattention" in key for key in image_only.state_dict())


def test_overfits_tiny_batch(name):
    model = make_model(name, dropout=0.0).train()
    pixel_values, spectra, labels = make_batch(model.config)
    model.config.label_mean, model.config.label_std = labels.mean().item(), labels.std().item()
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-4)
    losses = []
    for _ in range(60):
        loss = model(pixel_values, spectra, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if losses[-1] * 10 <= losses[0]:
            break
    assert losses[-1] * 10 <= losses[0], f"loss went from {losses[0]:.4f} to {losses[-1]:.4f} in {len(losses)} steps"


@pytest.mark.parametrize("backbone", ["resnet18", "resnet50"])
def test_save_and_load_pretrained(name, backbone, tmp_path):
    model = make_model(name, backbone=backbone, label_mean=5.0, label_std=2.0).eval()
    pixel_values, spectra, _ = make_batch(model.config, batch=2)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    config = AutoConfig.from_pretrained(tmp_path)
    assert type(config) is mm.get_config_class(name)
    assert config.grid == (6, 4) and config.label_mean == 5.0 and config.backbone == backbone
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert type(loaded) is mm.get_model_class(name)
    with torch.no_grad():
        expected = model(pixel_values, spectra).predictions
        torch.testing.assert_close(loaded(pixel_values, spectra).predictions, expected, rtol=1e-6, atol=1e-6)
        direct = mm.get_model_class(name).from_pretrained(tmp_path).eval()
        torch.testing.assert_close(direct(pixel_values, spectra).predictions, expected, rtol=1e-6, atol=1e-6)


def test_non_default_shapes(name):
    model = make_model(name, image_size=128, n_spectra=12, grid=(4, 3), spectrum_length=400).eval()
    pixel_values, spectra, labels = make_batch(model.config, batch=2)
    output = model(pixel_values, spectra, labels=labels, return_attention=True)
    assert output.predictions.shape == (2,)
    if name == "metallonet":
        assert output.attention.shape == (2, 4, 4)
        assert model.spectral_encoder.position_embeddings().shape == (12, model.config.hidden_dim)


@pytest.mark.parametrize(
    "which, shape, expected",
    [
        ("pixel_values", (2, 64, 64), r"pixel_values must have shape \(batch, 3, 64, 64\)"),
        ("pixel_values", (2, 1, 64, 64), r"pixel_values must have shape \(batch, 3, 64, 64\)"),
        ("pixel_values", (2, 3, 32, 32), r"pixel_values must have shape \(batch, 3, 64, 64\).*got \(2, 3, 32, 32\)"),
        ("spectra", (2, 24), r"spectra must have shape \(batch, 24, 256\)"),
        ("spectra", (2, 12, 256), r"spectra must have shape \(batch, 24, 256\).*got \(2, 12, 256\)"),
        ("spectra", (2, 24, 300), r"spectra must have shape \(batch, 24, 256\).*got \(2, 24, 300\)"),
    ],
)
def test_bad_inputs_name_expected_shape(name, which, shape, expected):
    model = make_model(name).eval()
    pixel_values, spectra, _ = make_batch(model.config, batch=2)
    inputs = {"pixel_values": pixel_values, "spectra": spectra, which: torch.randn(*shape)}
    with pytest.raises(ValueError, match=expected):
        model(**inputs)


def test_label_standardisation(name):
    model = make_model(name).eval()
    pixel_values, spectra, labels = make_batch(model.config)
    with torch.no_grad():
        features, _ = model.forward_features(pixel_values, spectra)
        head = model.forward_head(features)
        model.config.label_mean, model.config.label_std = 3.0, 2.5
        output = model(pixel_values, spectra, labels=labels)
        torch.testing.assert_close(output.predictions, head * 2.5 + 3.0)
        torch.testing.assert_close(output.loss, torch.mean((head - (labels - 3.0) / 2.5) ** 2))
        model.config.label_mean = 103.0
        shifted = model(pixel_values, spectra, labels=labels + 100.0)
    torch.testing.assert_close(shifted.loss, output.loss)
    torch.testing.assert_close(shifted.predictions, output.predictions + 100.0)


@pytest.mark.parametrize("loss", ["mse", "huber", "l1"])
def test_loss_choices(loss):
    model = make_model("toynet", loss=loss, huber_delta=0.5).eval()
    pixel_values, spectra, labels = make_batch(model.config)
    with torch.no_grad():
        output = model(pixel_values, spectra, labels=labels)
    error = output.predictions - labels
    expected = {
        "mse": error.pow(2).mean(),
        "huber": torch.where(error.abs() < 0.5, 0.5 * error.pow(2), 0.5 * (error.abs() - 0.25)).mean(),
        "l1": error.abs().mean(),
    }[loss]
    torch.testing.assert_close(output.loss, expected)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"loss": "mae"}, "loss must be one of"),
        ({"modalities": ["image", "text"]}, "modalities entries must be one of"),
        ({"modalities": []}, "at least one"),
        ({"grid": (5, 4)}, "rows \\* cols must equal n_spectra"),
        ({"backbone": "vit"}, "backbone must be one of"),
        ({"label_std": 0.0}, "label_std must be > 0"),
        ({"hidden_dim": 30}, "divisible by num_attention_heads"),
    ],
)
def test_config_validation(overrides, message):
    with pytest.raises(ValueError, match=message):
        mm.create_config("metallonet", **overrides)


def test_create_model_errors():
    with pytest.raises(ValueError, match="available models: classical, metallonet, toynet"):
        mm.create_model("resnet")
    with pytest.raises(ValueError, match="'hiden_dim'.*Did you mean 'hidden_dim'.*Valid fields:.*image_size"):
        mm.create_model("toynet", hiden_dim=8)
    with pytest.raises(ValueError, match="'num_fusion_layers'"):
        mm.create_config("toynet", num_fusion_layers=1)
    assert mm.list_models() == ["classical", "metallonet", "toynet"]
    assert mm.get_config_class("toynet").model_type == "metallo_toynet"
    assert mm.get_config_class("metallonet").model_type == "metallo_metallonet"


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_backbone_weights_from_local_file(name, suffix, tmp_path):
    torch.manual_seed(123)
    state_dict = resnet18(weights=None).state_dict()
    path = tmp_path / f"resnet18{suffix}"
    if suffix == ".safetensors":
        save_file({key: value.contiguous() for key, value in state_dict.items()}, path)
    else:
        torch.save(state_dict, path)
    model = make_model(name, backbone_weights=str(path))
    trunk = model.image_encoder.trunk
    torch.testing.assert_close(trunk.conv1.weight, state_dict["conv1.weight"], rtol=0, atol=0)
    torch.testing.assert_close(trunk.layer4[1].bn2.running_var, state_dict["layer4.1.bn2.running_var"])
    from_config = AutoModel.from_config(model.config)
    torch.testing.assert_close(from_config.image_encoder.trunk.conv1.weight, state_dict["conv1.weight"], rtol=0, atol=0)

    model.save_pretrained(tmp_path / "saved")
    path.unlink()
    loaded = AutoModel.from_pretrained(tmp_path / "saved")
    torch.testing.assert_close(loaded.image_encoder.trunk.conv1.weight, state_dict["conv1.weight"], rtol=0, atol=0)


def test_backbone_weights_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="backbone_weights file not found"):
        make_model("toynet", backbone_weights=str(tmp_path / "nope.safetensors"))


def test_attention_map_in_unit_interval():
    model = make_model("metallonet").eval()
    pixel_values, spectra, _ = make_batch(model.config)
    attention = model(pixel_values, spectra, return_attention=True).attention
    side = feature_map_size(model.config.image_size)
    assert attention.shape == (BATCH, side, side)
    assert attention.min() >= 0 and attention.max() <= 1


@pytest.mark.parametrize("modalities", [["image", "spectra"], ["image"]])
def test_fusion_self_attention_is_bidirectional(modalities):
    model = make_model("metallonet", modalities=modalities, dropout=0.0).eval()
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randn(2, 5, model.config.hidden_dim, generator=generator)
    context = torch.randn(2, 24, model.config.hidden_dim, generator=generator) if len(modalities) == 2 else None
    perturbed = tokens.clone()
    perturbed[:, -1] += 1.0
    with torch.no_grad():
        cls = model.fusion(tokens, context)
        assert not torch.allclose(model.fusion(perturbed, context), cls)
        if context is not None:
            assert not torch.allclose(model.fusion(tokens, context + 1.0), cls)


def test_cross_attention_gate_starts_small():
    model = make_model("metallonet")
    for layer in model.fusion.layers:
        assert math.isclose(layer.crossattention.output.gate.item(), model.config.fusion_gate_init, rel_tol=1e-6)


def test_model_summary_rows_and_table():
    rows = mm.model_summary(names=["toynet"], image_size=64, spectrum_length=256, hidden_dim=32)
    assert [row["backbone"] for row in rows] == ["resnet18", "resnet50"]
    model = make_model("toynet", backbone="resnet18")
    assert rows[0]["params"] == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert rows[1]["flops"] > rows[0]["flops"] > 0
    table = mm.format_summary(rows)
    assert "toynet" in table and "resnet50" in table and "GFLOPs" in table
