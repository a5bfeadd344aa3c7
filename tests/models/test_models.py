"""Tests of metallo.models on tiny real models (random init, CPU)."""

import math

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torchvision.models import resnet18
from transformers import AutoConfig, AutoModel

import metallo.models as mm
from metallo.augmentation import flip_batch
from metallo.models.cells import cell_pooling_weights
from metallo.models.modeling_common import feature_map_size, stage_stride

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


#: Every gradient-trained model design (the closed-form `classical` model has no backbone and no gradients).
TRAINED_VARIANTS = [
    pytest.param(("toynet", {}), id="toynet"),
    pytest.param(("metallonet", {"fusion": "grid"}), id="metallonet-grid"),
    pytest.param(("metallonet", {"fusion": "attention"}), id="metallonet-attention"),
]


@pytest.mark.parametrize("backbone", ["resnet18", "resnet50"])
def test_output_shapes(name, backbone):
    model = make_model(name, backbone=backbone).eval()
    pixel_values, spectra, labels = make_batch(model.config, batch=2)
    output = model(pixel_values, spectra, labels=labels, return_attention=True)
    assert isinstance(output, mm.RegressionOutput)
    assert output.predictions.shape == (2,)
    assert output.loss.shape == () and torch.isfinite(output.loss)
    assert output.attention is None  # toynet has no map; the default grid fusion has contributions instead
    if name == "metallonet":
        assert model.config.fusion == "grid"
        assert output.cell_contributions.shape == (2, *model.config.grid)
        assert torch.isfinite(output.cell_contributions).all()
    else:
        assert output.cell_contributions is None
    plain = model(pixel_values, spectra)
    assert plain.attention is None and plain.cell_contributions is None


@pytest.mark.parametrize("variant", TRAINED_VARIANTS)
@pytest.mark.parametrize("modalities", [["image", "spectra"], ["image"], ["spectra"]])
def test_backward_reaches_every_parameter(variant, modalities):
    name, overrides = variant
    model = make_model(name, modalities=modalities, **overrides).train()
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
    else:
        output = model(None, spectra, return_attention=True)
    assert output.attention is None
    if name == "metallonet":  # grid fusion: every cell has a contribution even with one modality
        assert output.cell_contributions.shape == (2, *model.config.grid)
        assert torch.isfinite(output.cell_contributions).all()
    else:
        assert output.cell_contributions is None
    assert output.predictions.shape == (2,)
    assert torch.isfinite(output.predictions).all()
    with pytest.raises(ValueError, match="is required"):
        model(None, None)


def test_metallonet_ablations_build_no_unused_fusion_parts():
    both = make_model("metallonet", fusion="attention")
    image_only = make_model("metallonet", modalities=["image"], fusion="attention")
    assert all(hasattr(layer, "crossattention") for layer in both.fusion.layers)
    assert not any(hasattr(layer, "crossattention") for layer in image_only.fusion.layers)
    assert not any("crossattention" in key for key in image_only.state_dict())


def test_grid_fusion_builds_no_attention_parts_and_no_unused_branch():
    both = make_model("metallonet")
    keys = list(both.state_dict())
    assert not any(part in key for key in keys for part in ("crossattention", "spatial_attention", "spatial_prior"))
    assert not hasattr(both, "spatial_prior")
    assert not any(key.startswith("image_encoder.trunk.layer4.") for key in keys)  # trunk stops at stage 3
    stages = both.config.cell_feature_stages
    assert stages == [2, 3] and {f"image_encoder.cell_weights_{stage}" for stage in stages} <= set(keys)
    image_only = make_model("metallonet", modalities=["image"])
    assert image_only.spectral_encoder is None
    assert not any(key.startswith("spectral_encoder.") for key in image_only.state_dict())
    spectra_only = make_model("metallonet", modalities=["spectra"])
    assert spectra_only.image_encoder is None
    assert not any(key.startswith("image_encoder.") for key in spectra_only.state_dict())


@pytest.mark.parametrize("variant", TRAINED_VARIANTS)
def test_overfits_tiny_batch(variant):
    name, overrides = variant
    model = make_model(name, dropout=0.0, **overrides).train()
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
    assert torch.isfinite(output.predictions).all()
    if name == "metallonet":
        assert output.cell_contributions.shape == (2, 4, 3) and output.attention is None
        for stage in model.config.cell_feature_stages:  # one weight row per cell, one column per feature pixel
            side = 128 // stage_stride(stage)
            assert getattr(model.image_encoder, f"cell_weights_{stage}").shape == (12, side * side)
        attention = make_model(
            name, image_size=128, n_spectra=12, grid=(4, 3), spectrum_length=400, fusion="attention"
        ).eval()
        output = attention(pixel_values, spectra, labels=labels, return_attention=True)
        assert output.attention.shape == (2, 4, 4) and output.cell_contributions is None
        assert attention.spectral_encoder.position_embeddings().shape == (12, attention.config.hidden_dim)


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
        ({"grid": (6.0, 4.0)}, "grid entries must be a positive integer"),
        ({"hidden_dim": np.int64(64)}, "hidden_dim must be a positive integer"),  # config.json must stay JSON
        ({"backbone": "vit"}, "backbone must be one of"),
        ({"label_std": 0.0}, "label_std must be > 0"),
        ({"hidden_dim": 30}, "divisible by num_attention_heads"),
        ({"fusion": "cross"}, "fusion must be one of"),
        ({"grid_extent": (0.0, 0.0, 0.0, 1.0)}, "grid_extent must be"),
        ({"grid_extent": (0.0, 0.0, 1.0)}, "grid_extent must be"),
        ({"cell_feature_stages": [5]}, "cell_feature_stages must list ResNet stages 1-4"),
        ({"cell_feature_stages": []}, "cell_feature_stages must list ResNet stages 1-4"),
    ],
)
def test_config_validation(overrides, message):
    with pytest.raises(ValueError, match=message):
        mm.create_config("metallonet", **overrides)


def test_create_model_errors():
    with pytest.raises(ValueError, match="available models: classical, metallonet, toynet"):
        mm.create_model("resnet")
    with pytest.raises(ValueError, match="'hiden_dim'.*Did you mean: hidden_dim.*Valid fields:.*image_size"):
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
    assert_trunk_matches(trunk, state_dict)
    if name == "metallonet":  # the default grid trunk stops at stage 3: layer4 of the file is ignored
        assert trunk.depth == 3 and not hasattr(trunk, "layer4")
    else:
        torch.testing.assert_close(trunk.layer4[1].bn2.running_var, state_dict["layer4.1.bn2.running_var"])
    from_config = AutoModel.from_config(model.config)
    torch.testing.assert_close(from_config.image_encoder.trunk.conv1.weight, state_dict["conv1.weight"], rtol=0, atol=0)

    model.save_pretrained(tmp_path / "saved")
    path.unlink()
    loaded = AutoModel.from_pretrained(tmp_path / "saved")
    torch.testing.assert_close(loaded.image_encoder.trunk.conv1.weight, state_dict["conv1.weight"], rtol=0, atol=0)


def assert_trunk_matches(trunk, state_dict):
    """Every trunk tensor equals the file's; only the file's stages beyond the trunk's depth go unused."""
    trunk_state = trunk.state_dict()
    absent = ("fc.", *(f"layer{stage}." for stage in range(trunk.depth + 1, 5)))
    assert set(trunk_state) == {key for key in state_dict if not key.startswith(absent)}
    for key, value in trunk_state.items():
        torch.testing.assert_close(value, state_dict[key], rtol=0, atol=0, msg=key)


def test_attention_backbone_weights_load_every_stage(tmp_path):
    torch.manual_seed(123)
    state_dict = resnet18(weights=None).state_dict()
    path = tmp_path / "resnet18.safetensors"
    save_file({key: value.contiguous() for key, value in state_dict.items()}, path)
    trunk = make_model("metallonet", fusion="attention", backbone_weights=str(path)).image_encoder.trunk
    assert trunk.depth == 4
    assert_trunk_matches(trunk, state_dict)
    torch.testing.assert_close(trunk.layer4[1].bn2.running_var, state_dict["layer4.1.bn2.running_var"])


def test_backbone_weights_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="backbone_weights file not found"):
        make_model("toynet", backbone_weights=str(tmp_path / "nope.safetensors"))


def test_attention_map_in_unit_interval():
    model = make_model("metallonet", fusion="attention").eval()
    pixel_values, spectra, _ = make_batch(model.config)
    attention = model(pixel_values, spectra, return_attention=True).attention
    side = feature_map_size(model.config.image_size)
    assert attention.shape == (BATCH, side, side)
    assert attention.min() >= 0 and attention.max() <= 1


@pytest.mark.parametrize("modalities", [["image", "spectra"], ["image"]])
def test_fusion_self_attention_is_bidirectional(modalities):
    model = make_model("metallonet", modalities=modalities, dropout=0.0, fusion="attention").eval()
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
    model = make_model("metallonet", fusion="attention")
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


# --- grid fusion -----------------------------------------------------------------------------------------------------


def painted_cells(grid, size):
    """(size, size) map whose value is the row-major index of the grid cell each pixel lies in (grid divides size)."""
    rows, cols = grid
    row = torch.arange(size) // (size // rows)
    col = torch.arange(size) // (size // cols)
    return (row[:, None] * cols + col[None, :]).double()


@pytest.mark.parametrize("grid, stride", [((2, 2), 32), ((2, 2), 16), ((4, 2), 8), ((2, 4), 8), ((8, 8), 8)])
def test_cell_pooling_weights_recover_painted_cells(grid, stride):
    weights = cell_pooling_weights((0, 0, 1, 1), grid, 64, stride)
    side = 64 // stride
    assert weights.shape == (grid[0] * grid[1], side * side) and weights.dtype == torch.float32
    assert (weights >= 0).all()
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(len(weights)))
    pooled = weights.double() @ painted_cells(grid, side).flatten()
    torch.testing.assert_close(pooled, torch.arange(len(weights), dtype=torch.float64), rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    "extent", [(0, 0, 1, 1), (-0.1, -0.1, 1.1, 1.1), (0.13, -0.2, 0.91, 0.77), (-0.3, 0.1, 1.0, 1.4)]
)
@pytest.mark.parametrize("image_size", [64, 72])
@pytest.mark.parametrize("stage", [2, 3, 4])
def test_cell_pooling_weights_rows_sum_to_one(extent, image_size, stage):
    weights = cell_pooling_weights(extent, (6, 4), image_size, stage_stride(stage))
    side = -(-image_size // stage_stride(stage))
    assert weights.shape == (24, side * side) and (weights >= 0).all()
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(24))


def test_cell_pooling_weights_crop_extent_keeps_outer_cells_inside_their_corner():
    # Crop-like extent: the measured field is larger than the image, the outer cells stick out of it.
    weights = cell_pooling_weights((-0.1, -0.1, 1.1, 1.1), (2, 2), 64, 8).view(2, 2, 8, 8)
    torch.testing.assert_close(weights.sum(dim=(2, 3)), torch.ones(2, 2))
    for row in range(2):
        for col in range(2):  # each cell's weight lies in its own image quadrant, spread evenly (whole pixels)
            quadrant = weights[row, col, 4 * row : 4 * row + 4, 4 * col : 4 * col + 4]
            torch.testing.assert_close(quadrant, torch.full((4, 4), 1 / 16))
    # A cell entirely outside the image falls back to the image mean.
    outside = cell_pooling_weights((1.0, 0.0, 2.0, 1.0), (1, 2), 64, 16)
    torch.testing.assert_close(outside, torch.full((2, 16), 1 / 16))


@pytest.mark.parametrize("extent", [(0, 0, 1, 1), (-0.1, -0.1, 1.1, 1.1), (0.05, -0.2, 0.9, 1.15)])
@pytest.mark.parametrize("stride", [8, 16, 32])
def test_cell_pooling_weights_follow_flips(extent, stride):
    """Flipping the image flips the feature map and the grid: the weights of the mirrored extent are the mirrored
    weights, with cell (r, c) -> (r, cols - 1 - c) horizontally and (rows - 1 - r, c) vertically."""
    rows, cols, side = 3, 2, 64 // stride
    x0, y0, x1, y1 = extent
    weights = cell_pooling_weights(extent, (rows, cols), 64, stride).view(rows, cols, side, side)
    horizontal = cell_pooling_weights((1 - x1, y0, 1 - x0, y1), (rows, cols), 64, stride).view(rows, cols, side, side)
    vertical = cell_pooling_weights((x0, 1 - y1, x1, 1 - y0), (rows, cols), 64, stride).view(rows, cols, side, side)
    torch.testing.assert_close(horizontal, weights.flip(1).flip(3))
    torch.testing.assert_close(vertical, weights.flip(0).flip(2))
    if not math.isclose(x0, 1 - x1):  # an asymmetric extent really is mirrored, not left alone
        assert not torch.allclose(horizontal, weights)
    if not math.isclose(y0, 1 - y1):
        assert not torch.allclose(vertical, weights)


def test_flip_batch_keeps_each_spectrum_under_its_pooled_cell():
    """flip_batch's grid convention matches cell_pooling_weights: after any flip, pooling the image over cell k still
    finds the region that spectrum k was measured over."""
    grid, size, batch = (2, 4), 32, 8
    painted = painted_cells(grid, size).to(torch.uint8) * 10  # cell k painted with 10 * k
    pixels = painted[None, :, :, None].expand(batch, size, size, 3).contiguous()
    spectra = torch.arange(8, dtype=torch.float32)[None, :, None].expand(batch, 8, 5).contiguous()
    flipped = flip_batch({"pixel_values": pixels, "spectra": spectra}, grid, torch.Generator().manual_seed(3))
    image = flipped["pixel_values"].float() / 255  # normalisation is per channel: it does not move anything
    seen = {(bool((image[i] != pixels[i].float() / 255).any())) for i in range(batch)}
    assert seen == {True, False}, "the seed should flip some samples and leave others"
    for stride in (1, 4):  # at pixel resolution and on a stride-4 (stage 1) "feature map"
        weights = cell_pooling_weights((0, 0, 1, 1), grid, size, stride)
        features = torch.nn.functional.avg_pool2d(image[..., 0][:, None], stride).flatten(1)  # (B, h * w)
        pooled = features @ weights.t() * 255 / 10
        torch.testing.assert_close(pooled, flipped["spectra"][..., 0], rtol=0, atol=1e-4)


def test_grid_prediction_is_cls_readout_plus_mean_cell_contribution():
    model = make_model("metallonet", label_mean=3.0, label_std=2.5).eval()
    pixel_values, spectra, _ = make_batch(model.config)
    rows, cols = model.config.grid
    with torch.no_grad():
        output = model(pixel_values, spectra, return_attention=True)
        (cls, cells), maps = model.forward_features(pixel_values, spectra)
        cls_head = model.head(cls).squeeze(-1)
        torch.testing.assert_close(model.forward_head((cls, cells)), cls_head + cells.mean(dim=1))
    assert cells.shape == (BATCH, rows * cols) and output.attention is None
    torch.testing.assert_close(maps["cell_contributions"], output.cell_contributions)
    torch.testing.assert_close(output.cell_contributions, 2.5 * cells.view(BATCH, rows, cols))
    torch.testing.assert_close(output.predictions, 3.0 + 2.5 * (cls_head + cells.mean(dim=1)))
    # In label units: prediction = label_mean + label_std * CLS head + mean cell contribution.
    torch.testing.assert_close(output.predictions - 3.0 - 2.5 * cls_head, output.cell_contributions.mean(dim=(1, 2)))


def test_changing_one_spectrum_changes_its_own_cell_most():
    model = make_model("metallonet").eval()
    pixel_values, spectra, _ = make_batch(model.config)
    rows, cols = model.config.grid
    with torch.no_grad():
        before = model(pixel_values, spectra, return_attention=True).cell_contributions
        for cell in (0, 9, rows * cols - 1):
            changed = spectra.clone()
            changed[:, cell] = torch.randn(changed[:, cell].shape, generator=torch.Generator().manual_seed(cell))
            after = model(pixel_values, changed, return_attention=True).cell_contributions
            delta = (after - before).abs().view(BATCH, -1)
            assert (delta.argmax(dim=1) == cell).all(), f"cell {cell}: largest changes at {delta.argmax(dim=1)}"


def test_grid_save_and_load_pretrained_keeps_cell_weights(tmp_path):
    from safetensors import safe_open

    extent = (-0.1, -0.05, 1.1, 1.05)
    model = make_model(
        "metallonet", grid_extent=extent, cell_feature_stages=[1, 3], label_mean=5.0, label_std=2.0
    ).eval()
    pixel_values, spectra, _ = make_batch(model.config, batch=2)
    model.save_pretrained(tmp_path)
    with safe_open(tmp_path / "model.safetensors", "pt") as saved:
        keys = set(saved.keys())
    assert {"image_encoder.cell_weights_1", "image_encoder.cell_weights_3"} <= keys
    assert not any(key.startswith("image_encoder.trunk.layer4.") for key in keys)
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert loaded.config.fusion == "grid" and loaded.config.cell_feature_stages == [1, 3]
    assert loaded.config.grid_extent == list(extent)
    for stage in (1, 3):
        expected = cell_pooling_weights(extent, (6, 4), 64, stage_stride(stage))
        buffer = getattr(loaded.image_encoder, f"cell_weights_{stage}")
        assert not buffer.is_meta
        torch.testing.assert_close(buffer, expected, rtol=0, atol=0)
        torch.testing.assert_close(buffer, getattr(model.image_encoder, f"cell_weights_{stage}"), rtol=0, atol=0)
    with torch.no_grad():
        expected, got = (m(pixel_values, spectra, return_attention=True) for m in (model, loaded))
        torch.testing.assert_close(got.predictions, expected.predictions, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(got.cell_contributions, expected.cell_contributions, rtol=1e-6, atol=1e-6)
