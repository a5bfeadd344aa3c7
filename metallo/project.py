"""Project set-up and the end-of-run summary used by ``make repro``."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from metallo.training.tracking import tracking_uri


def _run(cmd: list[str]) -> None:
    print("+", " ".join(cmd))
    subprocess.run(cmd, check=True)


def init(root: Path = Path(".")) -> None:
    """Make ``root`` a git + DVC repository if it is not one yet (e.g. a downloaded archive)."""
    if not (root / ".git").exists():
        _run(["git", "init", "-q"])
    if not (root / ".dvc").is_dir():
        _run([shutil.which("dvc") or "dvc", "init", "-q"])


def summary(root: Path = Path(".")) -> None:
    """Print the test metrics and where to look next."""
    eval_path = root / "metrics" / "eval.json"
    if eval_path.is_file():
        report = json.loads(eval_path.read_text())
        base = report.get("baseline", {})
        print(f"\nTest split (n={report['n']}): R² {report['r2']:.3f}  RMSE {report['rmse']:.4f}  "
              f"MAE {report['mae']:.4f}  Pearson {report['pearson']:.3f}   (mean-of-train baseline RMSE {base.get('rmse', float('nan')):.4f})")
    print("\nMetrics: metrics/eval.json, metrics/train.json   Figures: metrics/figures/   Model: models/model/")
    print(f"MLflow store: {tracking_uri()}  ->  run `make ui` and open http://127.0.0.1:5000")
    print("Compare experiments: dvc exp run -S model.hidden_dim=256 && dvc exp show")


if __name__ == "__main__":
    {"init": init, "summary": summary}[sys.argv[1]]()
