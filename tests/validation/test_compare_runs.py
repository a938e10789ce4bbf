"""validation/scripts/compare_runs.py: what a behaviour-preserving change must leave equal, and what it flags."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("compare_runs", ROOT / "validation/scripts/compare_runs.py")
compare_runs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(compare_runs)


def _tree(root: Path, w: np.ndarray, elbo: str, seconds: str, run_json: dict) -> Path:
    (root / "run").mkdir(parents=True)
    np.savez(root / "run" / "checkpoint.npz", W=w)
    (root / "run" / "metrics.csv").write_text(f"epoch,test_elbo,seconds\n1,{elbo},{seconds}\n")
    (root / "run" / "run.json").write_text(json.dumps(run_json))
    return root


def test_timings_sha_and_roots_are_not_differences(tmp_path):
    w = np.arange(6.0).reshape(2, 3)
    a = _tree(
        tmp_path / "a",
        w,
        "-100.5",
        "0.1",
        {"out": str(tmp_path / "a" / "run"), "git_sha": "x", "wall_seconds": 1.0, "status": "completed"},
    )
    b = _tree(
        tmp_path / "b",
        w.copy(),
        "-100.5",
        "0.7",
        {"out": str(tmp_path / "b" / "run"), "git_sha": "y", "wall_seconds": 2.0, "status": "completed"},
    )
    assert compare_runs.compare(a, b) == []
    assert compare_runs.main([str(a), str(b)]) == 0


def test_one_ulp_in_a_checkpoint_a_metric_or_a_result_is_a_difference(tmp_path):
    w = np.arange(6.0).reshape(2, 3)
    ulp = w.copy()
    ulp[1, 2] = np.nextafter(ulp[1, 2], np.inf)
    base = {"status": "completed", "iwae_log_px": -90.0}
    a = _tree(tmp_path / "a", w, "-100.5", "0.1", base)
    b = _tree(tmp_path / "b", ulp, "-100.6", "0.1", base | {"iwae_log_px": -90.000001})
    diffs = compare_runs.compare(a, b)
    assert len(diffs) == 3
    assert any("array W" in d for d in diffs) and any("rows" in d for d in diffs) and any("values" in d for d in diffs)
    assert compare_runs.main([str(a), str(b)]) == 1
    (b / "run" / "run.json").unlink()
    assert any("missing" in d for d in compare_runs.compare(a, b))
