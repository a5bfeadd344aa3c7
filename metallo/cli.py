"""The metallo command line: the pipeline's stages and the daily tasks.

Stage commands run exactly what `dvc repro` runs for that stage (same functions, same
params.yaml sections, same outputs); prefer `dvc repro` to keep outputs versioned.
"""

# Building the parser imports neither torch nor transformers (seconds): each command imports what it
# needs when it runs (tests/pipeline/test_cli_fast.py checks it).
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

from metallo import __version__
from metallo.constants import INTERVAL_LEVEL
from metallo.errors import MetalloError, exit_on_error
from metallo.params import PARAMS_FILE, load_params
from metallo.pipeline import STAGES
from metallo.uris import masked

UI_HOST = "127.0.0.1"
BENCH_TEXT = "benchmark the input pipeline, the training step and the training loop"
#: Integer options that must be positive wherever a command has them (bench's are defined in metallo.bench).
POSITIVE_OPTIONS = (
    "batch_size",
    "steps",
    "passes",
    "samples",
    "image_size",
    "resize",
    "model_image_size",
    "spectra_length",
    "port",
)
#: Integer options that may be 0 but not negative.
NON_NEGATIVE_OPTIONS = ("workers", "warmup_steps")


def check_numbers(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse ``--batch-size 0`` and the like with argparse's one-line usage error (exit 2)."""
    for name in POSITIVE_OPTIONS + NON_NEGATIVE_OPTIONS:
        value = getattr(args, name, None)
        if (
            isinstance(value, int)
            and not isinstance(value, bool)
            and (value < 0 or (value == 0 and name in POSITIVE_OPTIONS))
        ):
            kind = "a positive integer" if name in POSITIVE_OPTIONS else "0 or a positive integer"
            parser.error(f"argument --{name.replace('_', '-')}: must be {kind}; got {value}")


def _stage(module: str, function: str) -> Callable[[argparse.Namespace], None]:
    def run(args: argparse.Namespace) -> None:
        import importlib

        getattr(importlib.import_module(module), function)(load_params(args.params))

    return run


def check_predict_manifest(manifest: str) -> None:
    """Refuse a missing ``--manifest`` with advice for predict (not for the ingest stage's params)."""
    from pathlib import Path

    path = Path(manifest)
    if not (path / "manifest.csv" if path.is_dir() else path).is_file():
        what = f"{path} holds no manifest.csv" if path.is_dir() else f"{path} not found"
        raise MetalloError(
            f"{what}. Pass --manifest the CSV that lists the new samples (columns sample_id, "
            "slice_id, image, spectra, optional dos; paths relative to its folder), or the folder "
            "holding it as manifest.csv."
        )


def _predict(args: argparse.Namespace) -> None:
    check_predict_manifest(args.manifest)
    from metallo.data.ingest import format_rejections  # lazy: pandas; --help stays fast
    from metallo.prediction.manifest import predict, write_predictions  # lazy: torch
    from metallo.tracking.console import quiet_libraries  # lazy: transformers

    quiet_libraries()

    result = predict(
        args.model, args.manifest, on_error=args.on_error, batch_size=args.batch_size, interval=args.interval
    )
    out = write_predictions(result, args.out)
    print(f"predict: {result.summary()} -> {out}")
    if len(result.rejected):
        listed = out.with_suffix(".rejected.csv")
        print(f"rejected rows (also in {listed}):\n{format_rejections(result.rejected, where=listed)}")
    if result.predictions.empty:
        raise MetalloError(
            f"no row of {args.manifest} could be predicted: every row was rejected (listed above). "
            "Fix the rows, then run predict again."
        )


def _compare(args: argparse.Namespace) -> None:
    from metallo.compare import compare_command  # lazy: runs every stage (torch, mlflow)

    compare_command(
        load_params(args.params),
        models=None if args.models is None else [m.strip() for m in args.models.split(",") if m.strip()],
        seeds=args.seeds,
        work_dir=args.work_dir,
        out=args.out,
        overrides=args.set,
    )


def _models(args: argparse.Namespace) -> None:
    from metallo.models import format_summary, model_summary  # lazy: torch

    print(format_summary(model_summary(image_size=args.image_size)))


#: MLflow 3's switch for its job runner (a huey consumer with several worker processes, for GenAI jobs).
JOB_EXECUTION_ENV = "MLFLOW_SERVER_ENABLE_JOB_EXECUTION"


def ui_env(jobs: bool = False, environ: dict | None = None) -> dict[str, str]:
    """The UI server's environment: without MLflow's job runner unless ``jobs`` (Metallo runs no MLflow jobs)."""
    env = dict(os.environ if environ is None else environ)
    env[JOB_EXECUTION_ENV] = "true" if jobs else "false"
    return env


def ui_command(port: int = 5000, workers: int = 1) -> list[str]:
    """The ``mlflow ui`` command line for this project's store, bound to 127.0.0.1 only, ``workers`` uvicorn
    workers (one is plenty for one user; MLflow starts four)."""
    from metallo.tracking.tracker import artifact_root, tracking_uri  # lazy: mlflow

    return [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        tracking_uri(),
        "--default-artifact-root",
        artifact_root(),
        "--host",
        UI_HOST,
        "--port",
        str(int(port)),
        "--workers",
        str(int(workers)),
    ]


def _ui(args: argparse.Namespace) -> None:
    from metallo.tracking.tracker import tracking_uri  # lazy: mlflow

    if args.workers < 1:
        raise MetalloError(f"metallo ui --workers must be 1 or more; got {args.workers}.")
    cmd = ui_command(args.port, args.workers)
    print(f"MLflow UI for {masked(tracking_uri())} on http://{UI_HOST}:{args.port} (Ctrl-C to stop)", flush=True)
    os.execvpe(cmd[0], cmd, ui_env(args.jobs))


#: ``metallo exps``: the columns always shown (the test RMSE and R² beside the classical baseline's, validation)
EXPS_KEEP = r"Experiment$|test\.(rmse|r2)$|baseline\.classical\.rmse$|val\.rmse$"
#: ... and the ones left out: file hashes and code deps (names with a /), DVC's bookkeeping, the secondary
#: metrics (``dvc metrics show`` lists every one).
EXPS_DROP = (
    r"Created$|State$|Executor$|.*/.*|interval\..*|baseline\.mean\..*|.*\.(mae|pearson|n)$|val\.(start|trained)_.*"
    r"|epochs?$|steps?$|(train|val)_samples$|validation$|kept$|model$|ridge_alpha$"
)


def exps_command(extra: list[str] | None = None) -> list[str]:
    """``dvc exp show`` with a readable column set: changed params, test/validation RMSE, the baseline."""
    import shutil

    dvc = shutil.which("dvc") or str(Path(sys.executable).with_name("dvc"))
    return [dvc, "exp", "show", "--only-changed", "--keep", EXPS_KEEP, "--drop", EXPS_DROP, *(extra or [])]


def _exps(args: argparse.Namespace) -> None:
    cmd = exps_command(args.dvc_args)
    if not Path(cmd[0]).exists():
        raise MetalloError("dvc is not on PATH: activate the project's environment (source .venv/bin/activate).")
    os.execvp(cmd[0], cmd)


def _add_stage_commands(sub) -> None:
    """One command per pipeline stage, each reading ``--params`` as ``dvc repro`` does."""
    for stage in STAGES:
        p = sub.add_parser(
            stage.command,
            help=stage.help,
            description=f"{stage.help[0].upper()}{stage.help[1:]}.\nReads params: {', '.join(stage.params)}.",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.add_argument("--params", default=PARAMS_FILE, help="params file (default: %(default)s)")
        p.set_defaults(func=_stage(stage.module, stage.function))


def _add_predict_command(sub) -> None:
    p = sub.add_parser(
        "predict",
        help="predict DOS for a new manifest (dos column optional)",
        description="Validate a manifest exactly as ingest does, apply the training geometry, and write "
        "sample_id,dos_pred,dos_lower,dos_upper (the prediction and its split-conformal interval at --interval; "
        "dos_true too when the manifest has a dos column). Rejected rows are reported and written beside --out.",
    )
    p.add_argument(
        "--model", default="models/model", help="model directory from the train stage (default: %(default)s)"
    )
    p.add_argument("--manifest", required=True, help="manifest.csv of the new samples (paths relative to its folder)")
    p.add_argument("--out", default="predictions.csv", help="output CSV (default: %(default)s)")
    p.add_argument(
        "--on-error",
        choices=("skip", "fail"),
        default="skip",
        help="skip: predict the valid rows and report the rest; fail: stop if any row is invalid",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=64,
        help="samples per forward pass; lower it to use less memory (default: %(default)s)",
    )
    p.add_argument(
        "--interval",
        type=float,
        default=INTERVAL_LEVEL,
        help="level of the prediction interval dos_lower..dos_upper (default: %(default)s)",
    )
    p.set_defaults(func=_predict)


def _add_bench_command(sub) -> None:
    # bench's options need the model registry (torch): its own parser is built when `metallo bench` runs.
    sub.add_parser("bench", help=BENCH_TEXT, add_help=False).set_defaults(func=None)


def _add_compare_command(sub) -> None:
    text = "train and evaluate several models over several seeds; mean ± sd beside the baselines"
    p = sub.add_parser(
        "compare",
        help=text,
        description=f"{text[0].upper()}{text[1:]}.\nReads every params "
        "section; runs the stages in --work-dir with MLflow off.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--params", default=PARAMS_FILE, help="params file (default: %(default)s)")
    p.add_argument(
        "--models", default=None, help="comma-separated model names (default: every model `metallo models` lists)"
    )
    p.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[0, 1, 2],
        help="seeds; each sets split.seed and train.seed (default: %(default)s)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override a param for these runs, as dvc exp run -S (repeatable)",
    )
    p.add_argument("--work-dir", default="compare-runs", help="scratch folder for the runs (default: %(default)s)")
    p.add_argument("--out", default=None, help="write all results as JSON here")
    p.set_defaults(func=_compare)


def _add_tool_commands(sub) -> None:
    """``models`` (the model list) and ``ui`` (the MLflow UI)."""
    text = "list the models with parameter counts and FLOPs"
    p = sub.add_parser("models", help=text, description=f"{text[0].upper()}{text[1:]}.")
    p.add_argument("--image-size", type=int, default=300, help="image side for the FLOP count (default: %(default)s)")
    p.set_defaults(func=_models)

    text = "dvc exp show with readable columns: changed params, test and validation RMSE, the classical baseline"
    p = sub.add_parser(
        "exps",
        help=text,
        description=f"{text[0].upper()}{text[1:]}. Runs: dvc exp show --only-changed --keep KEEP --drop DROP "
        "[ARGS]; pass dvc exp show options after it (e.g. metallo exps --md, metallo exps -A). All columns: "
        "dvc exp show.",
    )
    p.add_argument("dvc_args", nargs=argparse.REMAINDER, help="more dvc exp show options (e.g. --md, --csv, -n 5)")
    p.set_defaults(func=_exps)

    text = f"start the MLflow UI on {UI_HOST} for this project's store"
    p = sub.add_parser("ui", help=text, description=f"{text[0].upper()}{text[1:]}.")
    p.add_argument("--port", type=int, default=5000, help="port on 127.0.0.1 (default: %(default)s)")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="uvicorn worker processes (default: %(default)s; MLflow's own default is 4, for a shared server)",
    )
    p.add_argument(
        "--jobs",
        action="store_true",
        help="also start MLflow's job runner (GenAI jobs: scorers, prompt optimisation); off by default",
    )
    p.set_defaults(func=_ui)


def build_parser() -> argparse.ArgumentParser:
    """The ``metallo`` parser, commands in the order ``--help`` lists them (imports neither torch nor transformers)."""
    parser = argparse.ArgumentParser(
        prog="metallo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"metallo {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_stage_commands(sub)
    _add_predict_command(sub)
    _add_bench_command(sub)
    _add_compare_command(sub)
    _add_tool_commands(sub)
    return parser


def bench_parser() -> argparse.ArgumentParser:
    """``metallo bench``'s own parser (imports the benchmark, hence torch)."""
    from metallo.bench import add_arguments  # lazy: torch

    return add_arguments(
        argparse.ArgumentParser(prog="metallo bench", description=f"{BENCH_TEXT[0].upper()}{BENCH_TEXT[1:]}.")
    )


def parse(argv: list[str] | None) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    """The parser that owns the command line and its parsed arguments (``bench`` parses its own)."""
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command == "bench":
        from metallo.bench import run_from_args  # lazy: torch

        parser = bench_parser()
        args = parser.parse_args(rest)
        args.func = run_from_args
    elif rest and args.command == "exps":  # dvc exp show's own options
        args.dvc_args = [*rest, *args.dvc_args]
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return parser, args


def main(argv: list[str] | None = None) -> None:
    parser, args = parse(argv)
    check_numbers(parser, args)
    with exit_on_error():
        try:
            args.func(args)
        except KeyboardInterrupt:
            raise MetalloError("interrupted") from None


if __name__ == "__main__":
    main(sys.argv[1:])
