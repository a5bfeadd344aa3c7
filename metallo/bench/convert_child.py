"""One convert run in a fresh process, reporting its time and peak RSS (``metallo bench --convert-scaling``).

    python -m metallo.bench.convert_child SPEC_JSON

``SPEC_JSON`` holds ``samples`` (ingest's accepted rows as Parquet), ``n`` (the first n rows are
converted), ``raw``, ``out``, ``resize``, ``crop``, ``spectra_shape`` and ``workers``. The last
line of stdout is ``BENCH-RESULT {json}`` with ``seconds``, ``baseline_rss_kb`` (before convert),
``peak_rss_kb`` (this process) and ``peak_rss_workers_kb`` (its worker processes).
"""

from __future__ import annotations

import json
import resource
import sys
import time

from metallo.data.convert import Geometry, convert

RESULT_PREFIX = "BENCH-RESULT "


def main(argv: list[str]) -> None:
    spec = json.loads(argv[0])
    import pandas as pd

    samples = pd.read_parquet(spec["samples"]).head(spec["n"])
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    convert(
        samples,
        spec["raw"],
        spec["out"],
        geometry=Geometry(spec["resize"], spec["crop"]),
        spectra_shape=tuple(spec["spectra_shape"]),
        workers=spec["workers"],
        show_progress=False,
    )
    seconds = time.perf_counter() - t0
    print(
        RESULT_PREFIX
        + json.dumps(
            {
                "seconds": seconds,
                "baseline_rss_kb": baseline,
                "peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                "peak_rss_workers_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1:])
