"""A corpus of valid and hostile raw data: ingest accepts every valid sample, rejects every bad
row with a reason that names the problem, and only whole-file problems stop it.

The corpus is built once per module in a temporary folder: valid samples of every accepted
kind (8-bit RGB/RGBA/L/LA, palette, 16-bit grey, non-square, .npy float32/float64, .csv, a
space in a file name, an in-folder symlink, ids like ``007``) mixed with one row per kind of
bad input. A property-based test then throws random manifests and random file bytes at ingest.
"""

from __future__ import annotations

import csv
import io
import os
import string
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from metallo.data.ingest import run_ingest, validate_manifest
from metallo.data.readers import read_image_rgb, read_spectra, to_rgb8
from metallo.errors import MetalloError
from tests.helpers import data as H

SHAPE = H.SHAPE

# ------------------------------------------------------------------------------------------------
# the corpus
# ------------------------------------------------------------------------------------------------


def _garbled_npy_header() -> bytes:
    """A .npy whose header dict has an unclosed parenthesis (numpy's tokenizer chokes on it)."""
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (6, 20 }"
    header = header + " " * (63 - len(header)) + "\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode() + b"\0" * 480


@dataclass
class Corpus:
    """The raw folder under construction and what its rows share: a good image, good spectra, a folder outside."""

    raw: H.RawFolder
    outside: Path
    good_img: str
    good_spec: str
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(11))

    def draw(self, shape, high: int, dtype=np.uint8) -> np.ndarray:
        return self.rng.integers(0, high, shape, dtype=dtype)


def image(name: str, content) -> Callable[[Corpus], dict]:
    """A row whose image file ``name`` holds ``content(corpus)`` (bytes), with the good spectra."""
    return lambda c: {"image": c.raw.image_file(name, content(c)), "spectra": c.good_spec}


def spectra(name: str, array=None, content=None) -> Callable[[Corpus], dict]:
    """A row with the good image whose spectra file ``name`` holds ``array(corpus)`` or ``content(corpus)`` bytes."""
    return lambda c: {
        "image": c.good_img,
        "spectra": c.raw.spectra_file(name, array(c) if array else None, content(c) if content else None),
    }


def fields_(**values) -> Callable[[Corpus], dict]:
    """A row with the good files and these manifest fields (``dos``, ``slice_id``)."""
    return lambda c: {"image": c.good_img, "spectra": c.good_spec, **values}


def paths(image_path: str | None, spectra_path: str | None = None, setup=None) -> Callable[[Corpus], dict]:
    """A row naming these paths (``None``: the good file) after ``setup(corpus)`` made what they point at."""

    def build(c: Corpus) -> dict:
        if setup:
            setup(c)
        return {
            "image": c.good_img if image_path is None else image_path,
            "spectra": c.good_spec if spectra_path is None else spectra_path,
        }

    return build


def _encoded(fmt: str, image_of, **save) -> Callable[[Corpus], bytes]:
    def content(c: Corpus) -> bytes:
        buffer = io.BytesIO()
        image_of(c).save(buffer, format=fmt, **save)
        return buffer.getvalue()

    return content


def _tiff(pages_of, order: str = "<") -> Callable[[Corpus], bytes]:
    """A baseline TIFF of ``pages_of(corpus)`` (one array or a list of pages)."""

    def content(c: Corpus) -> bytes:
        pages = pages_of(c)
        return H.tiff_bytes(pages if isinstance(pages, list) else [pages], order)

    return content


def _csv(cell) -> Callable[[Corpus], bytes]:
    """SHAPE spectra as CSV text, each cell ``cell(i, j)``."""
    return lambda c: "\n".join(",".join(cell(i, j) for j in range(SHAPE[1])) for i in range(SHAPE[0])).encode()


def _with(value, index, dtype=np.float32) -> Callable[[Corpus], np.ndarray]:
    """Valid spectra (``dtype``) with ``value`` at ``index``."""

    def array(c: Corpus) -> np.ndarray:
        out = H.spectra_array(dtype=dtype)
        out[index] = value
        return out

    return array


def _first_half(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _tiff_bomb(c: Corpus) -> bytes:
    """A baseline TIFF whose header claims 20000 × 20000 pixels."""
    data = bytearray(H.tiff_bytes([c.draw((20, 24), 256)]))
    ifd = int.from_bytes(data[4:8], "little")
    data[ifd + 2 + 8 : ifd + 2 + 12] = (20000).to_bytes(4, "little")  # ImageWidth
    data[ifd + 2 + 12 + 8 : ifd + 2 + 12 + 12] = (20000).to_bytes(4, "little")  # ImageLength
    return bytes(data)


def _symlink(target, link: str):
    """Setup: ``link`` (relative to the raw folder) points at ``target(corpus)``."""
    return lambda c: os.symlink(target(c), c.raw.root / link)


def _save_pickled(c: Corpus) -> None:
    np.save(c.raw.root / "spectra" / "pickled.npy", np.array([[object()]] * 2, dtype=object), allow_pickle=True)


def _link_dir_out(c: Corpus) -> None:
    os.symlink(c.outside, c.raw.root / "spectra" / "dir_link")
    np.save(c.outside / "s.npy", H.spectra_array())


def _int_counts(dtype) -> tuple[str, Callable[[Corpus], dict]]:
    name = np.dtype(dtype).str.replace("<", "le_").replace(">", "be_").replace("|", "")
    return f"v_spec_{name}", spectra(f"counts_{name}.npy", lambda c: c.draw(SHAPE, 100, np.int64).astype(dtype))


#: Valid samples written by ``RawFolder.good``: sample_id -> its keyword arguments.
VALID_GOOD = {
    "007": {},
    "v_rgba": {"mode": "RGBA"},
    "v_grey": {"mode": "L"},
    "v_grey_alpha": {"mode": "LA"},
    "v_palette": {"mode": "P"},
    "v_16bit": {"mode": "I;16", "size": (20, 16)},
    "v_wide": {"size": (48, 30)},
    "v_tall": {"mode": "L", "size": (17, 41)},
    "v_f64": {"dtype": np.float64},
    "v_csv": {"spectra": "csv"},
    "v space": {"image_name": "with space.png", "spectra_name": "with space.csv", "spectra": "csv"},
    'v,comma "quoted" ünï': {"slice_id": "2"},
    "0": {},
}
#: More valid rows: links and paths that stay inside, TIFF beside PNG (recognised from the first bytes
#: whatever the suffix), integer spectra as spectrometers write them and big-endian floats.
VALID_ROWS = [
    ("v_link", paths("images/link_inside.png", setup=_symlink(lambda c: "007.png", "images/link_inside.png"))),
    ("v_dotted", paths("./images/../images/007.png")),
    ("v_sci_label", fields_(dos="-1.5e-3")),
    ("v_t_grey8", image("t_grey8.tif", _tiff(lambda c: c.draw((20, 24), 256)))),
    ("v_t_rgb8", image("t_rgb8.tiff", _tiff(lambda c: c.draw((20, 24, 3), 256), ">"))),
    ("v_t_grey16", image("t_grey16.tif", _tiff(lambda c: c.draw((20, 24), 4096, np.uint16)))),
    ("v_t_grey16be", image("t_grey16be.tif", _tiff(lambda c: c.draw((20, 24), 65536, np.uint16), ">"))),
    ("v_t_rgb16", image("t_rgb16.tif", _tiff(lambda c: c.draw((20, 24, 3), 4096, np.uint16)))),
    ("v_t_named_png", image("t_named_png.png", _tiff(lambda c: c.draw((20, 24, 3), 256)))),
    ("v_png_named_tif", image("png_named.tif", _encoded("PNG", lambda c: Image.fromarray(c.draw((20, 24, 3), 256))))),
    (
        "v_tiff_lzw",
        image("lzw.tif", _encoded("TIFF", lambda c: Image.fromarray(c.draw((20, 24, 3), 256)), compression="tiff_lzw")),
    ),
    *(
        _int_counts(dtype)
        for dtype in (np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64, np.uint64, ">f8", ">i4")
    ),
    (
        "v_spec_int_csv",
        spectra(
            "counts.csv",
            content=lambda c: "\n".join(
                ",".join(str(v) for v in c.rng.integers(-5, 60000, SHAPE[1])) for _ in range(SHAPE[0])
            ).encode(),
        ),
    ),
]
#: One row per kind of bad input: (sample_id, row builder, words the rejection reason must hold).
BAD_ROWS = [
    ("b_missing", paths("images/missing.png"), ("not found",)),
    ("b_missing_spec", paths(None, "spectra/missing.npy"), ("not found",)),
    (
        "b_dir",
        paths("images/a_dir.png", setup=lambda c: (c.raw.root / "images" / "a_dir.png").mkdir()),
        ("not a regular file",),
    ),
    ("b_not_png", image("text.png", lambda c: b"hello, I am text\n"), ("not a PNG",)),
    ("b_jpeg", image("jpeg.png", _encoded("JPEG", lambda c: H.make_image("RGB"))), ("not a PNG",)),
    ("b_truncated", image("trunc.png", lambda c: _first_half(H.png_bytes("RGB", (24, 20), seed=7))), ("truncated",)),
    ("b_bomb", image("bomb.png", lambda c: H.bomb_png(20000, 20000)), ("decompression", "limit")),
    ("b_bomb2", image("bomb2.png", lambda c: H.bomb_png(9000, 7000)), ("decompression", "limit")),
    ("b_zero_img", image("zero.png", lambda c: b""), ("empty",)),
    ("b_1bit", image("onebit.png", _encoded("PNG", lambda c: Image.new("1", (16, 16)))), ("mode '1'", "not supported")),
    ("b_shape", spectra("shape.npy", lambda c: H.spectra_array((6, 21))), ("shape",)),
    ("b_1d", spectra("flat.npy", lambda c: H.spectra_array((120,))), ("shape", "(120,)")),
    ("b_nan", spectra("nan.npy", _with(np.nan, (0, 0))), ("non-finite",)),
    ("b_inf", spectra("inf.npy", _with(np.inf, (5, 19))), ("non-finite",)),
    ("b_csv_inf", spectra("inf.csv", content=_csv(lambda i, j: "inf" if (i, j) == (1, 1) else "0.5")), ("non-finite",)),
    (
        "b_csv_text",
        spectra("text.csv", content=_csv(lambda i, j: "x1" if (i, j) == (2, 2) else "0.5")),
        ("non-number",),
    ),
    (
        "b_csv_ragged",
        spectra(
            "ragged.csv",
            content=lambda c: "\n".join(",".join(["0.5"] * (SHAPE[1] - (i == 3))) for i in range(SHAPE[0])).encode(),
        ),
        ("ragged",),
    ),
    ("b_csv_latin1", spectra("latin.csv", content=lambda c: "0.5,\xe9\n".encode("latin-1")), ("not UTF-8",)),
    ("b_pickle", paths(None, "spectra/pickled.npy", setup=_save_pickled), ("pickled",)),
    ("b_zero_spec", spectra("zero.npy", content=lambda c: b""), ("empty",)),
    ("b_zero_csv", spectra("zero.csv", content=lambda c: b""), ("empty",)),
    (
        "b_npy_bomb",
        spectra("bomb.npy", content=lambda c: H.npy_header_bytes((10**7, 10**7))),
        ("shape", "(10000000, 10000000)"),
    ),
    ("b_npy_garbled", spectra("garbled.npy", content=lambda c: _garbled_npy_header()), ("cannot be read",)),
    ("b_npy_short", spectra("short.npy", content=lambda c: H.npy_header_bytes((6, 20), "<f4")), ("cannot be read",)),
    ("b_label_missing", fields_(dos=""), ("dos is missing",)),
    ("b_label_text", fields_(dos="1.2.3"), ("not a number",)),
    ("b_label_nan", fields_(dos="nan"), ("not finite",)),
    ("b_label_inf", fields_(dos="-Infinity"), ("not finite",)),
    ("007", fields_(), ("duplicate", f"row {H.FIRST_ROW}")),
    ("v_csv", fields_(), ("duplicate",)),
    ("", fields_(), ("sample_id is empty",)),
    ("b_no_slice", fields_(slice_id=" "), ("slice_id is empty",)),
    ("b_dotdot", paths("../outside/x.png", setup=lambda c: H.write_png(c.outside / "x.png")), ("outside",)),
    ("b_abs", lambda c: {"image": str(c.outside / "x.png"), "spectra": c.good_spec}, ("must be relative",)),
    (
        "b_link_out",
        paths("images/link_out.png", setup=_symlink(lambda c: c.outside / "x.png", "images/link_out.png")),
        ("outside",),
    ),
    ("b_dirlink_out", paths(None, "spectra/dir_link/s.npy", setup=_link_dir_out), ("outside",)),
    ("b_thin", image("thin.png", lambda c: H.thin_png(1_000_000, 1)), ("shorter side",)),
    ("b_aspect", image("aspect.png", lambda c: H.thin_png(16, 200)), ("aspect ratio",)),
    ("b_multipage", image("pages.tif", _tiff(lambda c: [c.draw((20, 24), 256)] * 3)), ("TIFF has 3 pages",)),
    ("b_tiff_header_only", image("hdr.tif", lambda c: b"II*\0\x08\0\0\0"), ("image",)),
    ("b_tiff_bomb", image("bomb.tif", _tiff_bomb), ("decompression", "limit")),
    ("b_spec_f64_overflow", spectra("f64big.npy", _with(1e300, (0, 0), dtype=np.float64)), ("1 non-finite",)),
    ("b_spec_f32_huge", spectra("f32big.npy", _with(3e38, (1, slice(0, 2)))), ("2 value(s) with magnitude",)),
    ("b_spec_float16", spectra("f16.npy", lambda c: H.spectra_array(dtype=np.float16)), ("dtype float16",)),
    ("b_label_separator", fields_(dos="1_000"), ("not a number",)),
    ("b_label_arabic", fields_(dos="\u0663.\u0665"), ("not a number",)),
    ("b_id_control", fields_(slice_id="1\x00"), ("control characters",)),
    (
        "b_link_dangling",
        paths("images/dangling.png", setup=_symlink(lambda c: "gone.png", "images/dangling.png")),
        ("not found",),
    ),
    ("b_nul", paths("images/007.png\0.txt"), ("NUL",)),
    ("b_empty_paths", paths("", ""), ("image path is empty", "spectra path is empty")),
    (
        "b_everything",
        lambda c: {"image": "../nope.png", "spectra": "spectra/shape.npy", "dos": "x"},
        ("not a number", "outside", "shape"),
    ),
]


def _build_corpus(root: Path):
    """Return (raw folder, valid sample ids, {row: (sample_id, keywords)} for the bad rows)."""
    raw = H.RawFolder(root / "raw")
    (root / "outside").mkdir()
    c = Corpus(raw, root / "outside", raw.good_image("shared.png", seed=99), raw.good_spectra("shared.npy", seed=99))
    for sample_id, options in VALID_GOOD.items():
        raw.good(sample_id, **options)
    for sample_id, build in VALID_ROWS:
        raw.add(sample_id, **build(c))
    valid = [row["sample_id"] for row in raw.rows]
    bad = {}
    for sample_id, build, keywords in BAD_ROWS:
        raw.add(sample_id, **build(c))
        bad[H.FIRST_ROW + len(raw.rows) - 1] = (sample_id, keywords)
    raw.write()
    return raw, valid, bad


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    raw, valid, bad = _build_corpus(tmp_path_factory.mktemp("corpus"))
    result = validate_manifest(raw.root, spectra_shape=SHAPE, workers=2, show_progress=False)
    return raw, valid, bad, result


def test_every_valid_row_is_accepted(corpus):
    raw, valid, bad, result = corpus
    assert list(result.accepted.sample_id) == valid, result.rejected.to_string()
    assert result.accepted.sample_id.map(type).eq(str).all()
    accepted = result.accepted.set_index("sample_id")
    assert accepted.loc["v_wide", ["width", "height"]].tolist() == [48, 30]
    assert accepted.loc["v_tall", ["width", "height"]].tolist() == [17, 41]
    assert accepted.loc['v,comma "quoted" ünï', "slice_id"] == "2"
    assert accepted.loc["v space", "image"] == "images/with space.png"
    assert accepted.loc["v_sci_label", "dos"] == pytest.approx(-1.5e-3)


@pytest.mark.parametrize(
    "kind",
    [
        "b_missing",
        "b_missing_spec",
        "b_dir",
        "b_not_png",
        "b_jpeg",
        "b_truncated",
        "b_bomb",
        "b_bomb2",
        "b_zero_img",
        "b_1bit",
        "b_shape",
        "b_1d",
        "b_nan",
        "b_inf",
        "b_csv_inf",
        "b_csv_text",
        "b_csv_ragged",
        "b_csv_latin1",
        "b_pickle",
        "b_zero_spec",
        "b_zero_csv",
        "b_npy_bomb",
        "b_npy_garbled",
        "b_npy_short",
        "b_label_missing",
        "b_label_text",
        "b_label_nan",
        "b_label_inf",
        "b_no_slice",
        "b_dotdot",
        "b_abs",
        "b_link_out",
        "b_dirlink_out",
        "b_link_dangling",
        "b_nul",
        "b_empty_paths",
        "b_everything",
        "b_thin",
        "b_aspect",
        "b_multipage",
        "b_tiff_header_only",
        "b_tiff_bomb",
        "b_spec_f64_overflow",
        "b_spec_f32_huge",
        "b_spec_float16",
        "b_label_separator",
        "b_label_arabic",
        "b_id_control",
    ],
)
def test_bad_row_rejected_with_reason(corpus, kind):
    raw, valid, bad, result = corpus
    row = next(r for r, (sid, _) in bad.items() if sid == kind)
    keywords = bad[row][1]
    rejected = result.rejected.set_index("row")
    assert row in rejected.index, f"{kind} (row {row}) was accepted"
    reason = rejected.loc[row, "reason"]
    for keyword in keywords:
        assert keyword in reason, (kind, keyword, reason)


def test_duplicates_and_empty_id_rejected(corpus):
    raw, valid, bad, result = corpus
    rejected = result.rejected.set_index("row")
    for row, (sid, keywords) in bad.items():
        if sid in ("007", "v_csv", ""):
            assert all(k in rejected.loc[row, "reason"] for k in keywords), rejected.loc[row, "reason"]
    dup_007 = next(r for r, (sid, _) in bad.items() if sid == "007")
    assert f"first seen at row {raw.row_of('007')}" in rejected.loc[dup_007, "reason"]


def test_counts_add_up_and_rows_are_partitioned(corpus):
    raw, valid, bad, result = corpus
    assert result.total == len(raw.rows)
    assert result.counts == {"total": len(raw.rows), "accepted": len(valid), "rejected": len(bad)}
    assert set(result.rejected.row) == set(bad)
    assert set(result.accepted.row).isdisjoint(result.rejected.row)
    assert set(result.accepted.row) | set(result.rejected.row) == set(range(H.FIRST_ROW, H.FIRST_ROW + len(raw.rows)))


def test_fail_mode_lists_the_first_bad_rows_and_counts_the_rest(corpus, tmp_path):
    from metallo.data.ingest import MAX_LISTED

    raw, valid, bad, result = corpus
    paths = H.make_paths(tmp_path)
    with pytest.raises(MetalloError) as info:
        run_ingest(H.make_params(raw.root, on_error="fail"), paths)
    message = str(info.value)
    assert f"{len(bad)} of {len(raw.rows)} manifest rows" in message
    listed = [line.strip() for line in message.splitlines() if line.strip().startswith("row ")]
    assert len(bad) > MAX_LISTED and len(listed) == MAX_LISTED
    assert f"... and {len(bad) - MAX_LISTED} more (every row is listed in {paths.interim / 'rejected.csv'})" in message
    for line, (row, (sid, keywords)) in zip(listed, sorted(bad.items())):
        assert line.startswith(f"row {row} ({sid or 'no sample_id'}): ")
        assert keywords[0] in line
    written = pd.read_csv(paths.interim / "rejected.csv", dtype={"sample_id": str}, keep_default_na=False)
    assert list(written.row) == sorted(bad)


def test_skip_mode_keeps_the_valid_rows(corpus, tmp_path):
    raw, valid, bad, result = corpus
    paths = H.make_paths(tmp_path)
    counts = run_ingest(H.make_params(raw.root, on_error="skip"), paths)
    assert counts == result.counts
    samples = pd.read_parquet(paths.interim / "samples.parquet")
    assert list(samples.sample_id) == valid


def test_symlink_loop_row_rejected_and_refused_by_the_stage(tmp_path):
    """A link loop is a row problem for validate_manifest (predict), a whole-folder one for the ingest
    stage (DVC hashes the folder first and fails on it), so it is kept out of the shared corpus."""
    raw = H.RawFolder(tmp_path / "raw")
    raw.good("a")
    os.symlink("loop.png", raw.root / "images" / "loop.png")
    raw.add("b_link_loop", "images/loop.png", raw.good_spectra("b.npy"))
    raw.write()
    result = validate_manifest(raw.root, spectra_shape=SHAPE, workers=1, show_progress=False)
    assert list(result.accepted.sample_id) == ["a"]
    reason = result.rejected.reason[0]
    assert "image" in reason and "loop" in reason
    with pytest.raises(MetalloError, match=r"images/loop.png \(symbolic-link loop\)"):
        run_ingest(H.make_params(raw.root), H.make_paths(tmp_path / "out"))


# ------------------------------------------------------------------------------------------------
# whole-file problems
# ------------------------------------------------------------------------------------------------

HEADER = ",".join(H.COLUMNS)


@pytest.mark.parametrize(
    "content, pattern",
    [
        (b"sample_id,slice_id,image,dos\na,1,images/a.png,1.0\n", r"missing column\(s\) spectra"),
        (
            b"id,slice,img,spec,label\na,1,images/a.png,spectra/a.npy,1\n",
            r"missing column\(s\) sample_id, slice_id, image, spectra, dos",
        ),
        (b"", r"is empty; it needs a header line"),
        (b"\n\n", r"is empty"),
        (HEADER.encode() + b"\n", r"has a header but no rows"),
        (HEADER.encode() + b"\n\n\n", r"has a header but no rows"),
        (
            HEADER.encode() + b"\ncaf\xe9,1,images/a.png,spectra/a.npy,1.0\n",
            r"not UTF-8 text \(invalid continuation byte at byte 40, line 2\); save it as UTF-8",
        ),
        (b"\xff\xfe" + HEADER.encode("utf-16-le"), r"not UTF-8"),
        (
            HEADER.encode() + b"\na,1,images/a.png,spectra/a.npy,1.0,\nb,1,images/b.png,spectra/b.npy,2.0,\n",
            r"more fields than the header",
        ),
        (
            HEADER.encode() + b"\na,1,images/a.png,spectra/a.npy,1.0\nb,1,images/b.png,spectra/b.npy,2.0,extra\n",
            r"not a readable CSV file",
        ),
        (HEADER.encode() + b'\na,1,"images/a.png,spectra/a.npy,1.0\n', r"not a readable CSV file"),
    ],
)
def test_whole_file_errors(tmp_path, content, pattern):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "manifest.csv").write_bytes(content)
    with pytest.raises(MetalloError, match=pattern) as info:
        validate_manifest(raw, spectra_shape=SHAPE, workers=1, show_progress=False)
    assert "manifest.csv" in str(info.value)


def test_short_rows_are_rejected_per_row(tmp_path):
    """A row with fewer fields than the header is a bad row, not a crash."""
    raw = H.RawFolder(tmp_path / "raw")
    row = raw.good("a")
    (raw.root / "manifest.csv").write_text(
        f"{HEADER}\n{','.join(row[c] for c in H.COLUMNS)}\nb,1,{row['image']}\n", encoding="utf-8"
    )
    result = validate_manifest(raw.root, spectra_shape=SHAPE, workers=1, show_progress=False)
    assert list(result.accepted.sample_id) == ["a"]
    reason = result.rejected.reason[0]
    assert "spectra path is empty" in reason and "dos is missing" in reason


# ------------------------------------------------------------------------------------------------
# accepted modes decode to sensible 8-bit RGB
# ------------------------------------------------------------------------------------------------


def test_16bit_png_round_trips_and_scales_to_8bit(tmp_path):
    values = np.array([[0, 256, 257, 1000], [32767, 32896, 65279, 65535]], dtype=np.uint16)
    values = np.tile(values, (8, 4))  # 16 x 16: at least MIN_SIDE
    path = tmp_path / "grey16.png"
    Image.fromarray(values).save(path)
    with Image.open(path) as image:
        assert image.mode == "I;16"
        np.testing.assert_array_equal(np.asarray(image), values)
    rgb = read_image_rgb(path)  # bit_depth 16: value * 255 / 65535, rounded
    assert rgb.mode == "RGB" and rgb.size == (16, 16)
    pixels = np.asarray(rgb)
    np.testing.assert_array_equal(pixels[..., 0], pixels[..., 1])
    np.testing.assert_array_equal(pixels[..., 0], pixels[..., 2])
    np.testing.assert_array_equal(pixels[:2, :4, 0], [[0, 1, 1, 4], [127, 128, 254, 255]])
    assert pixels.dtype == np.uint8


def test_palette_and_alpha_images_convert_to_rgb(tmp_path):
    palette_path = H.write_png(tmp_path / "p.png", "P", (20, 16), seed=3)
    with Image.open(palette_path) as image:
        assert image.mode == "P"
        expected = np.asarray(image.convert("RGB"))
    rgb = read_image_rgb(palette_path)
    assert rgb.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(rgb), expected)

    rgba = H.image_array("RGBA", (16, 18), seed=1)
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(np.asarray(read_image_rgb(tmp_path / "rgba.png")), rgba[..., :3])

    grey = H.image_array("L", (20, 16), seed=2)
    Image.fromarray(grey, mode="L").save(tmp_path / "l.png")
    np.testing.assert_array_equal(np.asarray(read_image_rgb(tmp_path / "l.png")), np.repeat(grey[..., None], 3, 2))
    assert to_rgb8(Image.fromarray(grey, mode="L")).mode == "RGB"


def test_spectra_formats_load_as_float32(tmp_path):
    array = H.spectra_array(seed=4, dtype=np.float64)
    for name in ("a.npy", "b.csv"):
        H.write_spectra(tmp_path / name, array)
        loaded = read_spectra(tmp_path / name, SHAPE)
        assert loaded.dtype == np.float32 and loaded.shape == SHAPE
        np.testing.assert_allclose(loaded, array.astype(np.float32), rtol=1e-6)
    np.save(tmp_path / "f.npy", np.asfortranarray(array.astype(np.float32)))
    np.testing.assert_array_equal(read_spectra(tmp_path / "f.npy", SHAPE), array.astype(np.float32))
    with open(tmp_path / "v2.npy", "wb") as f:
        np.lib.format.write_array(f, array, version=(2, 0))
    np.testing.assert_array_equal(read_spectra(tmp_path / "v2.npy", SHAPE), array.astype(np.float32))


# ------------------------------------------------------------------------------------------------
# property: random manifests and random file bytes never crash ingest
# ------------------------------------------------------------------------------------------------

FIELD = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12) | st.sampled_from(
    ["", " ", ",", '"', '""', "a,b", '"x"', "\n", "\r\n", "nan", "NA", "inf", "1e400", "-0", "007", "é", "\u202e", "\0"]
)
PATHS = (
    st.sampled_from(
        [
            "images/f0.png",
            "images/f1.png",
            "spectra/g0.npy",
            "spectra/g1.csv",
            "images/good.png",
            "spectra/good.npy",
            "images/missing.png",
            "../escape.png",
            "/etc/hostname",
            "images",
            ".",
            "",
            " images/f0.png ",
            "images/f0.png/x",
            "images\\f0.png",
            "images/../images/f1.png",
        ]
    )
    | FIELD
)
FILE_BYTES = st.one_of(
    st.binary(max_size=200),
    st.binary(max_size=200).map(lambda b: b"\x89PNG\r\n\x1a\n" + b),
    st.binary(max_size=200).map(lambda b: b"\x93NUMPY" + b),
    st.binary(min_size=1, max_size=300).map(lambda b: H.png_bytes("RGB", (8, 8))[: len(b)]),
    st.text(alphabet=string.digits + ".,-e\n naif", max_size=200).map(str.encode),
)
ROW = st.fixed_dictionaries(
    {
        "sample_id": FIELD,
        "slice_id": FIELD,
        "image": PATHS,
        "spectra": PATHS,
        "dos": st.one_of(FIELD, st.floats(allow_nan=True, allow_infinity=True).map(repr)),
    }
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.lists(ROW, min_size=0, max_size=6),
    files=st.lists(FILE_BYTES, min_size=4, max_size=4),
    raw_text=st.none() | st.binary(max_size=300),
)
def test_random_manifests_and_files_never_crash(rows, files, raw_text):
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw"
        (raw / "images").mkdir(parents=True)
        (raw / "spectra").mkdir()
        for name, data in zip(("images/f0.png", "images/f1.png", "spectra/g0.npy", "spectra/g1.csv"), files):
            (raw / name).write_bytes(data)
        H.write_png(raw / "images" / "good.png", "RGB", (16, 16))
        np.save(raw / "spectra" / "good.npy", H.spectra_array())
        if raw_text is None:
            with open(raw / "manifest.csv", "w", newline="", encoding="utf-8") as f:
                writer = csv.writer(f, lineterminator="\r\n")  # so fields holding a bare CR get quoted too
                writer.writerow(H.COLUMNS)
                writer.writerows([[r[c] for c in H.COLUMNS] for r in rows])
        else:  # arbitrary bytes after a valid header: a whole-file error or row-by-row verdicts
            (raw / "manifest.csv").write_bytes(",".join(H.COLUMNS).encode() + b"\n" + raw_text)
        try:
            result = validate_manifest(raw, spectra_shape=SHAPE, workers=1, show_progress=False)
        except MetalloError as err:
            assert "manifest.csv" in str(err)
            if raw_text is None:  # csv.writer output is always readable; only "no rows" can fail
                assert not rows and "no rows" in str(err)
            return
        counts = result.counts
        assert counts["accepted"] + counts["rejected"] == counts["total"]
        assert set(result.accepted.row).isdisjoint(result.rejected.row)
        rows = sorted(set(result.accepted.row) | set(result.rejected.row))
        assert len(rows) == counts["total"] and (not rows or rows[0] == 2)  # real lines: a quoted newline skips some
        assert all(isinstance(r, str) and r for r in result.rejected.reason)
        assert result.accepted.sample_id.is_unique
        if raw_text is None:
            assert counts["total"] == len(rows)
            for r in result.accepted.itertuples():
                assert r.image == "images/good.png" or r.image.strip() in (
                    "images/../images/f1.png",
                    "images/f0.png",
                    "images/f1.png",
                )
                assert np.isfinite(r.dos)
