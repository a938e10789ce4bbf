"""IDX files (LeCun's format) and reading a data file without a traceback: the errors of :mod:`mlpvae.training.data`.

:func:`parse_idx` decodes one IDX file strictly; :func:`read_bytes` reads a
file, gunzipping it, and turns each way it can fail (a truncated or damaged
gzip, no permission, a directory in its place) into a one-line
:class:`DataFileError` naming the file and what to do.  Not in the paper (data format).
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

# IDX element-type codes -> big-endian NumPy dtypes.
IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
REPLACE = "replace it with a fresh copy of the official file"


class DataFileError(ValueError):
    """A data file cannot be used: the message names it and says what to do."""


class IdxError(DataFileError):
    """A file is not a well-formed IDX file of the expected kind."""


def parse_idx(buf: bytes, source: str = "<bytes>") -> np.ndarray:
    """Decode one IDX file (LeCun's format) into an array; Not in the paper (data format).

    Layout: two zero bytes, one element-type byte, one rank byte ``d``, ``d``
    big-endian uint32 sizes, then exactly ``prod(sizes)`` elements, big-endian.
    Anything else (bad magic, unknown type, truncated or trailing bytes) raises
    :class:`IdxError` naming ``source``.
    """
    if len(buf) < 4:
        raise IdxError(f"{source}: {len(buf)} bytes is too short for an IDX header")
    if buf[0] != 0 or buf[1] != 0:
        raise IdxError(f"{source}: bad IDX magic {buf[:4].hex()} (first two bytes must be zero)")
    code, ndim = buf[2], buf[3]
    if code not in IDX_TYPES:
        raise IdxError(f"{source}: unknown IDX element type 0x{code:02x}")
    if ndim == 0:
        raise IdxError(f"{source}: IDX rank is 0")
    header = 4 + 4 * ndim
    if len(buf) < header:
        raise IdxError(f"{source}: truncated IDX header ({len(buf)} bytes, rank {ndim} needs {header})")
    shape = tuple(int(s) for s in np.frombuffer(buf, ">u4", count=ndim, offset=4))
    dtype = np.dtype(IDX_TYPES[code])
    want = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(buf) != want:
        raise IdxError(f"{source}: IDX header says shape {shape} ({want} bytes) but the file has {len(buf)} bytes")
    return np.frombuffer(buf, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="), copy=False)


def read_bytes(path: Path, stem: str) -> tuple[bytes, bytes]:
    """The file's bytes and its uncompressed bytes; :class:`DataFileError` (one line, what to do) if unreadable."""
    try:
        raw = path.read_bytes()
    except IsADirectoryError:
        raise DataFileError(f"{path} is a directory, not the file {stem}; remove it and put the file there") from None
    except PermissionError:
        raise DataFileError(f"{path}: permission denied; make it readable (chmod a+r {path})") from None
    except OSError as exc:
        raise DataFileError(f"{path}: cannot be read ({exc.strerror}); {REPLACE}") from None
    if raw[:2] != b"\x1f\x8b":
        return raw, raw
    try:
        return raw, gzip.decompress(raw)
    except EOFError:
        raise DataFileError(f"{path}: truncated gzip file (ends before its end marker); {REPLACE}") from None
    except (gzip.BadGzipFile, zlib.error) as exc:
        raise DataFileError(f"{path}: damaged gzip file ({exc}); {REPLACE}") from None
