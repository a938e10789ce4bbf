"""The text reports of the experiments and validation scripts (mlpvae/experiments/report.py)."""

from __future__ import annotations

from mlpvae.experiments.report import emit


def test_a_report_is_printed_and_written_where_asked(tmp_path, capsys):
    out = tmp_path / "summary.txt"
    text = emit(["a: +0.1", "b: -0.2"], out)
    printed = capsys.readouterr().out
    assert out.read_text() == text == "a: +0.1\nb: -0.2\n"
    assert printed == text + f"wrote {out}\n"
    emit(["c"])
    assert capsys.readouterr().out == "c\n"
