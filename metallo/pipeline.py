"""The pipeline's stages, defined once: what runs each one and which params it reads.

``dvc.yaml`` runs ``python -m stages.<name>`` for each stage; the ``metallo`` command line offers the same
stages as commands (``metallo <command>``) and derives them, their help and the params they name from
:data:`STAGES`. tests/test_pipeline.py checks the table against ``dvc.yaml`` (names, order, commands, params)
and against the ``stages/`` scripts.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    name: str  #: the stage in dvc.yaml (and its script stages/<name>.py)
    command: str  #: the ``metallo`` command that runs it
    module: str  #: the module of its run function
    function: str  #: the run function: ``function(params)``
    params: tuple[str, ...]  #: the params it reads, as dvc.yaml lists them
    help: str  #: one line for ``metallo --help``


STAGES: tuple[Stage, ...] = (
    Stage(
        "synthesize",
        "synth",
        "metallo.data.synthesize",
        "run_synthesize",
        ("synthesize", "data"),
        "generate the demo raw data set in data/synthetic",
    ),
    Stage(
        "ingest",
        "ingest",
        "metallo.data.ingest",
        "run_ingest",
        ("ingest", "data"),
        "validate ingest.raw_dir/manifest.csv; write data/interim and metrics/ingest.json",
    ),
    Stage(
        "convert",
        "convert",
        "metallo.data.convert",
        "run_convert",
        ("convert", "ingest.raw_dir", "data"),
        "decode accepted samples into data/processed/*.npy",
    ),
    Stage(
        "split",
        "split",
        "metallo.data.split",
        "run_split",
        ("split",),
        "assign train/val/test and write train-only statistics to data/split",
    ),
    Stage(
        "train",
        "train",
        "metallo.training.train",
        "run_train",
        (
            "model",
            "preprocess",
            "train",
            "tracking.experiment",
            "data",
            "convert.fit",
            "convert.resize",
            "convert.crop",
            "ingest.raw_dir",
            "split.train_slices",
            "split.test_slices",
        ),
        "train the model with transformers.Trainer; write models/model (with a model card), metrics/train.json "
        "and the live training curve in metrics/live",
    ),
    Stage(
        "evaluate",
        "evaluate",
        "metallo.evaluation",
        "run_evaluate",
        ("evaluate", "tracking", "train.report_to", "data.wavelengths"),
        "predict the test split; write metrics/eval.json, predictions and figures; register the model",
    ),
)

#: ``metallo`` command -> its stage.
BY_COMMAND = {stage.command: stage for stage in STAGES}
