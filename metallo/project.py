"""Project set-up and the end-of-run summary used by ``make repro``."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from metallo.errors import exit_on_error
from metallo.layout import PATHS
from metallo.params import PARAMS_FILE, load_params
from metallo.tracking.tracker import tracking_uri
from metallo.uris import masked


def _run(cmd: list[str]) -> None:
    print("+", " ".join(cmd))
    subprocess.run(cmd, check=True)


def init(root: Path = Path(".")) -> None:
    """Check ``params.yaml``, then make ``root`` a git + DVC repository if it is not one yet (e.g. a downloaded
    archive). DVC parses params.yaml itself (``dvc status``, ``dvc repro``) without Metallo's limits, so a
    hostile file (a YAML alias bomb) is refused here, before the first DVC command of ``make repro``."""
    if (root / PARAMS_FILE).is_file():
        load_params(root / PARAMS_FILE)
    if not (root / ".git").exists():
        _run(["git", "init", "-q"])
    if not (root / ".dvc").is_dir():
        _run([shutil.which("dvc") or "dvc", "init", "-q"])


def _number(value, spec: str) -> str:
    if isinstance(value, (int, float)):
        return format(value, spec)
    width = "".join(ch for ch in spec.split(".")[0] if ch.isdigit())
    return "—".rjust(int(width or 1))


def comparison_table(report: dict) -> str:
    """The model beside the classical and mean baselines on the test split, as aligned text."""
    rows = [("model", report), *((f"{name} baseline", values) for name, values in report.get("baselines", {}).items())]
    lines = [f"\nTest split (n={report['n']})      R²       RMSE        MAE   Pearson r"]
    for name, values in rows:
        lines.append(
            f"  {name:<22} {_number(values.get('r2'), '7.3f')} {_number(values.get('rmse'), '10.4g')} "
            f"{_number(values.get('mae'), '10.4g')} {_number(values.get('pearson'), '9.3f')}"
        )
    interval = report.get("interval") or {}
    if interval.get("halfwidth") is not None:
        lines.append(
            f"  {interval['level']:.0%} prediction interval: ± {interval['halfwidth']:.4g} "
            f"(split conformal, {interval['calibration_n']} validation residuals); "
            f"test coverage {_number(interval.get('coverage'), '.2f')}"
        )
    return "\n".join(lines)


def model_choice(train: dict) -> str:
    """One line: what validation the model was chosen on, and whether training or its closed-form start won."""
    line = f"  validation: {train.get('validation', 'held-out samples')} (n={train.get('val_samples')})"
    if "kept" in train:
        line += (
            f"; kept the {train['kept']} (validation RMSE {train['start_val_rmse']:.4g} at the start, "
            f"{train['trained_val_rmse']:.4g} trained)"
        )
    return line


def summary(root: Path = Path(".")) -> None:
    """Print the test metrics and where to look next."""
    eval_path = root / PATHS.eval_metrics
    if eval_path.is_file():
        report = json.loads(eval_path.read_text())
        print(comparison_table(report))
    train_path = root / PATHS.train_metrics
    if train_path.is_file():
        print(model_choice(json.loads(train_path.read_text())))
    print("\nMetrics: metrics/eval.json, metrics/train.json   Figures: metrics/figures/   Model: models/model/")
    print(f"MLflow store: {masked(tracking_uri())}  ->  run `make ui` and open http://127.0.0.1:5000")
    print(
        "Compare experiments: dvc exp run -S model.hidden_dim=256, then dvc exp show --only-changed "
        "--drop 'Created|.*/.*' --md"
    )


if __name__ == "__main__":
    with exit_on_error():
        {"init": init, "summary": summary}[sys.argv[1]]()
