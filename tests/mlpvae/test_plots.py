"""mlpvae.experiments.plots: each figure function writes a non-empty PNG of its stated
pixel size; images tile row-major."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from mlpvae.experiments import plots


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
    check(plots.training_curves({"bilbo": csv}, tmp_path / "curves.png"), (8, 5))


def test_image_grids_and_manifold(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.random((60, 784))
    check(plots.image_grid(x, tmp_path / "g.png", 6, 10), (6, 6))
    check(plots.reconstruction_grid(x, 1 - x, tmp_path / "r.png", count=30), (6, 6))
    calls = []

    def decode(z):
        calls.append(z.copy())
        return np.tile(1 / (1 + np.exp(-z[:, :1])), (1, 784))

    check(plots.manifold_grid(decode, tmp_path / "m.png", s=(2.0, 1.0), steps=5), (6, 6))
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
