"""Formatting shared by the experiments' reports: signed differences, mean and spread over seeds, natural sort keys,
and a text report printed and kept."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np


def signed(v) -> str:
    """``v`` as ``+1.23`` (``n/a`` for ``None``), the way the reports print differences."""
    return "n/a" if v is None else f"{v:+.2f}"


def mean_std(values: list) -> dict:
    """Mean (None for no values), sample standard deviation (None for fewer than two), count and the values."""
    v = np.asarray(values, dtype=float)
    return {
        "mean": float(v.mean()) if len(v) else None,
        "std": float(v.std(ddof=1)) if len(v) > 1 else None,
        "n": int(len(v)),
        "values": v.tolist(),
    }


def natural_key(key: str) -> list:
    """Sort key that orders the numbers inside ``key`` by value (n=2 before n=100, lambda 4 before 16)."""
    return [(0, float(t), "") if t[0].isdigit() else (1, 0.0, t) for t in re.findall(r"\d+(?:\.\d+)?|\D+", key)]


def emit(lines: list[str], out: str | Path | None = None) -> str:
    """Print a report's lines and, given ``out``, write them there too and say so; returns the text."""
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if out:
        Path(out).write_text(text)
        print(f"wrote {out}")
    return text


def write_json(record: dict, out: str | Path | None) -> None:
    """Write ``record`` as indented JSON to ``out`` when given, and say so (Not in the paper)."""
    if out:
        Path(out).write_text(json.dumps(record, indent=1))
        print(f"wrote {out}")


def interval_text(x: dict) -> str:
    """A comparison's mean with its interval, ``+0.123 [-0.045, +0.290]`` (nats)."""
    return f"{x['mean']:+.3f} [{x['lo']:+.3f}, {x['hi']:+.3f}]"


def comparison_text(comparisons: dict, name: str) -> str:
    """:func:`interval_text` of ``comparisons[name]``, or why there is none (an Eq. (18) defined on no image)."""
    if name not in comparisons:
        return "no image (the precision is indefinite on every one)"
    return interval_text(comparisons[name])
