"""Every public function of the equation modules refuses invalid inputs with a ValueError naming the argument.

One table row per public function: a valid call built from a small problem (N = 3 examples, n = 2 latent,
m = 3 data dimensions) and the kind of each argument.  Hypothesis picks an argument and a way to break it:
None, NaN or inf entries, an extra axis (wrong shape), a zero or negative variance, or N = 0 (every
argument that carries the examples axis emptied at once).
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import SEEDS

from vaetheory import constant_variance as cv
from vaetheory import evidence as ev
from vaetheory import gaussian as g
from vaetheory import linear as lin
from vaetheory import logdet as ld
from vaetheory import logdet_baselines as lb
from vaetheory import logdet_preconditioned as lp
from vaetheory import objectives as O
from vaetheory import optimal as opt
from vaetheory import optimality as oy
from vaetheory.solver import certificate as cert
from vaetheory.solver import polish as pol
from vaetheory.solver import quadrature as qd
from vaetheory.solver import stationary as st_
from vaetheory.solver import symmetry as sym
from vaetheory.solver import synthetic as syn

N, n, m = 3, 2, 3


def _spd(rng, k):
    A = rng.normal(size=(k, k))
    return A @ A.T + k * np.eye(k)


def _problem(seed):
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(m, n))
    b = rng.normal(size=m)
    mu = rng.normal(size=(N, n))
    x = rng.normal(size=(N, m))
    p = {
        "rng": rng,
        "W": W,
        "b": b,
        "mu": mu,
        "x": x,
        "z": rng.normal(size=(4, n)),
        "var": rng.uniform(0.2, 1.0, size=(N, n)),
        "s2": rng.uniform(0.5, 2.0, size=n),
        "J": rng.normal(size=(N, m, n)),
        "Jsq": rng.normal(size=(N, n, n)) + 2 * np.eye(n),
        "nu": rng.normal(size=(N, m)),
        "A": _spd(rng, 4),
        "cov": _spd(rng, m),
    }
    p["decoder"] = g.LinearDecoder(W, b)
    p["model"] = lin.linear_stationary_point(x=rng.normal(size=(20, m)), n=n)
    return p


def _R():
    return np.random.default_rng(0)


# name: (function, builder of the keyword arguments from a problem, {argument: kind}, arguments carrying N)
# kinds: "var" (a positive variance or SPD matrix), "arr" (a finite array), "scalar", "obj" (None only).
CASES = {
    "gaussian.kl_gaussian": (
        g.kl_gaussian,
        lambda p: dict(mu=p["mu"], var=p["var"], s2=p["s2"]),
        {"mu": "arr", "var": "var", "s2": "var"},
        {"mu", "var"},
    ),
    "gaussian.log_normal": (
        g.log_normal,
        lambda p: dict(x=p["x"], mean=p["nu"], cov=p["cov"]),
        {"x": "arr", "mean": "arr", "cov": "var"},
        set(),
    ),
    "gaussian.elbo_local_linear": (
        g.elbo_local_linear,
        lambda p: dict(x=p["x"], mu=p["mu"], var=p["var"], s2=p["s2"], nu_mu=p["nu"], J=p["J"]),
        {"x": "arr", "mu": "arr", "var": "var", "s2": "var", "nu_mu": "arr", "J": "arr"},
        {"x", "mu", "var", "nu_mu", "J"},
    ),
    "gaussian.elbo": (
        g.elbo,
        lambda p: dict(x=p["x"], mu=p["mu"], var=p["var"], s2=p["s2"], decoder=p["decoder"], method="quadrature"),
        {"x": "arr", "mu": "arr", "var": "var", "s2": "var", "decoder": "obj"},
        {"x", "mu", "var"},
    ),
    "gaussian.expected_log_likelihood": (
        g.expected_log_likelihood,
        lambda p: dict(x=p["x"], mu=p["mu"], var=p["var"], decoder=p["decoder"], method="quadrature"),
        {"x": "arr", "mu": "arr", "var": "var", "decoder": "obj"},
        {"x", "mu", "var"},
    ),
    "gaussian.expected_log_likelihood_draws": (
        g.expected_log_likelihood_draws,
        lambda p: dict(x=p["x"], mu=p["mu"], var=p["var"], decoder=p["decoder"], rng=_R(), n_samples=10),
        {"x": "arr", "mu": "arr", "var": "var", "decoder": "obj", "rng": "obj"},
        {"x", "mu", "var"},
    ),
    "gaussian.LinearDecoder": (g.LinearDecoder, lambda p: dict(W=p["W"], b=p["b"]), {"W": "arr", "b": "arr"}, set()),
    "objectives.floating_prior": (
        O.floating_prior,
        lambda p: dict(mu=p["mu"], sigma2=p["s2"]),
        {"mu": "arr", "sigma2": "var"},
        {"mu"},
    ),
    "objectives.kl_learned": (
        O.kl_learned,
        lambda p: dict(mu=p["mu"], var=p["var"], s2=p["s2"]),
        {"mu": "arr", "var": "var", "s2": "var?"},
        {"mu", "var"},
    ),
    "objectives.kl_constant": (
        O.kl_constant,
        lambda p: dict(mu=p["mu"], sigma2=p["s2"], s2=p["s2"]),
        {"mu": "arr", "sigma2": "var", "s2": "var"},
        {"mu"},
    ),
    "objectives.bilbo_kl": (
        O.bilbo_kl,
        lambda p: dict(mu=p["mu"], sigma2=p["s2"]),
        {"mu": "arr", "sigma2": "var"},
        {"mu"},
    ),
    "objectives.baggins_T": (
        O.baggins_T,
        lambda p: dict(x=p["x"], nu=p["nu"], mu=p["mu"], var=p["var"], tau=0.5, s2=p["s2"]),
        {"x": "arr", "nu": "arr", "mu": "arr", "var": "var", "tau": "scalar", "s2": "var?"},
        {"x", "nu", "mu", "var"},
    ),
    "objectives.baggins_log_likelihood": (
        O.baggins_log_likelihood,
        lambda p: dict(x=p["x"], nu=p["nu"], mu=p["mu"], var=p["var"], tau=0.5),
        {"x": "arr", "nu": "arr", "mu": "arr", "var": "var", "tau": "scalar"},
        {"x", "nu", "mu", "var"},
    ),
    "objectives.bilbo_baggins": (
        O.bilbo_baggins,
        lambda p: dict(x=p["x"], nu=p["nu"], mu=p["mu"], sigma2=p["s2"], tau=0.5),
        {"x": "arr", "nu": "arr", "mu": "arr", "sigma2": "var", "tau": "scalar"},
        {"x", "nu", "mu"},
    ),
    "optimal.optimal_prior": (
        opt.optimal_prior,
        lambda p: dict(mu=p["mu"], var=p["var"]),
        {"mu": "arr", "var": "var"},
        {"mu", "var"},
    ),
}
_DEC = {"z": "arr", "mu": "arr", "var": "var", "x": "arr"}
for _f in (
    opt.optimal_decoder,
    opt.optimal_decoder_reference,
    opt.optimal_decoder_jacobian,
    opt.optimal_decoder_jacobian_reference,
    qd.decoder_mean,
):
    CASES[f"{_f.__module__}.{_f.__name__}"] = (
        _f,
        lambda p: dict(z=p["z"], mu=p["mu"], var=p["var"], x=p["x"]),
        _DEC,
        {"mu", "var", "x"},
    )
for _f in (opt.log_weights, opt.log_weights_reference, qd.decoder_log_weights):
    CASES[f"{_f.__module__}.{_f.__name__}"] = (
        _f,
        lambda p: dict(z=p["z"], mu=p["mu"], var=p["var"]),
        {"z": "arr", "mu": "arr", "var": "var"},
        {"mu", "var"},
    )
CASES.update(
    {
        "optimality.decoder_functional_gradient": (
            oy.decoder_functional_gradient,
            lambda p: dict(z=p["z"], mu=p["mu"], var=p["var"], x=p["x"], nu_z=p["rng"].normal(size=(4, m))),
            {"z": "arr", "mu": "arr", "var": "var", "x": "arr", "nu_z": "arr"},
            {"mu", "var", "x"},
        ),
        "optimality.prior_gradient": (
            oy.prior_gradient,
            lambda p: dict(mu=p["mu"], var=p["var"], s2=p["s2"]),
            {"mu": "arr", "var": "var", "s2": "var"},
            {"mu", "var"},
        ),
        "optimality.variance_gradient": (
            oy.variance_gradient,
            lambda p: dict(var=p["var"], s2=p["s2"], J=p["J"]),
            {"var": "var", "s2": "var", "J": "arr"},
            {"var", "J"},
        ),
        "optimality.variance_condition_residual": (
            oy.variance_condition_residual,
            lambda p: dict(var=p["var"], s2=p["s2"], J=p["J"]),
            {"var": "var", "s2": "var", "J": "arr"},
            {"var", "J"},
        ),
        "optimality.windowed_jacobian": (
            oy.windowed_jacobian,
            lambda p: dict(
                nu_nodes=p["rng"].normal(size=(N, 4, m)),
                nu_mu=p["nu"],
                eps=p["rng"].normal(size=(4, n)),
                w=np.full(4, 0.25),
                var=p["var"],
            ),
            {"nu_nodes": "arr", "nu_mu": "arr", "eps": "arr", "w": "arr", "var": "var"},
            {"nu_nodes", "nu_mu", "var"},
        ),
        "evidence.evidence_gap": (
            ev.evidence_gap,
            lambda p: dict(var=p["var"], s2=p["s2"], J=p["J"]),
            {"var": "var", "s2": "var", "J": "arr"},
            {"var", "J"},
        ),
        "evidence.log_evidence": (
            ev.log_evidence,
            lambda p: dict(x=p["x"], z=p["mu"], nu_z=p["nu"], J=p["J"], s2=p["s2"]),
            {"x": "arr", "z": "arr", "nu_z": "arr", "J": "arr", "s2": "var"},
            {"x", "z", "nu_z", "J"},
        ),
        "evidence.log_evidence_general": (
            ev.log_evidence_general,
            lambda p: dict(x=p["x"], mu=p["mu"], nu_mu=p["nu"], J=p["J"], s2=p["s2"], T=p["cov"][None]),
            {"x": "arr", "mu": "arr", "nu_mu": "arr", "J": "arr", "s2": "var", "T": "var"},
            {"x", "mu", "nu_mu", "J"},
        ),
        "evidence.log_evidence_noiseless": (
            ev.log_evidence_noiseless,
            lambda p: dict(mu=p["mu"], J=p["Jsq"], s2=p["s2"]),
            {"mu": "arr", "J": "arr", "s2": "var"},
            {"mu", "J"},
        ),
        "evidence.true_posterior_covariance": (
            ev.true_posterior_covariance,
            lambda p: dict(s2=p["s2"], J=p["J"]),
            {"s2": "var", "J": "arr"},
            {"J"},
        ),
        "constant_variance.gap_second_order": (
            cv.gap_second_order,
            lambda p: dict(var=p["var"], s2=p["s2"], J=p["J"]),
            {"var": "var", "s2": "var", "J": "arr"},
            {"var", "J"},
        ),
    }
)
for _f in (cv.cv2_penalty, cv.cv2_penalty_terms, cv.optimal_constant_variance):
    CASES[f"constant_variance.{_f.__name__}"] = (
        _f,
        lambda p: dict(s2=p["s2"], J=p["J"]),
        {"s2": "var", "J": "arr"},
        {"J"},
    )
CASES["constant_variance.cv2_penalty_terms_of_precisions"] = (
    cv.cv2_penalty_terms_of_precisions,
    lambda p: dict(P=p["Jsq"] @ np.swapaxes(p["Jsq"], 1, 2)),
    {"P": "arr"},
    {"P"},
)
for _f in (oy.mean_gradient, oy.mean_condition_residual):
    CASES[f"optimality.{_f.__name__}"] = (
        _f,
        lambda p: dict(mu=p["mu"], s2=p["s2"], nu_mu=p["nu"], x=p["x"], J=p["J"]),
        {"mu": "arr", "s2": "var", "nu_mu": "arr", "x": "arr", "J": "arr"},
        {"mu", "nu_mu", "x", "J"},
    )
_LIN = {"W": "arr", "b": "arr", "V": "arr", "var": "var", "s2": "var"}


def _lin(p):
    mdl = p["model"]
    return dict(W=mdl.W, b=mdl.b, V=mdl.V, var=mdl.var, s2=mdl.s2)


CASES.update(
    {
        "linear.linear_stationary_point": (
            lin.linear_stationary_point,
            lambda p: dict(x=p["x"], n=n),
            {"x": "arr", "n": "scalar"},
            {"x"},
        ),
        "linear.linear_stationary_point(cov)": (
            lin.linear_stationary_point,
            lambda p: dict(cov=p["cov"], mean=p["b"], n=n, var=1.0),
            {"cov": "psd", "mean": "arr?", "n": "scalar", "var": "var"},
            set(),
        ),
        "linear.linear_elbo": (lin.linear_elbo, lambda p: dict(x=p["x"], **_lin(p)), {"x": "arr", **_LIN}, {"x"}),
        "linear.linear_expected_elbo": (
            lin.linear_expected_elbo,
            lambda p: dict(cov=p["cov"], mean=p["b"], **_lin(p)),
            {"cov": "psd", "mean": "arr?", **_LIN},
            set(),
        ),
        "linear.linear_posterior": (
            lin.linear_posterior,
            lambda p: dict(model=p["model"], x=p["x"]),
            {"model": "obj", "x": "arr"},
            {"x"},
        ),
        "linear.linear_log_likelihood": (
            lin.linear_log_likelihood,
            lambda p: dict(model=p["model"], x=p["x"]),
            {"model": "obj", "x": "arr"},
            {"x"},
        ),
        "linear.linear_laplace_log_evidence": (
            lin.linear_laplace_log_evidence,
            lambda p: dict(model=p["model"], x=p["x"]),
            {"model": "obj", "x": "arr"},
            {"x"},
        ),
        "linear.linear_expected_log_likelihood": (
            lin.linear_expected_log_likelihood,
            lambda p: dict(model=p["model"], cov=p["cov"], mean=p["b"]),
            {"model": "obj", "cov": "psd", "mean": "arr?"},
            set(),
        ),
        "linear.linear_optimal_expected_log_likelihood": (
            lin.linear_optimal_expected_log_likelihood,
            lambda p: dict(lam=np.array([3.0, 2.0, 1.0]), n=n),
            {"lam": "var", "n": "scalar"},
            set(),
        ),
        "logdet.trace_identity_objective": (
            ld.trace_identity_objective,
            lambda p: dict(A=p["A"], Sigma=np.eye(4)),
            {"A": "arr", "Sigma": "var"},
            set(),
        ),
        "logdet.trace_identity_minimiser": (ld.trace_identity_minimiser, lambda p: dict(A=p["A"]), {"A": "var"}, set()),
        "logdet.trace_identity_ref": (ld.trace_identity_ref, lambda p: dict(A=p["A"]), {"A": "var"}, set()),
        "logdet.trace_identity_eq20": (
            ld.trace_identity_eq20,
            lambda p: dict(J=p["J"][0], s2=p["s2"]),
            {"J": "arr", "s2": "var"},
            set(),
        ),
        "logdet.trace_identity_bias_floor": (
            ld.trace_identity_bias_floor,
            lambda p: dict(A=p["A"], parameterization="diagonal"),
            {"A": "var", "parameterization": "obj"},
            set(),
        ),
        "logdet.logdet_trace_estimator": (
            ld.logdet_trace_estimator,
            lambda p: dict(A_or_matvec=p["A"], rng=_R(), budget=40),
            {"A_or_matvec": "var", "rng": "obj", "budget": "scalar"},
            set(),
        ),
        "logdet.preconditioned_slq_logdet": (
            ld.preconditioned_slq_logdet,
            lambda p: dict(A_or_matvec=p["A"], rng=_R(), budget=40),
            {"A_or_matvec": "var", "rng": "obj", "budget": "scalar"},
            set(),
        ),
        "logdet_baselines.slq_logdet": (
            lb.slq_logdet,
            lambda p: dict(A_or_matvec=p["A"], rng=_R(), budget=40),
            {"A_or_matvec": "var", "rng": "obj", "budget": "scalar"},
            set(),
        ),
        "logdet_baselines.hutchpp_logdet": (
            lb.hutchpp_logdet,
            lambda p: dict(A_or_matvec=p["A"], rng=_R(), budget=40),
            {"A_or_matvec": "var", "rng": "obj", "budget": "scalar"},
            set(),
        ),
        "logdet_baselines.chebyshev_logdet": (
            lb.chebyshev_logdet,
            lambda p: dict(A_or_matvec=p["A"], rng=_R(), budget=40, bounds=(0.1, 100.0)),
            {"A_or_matvec": "var", "rng": "obj", "budget": "scalar", "bounds": "obj"},
            set(),
        ),
        "logdet_preconditioned.xtrace_logdet": (
            lp.xtrace_logdet,
            lambda p: dict(A_or_matvec=p["A"], rng=_R(), budget=40),
            {"A_or_matvec": "var", "rng": "obj", "budget": "scalar"},
            set(),
        ),
        "logdet_preconditioned.pchol_slq_logdet": (
            lp.pchol_slq_logdet,
            lambda p: dict(A_or_matvec=p["A"], rng=_R(), budget=40, diag=np.diag(p["A"]).copy()),
            {"A_or_matvec": "var", "rng": "obj", "budget": "scalar", "diag": "var"},
            set(),
        ),
        "logdet_preconditioned.nystrom_slq_logdet": (
            lp.nystrom_slq_logdet,
            lambda p: dict(A_or_matvec=p["A"], rng=_R(), budget=40),
            {"A_or_matvec": "var", "rng": "obj", "budget": "scalar"},
            set(),
        ),
        "logdet_baselines.as_operator": (
            lb.as_operator,
            lambda p: dict(A_or_matvec=p["A"]),
            {"A_or_matvec": "obj"},
            set(),
        ),
        "logdet_baselines.gauss_quadrature": (
            lb.gauss_quadrature,
            lambda p: dict(alpha=np.array([2.0, 3.0]), beta=np.array([0.5])),
            {"alpha": "arr", "beta": "arr"},
            set(),
        ),
        "solver.quadrature.gauss_hermite": (
            qd.gauss_hermite,
            lambda p: dict(n=n, order=5),
            {"n": "scalar", "order": "scalar"},
            set(),
        ),
        "solver.quadrature.latent_grid": (
            qd.latent_grid,
            lambda p: dict(s2=p["s2"], sd_min=np.sqrt(p["s2"])),
            {"s2": "var", "sd_min": "var"},
            set(),
        ),
        "solver.quadrature.softmax_rows": (
            qd.softmax_rows,
            lambda p: dict(lw=p["rng"].normal(size=(4, N))),
            {"lw": "arr"},
            set(),
        ),
        "solver.quadrature.grid_log_evidence": (
            qd.grid_log_evidence,
            lambda p: dict(x=p["x"], mu=p["mu"], var=p["var"], s2=p["s2"], max_points=41),
            {"x": "arr", "mu": "arr", "var": "var", "s2": "var"},
            {"x", "mu", "var"},
        ),
        "solver.synthetic.anisotropic_gaussian": (
            syn.anisotropic_gaussian,
            lambda p: dict(N=N, spectrum=np.array([2.0, 1.0]), rng=_R()),
            {"N": "scalar", "spectrum": "var", "rng": "obj"},
            set(),
        ),
        "solver.synthetic.manifold": (
            syn.manifold,
            lambda p: dict(N=N, n=1, m=2, rng=_R()),
            {"N": "scalar", "n": "scalar", "m": "scalar", "rng": "obj"},
            set(),
        ),
        "solver.synthetic.gaussian_mixture": (
            syn.gaussian_mixture,
            lambda p: dict(N=N, means=p["rng"].normal(size=(2, m)), rng=_R()),
            {"N": "scalar", "means": "arr", "rng": "obj"},
            set(),
        ),
        "solver.synthetic.random_rotation": (
            syn.random_rotation,
            lambda p: dict(m=m, rng=_R()),
            {"m": "scalar", "rng": "obj"},
            set(),
        ),
        "solver.stationary.default_order": (st_.default_order, lambda p: dict(n=n), {"n": "scalar"}, set()),
        "solver.stationary.nonparametric_elbo": (
            st_.nonparametric_elbo,
            lambda p: dict(x=p["x"], mu=p["mu"], var=p["var"], s2=p["s2"], order=4),
            {"x": "arr", "mu": "arr", "var": "var", "s2": "var"},
            {"x", "mu", "var"},
        ),
        "solver.stationary.elbo_gradient": (
            st_.elbo_gradient,
            lambda p: dict(x=p["x"], mu=p["mu"], var=p["var"], s2=p["s2"], order=4),
            {"x": "arr", "mu": "arr", "var": "var", "s2": "var"},
            {"x", "mu", "var"},
        ),
        "solver.stationary.find_stationary_point": (
            st_.find_stationary_point,
            lambda p: dict(x=p["x"], n=1, rng=_R(), maxiter=3, restarts=1),
            {"x": "arr", "n": "scalar", "rng": "obj"},
            {"x"},
        ),
        "solver.stationary.fine_order": (st_.fine_order, lambda p: dict(n=n), {"n": "scalar"}, set()),
        "solver.stationary.finer_order": (
            st_.finer_order,
            lambda p: dict(n=n, order=6),
            {"n": "scalar", "order": "scalar"},
            set(),
        ),
        "solver.symmetry.symmetry_directions": (
            sym.symmetry_directions,
            lambda p: dict(mu=p["mu"], var=p["var"], s2=p["s2"], constant=False),
            {"mu": "arr", "var": "var", "s2": "var"},
            {"mu", "var"},
        ),
        "solver.polish.newton_polish": (
            pol.newton_polish,
            lambda p: dict(fun=_quadratic, theta=p["b"], gtol=1e-8),
            {"fun": "obj", "theta": "arr", "gtol": "var"},
            set(),
        ),
        "solver.certificate.hessian_extremes": (
            cert.hessian_extremes,
            lambda p: dict(grad=lambda th: _quadratic(th)[1], theta=p["b"], h=1e-6),
            {"grad": "obj", "theta": "arr", "h": "var"},
            set(),
        ),
    }
)


def _quadratic(theta):
    """A strictly convex quadratic in any dimension: (value, gradient)."""
    scale = np.arange(1.0, theta.size + 1.0)
    return 0.5 * np.sum(scale * theta**2), scale * theta


# Public callables that have no row above, each with the reason: result types (constructed by the library),
# kernels that are documented as unchecked (their checked public counterparts have rows), and the internals of
# a checked entry point that it calls only with validated arguments.
NOT_IN_TABLE = {
    "vaetheory.logdet.LogdetResult": "result type",
    "vaetheory.logdet_baselines.LogdetResult": "result type",
    "vaetheory.logdet_baselines.Operator": "wrapper built by as_operator, which has a row",
    "vaetheory.objectives.Objective": "result type",
    "vaetheory.linear.LinearVAE": "result type",
    "vaetheory.solver.stationary.StationaryPoint": "result type",
    "vaetheory.solver.certificate.Certificate": "result type",
    "vaetheory.solver.quadrature.GridEvidence": "result type",
    "vaetheory.solver.certificate.certify": "takes a StationaryPoint, built by find_stationary_point (validated)",
    "vaetheory.objectives.floating_prior_unchecked": "documented unchecked kernel of floating_prior",
    "vaetheory.objectives.kl_eq2_unchecked": "documented unchecked kernel of kl_learned / kl_constant",
    "vaetheory.objectives.bilbo_kl_unchecked": "documented unchecked kernel of bilbo_kl",
    "vaetheory.objectives.baggins_T_unchecked": "documented unchecked kernel of baggins_T",
    "vaetheory.objectives.baggins_log_likelihood_unchecked": "documented unchecked kernel of baggins_log_likelihood",
    "vaetheory.objectives.baggins_args": "the argument check of the BAGGINS functions (their rows exercise it)",
    "vaetheory.solver.quadrature.log_weights_unchecked": "documented unchecked kernel of decoder_log_weights",
    "vaetheory.optimal.decoder_args": "the argument check of optimal_decoder (its rows exercise it)",
    "vaetheory.optimal.mixture_components": "internal of optimal_decoder_reference, validated arguments only",
    "vaetheory.optimal_gemm.gemm_inputs": "the argument check of the GEMM path (optimal_decoder's rows exercise it)",
    "vaetheory.optimal_gemm.log_densities_logspace": "GEMM-path kernel (xp first), validated arguments only",
    "vaetheory.optimal_gemm.exp_shifted": "GEMM-path kernel (xp first), validated arguments only",
    "vaetheory.optimal_gemm.weighted_score": "GEMM-path kernel (xp first), validated arguments only",
    "vaetheory.optimal_gemm.gemm_kernel": "GEMM-path kernel (xp first), validated arguments only",
    "vaetheory.logdet_baselines.lanczos": "Lanczos engine of the log-det estimators (their rows exercise it)",
    "vaetheory.logdet_baselines.quadratures": "Lanczos engine of the log-det estimators (their rows exercise it)",
    "vaetheory.logdet_baselines.probe_vectors": "probe draw of the log-det estimators (their rows exercise it)",
    "vaetheory.logdet_baselines.lanczos_function_apply": "Lanczos engine of the preconditioned estimators",
    "vaetheory.logdet_preconditioned.partial_cholesky": "engine of pchol_slq_logdet (its row exercises it)",
}

ALIASES = {"A_or_matvec": ("A",)}
MUTATIONS = {
    "arr": ["none", "nan", "inf", "shape"],
    "var": ["none", "nan", "inf", "shape", "zero", "negative"],
    "var?": ["nan", "inf", "shape", "zero", "negative"],  # None is valid (a default)
    "arr?": ["nan", "inf", "shape"],
    "psd": ["none", "nan", "inf", "shape", "negative"],  # a covariance: zero is valid, indefinite is not
    "scalar": ["none", "nan", "inf", "shape"],
    "obj": ["none"],
}


def _break(value, how):
    if how == "none":
        return None
    a = np.array(value, dtype=float)
    if how == "shape":
        return np.repeat(a[..., None], 5, axis=-1)  # 5 is none of the sizes N, n, m, 4
    if how == "zero":
        return 0.0 * a
    if how == "negative":
        return -a
    a = a.copy()
    a.flat[0] = np.nan if how == "nan" else np.inf
    return a


def _names(message):
    return set(re.findall(r"[A-Za-z_][A-Za-z_0-9]*", message))


@pytest.mark.parametrize("case", sorted(CASES))
@given(seed=SEEDS, data=st.data())
def test_invalid_input_raises_value_error_naming_the_argument(case, seed, data):
    f, build, kinds, with_N = CASES[case]
    kwargs = build(_problem(seed % 1000))
    f(**kwargs)  # the valid call works
    choices = [(arg, how) for arg, kind in kinds.items() for how in MUTATIONS[kind]]
    if with_N:
        choices.append(("N = 0", "empty"))
    arg, how = data.draw(st.sampled_from(choices), label="argument, mutation")
    if how == "empty":
        bad = {k: (v[:0] if k in with_N else v) for k, v in kwargs.items()}
        allowed = with_N
    else:
        bad = dict(kwargs, **{arg: _break(kwargs[arg], how)})
        # A shape that disagrees with another argument's may be reported on either; the docs call A_or_matvec A.
        allowed = (set(kinds) if how == "shape" else {arg}) | set(ALIASES.get(arg, ()))
    with pytest.raises(ValueError) as info:
        f(**bad)
    named = _names(str(info.value))
    assert named & allowed, f"{case}: {arg} {how}: message names none of {sorted(allowed)}: {info.value}"


def test_softmax_rows_refuses_empty_rows_and_nan():
    with pytest.raises(ValueError, match=r"\blw\b"):
        qd.softmax_rows(np.zeros((2, 0)))
    with pytest.raises(ValueError, match=r"\blw\b"):
        qd.softmax_rows(np.array([[0.0, np.nan]]))


def test_linear_closed_forms_refuse_an_indefinite_covariance():
    C = np.diag([2.0, 1.0, -0.5])  # indefinite: not a covariance
    with pytest.raises(ValueError, match=r"\bcov\b"):
        lin.linear_stationary_point(cov=C, n=1)
    model = lin.linear_stationary_point(cov=np.diag([2.0, 1.0, 0.5]), n=1)
    with pytest.raises(ValueError, match=r"\bcov\b"):
        lin.linear_expected_elbo(C, None, model.W, model.b, model.V, model.var, model.s2)
    # A zero covariance (constant data) is a valid covariance.
    lin.linear_stationary_point(cov=np.zeros((3, 3)), n=1)


def test_optimal_decoder_without_data_names_x():
    p = _problem(0)
    for f in (opt.optimal_decoder, opt.optimal_decoder_jacobian, opt.optimal_decoder_reference):
        with pytest.raises(ValueError, match=r"\bx\b"):
            f(p["z"], p["mu"], p["var"], None)


def test_every_public_function_has_a_row_or_a_reason():
    # The table is the "every public function": a new public function without a row fails here.
    import importlib
    import inspect

    from vaetheory.equations import PAPER_MODULES

    covered = {case[0] for case in CASES.values()}
    extra = ["vaetheory.solver.quadrature", "vaetheory.solver.synthetic", "vaetheory.logdet_baselines"]
    missing = []
    for name in PAPER_MODULES + extra + ["vaetheory.logdet_preconditioned"]:
        module = importlib.import_module(name)
        public = getattr(module, "__all__", None) or [
            k for k, v in vars(module).items() if inspect.isfunction(v) and v.__module__ == name and k[0] != "_"
        ]
        for k in public:
            f = getattr(module, k)
            if callable(f) and f not in covered and f"{f.__module__}.{k}" not in NOT_IN_TABLE:
                missing.append(f"{name}.{k}")
    assert not missing, f"public functions with no invalid-input row: {missing}"
