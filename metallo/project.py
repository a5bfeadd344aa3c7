"""Project set-up and the end-of-run summary used by ``make repro``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from metallo.errors import MetalloError, exit_on_error
from metallo.layout import PATHS
from metallo.params import PARAMS_FILE, load_params
from metallo.tracking.tracker import tracking_uri
from metallo.uris import masked


def _run(cmd: list[str]) -> None:
    print("+", " ".join(cmd))
    subprocess.run(cmd, check=True)


#: The raw folder the synthesize stage writes (it does not exist before the first ``dvc repro``).
DEMO_RAW_DIR = "data/synthetic"


def check_raw_dir(params: dict, root: Path = Path(".")) -> None:
    """Refuse a mistyped ``ingest.raw_dir`` before DVC does: DVC's own message is a bare ``[Errno 2]`` (and it
    keeps ``metrics/ingest.json`` and ``rejected.csv``, declared ``persist`` in dvc.yaml)."""
    raw = str((params.get("ingest") or {}).get("raw_dir", "") or "")
    if raw and Path(raw).as_posix().rstrip("/") != DEMO_RAW_DIR and not (root / raw).exists():
        raise MetalloError(
            f"ingest.raw_dir is {raw!r}, which does not exist in {root.resolve()}. Set it in params.yaml (or "
            f"`dvc exp run -S ingest.raw_dir=...`) to the folder holding manifest.csv (the demo: {DEMO_RAW_DIR}). "
            "DVC reports the same mistake as `[Errno 2] No such file or directory`."
        )


def init(root: Path = Path(".")) -> None:
    """Check ``params.yaml``, then make ``root`` a git + DVC repository if it is not one yet (e.g. a downloaded
    archive). DVC parses params.yaml itself (``dvc status``, ``dvc repro``) without Metallo's limits, so a
    hostile file (a YAML alias bomb) is refused here, before the first DVC command of ``make repro``."""
    if (root / PARAMS_FILE).is_file():
        check_raw_dir(load_params(root / PARAMS_FILE), root)
    if not (root / ".git").exists():
        _run(["git", "init", "-q"])
    if not (root / ".dvc").is_dir():
        _run([shutil.which("dvc") or "dvc", "init", "-q"])


def _number(value, spec: str) -> str:
    return format(value, spec) if isinstance(value, (int, float)) and not isinstance(value, bool) else "—"


def comparison_table(report: dict):
    """The model beside the classical and mean baselines on the test split (``metrics/eval.json``), as a
    :class:`rich.table.Table` (columns aligned by rich)."""
    from rich.table import Table

    test = report.get("test") or {}
    table = Table(title=f"Test split (n={test.get('n', '?')})", title_justify="left", box=None, pad_edge=False)
    table.add_column("", style="bold")
    for label in ("R²", "RMSE", "MAE", "Pearson r"):
        table.add_column(label, justify="right")
    rows = [("model", test), *((f"{name} baseline", values) for name, values in (report.get("baseline") or {}).items())]
    for name, values in rows:
        table.add_row(
            name,
            _number(values.get("r2"), ".3f"),
            _number(values.get("rmse"), ".4g"),
            _number(values.get("mae"), ".4g"),
            _number(values.get("pearson"), ".3f"),
        )
    return table


def interval_line(report: dict) -> str:
    """The prediction interval's level, half-width and test coverage (``metrics/eval.json``), or ``""``."""
    interval = report.get("interval") or {}
    if interval.get("halfwidth") is None:
        return ""
    return (
        f"{interval['level']:.0%} prediction interval: ± {interval['halfwidth']:.4g} "
        f"(split conformal, {interval['calibration_n']} validation residuals); "
        f"test coverage {_number(interval.get('coverage'), '.2f')}"
    )


def render(renderable, width: int = 100) -> str:
    """``renderable`` as plain text (no colour codes), e.g. for tests and logs."""
    from rich.console import Console

    console = Console(width=width, no_color=True, color_system=None, record=True, file=open(os.devnull, "w"))
    console.print(renderable)
    return console.export_text()


def model_choice(train: dict) -> str:
    """One line: what validation the model was chosen on, and whether training or its closed-form start won."""
    val = train.get("val") or {}
    line = f"  validation: {train.get('validation', 'held-out samples')} (n={train.get('val_samples')})"
    if "kept" in train:
        line += (
            f"; kept the {train['kept']} (validation RMSE {_number(val.get('start_rmse'), '.4g')} at the start, "
            f"{_number(val.get('trained_rmse'), '.4g')} trained)"
        )
    return line


def summary(root: Path = Path(".")) -> None:
    """Print the test metrics and where to look next."""
    eval_path = root / PATHS.eval_metrics
    if eval_path.is_file():
        from rich.console import Console

        report = json.loads(eval_path.read_text())
        Console().print(comparison_table(report))
        if interval_line(report):
            print(interval_line(report))
    train_path = root / PATHS.train_metrics
    if train_path.is_file():
        print(model_choice(json.loads(train_path.read_text())))
    print("\nMetrics: metrics/eval.json, metrics/train.json   Figures: metrics/figures/   Model: models/model/")
    print(f"MLflow store: {masked(tracking_uri())}  ->  run `make ui` and open http://127.0.0.1:5000")
    print("Compare experiments: dvc exp run -S model.hidden_dim=256, then `make exps` (or metallo exps)")


if __name__ == "__main__":
    with exit_on_error():
        {"init": init, "summary": summary}[sys.argv[1]]()
