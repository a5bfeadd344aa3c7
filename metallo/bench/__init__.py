"""``metallo bench``: input-pipeline and training-step throughput, old pipeline vs Metallo's.

One run on one machine measures four things over the same synthetic samples (see
:mod:`metallo.bench.benchmark`): (a) the original per-sample PNG pipeline, (b) Metallo's uint8
memory maps with on-device preprocessing, (c) the training step on a batch already on the device
(the ceiling) and (d) the ``MetalloTrainer`` loop. ``--convert-scaling`` instead measures the
convert stage alone at N and 4N samples (images/s and peak RSS, each run in a fresh subprocess).

The data set is synthesised into a temporary folder with :func:`metallo.data.synthesize.synthesize`
and converted with Metallo's own ingest/convert, so (a) and (b) read the same samples.

    python -m metallo.bench --out bench.json                 # CPU demo sizes, well under a minute
    python -m metallo.bench --samples 2048 --image-size 300 --model-image-size 300 \\
        --spectra-length 1600 --batch-size 256 --steps 50 --workers 16 --out bench.json   # GPU
    python -m metallo.bench --convert-scaling --samples 150 --image-size 300 --spectra-length 1600

One job per module: :mod:`~metallo.bench.config` (:class:`BenchConfig`, defaults and checks),
:mod:`~metallo.bench.machine` (machine, device, precision), :mod:`~metallo.bench.data` (data
preparation and the old PNG pipeline), :mod:`~metallo.bench.timers` (the timed measurements),
:mod:`~metallo.bench.benchmark` (the four sections and their ratios), :mod:`~metallo.bench.scaling`
and :mod:`~metallo.bench.convert_child` (convert scaling, the child run as a subprocess),
:mod:`~metallo.bench.report` (table and JSON) and :mod:`~metallo.bench.cli` (the options).
See docs/performance.md.
"""

from metallo.bench.benchmark import run_benchmark
from metallo.bench.cli import add_arguments, build_parser, main, run_from_args
from metallo.bench.config import SECTIONS, BenchConfig
from metallo.bench.report import print_report, write_result
from metallo.bench.scaling import run_convert_scaling

__all__ = [
    "SECTIONS",
    "BenchConfig",
    "add_arguments",
    "build_parser",
    "main",
    "print_report",
    "run_benchmark",
    "run_convert_scaling",
    "run_from_args",
    "write_result",
]
