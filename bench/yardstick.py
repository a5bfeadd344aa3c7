"""Measure models against the classical and mean baselines on the demo and foreign data sets.

    python bench/yardstick.py --datasets demo camera16 specimens3 tiffcsv local \
        --models metallonet,classical --seeds 0 1 --out yardstick.json [--set preprocess.spectra=standard]

Each data set is generated once into --data-dir (the demo by the synthesize stage, the others
by metallo.data.variants), then `metallo compare` runs every model × seed with the project's
params.yaml plus only the data set's documented shape and split params (as a new user would set
them) and the --set overrides. Prints one mean ± sd table per data set; writes all runs as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from metallo.compare import apply_overrides, format_table, run_compare  # noqa: E402
from metallo.io import write_json  # noqa: E402
from metallo.layout import Paths  # noqa: E402
from metallo.params import load_params  # noqa: E402


def prepare(name: str, data_dir: Path, params: dict) -> list[str]:
    """Generate data set ``name`` (once) and return the overrides a user would set for it."""
    folder = data_dir / name
    if name == "demo":
        from metallo.data.synthesize import run_synthesize

        if not (folder / "manifest.csv").is_file():
            run_synthesize(params, Paths(synthetic=folder))
        return [f"ingest.raw_dir={folder}"]
    from metallo.data.variants import make_variant

    info_file = folder / "dataset.json"
    info = json.loads(info_file.read_text()) if info_file.is_file() else make_variant(folder, name, seed=0)
    data, split = info["data"], info["split"]
    return [
        f"ingest.raw_dir={folder}",
        f"data.n_spectra={data['n_spectra']}",
        f"data.spectrum_length={data['spectrum_length']}",
        f"data.grid={json.dumps(data['grid'])}",
        f"split.train_slices={json.dumps(split['train_slices'])}",
        f"split.test_slices={json.dumps(split['test_slices'])}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["demo", "camera16", "specimens3", "tiffcsv", "local"])
    parser.add_argument("--models", default="metallonet,classical")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument("--data-dir", default="yardstick-data", type=Path)
    parser.add_argument("--work-dir", default="yardstick-runs", type=Path)
    parser.add_argument("--out", default="yardstick.json")
    args = parser.parse_args()
    params = load_params(ROOT / "params.yaml")
    results = {}
    for name in args.datasets:
        started = time.perf_counter()
        overrides = [*prepare(name, args.data_dir, params), *args.set]
        result = run_compare(
            apply_overrides(params, overrides),
            models=args.models.split(","),
            seeds=args.seeds,
            work_dir=args.work_dir / name,
        )
        result.update(overrides=overrides, wall_s=round(time.perf_counter() - started, 1))
        results[name] = result
        write_json(args.out, results)
        print(f"\n## {name} ({result['wall_s']:.0f} s)\n{format_table(result['summary'])}\n", flush=True)


if __name__ == "__main__":
    main()
