"""The train stage at an accelerator's speed, checked on the CPU (issue 13).

No host sync in the steady-state step (device-side augmentation, no ``.item()``, no FLOP
counting), asynchronous MLflow logging that keeps every point, and the ``train.profile`` settings.
"""

from __future__ import annotations

import mlflow
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import TrainerCallback

from metallo.augmentation import Augmentation, augment_batch
from metallo.errors import MetalloError
from metallo.params import load_params
from metallo.tracking.tracker import Tracker
from metallo.training.arguments import accelerator_step_settings, build_training_arguments
from metallo.training.distributed import augmentation_generator
from metallo.training.profiles import PROFILES, apply_profile, profile_record
from tests.helpers.models import tiny_model, tiny_processor
from tests.helpers.project import REPO


class OpRecorder(TorchDispatchMode):
    """Records every aten op and the devices of the tensors it returns."""

    def __init__(self):
        super().__init__()
        self.ops: list[str] = []
        self.devices: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.ops.append(str(func))
        for value in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(value, torch.Tensor):
                self.devices.add(value.device.type)
        return out


def _raw_batch(size: int = 4, device: str = "cpu") -> dict:
    return {
        "pixel_values": torch.zeros(size, 64, 64, 3, dtype=torch.uint8, device=device),
        "spectra": torch.ones(size, 24, 64, device=device),
        "labels": torch.zeros(size, device=device),
    }


def test_augmentation_and_processing_create_tensors_only_on_the_batch_device():
    batch = _raw_batch(device="meta")  # any tensor made on the CPU would show up as "cpu"
    with OpRecorder() as recorder:
        out = tiny_processor()(augment_batch(batch, (6, 4), Augmentation(spectra_offset=0.5)))
    assert recorder.ops and recorder.devices == {"meta"}
    assert {v.device.type for v in out.values()} == {"meta"}


def test_each_rank_draws_its_own_reproducible_augmentation():
    def gains(rank: int) -> torch.Tensor:
        generator = augmentation_generator("cpu", 7, rank)
        return augment_batch(_raw_batch(8), (6, 4), Augmentation(), generator)["image_gain"]

    assert torch.equal(gains(0), gains(0))
    assert not torch.allclose(gains(0), gains(1))


class HostSyncCounter(TrainerCallback):
    """Counts ``.item()``-style device-to-host reads (``aten._local_scalar_dense``) inside steps after the first."""

    def __init__(self):
        self.recorder, self.syncs, self.steps = None, [], 0

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step >= 1:
            self.recorder = OpRecorder().__enter__()

    def on_step_end(self, args, state, control, **kwargs):
        if self.recorder is not None:
            self.recorder.__exit__(None, None, None)
            self.syncs += [op for op in self.recorder.ops if "_local_scalar_dense" in op]
            self.steps += 1
            self.recorder = None


def _tiny_trainer(tmp_path, train: dict, callbacks=()):
    from torch.utils.data import default_collate

    from metallo.training.trainer import MetalloTrainer

    torch.manual_seed(0)
    model = tiny_model("toynet", hidden_dim=8, label_mean=0.0)
    rows = [
        {
            "pixel_values": torch.randint(0, 255, (64, 64, 3), dtype=torch.uint8),
            "spectra": torch.rand(24, 64),
            "labels": torch.tensor(float(i)),
        }
        for i in range(16)
    ]
    args, _ = build_training_arguments(train, tmp_path / "checkpoints")
    return MetalloTrainer(
        model=model,
        args=args,
        train_dataset=rows,
        data_collator=default_collate,
        callbacks=list(callbacks),
        processor=tiny_processor(),
        grid=(6, 4),
        augmentation=Augmentation(),
    )


def test_training_steps_with_the_accelerator_settings_read_nothing_back_from_the_device(tmp_path):
    """The GPU profile's step, on the CPU: no per-step .item()/NaN check, FLOPs not counted, own generator."""
    train = apply_profile({"train": {"profile": "gpu"}, "model": {}})["train"]
    train.update(
        accelerator_step_settings(),
        per_device_train_batch_size=4,
        max_steps=4,
        compile=False,
        use_cpu=True,
        eval_strategy="no",
        save_strategy="no",
        logging_steps=100,
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        dataloader_persistent_workers=False,
        dataloader_prefetch_factor=None,
        early_stopping_patience=0,
        seed=3,
    )
    counter = HostSyncCounter()
    trainer = _tiny_trainer(tmp_path, train, [counter])
    assert trainer.args.logging_nan_inf_filter is False and trainer.args.accelerator_config.non_blocking is True
    trainer.train()
    assert counter.steps == 3 and counter.syncs == []
    assert trainer.state.total_flos == 0
    assert trainer.augmentation_generator.initial_seed() == 3  # seed + rank 0


def test_gpu_profile_resolves_to_the_documented_training_arguments(tmp_path):
    params = load_params(REPO / "params.yaml")
    assert params["train"]["profile"] == "cpu"
    cpu = apply_profile(params)
    assert cpu["model"]["image_size"] == 128 and cpu["train"]["per_device_train_batch_size"] == 16
    params["train"]["profile"] = "gpu"
    gpu = apply_profile(params)
    args, options = build_training_arguments(gpu["train"], tmp_path)
    assert gpu["model"]["image_size"] == 300 and options.compile and args.torch_compile
    assert args.per_device_train_batch_size >= 256 and args.dataloader_num_workers == 8
    assert args.eval_strategy == "steps" and args.save_strategy == "steps" and args.eval_steps == 0.1
    assert args.save_only_model and args.load_best_model_at_end
    assert args.learning_rate == params["train"]["learning_rate"]  # a key set in params.yaml is kept
    for key, value in PROFILES["gpu"]["train"].items():
        if key != "dataloader_pin_memory":  # transformers turns pinning off on a CPU-only machine
            assert getattr(args, "torch_compile" if key == "compile" else key) == value, key

    params["train"]["per_device_train_batch_size"] = 512  # an explicit value wins over the profile
    assert apply_profile(params)["train"]["per_device_train_batch_size"] == 512


def test_the_profile_record_names_what_auto_became():
    params = load_params(REPO / "params.yaml")
    record = profile_record(params)
    assert record["name"] == "cpu" and record["train.per_device_train_batch_size"] == 16
    resolved = apply_profile(params)
    for key, value in record.items():
        if key != "name":
            section, name = key.split(".", 1)
            assert params[section].get(name, "auto") == "auto" and resolved[section][name] == value
    params["train"]["per_device_train_batch_size"] = 8  # set explicitly: not the profile's
    assert "train.per_device_train_batch_size" not in profile_record(params)


def test_unknown_profile_and_unresolvable_auto_are_clear_errors():
    with pytest.raises(MetalloError, match="train.profile must be one of cpu, gpu; got 'tpu'"):
        apply_profile({"train": {"profile": "tpu"}})
    with pytest.raises(MetalloError, match="train.warmup_steps is auto"):
        apply_profile({"train": {"warmup_steps": "auto"}})


def test_asynchronous_metric_logging_keeps_every_point(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    tracker = Tracker("metallo")
    run_id = tracker.start(run_name="async")
    for step in range(1, 41):
        tracker.log_metrics({"loss": 1.0 / step, "grad_norm": float(step)}, step=step, synchronous=False)
    tracker.finish()
    client = mlflow.MlflowClient(uri)
    history = client.get_metric_history(run_id, "loss")
    assert sorted(m.step for m in history) == list(range(1, 41))
    assert {m.step: m.value for m in history}[8] == pytest.approx(1 / 8)
    assert len(client.get_metric_history(run_id, "grad_norm")) == 40
    assert client.get_run(run_id).info.status == "FINISHED" and tracker.enabled
