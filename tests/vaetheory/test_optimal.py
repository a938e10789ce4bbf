"""Sec. 4.1: the optimal prior Eq. (4), the optimal decoder Eq. (6), its Jacobian Eqs. (7)-(8)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import CUPY, TOL, needs_gpu
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import multivariate_normal
from strategies import SEEDS, vae_cases

from vaetheory import optimal as o
from vaetheory import optimal_gemm as og


def _full(var):
    return var if var.ndim == 3 else np.stack([np.diag(d) for d in var])


@given(vae_cases())
def test_optimal_prior_is_mean_of_second_moments_eq4(case):
    mu, var = case["mu"], case["var"]
    want = sum(S + np.outer(m, m) for S, m in zip(_full(var), mu)) / len(mu)
    np.testing.assert_allclose(o.optimal_prior(mu, var, full=True), want, rtol=TOL["identity_f64"])
    np.testing.assert_allclose(o.optimal_prior(mu, var), np.diag(want), rtol=TOL["identity_f64"])
    np.testing.assert_allclose(
        o.optimal_prior(mu, _full(var)[:1]), np.diag(_full(var)[0]) + np.mean(mu**2, 0), rtol=TOL["identity_f64"]
    )


def _query(case, seed, spread=3.0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((7, case["n"])) * spread


@given(vae_cases(), SEEDS)
def test_optimal_decoder_matches_the_density_ratio_eq6(case, seed):
    mu, var, x = case["mu"], case["var"], case["x"]
    z = _query(case, seed)
    logd = np.stack([multivariate_normal(m, S).logpdf(z).reshape(-1) for m, S in zip(mu, _full(var))], axis=1)
    dens = np.exp(logd - logd.max(axis=1, keepdims=True))  # the ratio is unchanged by a common factor
    want = dens @ x / dens.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(
        o.optimal_decoder(z, mu, var, x), want, rtol=TOL["identity_f64"], atol=TOL["identity_f64"] * np.abs(x).max()
    )
    lw = o.log_weights(z, mu, var)
    ok = dens > 1e-300  # compare the log weights that are representable
    np.testing.assert_allclose(
        (logd - logd.max(1, keepdims=True) - np.log(dens.sum(1, keepdims=True)))[ok],
        lw[ok],
        rtol=TOL["identity_f64"],
        atol=TOL["identity_f64"],
    )
    np.testing.assert_allclose(np.logaddexp.reduce(lw, axis=1), 0.0, atol=TOL["identity_f64"])


def _fd_jacobian(z, mu, var, x, h):
    """Central differences of Eq. (6), (M, m, n), with the representable step."""
    cols = []
    for k in range(z.shape[1]):
        zp, zm = z.copy(), z.copy()
        zp[:, k] += h
        zm[:, k] -= h
        step = (zp[:, k] - zm[:, k])[:, None]
        cols.append((o.optimal_decoder(zp, mu, var, x) - o.optimal_decoder(zm, mu, var, x)) / step)
    return np.stack(cols, axis=-1)


def _length_scale(z, mu, var):
    """Scale over which Eq. (6) changes at z: the smallest posterior sd, and 1/|Sigma_i^-1 (z - mu_i)|
    over the posteriors that carry weight there."""
    S = _full(var)
    sd_min = np.sqrt(np.linalg.eigvalsh(S).min())
    w = np.exp(o.log_weights(z, mu, var))
    g = np.linalg.norm(np.einsum("nij,knj->kni", np.linalg.inv(S), z[:, None, :] - mu[None]), axis=-1)
    g_max = np.max(np.where(w > 1e-12, g, 0.0), axis=1)
    return np.minimum(sd_min, 1.0 / np.maximum(g_max, 1e-300))


@given(vae_cases(), SEEDS, st.sampled_from([1.0, 3.0, 30.0]), st.sampled_from([1.0, 1e-3, 1e-8]))
def test_decoder_jacobian_matches_finite_difference_eq7(case, seed, spread, shrink):
    mu, var, x = case["mu"], case["var"] * shrink, case["x"]
    z = _query(case, seed, spread)
    nu, J = o.optimal_decoder_jacobian(z, mu, var, x)
    np.testing.assert_allclose(
        nu, o.optimal_decoder(z, mu, var, x), rtol=TOL["identity_f64"], atol=TOL["identity_f64"] * np.abs(x).max()
    )
    ell = _length_scale(z, mu, var)
    assert np.all(np.isfinite(J))
    for k in range(len(z)):
        zk = z[k : k + 1]
        if 1e-5 * ell[k] < 64 * np.spacing(np.abs(zk).max()):
            continue  # Eq. (6) changes on a scale float64 cannot resolve at this |z|: finiteness only
        fd = _fd_jacobian(zk, mu, var, x, 1e-5 * ell[k])
        # J's natural size is |x| / length scale; FD truncation and round-off are ~1e-9 of that
        assert np.abs(J[k] - fd[0]).max() <= TOL["fd_grad_f64"] * np.abs(x).max() / ell[k]


def test_decoder_and_jacobian_known_answer_two_posteriors_eq6_eq7():
    # mu = -1, +1 with equal variance s: nu(z) = (x1 + x2)/2 + (x2 - x1)/2 tanh(z / s),
    # J(z) = (x2 - x1) / (2 s) sech^2(z / s); far away it saturates, never NaN.
    s = 0.3
    mu, var, x = np.array([[-1.0], [1.0]]), np.array([[s], [s]]), np.array([[2.0, -1.0], [5.0, 3.0]])
    z = np.array([[-1e6], [-40.0], [-0.2], [0.0], [0.7], [40.0], [1e6]])
    t = np.tanh(z / s)
    nu_want = (x[0] + x[1]) / 2 + (x[1] - x[0]) / 2 * t
    J_want = ((x[1] - x[0]) / (2 * s))[None, :, None] * (1 - t**2)[:, :, None]
    nu, J = o.optimal_decoder_jacobian(z, mu, var, x)
    np.testing.assert_allclose(nu, nu_want, rtol=TOL["known_answer_f64"], atol=TOL["known_answer_f64"])
    np.testing.assert_allclose(J, J_want, rtol=TOL["known_answer_f64"], atol=TOL["known_answer_f64"])


@given(vae_cases(), SEEDS, st.sampled_from([1e-12, 1e-30, 1e-100]), st.sampled_from([1e2, 1e4, 1e8]))
def test_decoder_is_finite_for_far_points_and_tiny_variances_eq6_eq7(case, seed, tiny, far):
    mu, x = case["mu"], case["x"]
    var = case["var"] * tiny
    z = _query(case, seed) * far
    nu, J = o.optimal_decoder_jacobian(z, mu, var, x)
    assert np.all(np.isfinite(nu)) and np.all(np.isfinite(J))
    # the nearest posterior (largest log density) takes the whole weight: nu is its x, J = 0
    nearest = np.argmax(o.log_weights(z, mu, var), axis=1)
    lw = np.sort(o.log_weights(z, mu, var), axis=1)
    clear = (lw[:, -1] - (lw[:, -2] if lw.shape[1] > 1 else -np.inf)) > 800  # exp(-800) underflows
    np.testing.assert_array_equal(nu[clear], x[nearest[clear]])
    np.testing.assert_array_equal(J[clear], 0.0)


@given(vae_cases(), SEEDS)
def test_decoder_chunking_does_not_change_results_eq6_eq7(case, seed):
    mu, var, x = case["mu"], case["var"], case["x"]
    z = _query(case, seed)
    nu, J = o.optimal_decoder_jacobian(z, mu, var, x)
    nu1, J1 = o.optimal_decoder_jacobian(z, mu, var, x, chunk=1)
    np.testing.assert_allclose(nu1, nu, rtol=TOL["known_answer_f64"], atol=TOL["known_answer_f64"])
    np.testing.assert_allclose(J1, J, rtol=TOL["known_answer_f64"], atol=TOL["known_answer_f64"])
    np.testing.assert_allclose(
        o.optimal_decoder(z, mu, var, x, chunk=2), nu, rtol=TOL["known_answer_f64"], atol=TOL["known_answer_f64"]
    )


def test_single_posterior_decodes_its_example_everywhere_eq6_eq7():
    nu, J = o.optimal_decoder_jacobian(np.array([[0.0, 0.0], [1e3, -5.0]]), [[0.5, 0.5]], [1.0, 2.0], [[3.0, 4.0, 5.0]])
    np.testing.assert_array_equal(nu, [[3.0, 4.0, 5.0]] * 2)
    np.testing.assert_array_equal(J, 0.0)


def test_decoder_jacobian_at_means_eq8():
    # Eq. (8): J = dnu/dz at z = mu; a full Sigma shared as (1, n, n)
    rng = np.random.default_rng(3)
    mu, x = rng.standard_normal((4, 2)), rng.standard_normal((4, 3))
    var = np.array([[[0.5, 0.2], [0.2, 0.4]]])
    _, J = o.optimal_decoder_jacobian(mu, mu, var, x)
    fd = _fd_jacobian(mu, mu, var, x, 1e-6)
    np.testing.assert_allclose(J, fd, atol=TOL["fd_grad_f64"] * np.abs(x).max())
    assert J.shape == (4, 3, 2)
    with pytest.raises(ValueError, match="chunk"):
        o.optimal_decoder_jacobian(mu, mu, var, x, chunk=0)


# --- the GEMM kernel for diagonal Sigma (expanded square, chunked over M; NumPy or CuPy) ---
def _as_full(var):
    return np.stack([np.diag(d) for d in var])  # the same Sigma through the direct (full-matrix) path


@given(vae_cases(full_var=False), SEEDS, st.sampled_from([1.0, 30.0, 1e4]), st.sampled_from([1.0, 1e-3, 1e-8]))
def test_gemm_kernel_matches_the_direct_form_eq6_eq7(case, seed, spread, shrink):
    mu, var, x = case["mu"], case["var"] * shrink, case["x"]
    z = _query(case, seed, spread)
    nu, J = o.optimal_decoder_jacobian(z, mu, var, x, chunk=3)
    nu_ref, J_ref = o.optimal_decoder_jacobian(z, mu, _as_full(var), x)
    xmax = np.abs(x).max()
    np.testing.assert_allclose(nu, nu_ref, rtol=TOL["identity_f64"], atol=TOL["identity_f64"] * xmax)
    scale = xmax / _length_scale(z, mu, var)[:, None, None]  # J's natural size at each z
    assert np.all(np.abs(J - J_ref) <= TOL["identity_f64"] * scale)
    lw, lw_ref = o.log_weights(z, mu, var), o.log_weights(z, mu, _as_full(var))
    ok = lw_ref > -700  # weights that are representable
    np.testing.assert_allclose(lw[ok], lw_ref[ok], rtol=TOL["identity_f64"], atol=TOL["identity_f64"])


@given(vae_cases(full_var=False), SEEDS, st.sampled_from([1.0, 30.0]), st.sampled_from([1.0, 1e-3]))
def test_gemm_path_matches_the_float64_reference_directly_eq6_eq7(case, seed, spread, shrink):
    # optimal_gemm (the fast path) against optimal's *_reference functions on the same diagonal Sigma
    mu, var, x = case["mu"], case["var"] * shrink, case["x"]
    z = _query(case, seed, spread)
    nu, J = og.gemm_kernel(*og.gemm_inputs(z, mu, var, x, 3), "jac")
    nu_ref, J_ref = o.optimal_decoder_jacobian_reference(z, mu, var, x)
    xmax = np.abs(x).max()
    np.testing.assert_allclose(nu, nu_ref, rtol=TOL["identity_f64"], atol=TOL["identity_f64"] * xmax)
    np.testing.assert_allclose(
        og.gemm_kernel(*og.gemm_inputs(z, mu, var, x, None), "nu"),
        o.optimal_decoder_reference(z, mu, var, x),
        rtol=TOL["identity_f64"],
        atol=TOL["identity_f64"] * xmax,
    )
    scale = xmax / _length_scale(z, mu, var)[:, None, None]
    assert np.all(np.abs(J - J_ref) <= TOL["identity_f64"] * scale)
    lw, lw_ref = og.gemm_kernel(*og.gemm_inputs(z, mu, var, None, None), "logw"), o.log_weights_reference(z, mu, var)
    ok = lw_ref > -700
    np.testing.assert_allclose(lw[ok], lw_ref[ok], rtol=TOL["identity_f64"], atol=TOL["identity_f64"])
    assert og.gemm_inputs(z, mu, _as_full(var), x, None) is None  # full Sigma: the reference path


def test_gemm_kernel_float32_in_float32_out_eq6_eq7():
    rng = np.random.default_rng(5)
    mu, var = rng.standard_normal((300, 2)), np.exp(rng.uniform(-4, 0, (300, 2)))
    x, z = rng.uniform(0, 1, (300, 9)), rng.standard_normal((40, 2)) * 1.5
    nu, J = o.optimal_decoder_jacobian(z, mu, var, x)
    nu32, J32 = o.optimal_decoder_jacobian(*(a.astype(np.float32) for a in (z, mu, var, x)), chunk=7)
    assert nu32.dtype == np.float32 and J32.dtype == np.float32
    assert o.optimal_decoder(z, mu, var, x.astype(np.float32)).dtype == np.float64  # any float64 input: float64
    np.testing.assert_allclose(nu32, nu, rtol=0, atol=TOL["f32_vs_f64"])
    np.testing.assert_allclose(J32, J, rtol=0, atol=TOL["f32_vs_f64"] * np.abs(J).max())


def test_optimal_bench_reports_flop_rates_and_memory_eq6_eq7():
    from vaetheory.bench import optimal as optimal_bench

    res = optimal_bench.bench("cpu", ("float64",), N=200, M=30, m=16, n=2, gemm_size=64, repeat=1)
    r = res["results"]["float64"]
    assert r["decoder_gflops"] > 0 and r["jacobian_gflops"] > 0 and r["jacobian_peak_bytes"] > 0
    want = r["decoder_gflops"] / r["gemm_gflops"]
    assert r["decoder_fraction_of_gemm"] == pytest.approx(want, rel=TOL["known_answer_f64"])


@needs_gpu
@pytest.mark.parametrize("fused", ["1", "0"])
@pytest.mark.parametrize("dtype, tol", [(np.float64, "identity_f64"), (np.float32, "f32_vs_f64")])
def test_gemm_kernel_cupy_matches_numpy_eq6_eq7(dtype, tol, fused, monkeypatch):
    # float32 on the GPU exercises the fused exp kernel's float64 -> float32 output
    monkeypatch.setenv("VAETHEORY_FUSED", fused)
    cp = CUPY
    rng = np.random.default_rng(6)
    mu, var = rng.standard_normal((500, 2)), np.exp(rng.uniform(-4, 0, (500, 2)))
    x, z = rng.uniform(0, 1, (500, 9)), rng.standard_normal((60, 2)) * 1.5
    nu, J = o.optimal_decoder_jacobian(z, mu, var, x)
    nug, Jg = o.optimal_decoder_jacobian(*(cp.asarray(a, dtype=dtype) for a in (z, mu, var, x)), chunk=16)
    assert isinstance(Jg, cp.ndarray) and Jg.dtype == dtype and nug.dtype == dtype
    np.testing.assert_allclose(cp.asnumpy(nug), nu, rtol=0, atol=TOL[tol])
    np.testing.assert_allclose(cp.asnumpy(Jg), J, rtol=0, atol=TOL[tol] * np.abs(J).max())


def test_decoder_keeps_accuracy_where_the_expanded_square_cancels_eq6():
    # Two close posteriors (Delta = 2e-4, Sigma = 1e-8) far from the centre of the set (a third at -1000):
    # |z - c|^2 / Sigma ~ 4e13, so the expanded square alone would err by ~1e-2 nats.  Between the two,
    # nu(mid + t) = x1 + (x2 - x1) sigmoid(Delta t / Sigma) exactly (the third has weight exp(-1e14) = 0).
    s, mid, delta = 1e-8, 1000.0001, 2e-4
    mu = np.array([[-1000.0], [mid - delta / 2], [mid + delta / 2]])
    x = np.array([[5.0], [1.0], [3.0]])
    t = np.array([-1e-4, -2e-5, 0.0, 3e-5, 8e-5])
    z = (mid + t)[:, None]
    t_eff = z[:, 0] - mid  # the offsets as represented
    want = 1.0 + 2.0 / (1.0 + np.exp(-delta * t_eff / s))
    nu = o.optimal_decoder(z, mu, np.full((3, 1), s), x)
    np.testing.assert_allclose(nu[:, 0], want, rtol=TOL["decoder_far_f64"])
