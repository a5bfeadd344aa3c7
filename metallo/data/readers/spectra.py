"""Spectra: ``.npy`` (no pickle; the header's dtype and shape are checked before any data is read)
or headerless ``.csv``, returned as float32 after a check of every value."""

from __future__ import annotations

import os
import tokenize
from pathlib import Path

import numpy as np

from metallo.data.readers.files import SampleError, _check_file

#: Largest magnitude a spectra value may have (after conversion to float32); reflectance data
#: are O(1) and raw counts O(1e6), so anything above this is a corrupt or mis-scaled file.
MAX_SPECTRA_ABS = 1e12

#: Longest accepted spelling of one CSV number with its separator (``-1.2345678901234567e-300,`` is 25).
MAX_CSV_BYTES_PER_VALUE = 32

ACCEPTED_SPECTRA_DTYPES = "float32, float64 or an integer type (int8..int64, uint8..uint64)"


def read_spectra(path: str | os.PathLike, shape: tuple[int, int]) -> np.ndarray:
    """Load a spectra file as float32 ``shape``.

    ``.npy`` (float32/float64 or any integer dtype, no pickle) or headerless ``.csv`` (decimal or
    integer numbers). After the conversion to float32 every value must be finite and at most
    :data:`MAX_SPECTRA_ABS` in magnitude.
    """
    path = Path(path)
    _check_file(path, "spectra")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        array = _load_npy(path, shape)
    elif suffix == ".csv":
        array = _load_csv(path, shape)
    else:
        raise SampleError(f"spectra format {suffix or '(no suffix)'!r} is not supported; use .npy or .csv")
    _check_shape(array.shape, shape)
    with np.errstate(over="ignore", invalid="ignore"):
        values = array.astype(np.float32)  # float64 beyond float32's range becomes inf here
    _check_values(values)
    return values


def _load_npy(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """A plain numeric .npy array; its header's dtype and shape are checked before the data is read."""
    try:
        header = _npy_header(path)
        if header is not None:  # check dtype and shape before any data is read or allocated
            _check_npy_dtype(header[1])
            _check_shape(header[0], shape)
        array = np.load(path, allow_pickle=False)
    except SampleError:
        raise
    except ValueError as err:
        if "pickle" in str(err).lower():
            raise SampleError("spectra .npy holds Python objects (pickled); save a plain numeric array") from None
        raise SampleError(f"spectra .npy cannot be read ({err})") from None
    except (OSError, EOFError) as err:
        raise SampleError(f"spectra .npy is corrupt or truncated ({err})") from None
    except tokenize.TokenError as err:  # numpy tokenizes the header; a garbled one raises this
        raise SampleError(f"spectra .npy cannot be read (corrupt header: {err})") from None
    if not isinstance(array, np.ndarray):
        raise SampleError(f"spectra .npy has dtype {type(array).__name__}; expected {ACCEPTED_SPECTRA_DTYPES}")
    _check_npy_dtype(array.dtype)
    return array


def _load_csv(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """A headerless comma-separated file of numbers (a UTF-8 BOM is allowed), as float64 (at least 2-D).

    The file's size is bounded by the expected shape before it is read, and at most one line more
    than expected is parsed, so a 96 MB file is refused without being read whole.
    """
    limit = shape[0] * shape[1] * MAX_CSV_BYTES_PER_VALUE + 4096
    size = path.stat().st_size
    if size > limit:
        raise SampleError(
            f"spectra CSV is {size:,} bytes, larger than expected: {shape[0]} x {shape[1]} values take at most "
            f"{limit:,} bytes ({MAX_CSV_BYTES_PER_VALUE} characters per number); check that it is the right "
            "file (data.n_spectra, data.spectrum_length)"
        )
    try:
        array = np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2, encoding="utf-8-sig", max_rows=shape[0] + 1)
    except UnicodeDecodeError:
        raise SampleError("spectra CSV is not UTF-8 text") from None
    except ValueError as err:
        raise SampleError(f"spectra CSV has a non-number or ragged line ({err})") from None
    if len(array) > shape[0]:
        raise SampleError(
            f"spectra CSV has more than {shape[0]} lines of numbers, expected shape {tuple(shape)} "
            "(data.n_spectra, data.spectrum_length)"
        )
    return array


def _check_values(values: np.ndarray) -> None:
    """Every value finite and at most :data:`MAX_SPECTRA_ABS` in magnitude."""
    finite = np.isfinite(values)
    bad = int(values.size - np.count_nonzero(finite))
    too_large = int(np.count_nonzero(np.abs(np.where(finite, values, 0.0)) > MAX_SPECTRA_ABS))
    problems = []
    if bad:
        problems.append(f"{bad} non-finite value(s) (NaN or inf, after conversion to float32)")
    if too_large:
        problems.append(f"{too_large} value(s) with magnitude above the limit of {MAX_SPECTRA_ABS:g}")
    if problems:
        raise SampleError(f"spectra contains {' and '.join(problems)}; fix or re-export the file")


def _npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype] | None:
    """``(shape, dtype)`` from a .npy header without reading the data; None if not a .npy file.

    A header can announce any shape; checking it first keeps a 100-byte file from making
    ``np.load`` allocate terabytes (the .npy analogue of a decompression bomb).
    """
    with open(path, "rb") as f:
        if f.read(len(np.lib.format.MAGIC_PREFIX)) != np.lib.format.MAGIC_PREFIX:
            return None  # np.load reports it (pickle, zip, ...)
        f.seek(0)
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(f)
        elif version in ((2, 0), (3, 0)):  # 3.0 differs from 2.0 only in allowing UTF-8 field names
            shape, _, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            return None  # np.load reports the unsupported version
    return tuple(shape), dtype


def _check_npy_dtype(dtype: np.dtype) -> None:
    if dtype.hasobject:
        raise SampleError("spectra .npy holds Python objects (pickled); save a plain numeric array")
    if dtype.fields is not None or dtype.subdtype is not None:
        raise SampleError(f"spectra .npy has a structured dtype {dtype}; expected {ACCEPTED_SPECTRA_DTYPES}")
    if not (dtype.kind in "iu" or dtype.type in (np.float32, np.float64)):
        raise SampleError(f"spectra .npy has dtype {dtype}; expected {ACCEPTED_SPECTRA_DTYPES}")


def _check_shape(actual: tuple[int, ...], shape: tuple[int, int]) -> None:
    if tuple(actual) != tuple(shape):
        raise SampleError(
            f"spectra has shape {tuple(actual)}, expected {tuple(shape)} (data.n_spectra, data.spectrum_length)"
        )
