"""`vaetheory verify`: runs, writes its outputs, selects claims, and fails loudly on an exact claim."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from vaetheory import claims as C
from vaetheory.claims import command, runner
from vaetheory.claims.registry import REGISTRY, SCOPES, in_scope
from vaetheory.cli import main

REQUIRED = {"id", "equations", "problem", "measured", "threshold", "holds", "kind"}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("verify")
    status = main(["verify", "--quick", "--no-progress", "--out", str(out)])
    return status, out


def test_verify_quick_exits_zero_and_writes_report_json_and_plots(quick_run, capsys):
    status, out = quick_run
    assert status == 0
    assert (out / "report.md").read_text().startswith("# vaetheory verify")
    for name in C.PLOTS:
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n", name


def test_claims_json_schema_and_verdicts_are_consistent(quick_run):
    _, out = quick_run
    rows = json.loads((out / "claims.json").read_text())
    assert rows and all(REQUIRED <= set(r) for r in rows)
    for r in rows:
        assert r["kind"] in ("exact", "approximate")
        assert isinstance(r["holds"], bool)
        assert r["holds"] == (r["measured"] <= r["threshold"])
        assert all(e.startswith("(") for e in r["equations"])
    ids = {r["id"] for r in rows}
    # Every claim family is measured by the default run.
    assert ids == set(C.CLAIM_IDS)
    # The exact claims all hold (the exit status says so too).
    assert all(r["holds"] for r in rows if r["kind"] == "exact")


def test_claims_option_selects_a_subset(capsys):
    status = main(["verify", "--quick", "--no-progress", "--claims", "eq4,linear"])
    text = capsys.readouterr().out
    assert status == 0
    lines = [
        l.split()[0]
        for l in text.splitlines()[2:]
        if l and not l.startswith(("wrote", "0", "1", "2", "3", "4", "5", "6", "7", "8", "9"))
    ]
    assert set(lines) == {"eq4", "linear"}


def test_unknown_claim_is_an_error(capsys):
    assert main(["verify", "--claims", "eq99", "--no-progress"]) == 2
    assert "unknown claims" in capsys.readouterr().err


def test_exit_status_names_failing_exact_claims(monkeypatch, capsys):
    bad = C.make_claim("solver", ["(2)"], "fake", 1.0, 1e-6, "exact", "d", "c")
    ok = C.make_claim("eq11", ["(11)"], "fake", 5.0, 0.1, "approximate", "d", "c")
    monkeypatch.setattr(runner, "run_all", lambda **kw: ([bad, ok], {}))
    args = argparse.Namespace(claims=None, seed=0, quick=True, no_progress=True, gtol=1e-6, out=None, threads=1)
    assert command.run(args) == 1
    err = capsys.readouterr().err
    assert "FAILED: solver (2) on fake" in err and "eq11" not in err


def test_verify_runs_blas_on_one_thread_unless_told_otherwise(monkeypatch):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    seen = []
    monkeypatch.setattr(runner, "run_all", lambda **kw: (seen.append(blas_threads()), ([], {}))[1])

    def blas_threads():
        return {i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"}

    before = blas_threads()
    assert main(["verify", "--no-progress"]) == 0
    assert main(["verify", "--no-progress", "--threads", "0"]) == 0
    assert seen == [{1}, before] and blas_threads() == before


def test_claim_verdict_is_measured_against_threshold():
    assert C.make_claim("x", ["(1)"], "p", 0.5, 1.0, "exact", "d", "c").holds
    assert not C.make_claim("x", ["(1)"], "p", 2.0, 1.0, "exact", "d", "c").holds
    assert not C.make_claim("x", ["(1)"], "p", np.nan, 1.0, "exact", "d", "c").holds


def test_every_claim_id_is_registered_and_runs_in_claim_id_order():
    assert {s.id for s in REGISTRY} == set(C.CLAIM_IDS)
    for scope in SCOPES:
        ids = [s.id for s in in_scope(scope, C.CLAIM_IDS)]
        assert ids == sorted(ids, key=C.CLAIM_IDS.index)
