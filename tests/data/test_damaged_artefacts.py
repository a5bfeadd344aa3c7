"""Damaged artefacts between stages are clear errors, not tracebacks (issue 24, Low list):
a truncated images.npy before split, a calibration.json that is a list or holds negative residuals."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from metallo.data.split import run_split
from metallo.errors import MetalloError
from metallo.uncertainty import CALIBRATION_FILE, load_calibration, save_calibration
from tests.helpers import data as H


@pytest.mark.parametrize("name", ["images.npy", "spectra.npy"])
@pytest.mark.parametrize("keep", [0.5, 0.0])
def test_truncated_processed_array_before_split_is_a_clear_error(tmp_path, name, keep):
    paths = H.make_paths(tmp_path)
    paths.processed.mkdir(parents=True)
    pd.DataFrame({"sample_id": ["a", "b"]}).to_parquet(paths.processed / "samples.parquet")
    np.save(paths.processed / "images.npy", np.zeros((2, 12, 12, 3), np.uint8))
    np.save(paths.processed / "spectra.npy", np.zeros((2, *H.SHAPE), np.float32))
    data = (paths.processed / name).read_bytes()
    (paths.processed / name).write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(MetalloError, match=rf"{name} .*(truncated|corrupt).*dvc repro convert"):
        run_split(H.make_params(tmp_path / "raw"), paths)


@pytest.mark.parametrize(
    "content, words",
    [
        ([0.1, 0.2], "JSON object"),
        ({"abs_residuals": [0.1, -0.5, 0.3]}, "negative"),
        ({"abs_residuals": "0.1"}, "list"),
        ({"abs_residuals": [0.1, None]}, "finite"),
    ],
)
def test_damaged_calibration_is_refused_on_load(tmp_path, content, words):
    save_calibration(tmp_path, np.array([1.0, 2.0, 3.0]), np.array([1.1, 2.3, 2.0]))
    np.testing.assert_allclose(load_calibration(tmp_path), [0.1, 0.3, 1.0])
    (tmp_path / CALIBRATION_FILE).write_text(json.dumps(content))
    with pytest.raises(MetalloError, match=words) as info:
        load_calibration(tmp_path)
    assert CALIBRATION_FILE in str(info.value)
