"""The bench's options (``metallo bench`` and ``python -m metallo.bench``) and what they run."""

from __future__ import annotations

import argparse
from dataclasses import fields
from typing import Any

from metallo.bench.benchmark import run_benchmark
from metallo.bench.config import (
    DEVICES,
    MODELS,
    PRECISIONS,
    REFERENCE,
    SCALING_SIZES,
    SECTIONS,
    BenchConfig,
)
from metallo.bench.report import print_report, write_result
from metallo.bench.scaling import run_convert_scaling
from metallo.errors import exit_on_error
from metallo.models.configuration_common import BACKBONE_NAMES

#: Options whose default depends on --convert-scaling (None on the command line: the mode's default).
SIZE_OPTIONS = ("samples", "image_size", "spectra_length")


def _size_options(parser: argparse.ArgumentParser, d) -> None:
    sizes = parser.add_argument_group("sizes")
    sizes.add_argument(
        "--samples",
        type=int,
        default=None,
        help=f"synthetic samples (default {d('samples')}; the base N for --convert-scaling, "
        f"default {SCALING_SIZES['samples']} there)",
    )
    sizes.add_argument(
        "--image-size",
        type=int,
        default=None,
        help=f"stored crop side S; the PNGs are synthesised at S (default {d('image_size')}; "
        f"{SCALING_SIZES['image_size']} for --convert-scaling; the pipeline's own is "
        f"{REFERENCE.crop})",
    )
    sizes.add_argument(
        "--resize",
        type=int,
        default=None,
        help=f"shorter side before the crop (default round(S*{REFERENCE.resize}/{REFERENCE.crop}))",
    )
    sizes.add_argument(
        "--model-image-size",
        type=int,
        default=None,
        help="side the model sees (default min(the model's own, S); 300 = full resolution)",
    )
    sizes.add_argument(
        "--spectra-length",
        type=int,
        default=None,
        help=f"points per spectrum (default {d('spectra_length')}; "
        f"{SCALING_SIZES['spectra_length']} for --convert-scaling)",
    )
    sizes.add_argument("--batch-size", type=int, default=d("batch_size"), help=f"default {d('batch_size')}")


def _model_options(parser: argparse.ArgumentParser, d) -> None:
    """The "model and loop" group: which model, how many steps and passes, on what, and which sections."""
    group = parser.add_argument_group("model and loop")
    group.add_argument("--model", choices=MODELS, default=d("model"), help=f"default {d('model')}")
    group.add_argument("--backbone", choices=BACKBONE_NAMES, default=None, help="default: the model's own")
    _loop_options(group, d)
    _execution_options(group, d)
    _run_options(group, d)


def _loop_options(group, d) -> None:
    """How long each measurement runs: steps, warm-up steps, passes, DataLoader workers."""
    group.add_argument("--steps", type=int, default=d("steps"), help=f"timed training steps (default {d('steps')})")
    group.add_argument(
        "--warmup-steps",
        type=int,
        default=d("warmup_steps"),
        help=f"untimed steps first (default {d('warmup_steps')}; raise it with --compile)",
    )
    group.add_argument(
        "--passes",
        type=int,
        default=d("passes"),
        help=f"timed passes over the data for (a) and (b), after one warm-up pass (default {d('passes')})",
    )
    group.add_argument(
        "--workers",
        type=int,
        default=d("workers"),
        help=f"DataLoader worker processes for (a), (b) and (d) (default {d('workers')})",
    )


def _execution_options(group, d) -> None:
    """Where and how the model runs: device, precision, torch.compile, threads."""
    group.add_argument("--device", choices=DEVICES, default=d("device"), help="auto = cuda when available (default)")
    group.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=d("precision"),
        help="auto = bf16 autocast on a bf16-capable GPU, else fp32 (default)",
    )
    group.add_argument("--compile", action="store_true", help="torch.compile the model in (c) and (d)")
    group.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch.set_num_threads for the run (default: torch's own, one per core). On a "
        "machine shared with other busy processes, 1 avoids OpenMP spin-wait stalls",
    )


def _run_options(group, d) -> None:
    """The seed, which sections run, and the params file and profile section (d) trains with."""
    group.add_argument("--seed", type=int, default=d("seed"))
    group.add_argument(
        "--sections",
        nargs="+",
        choices=list(SECTIONS),
        default=list(SECTIONS),
        help="which measurements to run (default all four)",
    )
    group.add_argument(
        "--params",
        default=d("params"),
        help="the params file section (d) runs the train stage with (default params.yaml)",
    )
    group.add_argument("--profile", default=None, help="train.profile for (d) (default: the params file's)")


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the bench options to ``parser`` (used by ``metallo bench`` and ``python -m metallo.bench``)."""
    d = BenchConfig.default
    _size_options(parser, d)
    _model_options(parser, d)
    other = parser.add_argument_group("convert scaling and output")
    other.add_argument(
        "--convert-scaling",
        action="store_true",
        help="measure only the convert stage at N and factor*N samples (images/s, peak RSS)",
    )
    other.add_argument(
        "--scaling-factor",
        type=int,
        default=d("scaling_factor"),
        help=f"the larger size is factor*N (default {d('scaling_factor')})",
    )
    other.add_argument(
        "--convert-workers",
        type=int,
        default=d("convert_workers"),
        help="processes for synthesize/ingest/convert (default 0 = all cores)",
    )
    other.add_argument("--work-dir", default=None, help="keep the generated data here (default: a temporary folder)")
    other.add_argument("--out", default=None, help="write the results as JSON to this file (e.g. bench.json)")
    return parser


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    """The :class:`BenchConfig` ``args`` describe; unset sizes take the chosen mode's defaults."""
    names = {f.name for f in fields(BenchConfig) if f.init}
    options = {key: value for key, value in vars(args).items() if key in names}
    for key in SIZE_OPTIONS:
        if not options[key]:
            options[key] = SCALING_SIZES[key] if args.convert_scaling else BenchConfig.default(key)
    return BenchConfig(**options)


def run_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """Run what ``args`` (parsed with :func:`add_arguments`) asks for, print the table, write ``--out``."""
    config = config_from_args(args)
    result = run_convert_scaling(config) if args.convert_scaling else run_benchmark(config)
    print_report(result)
    if args.out:
        path = write_result(result, args.out)
        print(f"bench: results -> {path}")
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m metallo.bench",
        description="Input-pipeline and training-step throughput: the old per-sample PNG pipeline vs Metallo's "
        "uint8 memmaps + on-device preprocessing, the on-device training step and the MetalloTrainer loop.",
    )
    return add_arguments(parser)


def main(argv: list[str] | None = None) -> int:
    """``python -m metallo.bench [options]``: 0 on success, exit status 1 with a one-line error otherwise."""
    args = build_parser().parse_args(None if argv is None else [str(a) for a in argv])
    with exit_on_error():
        run_from_args(args)
    return 0
