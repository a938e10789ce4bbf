"""Sec. 3: log N, KL and the ELBO Eq. (2) three ways (closed form, quadrature, Monte Carlo), and Eq. (17)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import TOL
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import multivariate_normal
from strategies import SEEDS, vae_cases

from vaetheory import gaussian as g


def _full(var):
    return var if var.ndim == 3 else np.stack([np.diag(d) for d in var])


@given(vae_cases(), st.sampled_from(["scalar", "diag", "full"]))
def test_log_normal_matches_scipy_eq2(case, form):
    x, m = case["x"], case["m"]
    mean = case["b"]
    rng = np.random.default_rng(case["N"])
    cov = {"scalar": 1.7, "diag": np.exp(rng.uniform(-1, 1, m))}.get(form)
    if form == "full":
        A = rng.standard_normal((m, m))
        cov = A @ A.T + 0.5 * np.eye(m)
    dense = cov * np.eye(m) if np.ndim(cov) == 0 else (np.diag(cov) if np.ndim(cov) == 1 else cov)
    want = multivariate_normal(mean, dense).logpdf(x).reshape(-1)
    np.testing.assert_allclose(g.log_normal(x, mean, cov), want, rtol=TOL["identity_f64"])
    # batch shape (...): a single point and a (1, N, m) stack
    assert np.isclose(g.log_normal(x[0], mean, cov), want[0], rtol=TOL["identity_f64"])
    assert g.log_normal(x[None], mean, cov).shape == (1, case["N"])


@given(vae_cases())
def test_kl_matches_definition_and_forms_agree_eq2(case):
    mu, var, s2 = case["mu"], case["var"], case["s2"]
    kl = g.kl_gaussian(mu, var, s2)
    S2 = s2 if s2.ndim == 2 else np.diag(s2)
    for i, Sig in enumerate(_full(var)):
        # KL(q||p) = -H(q) - E_q log p, with E_q log N(z; 0, S2) in closed form
        n = len(mu[i])
        ent = multivariate_normal(mu[i], Sig).entropy()
        Sinv = np.linalg.inv(S2)
        cross = -0.5 * (n * np.log(2 * np.pi) + np.linalg.slogdet(S2)[1] + np.trace(Sinv @ Sig) + mu[i] @ Sinv @ mu[i])
        assert np.isclose(kl[i], -ent - cross, rtol=TOL["identity_f64"], atol=TOL["identity_f64"])
    assert np.all(kl >= -TOL["identity_f64"])
    # the diagonal and its full embedding give the same KL; a shared (n,) var broadcasts
    np.testing.assert_allclose(g.kl_gaussian(mu, _full(var), s2), kl, rtol=TOL["identity_f64"])
    # a shared full Sigma as (1, n, n) (unambiguous even when N == n)
    np.testing.assert_allclose(
        g.kl_gaussian(mu, _full(var)[:1], s2)[0], kl[0], rtol=TOL["identity_f64"], atol=TOL["identity_f64"]
    )


def test_kl_is_zero_only_at_the_prior_eq2():
    s2 = np.array([2.0, 0.5])
    assert g.kl_gaussian(np.zeros((1, 2)), s2, s2)[0] == pytest.approx(0.0, abs=TOL["known_answer_f64"])
    # 1-D known answer: KL(N(1, 1) || N(0, 4)) = 1/2 (1/4 + 1/4 - 1 + log 4)
    want = 0.5 * (0.25 + 0.25 - 1 + np.log(4.0))
    assert g.kl_gaussian([[1.0]], [1.0], [4.0])[0] == pytest.approx(want, rel=TOL["known_answer_f64"])


@given(vae_cases(n_max=2))
def test_exact_elbo_equals_quadrature_eq2(case):
    dec = g.LinearDecoder(case["W"], case["b"])
    args = (case["x"], case["mu"], case["var"], case["s2"], dec)
    exact = g.elbo(*args, method="exact")
    # a quadratic integrand: Gauss-Hermite with 3 nodes is already exact
    for order in (3, 20):
        np.testing.assert_allclose(g.elbo(*args, method="quadrature", order=order), exact, rtol=TOL["identity_f64"])
    np.testing.assert_allclose(g.elbo(*args), exact, rtol=TOL["identity_f64"])  # auto -> exact


@given(vae_cases(n_max=3), SEEDS)
def test_exact_elbo_equals_monte_carlo_within_standard_error_eq2(case, seed):
    dec = g.LinearDecoder(case["W"], case["b"])
    x, mu, var = case["x"], case["mu"], case["var"]
    exact = g.expected_log_likelihood(x, mu, var, dec, method="exact")
    draws = g.expected_log_likelihood_draws(x, mu, var, dec, rng=np.random.default_rng(seed), n_samples=400)
    se = draws.std(axis=1, ddof=1) / np.sqrt(draws.shape[1])
    assert np.all(np.abs(draws.mean(axis=1) - exact) <= TOL["mc_sigmas"] * se)
    # the public MC path draws the same numbers from the same generator
    mc = g.expected_log_likelihood(x, mu, var, dec, method="mc", rng=np.random.default_rng(seed), n_samples=400)
    np.testing.assert_allclose(mc, draws.mean(axis=1), rtol=TOL["known_answer_f64"])


def _sine_decoder(W, b):
    # an entire function, so Gauss-Hermite converges fast; a tanh decoder, whose poles
    # at i pi/2 lie within ~1 posterior sd of the real axis here, converges only like
    # exp(-c sqrt(order)) (measured: 40 vs 60 nodes differ by ~5e-6 relative)
    return lambda z: np.sin(0.5 * z @ W.T) * 2.0 + b


@given(vae_cases(n_max=2), SEEDS)
def test_quadrature_equals_monte_carlo_for_a_nonlinear_decoder_eq2(case, seed):
    dec = _sine_decoder(case["W"], case["b"])
    x, mu, var, s2 = case["x"], case["mu"], case["var"], case["s2"]
    quad = g.elbo(x, mu, var, s2, dec, order=40)  # auto -> quadrature for n <= 2
    draws = g.expected_log_likelihood_draws(x, mu, var, dec, rng=np.random.default_rng(seed), n_samples=400)
    se = draws.std(axis=1, ddof=1) / np.sqrt(draws.shape[1])
    ell_mc = draws.mean(axis=1)
    assert np.all(np.abs(ell_mc - g.kl_gaussian(mu, var, s2) - quad) <= TOL["mc_sigmas"] * se)
    # quadrature has converged: 40 and 60 nodes agree
    np.testing.assert_allclose(g.elbo(x, mu, var, s2, dec, order=60), quad, rtol=TOL["identity_f64"])


@given(vae_cases())
def test_local_linear_elbo_equals_exact_elbo_for_linear_decoder_eq2_eq17(case):
    dec = g.LinearDecoder(case["W"], case["b"])
    x, mu, var, s2 = case["x"], case["mu"], case["var"], case["s2"]
    got = g.elbo_local_linear(x, mu, var, s2, dec(mu), dec.jacobian(case["N"]))
    np.testing.assert_allclose(got, g.elbo(x, mu, var, s2, dec, method="exact"), rtol=TOL["identity_f64"])


def _sine_ell(x, mu, t2):
    """Known answer: E|x - sin z|^2 for z ~ N(mu, t2), from E sin z = sin(mu) e^(-t2/2)
    and E sin^2 z = (1 - cos(2 mu) e^(-2 t2)) / 2; returns E log N(x; sin z, 1)."""
    sq = x * x - 2 * x * np.sin(mu) * np.exp(-t2 / 2) + (1 - np.cos(2 * mu) * np.exp(-2 * t2)) / 2
    return -0.5 * (np.log(2 * np.pi) + sq)


@given(st.floats(-2, 2), st.floats(-2, 2), st.floats(0.01, 2.0))
def test_quadrature_matches_closed_form_for_a_sine_decoder_eq2(x, mu, t2):
    got = g.expected_log_likelihood([[x]], [[mu]], [t2], np.sin, method="quadrature", order=40)
    assert got[0] == pytest.approx(_sine_ell(x, mu, t2), rel=TOL["identity_f64"], abs=TOL["identity_f64"])


@given(st.floats(-2, 2), st.floats(-2, 2))
def test_local_linear_elbo_error_is_second_order_with_known_coefficient_eq2_eq17(x, mu):
    # Eq. (2) - Eq. (17) = -1/2 t^2 sin(mu) (x - sin(mu)) + O(t^4) for nu = sin: second order
    # in general, fourth order where the residual x - nu(mu) vanishes.
    s2 = np.array([1.0])
    for t in (1e-2, 2e-2):
        t2 = t * t
        diff = (
            g.elbo([[x]], [[mu]], [t2], s2, np.sin)[0]
            - g.elbo_local_linear([[x]], [[mu]], [t2], s2, [[np.sin(mu)]], [[[np.cos(mu)]]])[0]
        )
        # the O(t^4) remainder: |d^4/dt^4 E|x - sin z|^2| / 4! <= (|x| + 2) t^4 / 2 (loose)
        assert abs(diff / t2 + 0.5 * np.sin(mu) * (x - np.sin(mu))) <= (abs(x) + 2) * t2 + 1e-12 / t2


def test_auto_needs_rng_for_nonlinear_decoder_with_n_above_two():
    x, mu = np.zeros((2, 2)), np.zeros((2, 3))
    with pytest.raises(ValueError, match="rng"):
        g.expected_log_likelihood(x, mu, np.ones(3), lambda z: z[..., :2])
    with pytest.raises(ValueError, match="method"):
        g.expected_log_likelihood(x, mu, np.ones(3), lambda z: z[..., :2], method="quadrature")
    with pytest.raises(ValueError, match="decoder"):
        g.expected_log_likelihood(x, mu, np.ones(3), lambda z: z, method="mc", rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="LinearDecoder"):
        g.expected_log_likelihood(x, mu, np.ones(3), lambda z: z[..., :2], method="exact")


def test_linear_decoder_maps_batches():
    dec = g.LinearDecoder(np.arange(6.0).reshape(3, 2), np.ones(3))
    z = np.ones((4, 5, 2))
    assert dec(z).shape == (4, 5, 3)
    np.testing.assert_allclose(dec([1.0, 0.0]), [1.0, 3.0, 5.0])
    with pytest.raises(ValueError, match="W"):
        g.LinearDecoder(np.ones(3), np.ones(3))
    with pytest.raises(ValueError, match="b"):
        g.LinearDecoder(np.ones((3, 2)), np.ones(2))


# --- bad input: every public function of Secs. 3-5 raises ValueError naming the argument ---
def _good_inputs():
    from vaetheory import constant_variance as c
    from vaetheory import evidence as e
    from vaetheory import optimal as o
    from vaetheory import optimality as q

    rng = np.random.default_rng(0)
    N, n, m, M = 4, 3, 5, 2  # all different, so no shape reading is ambiguous
    A = dict(
        x=rng.standard_normal((N, m)),
        mu=rng.standard_normal((N, n)),
        var=np.full((N, n), 0.5),
        s2=np.array([1.0, 2.0, 0.5]),
        J=rng.standard_normal((N, m, n)),
        nu_mu=rng.standard_normal((N, m)),
        z=rng.standard_normal((M, n)),
        nu_z=rng.standard_normal((M, m)),
        T=np.full(m, 0.3),
    )
    dec = g.LinearDecoder(rng.standard_normal((m, n)), np.zeros(m))
    return [
        (g.log_normal, dict(x=A["x"], mean=A["nu_mu"], cov=np.eye(m))),
        (g.log_normal, dict(x=A["x"], mean=A["nu_mu"], cov=np.ones(m))),
        (g.LinearDecoder, dict(W=dec.W, b=dec.b)),
        (g.kl_gaussian, dict(mu=A["mu"], var=A["var"], s2=A["s2"])),
        (g.kl_gaussian, dict(mu=A["mu"], var=np.stack([np.eye(n)] * N), s2=np.diag(A["s2"]))),
        (g.expected_log_likelihood, dict(x=A["x"], mu=A["mu"], var=A["var"], decoder=dec)),
        (g.elbo, dict(x=A["x"], mu=A["mu"], var=A["var"], s2=A["s2"], decoder=dec)),
        (g.elbo_local_linear, dict(x=A["x"], mu=A["mu"], var=A["var"], s2=A["s2"], nu_mu=A["nu_mu"], J=A["J"])),
        (o.optimal_prior, dict(mu=A["mu"], var=A["var"])),
        (o.log_weights, dict(z=A["z"], mu=A["mu"], var=A["var"])),
        (o.optimal_decoder, dict(z=A["z"], mu=A["mu"], var=A["var"], x=A["x"])),
        (o.optimal_decoder_jacobian, dict(z=A["z"], mu=A["mu"], var=A["var"], x=A["x"])),
        (q.prior_gradient, dict(mu=A["mu"], var=A["var"], s2=A["s2"])),
        (q.decoder_functional_gradient, dict(z=A["z"], mu=A["mu"], var=A["var"], x=A["x"], nu_z=A["nu_z"])),
        (q.mean_gradient, dict(mu=A["mu"], s2=A["s2"], nu_mu=A["nu_mu"], x=A["x"], J=A["J"])),
        (q.mean_condition_residual, dict(mu=A["mu"], s2=A["s2"], nu_mu=A["nu_mu"], x=A["x"], J=A["J"])),
        (q.variance_gradient, dict(var=A["var"], s2=A["s2"], J=A["J"])),
        (q.variance_condition_residual, dict(var=A["var"], s2=A["s2"], J=A["J"])),
        (e.log_evidence, dict(x=A["x"], z=A["mu"], nu_z=A["nu_mu"], J=A["J"], s2=A["s2"])),
        (e.log_evidence_general, dict(x=A["x"], mu=A["mu"], nu_mu=A["nu_mu"], J=A["J"], s2=A["s2"], T=A["T"])),
        (e.log_evidence_general, dict(x=A["x"], mu=A["mu"], nu_mu=A["nu_mu"], J=A["J"], s2=A["s2"], T=np.eye(m))),
        (e.log_evidence_noiseless, dict(mu=A["mu"], J=rng.standard_normal((N, n, n)), s2=A["s2"])),
        (e.evidence_gap, dict(var=A["var"], s2=A["s2"], J=A["J"])),
        (e.true_posterior_covariance, dict(s2=A["s2"], J=A["J"])),
        (c.optimal_constant_variance, dict(s2=A["s2"], J=A["J"])),
        (c.gap_second_order, dict(var=A["var"], s2=A["s2"], J=A["J"])),
        (c.cv2_penalty_terms, dict(s2=A["s2"], J=A["J"])),
        (c.cv2_penalty, dict(s2=A["s2"], J=A["J"])),
    ]


def _bad_variants(kwargs):
    """(argument, bad kwargs, kind) for NaN, an extra trailing axis, a mismatched N, a non-positive variance."""
    for name, val in kwargs.items():
        if not isinstance(val, np.ndarray):
            continue
        nan = val.copy()
        nan.flat[0] = np.nan
        yield name, {**kwargs, name: nan}, "nan"
        yield name, {**kwargs, name: np.stack([val, val], axis=-1)}, "shape"
        batched = [
            k
            for k, o in kwargs.items()
            if isinstance(o, np.ndarray)
            and o.ndim >= 2
            and k not in ("W", "cov", "s2", "T")
            and o.shape[0] == val.shape[0]
        ]
        if name in batched and len(batched) > 1:  # N (or M) is shared with another argument
            yield name, {**kwargs, name: val[1:]}, "N"
        if name in ("var", "s2", "cov", "T"):
            yield name, {**kwargs, name: -val}, "positive"


_CASES = [(fn, kw, name, kind) for fn, good in _good_inputs() for name, kw, kind in _bad_variants(good)]


@pytest.mark.parametrize(
    "fn, kwargs, name, kind",
    _CASES,
    ids=[f"{fn.__name__}-{name}-{kind}-{i}" for i, (fn, _, name, kind) in enumerate(_CASES)],
)
def test_bad_input_raises_value_error_naming_the_argument(fn, kwargs, name, kind):
    # a mismatched N is caught by whichever argument is checked second; it must name an argument
    names = list(kwargs) if kind == "N" else [name]
    with pytest.raises(ValueError, match="|".join(rf"\b{k}\b" for k in names)):
        fn(**kwargs)


def test_good_inputs_are_accepted():
    for fn, kwargs in _good_inputs():
        out = fn(**kwargs)
        if not isinstance(out, g.LinearDecoder):
            assert np.all(np.isfinite(out[0] if isinstance(out, tuple) else out))


def test_decoder_returning_nan_is_rejected_eq2():
    with pytest.raises(ValueError, match="decoder"):
        g.elbo(np.zeros((2, 2)), np.zeros((2, 1)), [1.0], [1.0], lambda z: np.full(z.shape[:-1] + (2,), np.nan))
    with pytest.raises(ValueError, match="rng"):
        g.elbo(np.zeros((2, 2)), np.zeros((2, 3)), [1.0] * 3, [1.0] * 3, lambda z: z[..., :2], rng=0)
