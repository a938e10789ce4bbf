"""MNIST and Fashion-MNIST from the standard IDX files (Sec. 7), and the training targets.

The four files of a data set (gzipped or not) are looked for in the directory
the user named (``--data`` or the config's ``data``, else ``$VAETHEORY_DATA/<name>/``):
a named directory without them is an error, never a silent fallback.  Without
one, ``~/.cache/vaetheory/<name>/`` then ``/usr/share/datasets/<name>/`` are
searched, and a fallback to the second is said (:attr:`Dataset.notes`).  Each
file is parsed strictly (magic number, element type, rank, sizes, exact length)
and checked against the SHA-256 of its *uncompressed* bytes, so the same check
accepts the files as the usual mirrors distribute them and recompressed copies.
A file that cannot be read (truncated or damaged gzip, no permission, a
directory in its place) is a :class:`DataFileError`: one line naming the file
and what to do.

Fashion-MNIST: the SHA-256 of the official uncompressed files could not be
established here; only the SHA-256 of the official *gzipped* files is known
(the values TensorFlow Datasets publishes for the files whose MD5s torchvision
publishes).  A Fashion-MNIST file is therefore "verified" when it is the
official ``.gz``; any other copy is "structure checked only", which every
training run says (a message, and each file's ``check`` in ``run.json``).

Decoded arrays are not cached: decompressing and hashing the files costs
little more than loading an ``.npy`` copy would, too little to be worth a
second copy on disk.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mlpvae.training import config as C
from mlpvae.training.idx import REPLACE, DataFileError, IdxError, parse_idx, read_bytes
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
_HOWTO = (
    "Provide the four standard IDX files ({files}, each optionally .gz) in one of these "
    "directories, or pass --data DIR.  E.g.: export VAETHEORY_DATA=/path/to/data and put the "
    "files in $VAETHEORY_DATA/{name}/{where}."
)
# Where a set's files come from besides a copy the user holds; only Fashion-MNIST has a Debian package.
_SOURCE = {
    "mnist": " (the files of the original MNIST distribution; their SHA-256 sums are checked on load)",
    "fashion-mnist": (
        " (Debian: apt install dataset-fashion-mnist installs them under /usr/share/datasets/fashion-mnist/)"
    ),
}


class DataNotFoundError(FileNotFoundError):
    """A data set's files were found in none of the searched directories."""


class ChecksumError(DataFileError):
    """A file's uncompressed bytes do not have the official SHA-256."""


class DataChangedError(DataFileError):
    """The data a run was trained on is not the data found now (resume)."""


STRUCTURE_ONLY = "structure checked only"


def _places(name: str, path) -> tuple[list[Path], str | None]:
    """The directories to search, and what named them (None: the default locations)."""
    if path is not None:
        p = Path(path).expanduser()
        return ([p / name, p] if (p / name).is_dir() else [p]), f"the data directory given ({path})"
    if os.environ.get("VAETHEORY_DATA"):
        return [Path(os.environ["VAETHEORY_DATA"]).expanduser() / name], "VAETHEORY_DATA"
    # the system location is overridable so that a test can stand in for a machine without the packages
    system = Path(os.environ.get("VAETHEORY_SYSTEM_DATA", "/usr/share/datasets")) / name
    return [Path.home() / ".cache" / "vaetheory" / name, system], None


def search_dirs(name: str, path: str | os.PathLike | None = None) -> list[Path]:
    """The directories searched for data set ``name``, in order; Not in the paper.

    Only the named ones when a directory is named (``path``, else
    ``$VAETHEORY_DATA/<name>/``); else ``~/.cache/vaetheory/<name>/`` and
    ``/usr/share/datasets/<name>/`` (where Debian's dataset packages install,
    or ``$VAETHEORY_SYSTEM_DATA/<name>/`` when that variable is set).
    """
    choice("name", name, NAMES)
    return _places(name, path)[0]


def _file_in(d: Path, stem: str) -> Path | None:
    """The file of ``stem`` in ``d`` (plain or .gz); whatever stands in its place (a directory) is returned too."""
    candidates = (d / stem, d / (stem + ".gz"))
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    return next((c for c in candidates if c.exists()), None)


def _files_in(d: Path) -> dict[str, Path | None]:
    try:
        return {role: _file_in(d, stem) for role, stem in FILES.items()}
    except PermissionError:
        raise DataFileError(
            f"{d}: permission denied; make it readable (chmod a+rx {d}) or name another --data"
        ) from None


def find(name: str, path: str | os.PathLike | None = None) -> tuple[dict[str, Path], str | None]:
    """Role -> file for the first searched directory holding all four files, and a note on a fallback; Not in the paper.

    Raises :class:`DataNotFoundError` with every directory looked in and how to provide the files.
    """
    dirs, named = search_dirs(name, path), _places(name, path)[1]
    for i, d in enumerate(dirs):
        found = _files_in(d)
        if all(found.values()):
            note = None
            if i and not named:
                note = f"{name}: using {d} ({', '.join(str(x) for x in dirs[:i])} does not hold it)"
            return found, note  # type: ignore[return-value]
    looked = "\n".join(f"  {d}" + ("" if d.is_dir() else "  (does not exist)") for d in dirs)
    howto = _HOWTO.format(files=", ".join(FILES.values()), name=name, where=_SOURCE.get(name, ""))
    if named:
        howto = (
            f"The directory was named by {named}: put the four files there ({', '.join(FILES.values())}, "
            "each optionally .gz), or name another one "
            f"(without --data or VAETHEORY_DATA, ~/.cache/vaetheory/{name}/ and /usr/share/datasets/{name}/ "
            "are searched)."
        )
    raise DataNotFoundError(f"data set {name!r} not found; looked in:\n{looked}\n{howto}")


def locate(name: str, path: str | os.PathLike | None = None) -> dict[str, Path]:
    """Role -> file for the first searched directory holding all four files (:func:`find`); Not in the paper."""
    return find(name, path)[0]


@dataclass
class FileCheck:
    """What :func:`read_file` established about one file."""

    path: Path
    sha256: str  # of the uncompressed bytes
    status: str  # "verified", "verified (official .gz)", STRUCTURE_ONLY, "MISMATCH"


def read_file(name: str, path: Path, verify: bool = True) -> tuple[np.ndarray, FileCheck]:
    """Read, checksum and parse one IDX file (gzipped or not); Not in the paper.

    Raises :class:`ChecksumError` if ``verify`` and the uncompressed SHA-256 is
    known and differs.
    """
    path = Path(path)
    stem = path.name[:-3] if path.name.endswith(".gz") else path.name
    raw, data = read_bytes(path, stem)
    digest = hashlib.sha256(data).hexdigest()
    known = SHA256.get(name, {}).get(stem)
    known_gz = SHA256_GZ.get(name, {}).get(stem)
    if known is not None:
        status = "verified" if digest == known else "MISMATCH"
    elif known_gz is not None and data is not raw and hashlib.sha256(raw).hexdigest() == known_gz:
        status = "verified (official .gz)"
    else:
        status = STRUCTURE_ONLY
    if verify and status == "MISMATCH":
        raise ChecksumError(
            f"{path}: SHA-256 of the uncompressed bytes is {digest}, expected {known} "
            f"(the official {stem}); the file is corrupt or not the official one"
        )
    try:
        return parse_idx(data, str(path)), FileCheck(path, digest, status)
    except IdxError as exc:
        raise IdxError(f"{exc}; {REPLACE}") from None


@dataclass
class Dataset:
    """The decoded data set: images ``(N, m)`` uint8 with ``m = 784``, labels ``(N,)`` uint8."""

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    checks: dict[str, FileCheck] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what a run should say: a fallback, unverified files


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
    files, note = find(name, path)
    arrays, checks = {}, {}
    for role, p in files.items():
        arrays[role], checks[role] = read_file(name, p, verify)
    _check_pair(name, arrays["train_images"], arrays["train_labels"], "train")
    _check_pair(name, arrays["test_images"], arrays["test_labels"], "test")
    flat = {k: (v.reshape(len(v), -1) if k.endswith("images") else v) for k, v in arrays.items()}
    notes = [note] if note else []
    unverified = [c.path.name for c in checks.values() if c.status == STRUCTURE_ONLY]
    if unverified:
        notes.append(
            f"{name}: {', '.join(unverified)} {STRUCTURE_ONLY} (no published checksum of these copies; "
            "the official .gz files are verified)"
        )
    return Dataset(name, checks=checks, notes=notes, **flat)


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
    and labels (None: all).  Prints the data set's notes (a fallback location,
    files checked for structure only) on stderr.
    """
    ds = synthetic(cfg) if cfg.dataset == "synthetic" else load(cfg.dataset, cfg.data)
    for note in ds.notes:
        print(f"data: {note}", file=sys.stderr)
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
        except DataFileError as exc:
            c = FileCheck(p, "", f"BAD: {exc}")
        checks.append(c)
    return checks


def file_record(ds: Dataset) -> dict:
    """Role -> path, check and SHA-256 (uncompressed) of each file, for a run's ``run.json``; Not in the paper."""
    return {k: {"path": str(c.path), "check": c.status, "sha256": c.sha256} for k, c in ds.checks.items()}


def verify_same_data(run_info: dict, ds: Dataset) -> str:
    """Check that ``ds`` is the data a run was trained on (before a resume); Not in the paper.

    ``run_info`` is the run's ``run.json``; its ``data`` entry holds the data
    set's name, sizes and (runs that record them, :func:`file_record`) each
    file's SHA-256.  Raises :class:`DataChangedError` naming the file that
    differs and what to do; returns what was compared.
    """
    rec = run_info.get("data") or {}
    what = "start a new run (another --out), or restore the data the run was trained on"
    if rec.get("name", ds.name) != ds.name:
        raise DataChangedError(f"the run was trained on {rec['name']}, not {ds.name}; {what}")
    for split, images in (("train", ds.train_images), ("test", ds.test_images)):
        if rec.get(split) is not None and int(rec[split]) != len(images):
            raise DataChangedError(f"the run's {split} set had {rec[split]} images, now {len(images)}; {what}")
    compared = 0
    for role, f in (rec.get("files") or {}).items():
        c = ds.checks.get(role)
        if c is not None and f.get("sha256"):
            if f["sha256"] != c.sha256:
                raise DataChangedError(
                    f"{c.path}: SHA-256 {c.sha256[:16]}... is not that of the file the run was trained on "
                    f"({f.get('path')}: {f['sha256'][:16]}...); {what}"
                )
            compared += 1
    return f"same data: {compared} file checksums" + ("" if compared else " (none recorded; name and sizes)")


def verify_run_data(directory: str | os.PathLike, ds: Dataset) -> str:
    """:func:`verify_same_data` against ``directory/run.json`` (none: nothing to compare); Not in the paper."""
    try:
        info = json.loads((Path(directory) / "run.json").read_text())
    except (OSError, ValueError):
        info = {}
    return verify_same_data(info if isinstance(info, dict) else {}, ds)


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
        except (DataFileError, OSError) as exc:  # e.g. a directory without read permission: the next set still
            print(f"  BAD: {exc}")
            status = 2
            continue
        for c in checks:
            if c.status.startswith("BAD"):
                print(f"  {c.status}")
            else:
                print(f"  {c.status:24s} {c.path}  sha256(uncompressed)={c.sha256[:16]}...")
            if c.status == "MISMATCH" or c.status.startswith("BAD"):
                status = 2
    return status
