"""MNIST and Fashion-MNIST from the standard IDX files (Sec. 7), and the training targets.

The four files of a data set (gzipped or not) are looked for, in order, in an
explicit directory, ``$VAETHEORY_DATA/<name>/``, ``~/.cache/vaetheory/<name>/``
and ``/usr/share/datasets/<name>/``.  Each file is parsed strictly (magic
number, element type, rank, sizes, exact length) and checked against the
SHA-256 of its *uncompressed* bytes, so the same check accepts the files as the
usual mirrors distribute them and recompressed copies.

Fashion-MNIST: the SHA-256 of the official uncompressed files could not be
established here; only the SHA-256 of the official *gzipped* files is known
(published by several loaders).  A Fashion-MNIST file is therefore "verified"
when it is the official ``.gz``; any other copy is checked for structure only,
and :func:`verify` says so.

Decoded arrays are not cached: decompressing and hashing the files costs
little more than loading an ``.npy`` copy would, too little to be worth a
second copy on disk.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mlpvae.training import config as C
from vaetheory.validate import choice, scalar
from vaetheory.validate import rng as check_rng
from vaetheory.xp import array_namespace

NAMES = ("mnist", "fashion-mnist")
# Role -> standard file stem.
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
# SHA-256 of the uncompressed official files (as published with the data sets; docs/conventions.md).
SHA256 = {
    "mnist": {
        "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
    "fashion-mnist": {},
}
# SHA-256 of the official gzipped distribution files (Fashion-MNIST's S3 mirror).
SHA256_GZ = {
    "mnist": {},
    "fashion-mnist": {
        "train-images-idx3-ubyte": "08dc20ab1689590a0bcd66e874647b6ee8464e2d501b5a3f1f78831db19a3fdc",
        "train-labels-idx1-ubyte": "b0197879cbda89f3dc7b894f9fd52b858e68ea4182b6947c9d8c2b67e5f18dcc",
        "t10k-images-idx3-ubyte": "78dcbbfb5a27efaf1b6c1d616caca68560be8766c5bffcb2791df9273a534229",
        "t10k-labels-idx1-ubyte": "42bd18137a62d5998cdeae52bf3a0676ac6b706f5cf8439b47bb5b151ae3dccf",
    },
}
# IDX element-type codes -> big-endian NumPy dtypes.
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_HOWTO = (
    "Provide the four standard IDX files ({files}, each optionally .gz) in one of these "
    "directories, or pass --data DIR.  E.g.: export VAETHEORY_DATA=/path/to/data and put the "
    "files in $VAETHEORY_DATA/{name}/ (Debian: apt install dataset-fashion-mnist installs "
    "Fashion-MNIST under /usr/share/datasets/fashion-mnist/)."
)


class IdxError(ValueError):
    """A file is not a well-formed IDX file of the expected kind."""


class DataNotFoundError(FileNotFoundError):
    """A data set's files were found in none of the searched directories."""


class ChecksumError(ValueError):
    """A file's uncompressed bytes do not have the official SHA-256."""


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
    if code not in _IDX_TYPES:
        raise IdxError(f"{source}: unknown IDX element type 0x{code:02x}")
    if ndim == 0:
        raise IdxError(f"{source}: IDX rank is 0")
    header = 4 + 4 * ndim
    if len(buf) < header:
        raise IdxError(f"{source}: truncated IDX header ({len(buf)} bytes, rank {ndim} needs {header})")
    shape = tuple(int(s) for s in np.frombuffer(buf, ">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_TYPES[code])
    want = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(buf) != want:
        raise IdxError(f"{source}: IDX header says shape {shape} ({want} bytes) but the file has {len(buf)} bytes")
    return np.frombuffer(buf, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="), copy=False)


def search_dirs(name: str, path: str | os.PathLike | None = None) -> list[Path]:
    """The directories searched for data set ``name``, in order; Not in the paper.

    The last one is ``/usr/share/datasets/<name>/`` (where Debian's dataset packages install),
    or ``$VAETHEORY_SYSTEM_DATA/<name>/`` when that variable is set.
    """
    choice("name", name, NAMES)
    dirs = []
    if path is not None:
        p = Path(path).expanduser()
        dirs += [p / name, p] if (p / name).is_dir() else [p]
    if os.environ.get("VAETHEORY_DATA"):
        dirs.append(Path(os.environ["VAETHEORY_DATA"]).expanduser() / name)
    dirs.append(Path.home() / ".cache" / "vaetheory" / name)
    # Overridable so that a test can stand in for a machine without the system packages.
    dirs.append(Path(os.environ.get("VAETHEORY_SYSTEM_DATA", "/usr/share/datasets")) / name)
    return dirs


def _file_in(d: Path, stem: str) -> Path | None:
    for candidate in (d / stem, d / (stem + ".gz")):
        if candidate.is_file():
            return candidate
    return None


def locate(name: str, path: str | os.PathLike | None = None) -> dict[str, Path]:
    """Role -> file for the first directory holding all four files; Not in the paper.

    Raises :class:`DataNotFoundError` with every directory looked in and how to
    provide the files.
    """
    dirs = search_dirs(name, path)
    for d in dirs:
        found = {role: _file_in(d, stem) for role, stem in FILES.items()}
        if all(found.values()):
            return found
    looked = "\n".join(f"  {d}" + ("" if d.is_dir() else "  (does not exist)") for d in dirs)
    howto = _HOWTO.format(files=", ".join(FILES.values()), name=name)
    raise DataNotFoundError(f"data set {name!r} not found; looked in:\n{looked}\n{howto}")


@dataclass
class FileCheck:
    """What :func:`read_file` established about one file."""

    path: Path
    sha256: str  # of the uncompressed bytes
    status: str  # "verified", "verified (official .gz)", "structure only", "MISMATCH"


def read_file(name: str, path: Path, verify: bool = True) -> tuple[np.ndarray, FileCheck]:
    """Read, checksum and parse one IDX file (gzipped or not); Not in the paper.

    Raises :class:`ChecksumError` if ``verify`` and the uncompressed SHA-256 is
    known and differs.
    """
    path = Path(path)
    raw = path.read_bytes()
    data = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    stem = path.name[:-3] if path.name.endswith(".gz") else path.name
    digest = hashlib.sha256(data).hexdigest()
    known = SHA256.get(name, {}).get(stem)
    known_gz = SHA256_GZ.get(name, {}).get(stem)
    if known is not None:
        status = "verified" if digest == known else "MISMATCH"
    elif known_gz is not None and data is not raw and hashlib.sha256(raw).hexdigest() == known_gz:
        status = "verified (official .gz)"
    else:
        status = "structure only"
    if verify and status == "MISMATCH":
        raise ChecksumError(
            f"{path}: SHA-256 of the uncompressed bytes is {digest}, expected {known} "
            f"(the official {stem}); the file is corrupt or not the official one"
        )
    return parse_idx(data, str(path)), FileCheck(path, digest, status)


@dataclass
class Dataset:
    """The decoded data set: images ``(N, m)`` uint8 with ``m = 784``, labels ``(N,)`` uint8."""

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    checks: dict[str, FileCheck] = field(default_factory=dict)


def _check_pair(name: str, images: np.ndarray, labels: np.ndarray, split: str) -> None:
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise IdxError(f"{name} {split} images: expected uint8 (N, 28, 28), got {images.dtype} {images.shape}")
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise IdxError(f"{name} {split} labels: expected uint8 (N,), got {labels.dtype} {labels.shape}")
    if len(images) != len(labels):
        raise IdxError(f"{name} {split}: {len(images)} images but {len(labels)} labels")
    if labels.size and labels.max() > 9:
        raise IdxError(f"{name} {split} labels: values must be 0..9, got max {labels.max()}")


def load(name: str = "mnist", path: str | os.PathLike | None = None, verify: bool = True) -> Dataset:
    """Load a data set's four IDX files as flat uint8 images; Sec. 7 (MNIST, 60,000 + 10,000).

    Parameters
    ----------
    name : "mnist" or "fashion-mnist".
    path : optional directory searched first (``path/<name>/`` or ``path`` itself).
    verify : check each file's uncompressed SHA-256 where it is known.
    """
    choice("name", name, NAMES)
    files = locate(name, path)
    arrays, checks = {}, {}
    for role, p in files.items():
        arrays[role], checks[role] = read_file(name, p, verify)
    _check_pair(name, arrays["train_images"], arrays["train_labels"], "train")
    _check_pair(name, arrays["test_images"], arrays["test_labels"], "test")
    flat = {k: (v.reshape(len(v), -1) if k.endswith("images") else v) for k, v in arrays.items()}
    return Dataset(name, checks=checks, **flat)


def targets(images, *, scale: float = 1.0, binarize: str = "none", rng=None, dtype=np.float32, out=None):
    """Training targets ``x (N, m)`` from uint8 images; Sec. 7 (grayscale targets, data scale lambda).

    ``binarize="none"``: grayscale intensities ``images / 255`` in [0, 1] (the
    paper's targets).  ``binarize="dynamic"``: each pixel is 1 with probability
    its intensity, drawn afresh from ``rng`` on every call (once per epoch).
    The result is multiplied by the data scale factor ``scale`` (lambda of
    Fig. 6 / Fig. 10).  ``images`` may be a NumPy or CuPy array; ``rng`` must be
    a generator of the same array module.  ``out`` is an optional preallocated
    ``(N, m)`` array to write into.
    """
    choice("binarize", binarize, ("none", "dynamic"))
    scale = scalar("scale", scale, positive=True)
    xp = array_namespace(images)
    ftype = np.dtype(dtype).type
    if out is None:
        out = xp.empty(images.shape, dtype=dtype)
    xp.multiply(images, ftype(1.0 / 255.0), out=out, dtype=dtype)
    if binarize == "dynamic":
        if rng is None:
            raise ValueError("rng is required for binarize='dynamic'")
        if xp is np:
            check_rng("rng", rng)
        out[...] = rng.random(images.shape, dtype=dtype) < out
    if scale != 1.0:
        out *= ftype(scale)
    return out


def synthetic(cfg: C.TrainConfig) -> Dataset:
    """Random uint8 "images" of ``m`` pixels: ten near-binary class templates plus noise, for tests and smoke runs.

    Not in the paper.  The same data set whatever the training seed; ``limit``
    and ``test_limit`` set the sizes (default 600 and 200).
    """
    rng = np.random.default_rng(99)
    templates = rng.choice([10.0, 245.0], size=(10, cfg.m))

    def split(N):
        labels = rng.integers(0, 10, N).astype(np.uint8)
        noise = rng.normal(0, 30, (N, cfg.m))
        return np.clip(templates[labels] + noise, 0, 255).astype(np.uint8), labels

    tr, trl = split(cfg.limit or 600)
    te, tel = split(cfg.test_limit or 200)
    return Dataset("synthetic", tr, trl, te, tel)


def load_data(cfg: C.TrainConfig) -> Dataset:
    """The data set a training config names (MNIST, Fashion-MNIST or :func:`synthetic`), cut to its limits (Sec. 7).

    Keeps the first ``cfg.limit`` training and ``cfg.test_limit`` test images
    and labels (None: all).
    """
    ds = synthetic(cfg) if cfg.dataset == "synthetic" else load(cfg.dataset, cfg.data)
    ds.train_images, ds.train_labels = ds.train_images[: cfg.limit], ds.train_labels[: cfg.limit]
    ds.test_images, ds.test_labels = ds.test_images[: cfg.test_limit], ds.test_labels[: cfg.test_limit]
    return ds


def verify(name: str, path=None) -> list[FileCheck]:
    """Locate and check every file of ``name`` (no exception on a mismatch); Not in the paper."""
    files = locate(name, path)
    checks = []
    for p in files.values():
        try:
            _, c = read_file(name, p, verify=False)
        except IdxError as exc:
            c = FileCheck(p, "", f"BAD IDX: {exc}")
        checks.append(c)
    return checks


def add_arguments(parser) -> None:
    """The options of ``vaetheory data``: a directory searched first and the data sets to check."""
    parser.add_argument("--data", metavar="DIR", help="directory searched first for the IDX files")
    parser.add_argument("--name", choices=NAMES, action="append", help="data set (default: all)")


def run(args) -> int:
    """``vaetheory data``: list where each data set was found and the checksum status of its files; the exit status."""
    status = 0
    for name in args.name or NAMES:
        print(f"{name}: searched {', '.join(str(d) for d in search_dirs(name, args.data))}")
        try:
            checks = verify(name, args.data)
        except DataNotFoundError as exc:
            print(f"  NOT FOUND. {exc}".replace("\n", "\n  "))
            if args.name:  # only a data set asked for by name is an error when missing
                status = max(status, 1)
            continue
        for c in checks:
            print(f"  {c.status:24s} {c.path}  sha256(uncompressed)={c.sha256[:16]}...")
            if c.status == "MISMATCH" or c.status.startswith("BAD"):
                status = 2
    return status
