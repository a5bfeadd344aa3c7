"""``metallo bench`` at tiny sizes: the JSON report is complete and consistent (no timing assertions)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from metallo import bench
from metallo.errors import MetalloError
from tests.helpers.project import REPO

TINY = [
    "--samples",
    "16",
    "--image-size",
    "48",
    "--model-image-size",
    "32",
    "--spectra-length",
    "64",
    "--batch-size",
    "4",
    "--steps",
    "2",
    "--warmup-steps",
    "1",
    "--passes",
    "1",
    "--workers",
    "0",
    "--device",
    "cpu",
    "--convert-workers",
    "1",
    "--threads",
    "1",
    "--params",
    REPO / "params.yaml",
]
# --threads 1: the suite often shares the 2 cores with other processes, where OpenMP spin-waiting
# makes multi-threaded CPU training steps 10-50x slower; one thread keeps the test fast.


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_bench_writes_complete_json_and_prints_table(tmp_path: Path, capsys):
    out = tmp_path / "b.json"
    assert bench.main([*TINY, "--model", "toynet", "--out", out]) == 0

    printed = capsys.readouterr().out
    for label in bench.SECTIONS.values():
        assert label in printed
    assert "samples/s" in printed and "(b)/(a)" in printed and "(d)/(c)" in printed
    assert "without eval/checkpoint time" in printed

    result = json.loads(out.read_text())
    assert set(result["sections"]) == set(bench.SECTIONS)
    for key, section in result["sections"].items():
        assert _positive(section["samples_per_s"]), key
        assert _positive(section["seconds"]), key
        assert section["samples"] > 0
        assert section["samples_per_s"] == pytest.approx(section["samples"] / section["seconds"])
    s = {k: v["samples_per_s"] for k, v in result["sections"].items()}
    ratios = result["ratios"]
    assert ratios["input_speedup_b_over_a"] == pytest.approx(s["metallo_input_pipeline"] / s["old_png_pipeline"])
    assert ratios["train_stage_efficiency_d_over_c"] == pytest.approx(s["train_stage"] / s["train_step_on_device"])
    assert ratios["input_headroom_b_over_c"] == pytest.approx(s["metallo_input_pipeline"] / s["train_step_on_device"])

    # both input pipelines saw every sample once per timed pass; the training sections saw steps x batch
    assert result["sections"]["old_png_pipeline"]["samples"] == 16
    assert result["sections"]["metallo_input_pipeline"]["samples"] == 16
    assert result["sections"]["train_step_on_device"]["samples"] == 2 * 4
    # (d) is the train stage itself: params.yaml's evaluation and checkpoints (every epoch on the cpu profile)
    stage = result["sections"]["train_stage"]
    assert stage["samples"] == 2 * 4 and stage["profile"] is None and stage["params"].endswith("params.yaml")
    assert stage["eval_checkpoint_pauses"] >= 1 and stage["eval_checkpoint_s"] > 0
    assert stage["samples_per_s_without_eval_checkpoint"] > stage["samples_per_s"]
    assert ratios["train_steps_efficiency_d_over_c"] == pytest.approx(
        stage["samples_per_s_without_eval_checkpoint"] / s["train_step_on_device"]
    )
    assert 0 < stage["steps_share_of_stage"] < 1 and math.isfinite(stage["val_rmse"])

    config = result["config"]
    assert (
        config
        | {
            "samples": 16,
            "image_size": 48,
            "crop": 48,
            "resize": 54,
            "model_image_size": 32,
            "spectra_length": 64,
            "batch_size": 4,
            "model": "toynet",
            "device": "cpu",
            "precision": "fp32",
            "compile": False,
        }
        == config
    )
    machine = result["machine"]
    assert machine["cpu_model"] and machine["cpu_cores"] >= 1 and machine["torch"]
    assert "gpu" in machine
    assert result["setup"]["convert_images_per_s"] > 0
    assert config["torch_threads"] == 1


def test_run_benchmark_function_metallonet_subset(tmp_path: Path):
    import torch

    threads = torch.get_num_threads()
    config = bench.BenchConfig(
        samples=8,
        image_size=40,
        model_image_size=32,
        spectra_length=32,
        batch_size=4,
        model="metallonet",
        steps=1,
        warmup_steps=1,
        passes=1,
        workers=0,
        device="cpu",
        convert_workers=1,
        work_dir=tmp_path / "work",
        threads=1,
        sections=("metallo_input_pipeline", "train_step_on_device"),
    )
    result = bench.run_benchmark(config)
    assert set(result["sections"]) == {"metallo_input_pipeline", "train_step_on_device"}
    assert set(result["ratios"]) == {"input_headroom_b_over_c"}
    assert torch.get_num_threads() == threads  # --threads is restored after the run
    assert (tmp_path / "work" / "processed" / "images.npy").is_file()  # a given work dir is kept


def test_convert_scaling_reports_both_sizes(tmp_path: Path, capsys):
    out = tmp_path / "scaling.json"
    bench.main(
        [
            "--convert-scaling",
            "--samples",
            "8",
            "--image-size",
            "32",
            "--spectra-length",
            "32",
            "--convert-workers",
            "1",
            "--out",
            out,
        ]
    )
    assert "convert scaling" in capsys.readouterr().out
    result = json.loads(out.read_text())
    assert [run["samples"] for run in result["runs"]] == [8, 32]
    for run in result["runs"]:
        for key in ("images_per_s", "peak_rss_mb", "baseline_rss_mb", "seconds", "output_mb"):
            assert _positive(run[key]), key
        assert run["peak_rss_mb"] >= run["baseline_rss_mb"]
        assert run["peak_rss_workers_mb"] >= 0
    small, large = result["runs"]
    assert result["peak_rss_ratio"] == pytest.approx(large["peak_rss_mb"] / small["peak_rss_mb"])
    assert result["output_ratio"] == pytest.approx(4.0)
    assert result["machine"]["cpu_model"]


def test_cli_wiring_and_errors(capsys):
    import argparse

    parser = bench.add_arguments(argparse.ArgumentParser(prog="metallo bench"))
    args = parser.parse_args(["--samples", "2", "--batch-size", "4"])
    with pytest.raises(MetalloError, match="at least --batch-size"):
        bench.run_from_args(args)
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--samples", "2", "--batch-size", "4"])
    assert exit_info.value.code == 1
    assert "at least --batch-size" in capsys.readouterr().err


def test_gpu_script_runs_at_tiny_size_and_writes_json(tmp_path: Path):
    """bench/gpu.sh, the one-command GPU measurement, at test size on the CPU."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "METALLO_GPU_BENCH_SIZE": "tiny", "OUT_DIR": str(tmp_path), "PYTHON": sys.executable}
    result = subprocess.run(
        ["bash", str(REPO / "bench" / "gpu.sh")], env=env, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert list(summary) == ["toynet-eager", "metallonet-eager"]
    assert set(summary["toynet-eager"]["samples_per_s"]) == set(bench.SECTIONS)
    assert set(summary["metallonet-eager"]["samples_per_s"]) == {"train_step_on_device", "train_stage"}
    assert summary["metallonet-eager"]["train_stage"]["samples_per_s_without_eval_checkpoint"] > 0
