"""The second-order certificate: Hessian extremes off the symmetries, against independent computations."""

from __future__ import annotations

import numpy as np
import pytest

from vaetheory.solver.certificate import certify, hessian_extremes, symmetry_directions
from vaetheory.solver.stationary import StationaryPoint, find_stationary_point, nonparametric_elbo
from vaetheory.solver.synthetic import anisotropic_gaussian


def quadratic(eigenvalues, rng):
    """grad of 1/2 theta^T A theta with A = Q diag(eigenvalues) Q^T; the columns of Q are its eigenvectors."""
    Q = np.linalg.qr(rng.standard_normal((len(eigenvalues), len(eigenvalues))))[0]
    A = (Q * eigenvalues) @ Q.T
    return (lambda t: A @ t), Q


@pytest.mark.parametrize("dense_max", [100, 0])  # the whole matrix, and Lanczos on products
def test_quadratic_extremes_and_symmetry_are_recovered_eq2(dense_max):
    rng = np.random.default_rng(0)
    lam = np.concatenate([[0.0], -np.linspace(0.5, 40.0, 29)])
    grad, Q = quadratic(lam, rng)
    cert = hessian_extremes(grad, np.zeros(30), symmetries=[("s", Q[:, 0])], dense_max=dense_max)
    assert cert.kind == "local maximum"
    assert cert.top == pytest.approx(-0.5, rel=1e-5) and cert.bottom == pytest.approx(-40.0, rel=1e-5)
    assert cert.symmetry_residual < 1e-8 and cert.method == ("dense" if dense_max else "lanczos")
    # The same zero eigenvalue, not declared a symmetry, is a flat direction.
    assert hessian_extremes(grad, np.zeros(30), dense_max=dense_max).kind == "flat directions"


@pytest.mark.parametrize("dense_max", [100, 0])
def test_constructed_saddle_is_a_saddle_eq2(dense_max):
    rng = np.random.default_rng(1)
    lam = np.concatenate([[0.7], -np.linspace(0.5, 40.0, 29)])
    grad, _ = quadratic(lam, rng)
    cert = hessian_extremes(grad, np.zeros(30), dense_max=dense_max)
    assert cert.kind == "saddle" and cert.top == pytest.approx(0.7, rel=1e-5)


def value_hessian(f, theta, h=1e-4):
    """The Hessian of f by second differences of its values alone (no gradient)."""
    P = theta.size
    E = np.eye(P) * h
    H = np.empty((P, P))
    for i in range(P):
        for j in range(i, P):
            H[i, j] = H[j, i] = (
                f(theta + E[i] + E[j]) - f(theta + E[i] - E[j]) - f(theta - E[i] + E[j]) + f(theta - E[i] - E[j])
            ) / (4 * h * h)
    return H


def small_problem():
    rng = np.random.default_rng(3)
    x, _ = anisotropic_gaussian(7, [5.0, 0.5], rng)
    return x


def summed_elbo(x, N, n, constant, order):
    def f(theta):
        mu = theta[: N * n].reshape(N, n)
        nv = n if constant else N * n
        var = np.exp(theta[N * n : N * n + nv])
        var = var if constant else var.reshape(N, n)
        return float(np.sum(nonparametric_elbo(x, mu, var, np.exp(theta[-n:]), order=order)))

    return f


@pytest.mark.parametrize("variant", ["diagonal", "constant"])
def test_certificate_matches_hessian_of_the_values_at_a_solution_eq2(variant):
    x = small_problem()
    sp = find_stationary_point(x, 1, rng=np.random.default_rng(0), variant=variant, order=16)
    constant = variant == "constant"
    var = sp.var[0] if constant else sp.var
    theta = np.concatenate([sp.mu.ravel(), np.log(var).ravel(), np.log(sp.s2)])
    H = value_hessian(summed_elbo(x, 7, 1, constant, 16), theta)
    (name, s), *_ = symmetry_directions(sp.mu, var, sp.s2, constant=constant)
    # The latent-scale direction is flat for the values too (an independent check of the symmetry).
    assert name == "latent scale z1"
    assert np.linalg.norm(H @ s) / np.linalg.norm(s) < 1e-4 * np.abs(np.linalg.eigvalsh(H)).max()
    B = np.linalg.qr(np.concatenate([s[:, None], np.eye(theta.size)], axis=1))[0][:, 1 : theta.size]
    lam = np.linalg.eigvalsh(B.T @ H @ B)
    cert = certify(sp)
    assert cert.kind == "local maximum"
    assert cert.top == pytest.approx(lam[-1], rel=1e-3) and cert.bottom == pytest.approx(lam[0], rel=1e-3)


def test_collapsed_point_of_data_with_variance_above_one_is_a_saddle_eq2():
    """mu = 0, Sigma = S^2: stationary by the reflection z -> -z, but uncollapsing the top direction
    (data variance 5 > 1, Sec. 6) gains ELBO, so the point is a saddle."""
    x = small_problem()
    N, n, order = 7, 1, 16
    mu, var, s2 = np.zeros((N, n)), np.ones((N, n)), np.ones(n)
    f = summed_elbo(x, N, n, False, order)
    theta = np.concatenate([mu.ravel(), np.log(var).ravel(), np.log(s2)])
    # Independent: the second difference of the values along mu = t * (top principal component score).
    u = np.zeros_like(theta)
    xc = x - x.mean(axis=0)
    u[:N] = xc @ np.linalg.eigh(xc.T @ xc)[1][:, -1]
    u /= np.linalg.norm(u)
    t = 1e-3
    curvature = (f(theta + t * u) - 2 * f(theta) + f(theta - t * u)) / t**2
    assert curvature > 0
    sp = StationaryPoint(x, mu, var, s2, "diagonal", order, np.zeros(N), 0.0, 1e-6, True, 0, 0, "", 0.0)
    cert = certify(sp)
    assert cert.kind == "saddle" and cert.top >= curvature * (1 - 1e-4)


def test_isotropic_variances_add_a_rotation_symmetry():
    mu = np.random.default_rng(0).standard_normal((5, 2))
    names = [n for n, _ in symmetry_directions(mu, np.array([0.3, 0.3]), np.array([2.0, 2.0]), constant=True)]
    assert names == ["latent scale z1", "latent scale z2", "latent rotation z1-z2"]
    names = [n for n, _ in symmetry_directions(mu, np.array([0.3, 0.2]), np.array([2.0, 2.0]), constant=True)]
    assert names == ["latent scale z1", "latent scale z2"]


def test_rotation_is_a_symmetry_of_the_values_only_when_isotropic_eq2_eq6():
    x = small_problem()
    mu = np.random.default_rng(2).standard_normal((7, 2))
    c, s = np.cos(0.4), np.sin(0.4)
    R = np.array([[c, -s], [s, c]])
    # The tensor Gauss-Hermite rule is not rotation invariant: the symmetry is the exact integral's, and the
    # quadrature breaks it by its own error (1.7e-3 nats at order 12, 2.2e-5 at order 40).
    F = lambda mu, var, s2: np.sum(nonparametric_elbo(x, mu, var, s2, order=40))
    iso = (np.array([0.3, 0.3]), np.array([2.0, 2.0]))
    aniso = (np.array([0.3, 0.2]), np.array([2.0, 2.0]))
    broken = abs(F(mu @ R.T, *iso) - F(mu, *iso))
    assert broken < 1e-4
    assert abs(F(mu @ R.T, *aniso) - F(mu, *aniso)) > 100 * broken
