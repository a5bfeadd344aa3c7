"""The shared battery every gradient-trained Metallo model passes (tiny random models on CPU): shapes, gradients,
ablations, fitting, saving, input errors and label scaling. Each model reads what its config asks for
(`make_inputs` builds all of it; MetalloNet reads the stored-resolution `raw_pixel_values`, ToyNet `pixel_values`)."""

import pytest
import torch
from transformers import AutoConfig, AutoModel

import metallo.models as mm
from tests.helpers.models import fit_classical_branch, make_inputs, make_model, without

#: The registry's models trained by gradient descent (the closed-form `classical` model is tested elsewhere).
TRAINED = mm.list_models(closed_form=False)
#: What each modality set lets a caller leave out.
UNUSED = {("image",): ("spectra", "raw_spectra"), ("spectra",): ("pixel_values", "raw_pixel_values")}
#: The error a model raises when its main input is missing.
MISSING = {"toynet": "pixel_values is required", "metallonet": "MetalloNet reads raw_pixel_values"}


@pytest.fixture(params=TRAINED)
def name(request):
    return request.param


def standardised_head(model, inputs) -> torch.Tensor:
    """The model's readout (B,) in standardised label units, computed from its parts (no classical branch)."""
    with torch.no_grad():
        if isinstance(model, mm.MetalloNetModel):
            global_part, contributions, _ = model.forward_cells(inputs["raw_pixel_values"], inputs["spectra"])
            return global_part + contributions.mean(dim=1)
        features, _ = model.forward_features(inputs["pixel_values"], inputs["spectra"])
        return model.forward_head(features)


def test_output_shapes(name):
    model = make_model(name)
    inputs = make_inputs(model.config, batch=2)
    with torch.no_grad():
        output = model(**inputs, return_attention=True)
        plain = model(**without(inputs, "labels"))
    assert isinstance(output, mm.RegressionOutput)
    assert output.predictions.shape == (2,) and torch.isfinite(output.predictions).all()
    assert output.loss.shape == () and torch.isfinite(output.loss)
    assert output.attention is None  # neither model has a spatial-attention map
    if name == "metallonet":
        assert output.cell_contributions.shape == (2, *model.config.grid)
        assert torch.isfinite(output.cell_contributions).all()
    else:
        assert output.cell_contributions is None
    assert plain.loss is None and plain.cell_contributions is None
    torch.testing.assert_close(plain.predictions, output.predictions)


@pytest.mark.parametrize("backbone", ["resnet18", "resnet50"])
def test_toynet_runs_on_each_backbone(backbone):
    model = make_model("toynet", backbone=backbone)
    with torch.no_grad():
        output = model(**make_inputs(model.config, batch=2))
    assert model.image_encoder.trunk.num_channels == {"resnet18": 512, "resnet50": 2048}[backbone]
    assert output.predictions.shape == (2,) and torch.isfinite(output.loss)


@pytest.mark.parametrize("modalities", [["image", "spectra"], ["image"], ["spectra"]])
def test_backward_reaches_every_parameter(name, modalities):
    model = make_model(name, modalities=modalities).train()
    inputs = without(make_inputs(model.config), *UNUSED.get(tuple(modalities), ()))
    model(**inputs).loss.backward()
    for param_name, param in model.named_parameters():
        assert param.grad is not None, f"{param_name} got no gradient"
        assert torch.isfinite(param.grad).all(), f"{param_name} has a non-finite gradient"
        assert param.grad.abs().sum() > 0, f"{param_name} got an all-zero gradient"
    for branch, modality in (("image_encoder", "image"), ("spectral_encoder", "spectra")):
        assert (getattr(model, branch) is None) == (modality not in modalities)


@pytest.mark.parametrize("features", ["cells", "global"])
def test_backward_reaches_the_classical_head(features):
    model = make_model("metallonet", classical_branch=True, classical_features=features).train()
    model(**make_inputs(model.config)).loss.backward()
    for param_name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), param_name
    assert model.classical_head.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("modalities", [["image"], ["spectra"]])
def test_ablation_runs_without_unused_input(name, modalities):
    model = make_model(name, modalities=modalities)
    inputs = without(make_inputs(model.config, batch=2), "labels", *UNUSED[tuple(modalities)])
    with torch.no_grad():
        output = model(**inputs, return_attention=True)
    assert output.predictions.shape == (2,) and torch.isfinite(output.predictions).all()
    assert output.attention is None
    if name == "metallonet":  # every cell has a contribution even with one modality
        assert output.cell_contributions.shape == (2, *model.config.grid)
        assert torch.isfinite(output.cell_contributions).all()
    else:
        assert output.cell_contributions is None
    missing = MISSING[name] if modalities == ["image"] else "spectra"
    with pytest.raises(ValueError, match=missing):
        model()


@pytest.mark.parametrize("modalities", [["image"], ["spectra"]])
def test_ablations_build_no_unused_encoder(name, modalities):
    keys = list(make_model(name, modalities=modalities).state_dict())
    unused = "spectral_encoder." if modalities == ["image"] else "image_encoder."
    assert keys and not any(key.startswith(unused) for key in keys)


def test_overfits_tiny_batch(name):
    model = make_model(name, dropout=0.0).train()
    inputs = make_inputs(model.config)
    labels = inputs["labels"]
    model.config.label_mean, model.config.label_std = labels.mean().item(), labels.std().item()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []  # the label's error: the training loss may add a self-supervised term that does not go to 0
    for _ in range(30):
        output = model(**inputs)
        optimizer.zero_grad()
        output.loss.backward()
        optimizer.step()
        losses.append(((output.predictions.detach() - labels) ** 2).mean().item())
        if losses[-1] * 10 <= losses[0]:
            break
    assert losses[-1] * 10 <= losses[0], f"loss went from {losses[0]:.4f} to {losses[-1]:.4f} in {len(losses)} steps"


def test_save_and_load_pretrained(name, tmp_path):
    model = make_model(name, label_mean=5.0, label_std=2.0, grid=(4, 6))
    inputs = without(make_inputs(model.config, batch=2), "labels")
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    config = AutoConfig.from_pretrained(tmp_path)
    assert type(config) is mm.get_config_class(name)
    assert config.grid == (4, 6) and config.label_mean == 5.0
    assert without(config.to_dict(), "_name_or_path") == without(model.config.to_dict(), "_name_or_path")
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    direct = mm.get_model_class(name).from_pretrained(tmp_path).eval()
    assert type(loaded) is type(direct) is mm.get_model_class(name)
    with torch.no_grad():
        expected = model(**inputs, return_attention=True)
        for other in (loaded, direct):
            got = other(**inputs, return_attention=True)
            torch.testing.assert_close(got.predictions, expected.predictions, rtol=0, atol=0)
            if name == "metallonet":
                torch.testing.assert_close(got.cell_contributions, expected.cell_contributions, rtol=0, atol=0)


def test_metallonet_round_trip_keeps_the_classical_branch_and_grid_extent(tmp_path):
    extent = [-0.1, -0.05, 1.1, 1.05]
    model = make_model("metallonet", classical_branch=True, grid_extent=extent, label_mean=5.0, label_std=2.0)
    inputs = without(make_inputs(model.config, batch=8), "labels")
    fit_classical_branch(model, inputs)
    model.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert loaded.config.grid_extent == extent and loaded.config.classical_branch
    assert loaded.cell_patches.extent == tuple(extent)
    for key, value in model.state_dict().items():  # the fitted statistics are saved with the weights
        torch.testing.assert_close(loaded.state_dict()[key], value, rtol=0, atol=0, msg=key)
    assert model.classical_branch.feature_std.ne(1).any()
    with torch.no_grad():
        expected, got = (m(**inputs, return_attention=True) for m in (model, loaded))
    torch.testing.assert_close(got.predictions, expected.predictions, rtol=0, atol=0)
    torch.testing.assert_close(got.cell_contributions, expected.cell_contributions, rtol=0, atol=0)


def test_non_default_shapes(name):
    """Grid (4, 3) of 400-point spectra; MetalloNet's stored image (70 px) is not divisible by the grid."""
    model = make_model(name, n_spectra=12, grid=(4, 3), spectrum_length=400)
    inputs = make_inputs(model.config, batch=2, stored_size=70)
    with torch.no_grad():
        output = model(**inputs, return_attention=True)
    assert output.predictions.shape == (2,) and torch.isfinite(output.predictions).all()
    assert torch.isfinite(output.loss)
    if name == "metallonet":
        assert output.cell_contributions.shape == (2, 4, 3) and torch.isfinite(output.cell_contributions).all()


@pytest.mark.parametrize("stored_size", [(60, 44), (33, 97), (24, 16)])
def test_metallonet_reads_stored_images_of_any_size(stored_size):
    model = make_model("metallonet")
    with torch.no_grad():
        output = model(**make_inputs(model.config, batch=2, stored_size=stored_size), return_attention=True)
    assert torch.isfinite(output.predictions).all() and output.cell_contributions.shape == (2, 6, 4)


def test_metallonet_ignores_pixel_values():
    model = make_model("metallonet")
    inputs = make_inputs(model.config, batch=2)
    with torch.no_grad():
        expected = model(**inputs).predictions
        for pixel_values in (None, torch.randn(2, 3, 32, 32), torch.randn(5, 1, 7, 9)):
            got = model(**{**inputs, "pixel_values": pixel_values}).predictions
            torch.testing.assert_close(got, expected, rtol=0, atol=0)


@pytest.mark.parametrize(
    "name, which, shape, expected",
    [
        ("toynet", "pixel_values", (2, 32, 32), r"pixel_values must have shape \(batch, 3, 32, 32\)"),
        ("toynet", "pixel_values", (2, 1, 32, 32), r"pixel_values must have shape \(batch, 3, 32, 32\)"),
        ("toynet", "pixel_values", (2, 3, 64, 64), r"\(batch, 3, 32, 32\) \(image_size.*got \(2, 3, 64, 64\)"),
        *[
            (model, "spectra", shape, rf"spectra must have shape \(batch, 24, 128\).*got \({got}\)")
            for model in TRAINED
            for shape, got in [((2, 24), "2, 24"), ((2, 12, 128), "2, 12, 128"), ((2, 24, 300), "2, 24, 300")]
        ],
    ],
)
def test_bad_inputs_name_expected_shape(name, which, shape, expected):
    model = make_model(name)
    inputs = {**make_inputs(model.config, batch=2), which: torch.randn(*shape)}
    with pytest.raises(ValueError, match=expected):
        model(**inputs)


@pytest.mark.parametrize(
    "which, value, expected",
    [
        ("raw_pixel_values", None, r"reads raw_pixel_values: .*\(batch, 3, height, width\).*got None"),
        ("raw_pixel_values", torch.rand(2, 1, 32, 32), r"reads raw_pixel_values: .*got \(2, 1, 32, 32\)"),
        ("raw_pixel_values", torch.rand(3, 3, 32, 32), r"one batch size; got \[2, 3\]"),
        ("raw_spectra", None, r"classical branch reads raw_spectra: .*\(batch, 24, 128\).*got None"),
        ("raw_spectra", torch.rand(2, 24, 64), r"classical branch reads raw_spectra: .*got \(2, 24, 64\)"),
    ],
)
def test_metallonet_names_a_missing_or_wrong_raw_input(which, value, expected):
    model = make_model("metallonet", classical_branch=True)
    with pytest.raises(ValueError, match=rf"{expected}"):
        model(**{**make_inputs(model.config, batch=2), which: value})


def test_metallonet_refuses_a_config_of_the_retired_design():
    with pytest.raises(ValueError, match=r"retired ResNet design \(fusion, cell_feature_stages\).*Retrain"):
        mm.MetalloNetConfig(fusion="grid", cell_feature_stages=[2, 3])


def test_label_standardisation(name):
    """predictions = head * label_std + label_mean; the loss compares head with standardised labels."""
    model = make_model(name)
    inputs = make_inputs(model.config)
    labels = inputs["labels"]
    head = standardised_head(model, inputs)
    model.config.label_mean, model.config.label_std = 3.0, 2.5
    with torch.no_grad():
        output = model(**inputs)
        torch.testing.assert_close(output.predictions, head * 2.5 + 3.0)
        torch.testing.assert_close(output.loss, torch.mean((head - (labels - 3.0) / 2.5) ** 2))
        model.config.label_mean = 103.0
        shifted = model(**{**inputs, "labels": labels + 100.0})
    torch.testing.assert_close(shifted.loss, output.loss)
    torch.testing.assert_close(shifted.predictions, output.predictions + 100.0)


def test_regression_output_checks_the_labels_shape(name):
    model = make_model(name, label_mean=1.0, label_std=2.0)
    output = model.regression_output(torch.tensor([0.0, 1.0]), torch.tensor([[1.0], [3.0]]), {})
    torch.testing.assert_close(output.predictions, torch.tensor([1.0, 3.0]))
    torch.testing.assert_close(output.loss, torch.tensor(0.0))
    with pytest.raises(ValueError, match=r"labels must have shape \(2,\); got \(3,\)"):
        model.regression_output(torch.zeros(2), torch.zeros(3), {})


@pytest.mark.parametrize("loss", ["mse", "huber", "l1"])
def test_loss_choices(name, loss):
    model = make_model(name, loss=loss, huber_delta=0.5)  # label_std 1: label units are standardised units
    inputs = make_inputs(model.config)
    with torch.no_grad():
        output = model(**inputs)
    error = output.predictions - inputs["labels"]
    expected = {
        "mse": error.pow(2).mean(),
        "huber": torch.where(error.abs() < 0.5, 0.5 * error.pow(2), 0.5 * (error.abs() - 0.25)).mean(),
        "l1": error.abs().mean(),
    }[loss]
    torch.testing.assert_close(output.loss, expected)
