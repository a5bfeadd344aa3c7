"""The raw-data corpus of tests/data/test_bad_input_corpus.py: valid samples of every accepted kind and one row
per kind of bad input, built in a folder."""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

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


def build_corpus(root: Path):
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
