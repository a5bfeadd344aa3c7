"""How much of a dot-arrangement profile's per-cell factor can any reader get? Two references, outside the model.

    python bench/clustering_ceiling.py centres [--profile local_dispersion] [--cells 40000]
    python bench/clustering_ceiling.py encoder --data-dir yardstick-data/local_clustering [--epochs 12]

The profiles are ``local_clustering`` (the default) and ``local_dispersion``. ``centres`` simulates cells
with the profile's own placement rule (``clustered_dot_centres`` / ``dispersed_dot_centres``, its frame and
grid) and fits gradient boosting from point-pattern statistics of the exact dot centres (neighbour counts within
8-33 px, nearest-neighbour distances) to the cell's standardised share c_k: no image, no optics, no noise, and
far more cells than a data set has. It also prints what knowing which dots joined a cluster would give (not
visible in any image: a scattered dot can land in a cluster, a clustered one far from it).

``encoder`` trains MetalloNet's cell image encoder (its default channels) with every cell's true factor as the
target (``latents.csv``; training slice 1, test slice 2), at the frame's own resolution: what the architecture
reads when it is *told* each cell's value, instead of learning it from the sample's mean label.

Both print a per-cell test R². The label is a mean of per-cell products with an exact spectral side at best,
so its R² cannot exceed the per-cell one by more than noise.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from metallo.data.generative import REFERENCE_SIZE, cell_bounds  # noqa: E402
from metallo.data.variants.mechanisms import DOT_PLACEMENT, draw_cell_latents  # noqa: E402
from metallo.data.variants.profiles import PROFILES  # noqa: E402

#: The profiles whose image mechanism is an arrangement of dots: local_clustering, local_dispersion.
DOT_PROFILES = sorted(name for name, p in PROFILES.items() if p.mechanism and p.mechanism[0] in DOT_PLACEMENT)
RADII = (8, 10, 12, 15, 18, 22, 27, 33)  # px at the frame's resolution


def point_pattern_features(centres: np.ndarray) -> list[float]:
    """Neighbour-count and nearest-neighbour statistics of one cell's dot centres."""
    from scipy.spatial.distance import cdist

    distances = cdist(centres, centres)
    np.fill_diagonal(distances, np.inf)
    features = [float(len(centres))]
    for radius in RADII:
        counts = (distances < radius).sum(1)
        features += [counts.mean(), counts.std(), *[(counts >= k).mean() for k in range(1, 7)]]
    nearest = np.sort(distances, 1)[:, :4]
    features += [*np.quantile(nearest[:, 0], [0.1, 0.25, 0.5, 0.75, 0.9]), *nearest.mean(0)]
    return features


def centres_reference(profile_name: str, n_cells: int, seed: int) -> dict[str, float]:
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.metrics import r2_score

    profile = PROFILES[profile_name]
    place = DOT_PLACEMENT[profile.mechanism[0]]
    rng = np.random.default_rng(seed)
    height, width = profile.frame
    rows, cols = profile.grid
    box = (0, cell_bounds(height, rows, 0)[1], 0, cell_bounds(width, cols, 0)[1])
    scale = max(height, width) / REFERENCE_SIZE
    latents = draw_cell_latents(rng, n_cells, *profile.mechanism)  # the profile's draw of c_k and its z
    shares, target = latents["image"], latents["z_image"]
    features, known, placed = [], [], []
    for share in shares:
        centres, joined = place(box, share, rng, scale)
        placed.append(len(centres))
        features.append(point_pattern_features(centres))
        known.append((joined.sum() + 1) / (len(joined) + 2))  # posterior mean of c_k under its uniform prior
    features = np.array(features)
    cut = int(0.8 * n_cells)
    model = HistGradientBoostingRegressor(max_iter=500, learning_rate=0.05, random_state=seed)
    model.fit(features[:cut], target[:cut])
    return {
        "profile": profile_name,
        "cells": n_cells,
        "dots_per_cell": float(np.mean(placed)),
        "r2_point_pattern": float(r2_score(target[cut:], model.predict(features[cut:]))),
        "r2_knowing_which_dots_clustered": float(r2_score(shares[cut:], np.array(known)[cut:])),
    }


def _cells(data_dir: Path, slice_id: str, grid: tuple):
    import pandas as pd
    import torch
    from PIL import Image

    from metallo.models.cell_path import CellPatches
    from metallo.models.modeling_metallonet import standardise_images

    latents = pd.read_csv(data_dir / "latents.csv", dtype={"slice_id": str})
    latents = latents[latents["slice_id"] == slice_id]
    manifest = pd.read_csv(data_dir / "manifest.csv", dtype={"slice_id": str}).set_index("sample_id")
    files = [data_dir / manifest.loc[sample, "image"] for sample in latents.sample_id]
    images = np.stack([np.asarray(Image.open(file).convert("RGB")) for file in files])
    pixels = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    patches = CellPatches(grid, (0.0, 0.0, 1.0, 1.0))(standardise_images(pixels))
    n_cells = patches.shape[1]
    target = latents[[f"z_image_{k:02d}" for k in range(n_cells)]].to_numpy(dtype=np.float32)
    return patches.flatten(0, 1), torch.from_numpy(target).flatten()


def encoder_reference(profile_name: str, data_dir: Path, epochs: int, seed: int) -> dict[str, float]:
    import torch
    from torch import nn

    from metallo.models.cell_path import CellImageEncoder
    from metallo.models.configuration_metallonet import MetalloNetConfig

    torch.manual_seed(seed)
    grid = PROFILES[profile_name].grid
    train_x, train_y = _cells(data_dir, "1", grid)
    test_x, test_y = _cells(data_dir, "2", grid)
    encoder = CellImageEncoder(MetalloNetConfig().cell_channels, 128)
    head = nn.Sequential(nn.GELU(), nn.Linear(128, 1))
    model = nn.Sequential(encoder, head)
    batch = 64
    optimiser = torch.optim.AdamW(model.parameters(), 2e-3, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, 2e-3, total_steps=epochs * (len(train_x) // batch))

    def predict(x):
        model.eval()
        with torch.no_grad():
            return torch.cat([model(x[i : i + 256, None]).flatten() for i in range(0, len(x), 256)])

    started, r2 = time.perf_counter(), []
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(train_x))
        for i in range(0, len(order) - batch + 1, batch):
            rows = order[i : i + batch]
            x = train_x[rows]
            x = torch.where(torch.rand(len(rows), 1, 1, 1) < 0.5, x.flip(-1), x)  # mirror flips keep arrangement
            x = torch.where(torch.rand(len(rows), 1, 1, 1) < 0.5, x.flip(-2), x)
            loss = ((model(x[:, None]).flatten() - train_y[rows]) ** 2).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
        r2.append(float(1 - ((predict(test_x) - test_y) ** 2).mean() / test_y.var(correction=0)))
        elapsed = time.perf_counter() - started
        print(f"epoch {epoch + 1}/{epochs}: test cell R² {r2[-1]:.3f} ({elapsed:.0f} s)", flush=True)
    return {"train_cells": len(train_x), "test_cells": len(test_x), "r2_last": r2[-1], "r2_best_epoch": max(r2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("reader", choices=("centres", "encoder"))
    parser.add_argument("--profile", choices=DOT_PROFILES, default="local_clustering")
    parser.add_argument("--cells", type=int, default=40000, help="centres: simulated cells (80 %% fit, 20 %% test)")
    parser.add_argument("--data-dir", type=Path, help="encoder: a raw folder of --profile (make_variant)")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.reader == "centres":
        result = centres_reference(args.profile, args.cells, args.seed)
    else:
        if args.data_dir is None or not (args.data_dir / "latents.csv").is_file():
            parser.error(
                "encoder needs --data-dir: a folder of --profile with latents.csv (bench/yardstick.py makes it)"
            )
        result = encoder_reference(args.profile, args.data_dir, args.epochs, args.seed)
    print({key: round(value, 3) if isinstance(value, float) else value for key, value in result.items()})


if __name__ == "__main__":
    main()
