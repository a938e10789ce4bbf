"""The project's plotting style (vaetheory.plotting) is applied, and the verify and log-det figures keep it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from vaetheory import plotting as S  # noqa: E402
from vaetheory.bench import logdet_report  # noqa: E402
from vaetheory.claims import plots as claim_plots  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def test_style_file_is_applied_by_pyplot():
    plt = S.pyplot()
    plt.rcParams["font.size"] = 5.0  # another module's setting
    plt = S.pyplot()
    assert plt.rcParams["font.size"] == 11.0
    colours = [c["color"].lower().lstrip("#") for c in plt.rcParams["axes.prop_cycle"]]
    assert colours[:3] == ["0072b2", "d55e00", "009e73"]  # Okabe-Ito, as the style file says
    fig, ax = plt.subplots()
    assert type(fig.get_layout_engine()).__name__ == "ConstrainedLayoutEngine"
    plt.close(fig)


def test_style_file_ships_with_the_package():
    assert S.STYLE.exists() and S.STYLE.parent == Path(S.__file__).parent
    text = (ROOT / "pyproject.toml").read_text()
    assert "*.mplstyle" in text  # package data, so an installed wheel has it


@pytest.mark.parametrize(
    "text, expected",
    [
        ("constant Sigma = I", "constant $\\Sigma$ = I"),
        ("BILBO sigma = 0.1", "BILBO $\\sigma$ = 0.1"),
        ("tau = 1/5, lambda = 4", "$\\tau$ = 1/5, $\\lambda$ = 4"),
        ("N(0, S^2) and s^2", "N(0, $S^2$) and $s^2$"),
        ("sigma^2 over mu", "$\\sigma^2$ over $\\mu$"),
        ("+-2 s", "\u00b12 s"),
        ("Sigmas, mu_k, tautology, lambdas", "Sigmas, mu_k, tautology, lambdas"),  # whole words only
        ("$\\Sigma$ already", "$\\Sigma$ already"),
    ],
)
def test_math_label_writes_the_paper_symbols(text, expected):
    assert S.math_label(text) == expected
    assert S.math_label(S.math_label(text)) == expected  # applying twice changes nothing


def test_layout_problems_sees_a_legend_over_the_data_and_missing_labels():
    plt = S.pyplot()
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot([0, 1], [0, 1], label="a line")
    ax.legend(loc="center")  # over the data
    found = S.layout_problems(fig)
    assert any("over the data" in p for p in found)
    assert any("no x label" in p for p in found) and any("no y label" in p for p in found)
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    S.legend_outside(ax)
    assert S.layout_problems(fig) == []
    ax.text(0.5, 0.5, "tiny", fontsize=5)
    assert any("tiny" in p for p in S.layout_problems(fig))
    plt.close(fig)


@pytest.mark.parametrize("where", ["right", "below"])
def test_legend_outside_keeps_the_legend_off_the_axes(where):
    plt = S.pyplot()
    fig, ax = plt.subplots(figsize=(5, 4))
    for k in range(6):
        ax.plot(np.arange(5), np.arange(5) * k, label=f"curve {k}")
    ax.set(xlabel="x", ylabel="y")
    S.legend_outside(ax, where=where)
    assert S.layout_problems(fig) == []
    with pytest.raises(ValueError, match="where"):
        S.legend_outside(ax, where="inside")
    plt.close(fig)


def test_integer_ticks_leave_no_fractional_epoch():
    plt = S.pyplot()
    fig, ax = plt.subplots()
    ax.plot([1, 2, 3], [0.0, 1.0, 0.5])
    fig.canvas.draw()
    assert any(t % 1 for t in ax.get_xticks())  # matplotlib's default puts ticks at 1.25, 1.5, ...
    S.integer_ticks(ax.xaxis)
    fig.canvas.draw()
    assert all(t % 1 == 0 for t in ax.get_xticks())
    plt.close(fig)


def test_distinct_style_draws_a_repeat_dashed_with_markers():
    first, second = S.distinct_style(0), S.distinct_style(1)
    assert first["linestyle"] == "-" and "marker" not in first
    assert second["linestyle"] != "-" and second["marker"] and second["zorder"] > 2


def test_digit_legend_names_each_label_present_in_its_colour():
    plt = S.pyplot()
    fig, ax = plt.subplots()
    labels = np.array([3, 1, 3, 7])
    leg = S.digit_legend(ax, labels, "digit")
    assert [t.get_text() for t in leg.get_texts()] == ["1", "3", "7"]
    assert leg.get_title().get_text() == "digit"
    np.testing.assert_allclose(leg.legend_handles[1].get_color(), plt.get_cmap("tab10")(3))
    np.testing.assert_allclose(S.label_colours(labels)[0], plt.get_cmap("tab10")(3))
    plt.close(fig)


def capture(monkeypatch, module):
    """Record each figure ``module`` saves, with its layout problems, before it is closed."""
    seen = {}
    original = module.save

    def save(fig, path):
        seen[Path(path).name] = S.layout_problems(fig)
        return original(fig, path)

    monkeypatch.setattr(module, "save", save)
    return seen


def verify_figure_data():
    rng = np.random.default_rng(0)
    lp = rng.normal(-5, 1, 50)
    return {
        "points": [
            {"name": "gauss [diagonal]", "log_px": lp, "elbo": lp - 0.1},
            {"name": "gauss [constant]", "log_px": lp, "elbo": lp - 0.2},
        ],
        "sweep": [
            {"curvature": k, "nonlinearity": 0.1 + k, "eq11": 0.5, "eq12": 0.2, "gap18": 0.1 * k, "eq16": 0.3}
            for k in (0.0, 0.4, 1.2)
        ],
        "penalty": [
            {"name": "gauss-m4", "predicted": 0.05, "measured": -0.001},
            {"name": "curve-m2", "predicted": 0.05, "measured": 0.04},
            {"name": "curve-k0.4-d0", "predicted": 0.2, "measured": 0.1},
        ],
        "collapse": [
            {"name": "gauss", "lam": np.array([4.0, 0.8, 0.4, 0.2]), "w2s2": np.array([3.0, 0, 0, 0])},
            {"name": "gauss nonparametric", "lam": np.array([4.0, 0.8, 0.4, 0.2]), "M_over_s2": np.array([0.8, 0.03])},
        ],
        "estimator": {"budgets": [40, 160, 640], "errors": [0.06, 0.02, 0.006]},
        "density": [
            {"N": N, "eq11": 1 / N, "eq12": 2 / N, "eq25": 3 / N, "gap18": 0.1 / N, "eq16": 0.2 / N} for N in (24, 48)
        ],
    }


def test_every_verify_figure_is_labelled_with_legends_outside(tmp_path, monkeypatch):
    seen = capture(monkeypatch, claim_plots)
    written = claim_plots.write_plots(verify_figure_data(), tmp_path)
    assert written == claim_plots.PLOTS
    assert set(seen) == set(claim_plots.PLOTS)
    assert {name: p for name, p in seen.items() if p} == {}


def test_collapse_panels_count_directions_in_whole_numbers(tmp_path, monkeypatch):
    ticks = {}
    original = claim_plots.save

    def save(fig, path):
        ticks[Path(path).name] = [list(ax.get_xticks()) for ax in fig.axes]
        return original(fig, path)

    monkeypatch.setattr(claim_plots, "save", save)
    claim_plots.collapse(verify_figure_data()["collapse"], tmp_path / "collapse.png")
    assert ticks["collapse.png"][0] == [1, 2, 3, 4]


def test_logdet_bench_figure_from_the_recorded_json(tmp_path, monkeypatch):
    seen = capture(monkeypatch, logdet_report.P)
    res = json.loads((ROOT / "validation/results/logdet/bench_n576.json").read_text())
    logdet_report.plot(res, logdet_report.summarise(res), tmp_path / "bench.png")
    assert seen == {"bench.png": []}
    assert (tmp_path / "bench.png").stat().st_size > 10_000


def test_decade_labels_drop_colliding_minor_labels_on_a_log_axis():
    plt = S.pyplot()
    fig, ax = plt.subplots()
    ax.loglog([40, 160, 640], [1.0, 0.5, 0.25])
    fig.canvas.draw()
    minor = [t.get_text() for t in ax.xaxis.get_minorticklabels() if t.get_text()]
    assert minor  # matplotlib labels minor ticks on an axis spanning little more than a decade
    S.decade_labels(fig)
    fig.canvas.draw()
    assert [t.get_text() for t in ax.xaxis.get_minorticklabels() if t.get_text()] == []
    assert [t.get_text() for t in ax.xaxis.get_majorticklabels() if t.get_text()]  # the decade stays labelled
    plt.close(fig)
