"""mlpvae.experiments.plots and panels: each figure function writes a non-empty PNG of its stated
pixel size in the project's style (labelled axes, legends off the data); images tile row-major;
identical curves are drawn apart and said to be identical."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from mlpvae.experiments import plots
from mlpvae.experiments.figure_schema import load_figure, recorded_root
from mlpvae.experiments.panels import plot_curves
from vaetheory import plotting

ROOT = Path(__file__).resolve().parents[2]


def png_size(path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", head[16:24])


@pytest.fixture
def latents():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 500)
    mu = rng.standard_normal((500, 2)) + labels[:, None] * 0.3
    var = 0.1 + 0.05 * mu**2
    return mu, var, labels


def check(path, size):
    assert path.stat().st_size > 1000
    assert png_size(path) == (int(size[0] * plots.DPI), int(size[1] * plots.DPI))


def test_latent_scatter_and_variance_plots(tmp_path, latents):
    mu, var, labels = latents
    check(plots.latent_scatter(mu, labels, tmp_path / "a.png", size=(5, 4)), (5, 4))
    check(plots.variance_vs_mean(mu, var, tmp_path / "b.png", s2=[1.0, 2.0]), (8, 8))
    check(plots.variance_vs_mean(mu, np.array([0.5, 0.5]), tmp_path / "c.png"), (8, 8))


def test_training_curves_from_metrics_csv(tmp_path):
    csv = tmp_path / "metrics.csv"
    csv.write_text(
        "epoch,train_objective,test_elbo_s2_train,test_elbo_s2_test,seconds,status\n"
        "1,-200.5,-190.0,-189.0,1.0,ok\n2,-180.0,-175.0,-174.5,1.0,ok\n3,-170.0,,,1.0,ok\n"
    )
    m = plots.read_metrics(csv)
    assert m["epoch"].tolist() == [1, 2, 3] and np.isnan(m["test_elbo_s2_test"][2]) and "status" not in m
    check(plots.training_curves({"bilbo": csv}, tmp_path / "curves.png"), (10, 5))


def test_image_grids_and_manifold(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.random((60, 784))
    check(plots.image_grid(x, tmp_path / "g.png", 6, 10), (6, 6))
    check(plots.reconstruction_grid(x, 1 - x, tmp_path / "r.png", count=30), (6, 6))
    calls = []

    def decode(z):
        calls.append(z.copy())
        return np.tile(1 / (1 + np.exp(-z[:, :1])), (1, 784))

    check(plots.manifold_grid(decode, tmp_path / "m.png", s=(2.0, 1.0), steps=5), (6, 6.4))
    z = calls[0]
    assert z.shape == (25, 2) and z[:, 0].max() == pytest.approx(4.0) and z[0, 1] == pytest.approx(2.0)


def test_tile_places_images_row_major_clipped_and_leaves_empty_cells_at_one():
    images = np.arange(3 * 4, dtype=float).reshape(3, 4) / 10 - 0.5  # three 2 x 2 images, some outside [0, 1]
    canvas = plots.tile(images, 2, 2)
    assert canvas.shape == (4, 4)
    np.testing.assert_array_equal(canvas[:2, 2:], np.clip(images[1].reshape(2, 2), 0, 1))
    np.testing.assert_array_equal(canvas[2:, :2], np.clip(images[2].reshape(2, 2), 0, 1))
    np.testing.assert_array_equal(canvas[2:, 2:], np.ones((2, 2)))
    with pytest.raises(ValueError, match="square"):
        plots.tile(np.zeros((1, 5)), 1, 1)


@pytest.fixture
def styled(monkeypatch):
    """Each figure the plots module saves, as its layout problems and its axes, before it is closed."""
    seen = {}
    original = plotting.save

    def save(fig, path):
        plotting.finish(fig)
        seen[Path(path).name] = (plotting.layout_problems(fig), fig.axes, fig.legends)
        return original(fig, path)

    monkeypatch.setattr(plots, "save", save)
    return seen


def test_latent_scatter_labels_its_axes_and_names_every_digit(tmp_path, latents, styled):
    mu, var, labels = latents
    plots.latent_scatter(mu, labels, tmp_path / "means.png", "posterior means")
    plots.latent_scatter(mu, labels, tmp_path / "z.png", "one sample", latent="z", name="class")
    problems, axes, _ = styled["means.png"]
    assert problems == []
    assert (axes[0].get_xlabel(), axes[0].get_ylabel()) == ("$\\mu_1$", "$\\mu_2$")
    leg = axes[0].get_legend()
    assert leg.get_title().get_text() == "digit"
    assert [t.get_text() for t in leg.get_texts()] == [str(k) for k in range(10)]
    problems, axes, _ = styled["z.png"]
    assert problems == [] and axes[0].get_xlabel() == "$z_1$"
    assert axes[0].get_legend().get_title().get_text() == "class"


def test_variance_panels_define_their_scale(tmp_path, latents, styled):
    mu, var, labels = latents
    plots.variance_vs_mean(mu, var, tmp_path / "v.png", s2=[1.0, 2.0], title="Fig. 3")
    problems, axes, _ = styled["v.png"]
    assert problems == []
    assert axes[0].get_xlabel() == "posterior mean $\\mu_1 / s_1$"
    assert axes[0].get_ylabel() == "posterior variance $\\sigma^2_1 / s^2_1$"
    assert "prior standard deviation" in axes[0].figure.get_suptitle()


def test_identical_training_curves_are_drawn_apart_and_said_to_be(tmp_path, styled):
    rows = "epoch,train_objective,test_elbo\n" + "".join(f"{e},{-200 + e},{-190 + e}\n" for e in (1, 2, 3))
    for name in ("a", "b"):
        (tmp_path / f"{name}.csv").write_text(rows)
    plots.training_curves({"constant Sigma": tmp_path / "a.csv", "BILBO": tmp_path / "b.csv"}, tmp_path / "c.png")
    problems, axes, _ = styled["c.png"]
    assert problems == []
    lines = [ln for ln in axes[0].lines if "test ELBO" in ln.get_label()]
    assert lines[0].get_linestyle() == "-" and lines[1].get_linestyle() != "-" and lines[1].get_marker() != "None"
    assert "identical to constant $\\Sigma$" in lines[1].get_label()
    assert all(t % 1 == 0 for t in axes[0].get_xticks())  # epochs are whole numbers


def test_manifold_axes_are_latent_coordinates_in_prior_units(tmp_path, styled):
    plots.manifold_grid(lambda z: np.full((len(z), 784), 0.5), tmp_path / "m.png", steps=5, span=2.0)
    problems, axes, _ = styled["m.png"]
    assert problems == []
    assert (axes[0].get_xlabel(), axes[0].get_ylabel()) == ("$z_1 / s_1$", "$z_2 / s_2$")
    lo, hi = axes[0].get_xlim()
    assert lo < -2 and hi > 2  # the outer image centres sit at -2 and +2 prior standard deviations


def test_recorded_fig4a_draws_constant_and_bilbo_apart(tmp_path, monkeypatch):
    """The recorded Fig. 4a runs (metrics.csv is committed): constant Sigma and BILBO train identically."""
    fig = load_figure(ROOT / "validation/figures/fig4_2d.toml")
    root = recorded_root(fig)
    if not (root / fig.name / "constant" / "seed0" / "metrics.csv").exists():
        pytest.skip("the recorded Fig. 4 runs are not in this checkout")
    seen = {}
    original = plotting.save

    def save(f, path):
        plotting.finish(f)
        seen["problems"] = plotting.layout_problems(f)
        seen["labels"] = [ln.get_label() for ln in f.axes[0].lines]
        seen["styles"] = [ln.get_linestyle() for ln in f.axes[0].lines]
        return original(f, path)

    monkeypatch.setattr(plots, "save", save)
    spec = next(p for p in fig.plots if p["kind"] == "curves")
    plot_curves(fig, spec, root, tmp_path / "fig4a.png", None)
    assert seen["problems"] == []
    assert sum("identical" in label for label in seen["labels"]) == 1
    assert "BILBO" in next(label for label in seen["labels"] if "identical" in label)
    assert seen["styles"][:2] == ["-", "-"] and seen["styles"][2] != "-"


def test_same_parameters_means_bit_for_bit():
    from mlpvae.experiments.panels import same_parameters

    rng = np.random.default_rng(0)
    a = {"W1": rng.standard_normal((3, 2)).astype(np.float32), "b1": np.zeros(2, np.float32)}
    b = {k: v.copy() for k, v in a.items()}
    assert same_parameters(a, b)
    b["W1"][0, 0] = np.nextafter(b["W1"][0, 0], np.float32(np.inf))  # one ulp
    assert not same_parameters(a, b)
    assert not same_parameters(a, {**a, "b1": -a["b1"]})  # -0.0 equals 0.0 but is other bits
    assert not same_parameters(a, {**a, "b1": a["b1"].astype(np.float64)})
    assert not same_parameters(a, {"W1": a["W1"]})
    assert not same_parameters(a, {**a, "W1": a["W1"].reshape(2, 3)})


@pytest.mark.parametrize("width_in", [3.0, 7.68])
def test_titles_are_refitted_inside_the_figure_and_beside_its_legend(width_in):
    # the Fig. 16 title overflowed a 7.68-inch figure when wrapped by a character count, and the learned-T
    # scatter's title ran under its figure legend; after plotting.finish (what save does) neither may happen
    plt = plotting.pyplot()
    fig, ax = plt.subplots(figsize=(width_in, 3.0))
    ax.scatter([0, 1], [0, 1], c=[0, 1])
    ax.set_xlabel("x (nats)")
    ax.set_ylabel("y (nats)")
    title = "Fig. 16 on Fashion-MNIST: inputs and reconstructions, standard ELBO vs BILBO (Sigma = I/100)"
    plotting.set_title(ax, "2-D, learned T (no constraint), seed 0, posterior means of the test images")
    plotting.digit_legend(fig, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    t = plotting.set_suptitle(fig, title)
    plotting.finish(fig)
    assert plotting.layout_problems(fig) == []
    text = fig.get_suptitle()
    assert r"$\Sigma$" in text and text.replace("\n", " ").replace(r"$\Sigma$", "Sigma") == title
    assert len(fig.texts) == 1 and t in fig.texts  # the measuring probe is gone
    plt.close(fig)


def test_layout_problems_sees_a_title_past_the_edge_or_under_a_legend():
    plt = plotting.pyplot()
    fig, ax = plt.subplots(figsize=(3.0, 3.0))
    ax.plot([0, 1], [0, 1])
    ax.set_xlabel("x (nats)")
    ax.set_ylabel("y (nats)")
    fig.suptitle("a title far too long for a figure three inches wide, on one line, as before")
    plotting.digit_legend(fig, [0, 1, 2])
    found = plotting.layout_problems(fig)
    assert any("past the figure's edge" in p for p in found) and any("under legend" in p for p in found)
    plt.close(fig)


def test_analysis_evidence_shows_the_tail_of_the_eq22_terms(tmp_path, styled):
    # most terms are small and a few are tens of nats: the count axis is logarithmic so the tail shows
    rng = np.random.default_rng(0)
    n = 400
    lp = -100 + rng.standard_normal(n)
    terms = np.concatenate([rng.exponential(0.3, n - 4), [20.0, 40.0, 60.0, 100.0]])
    res = {"iwae_k": 5000, "cv2_penalty_eq22": float(terms.mean())}
    plots.analysis_evidence(lp, lp - 3, rng.exponential(2, n), rng.exponential(0.3, n), terms, res, tmp_path / "e.png")
    problems, axes, _ = styled["e.png"]
    assert problems == []
    assert axes[2].get_yscale() == "log" and "log scale" in axes[2].get_ylabel()
    assert png_size(tmp_path / "e.png") == (16 * plotting.DPI, 6 * plotting.DPI)
