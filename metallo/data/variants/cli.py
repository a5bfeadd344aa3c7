"""``python -m metallo.data.variants OUT_DIR --profile NAME [--seed 0] [--scale 1.0] [--workers 1]``."""

from __future__ import annotations

import argparse
import json
import time

from metallo.data.variants.profiles import PROFILES
from metallo.data.variants.write import make_variant


def _main(argv=None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m metallo.data.variants",
        description="Write a foreign-instrument variant of the Metallo demo raw folder.",
    )
    ap.add_argument("out_dir")
    ap.add_argument("--profile", required=True, choices=sorted(PROFILES))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--scale", type=float, default=1.0, help="multiplies sample counts and frame size (e.g. 0.1 for tests)"
    )
    ap.add_argument("--workers", type=int, default=1, help="processes (output does not depend on it)")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    try:
        info = make_variant(a.out_dir, a.profile, seed=a.seed, scale=a.scale, workers=a.workers)
    except ValueError as err:
        ap.error(str(err))
    print(json.dumps(info, indent=2))
    print(
        f"variants: {sum(info['details']['counts'].values())} samples in "
        f"{time.perf_counter() - t0:.1f} s -> {a.out_dir}"
    )
