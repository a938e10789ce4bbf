"""Recorded results come from committed code: no file under validation/results names a "-dirty" git SHA.

The records made before the rule began are listed, once, in
``validation/results/dirty_before_2026-12-04.txt``; they keep their provenance.  A new record from an
uncommitted tree fails here: commit the code, then run the command again.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "validation" / "results"
LEGACY = RESULTS / "dirty_before_2026-12-04.txt"
DIRTY = re.compile(r'"git_sha":\s*"[0-9a-f]+-dirty"')


def dirty_records() -> set[str]:
    """Every file under validation/results whose text names a git SHA of an uncommitted tree."""
    found = set()
    for path in RESULTS.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".txt", ".md") and path != LEGACY:
            if DIRTY.search(path.read_text(errors="replace")):
                found.add(str(path.relative_to(ROOT)))
    return found


def legacy() -> set[str]:
    return {ln.strip() for ln in LEGACY.read_text().splitlines() if ln.strip() and not ln.startswith("#")}


def test_no_new_record_from_uncommitted_code():
    new = sorted(dirty_records() - legacy())
    assert not new, "results recorded from an uncommitted tree (commit, then rerun):\n" + "\n".join(new)


def test_the_legacy_list_names_files_that_exist():
    missing = sorted(p for p in legacy() if not (ROOT / p).exists())
    assert not missing, f"listed but not in the repository: {missing}"


def test_the_pattern_sees_a_dirty_sha_and_not_a_clean_one():
    assert DIRTY.search('{"git_sha": "98b1c76b6359b66c4bea4354d2923155b89a647d-dirty"}')
    assert not DIRTY.search('{"git_sha": "98b1c76b6359b66c4bea4354d2923155b89a647d"}')
