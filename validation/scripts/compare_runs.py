"""Compare two trees of run folders: checkpoints bit for bit, metrics and JSON results equal but for timings.

    python validation/scripts/compare_runs.py BEFORE AFTER

Made for ``fixed_seed_runs.sh``: a change that keeps behaviour must print ``0 differences``.
Timings (``*seconds*``, ``*minutes*``, ``started``, ``finished``), the git SHA and paths under
the two roots are not compared; everything else in ``.npz``, ``.csv`` and ``.json`` files is.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np

SKIP = {"started", "finished", "git_sha", "run", "elapsed"}


def _timing(key: str) -> bool:
    return key in SKIP or "second" in key or "minute" in key


def _strip(o, roots: tuple[str, ...]):
    """The JSON value without timings, with the run roots replaced by a placeholder."""
    if isinstance(o, dict):
        return {k: _strip(v, roots) for k, v in o.items() if not _timing(k)}
    if isinstance(o, list):
        return [_strip(v, roots) for v in o]
    if isinstance(o, str):
        for r in roots:
            o = o.replace(r, "ROOT")
    return o


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return [{k: v for k, v in r.items() if not _timing(k)} for r in csv.DictReader(f)]


def compare(a: Path, b: Path) -> list[str]:
    """The differences between the run trees ``a`` and ``b``, one line each (empty: the same results)."""
    roots = (str(a), str(b))
    out = []
    for fa in sorted(p for p in a.rglob("*") if p.is_file()):
        rel = fa.relative_to(a)
        fb = b / rel
        if fa.suffix not in (".npz", ".csv", ".json"):
            continue
        if not fb.exists():
            out.append(f"missing in {b}: {rel}")
        elif fa.suffix == ".npz":
            za, zb = np.load(fa, allow_pickle=True), np.load(fb, allow_pickle=True)
            if sorted(za.files) != sorted(zb.files):
                out.append(f"arrays differ in name: {rel}")
                continue
            out += [
                f"array {k} differs: {rel}"
                for k in za.files
                if k != "__meta__" and not np.array_equal(za[k], zb[k], equal_nan=True)
            ]
        elif fa.suffix == ".csv":
            if _rows(fa) != _rows(fb):
                out.append(f"rows differ: {rel}")
        elif _strip(json.loads(fa.read_text()), roots) != _strip(json.loads(fb.read_text()), roots):
            out.append(f"values differ: {rel}")
    return out


def main(argv: list[str]) -> int:
    """Print the differences and their count; exit status 1 when there are any."""
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    a, b = map(Path, argv)
    diffs = compare(a, b)
    print("\n".join(diffs + [f"{sum(1 for _ in a.rglob('*.*'))} files under {a}; {len(diffs)} differences"]))
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
