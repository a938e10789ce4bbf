"""Shared test settings: the tolerance table and the Hypothesis profiles.

Every tolerance a test uses lives in ``TOL`` with the reason for its size.
Change one only with a reason written next to it.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

# ---------------------------------------------------------------------------
# Hypothesis: CI is reproducible (derandomized) and never flaky on a loaded
# machine (no deadline); "dev" searches harder.  HYPOTHESIS_PROFILE picks one.
# ---------------------------------------------------------------------------
settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    max_examples=25,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.register_profile(
    "dev",
    deadline=None,
    max_examples=200,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# ---------------------------------------------------------------------------
# Tolerance table.  Keys are what is compared; values are (rtol or atol) with
# the reason.  Float64 round-off on O(1) well-conditioned quantities is ~1e-15
# per operation; the sizes below leave room for the condition numbers the
# strategies in tests/strategies.py can generate (at most ~1e4).
# ---------------------------------------------------------------------------
TOL = {
    # Closed forms evaluated two ways in float64 (e.g. slogdet vs Sylvester's
    # identity, an identity rearranged): cond <= 1e4 costs ~4 digits.
    "identity_f64": 1e-9,
    # The posterior mode's relative gradient |S g| / (1 + |S J^T s|) cannot fall below round-off of the
    # whitened Hessian I + S W W^T S / t, about eps * kappa (kappa its top eigenvalue); this multiple of
    # eps * kappa is where Newton has converged to rounding (a linear decoder with t = 0.012 and
    # |W| / c = 30 stops at 1.4e-12 with the mode exact to 7e-18).
    "mode_gradient_rounding": 64.0,
    # Central finite differences in float64 with step h ~ 1e-5..1e-6: the
    # truncation error is O(h^2) ~ 1e-10 and cancellation O(eps/h) ~ 1e-10, relative.
    "fd_grad_f64": 1e-6,
    # Linear-Gaussian stationary points: closed forms agree to 1e-10 (the linear claim's threshold)
    # between ELBO, Eq. (16) and the exact log likelihood.
    "linear_stationary": 1e-10,
    # float32 vs float64 evaluation of the same objective (objectives, gpu model):
    # float32 unit round-off is 6e-8; a few dozen rounded operations per value
    # plus sums over up to m = 784 outputs give ~1e-6 relative; 1e-5 leaves 10x.
    "f32_vs_f64": 1e-5,
    # Secs. 3-5 theory core.  A Monte Carlo estimate must lie within this many
    # standard errors of the exact value (seeds are fixed; a 5-sigma miss has
    # probability ~6e-7 per example).
    "mc_sigmas": 5.0,
    # A closed form evaluated once in float64 on O(1), well-conditioned inputs
    # (or the same arithmetic reordered): a few ulps per operation, ~1e-14.  Also the same
    # per-image analysis in other batch sizes or thread counts: some BLAS kernels (OpenBLAS'
    # Haswell ones) then round a product by an ulp differently (tests/mlpvae/test_cluster.py).
    "known_answer_f64": 1e-12,
    # Absolute round-off of the eigenvalue form of the gap Eq. (18) near zero:
    # eigvalsh of an O(1) matrix errs by ~n eps ||P Sigma|| ~ 1e-15 (cond <= 30).
    "gap_roundoff_abs": 1e-13,
    # Eq. (5) in weak form: trapezoid over a wide 1-D grid vs Gauss-Hermite of
    # Eq. (2); both converge geometrically, measured agreement ~1e-12 relative.
    "weak_form_f64": 1e-8,
    # Stationary points (linear closed form and the nonparametric solver).
    # Central differences of a function at its stationary point, h = 1e-5 on
    # values ~10: truncation h^2 * (third derivative) ~ 1e-9, cancellation
    # eps |f| / h ~ 1e-10.
    "fd_at_stationary": 1e-7,
    # The solver's gradient-norm tolerance (max-abs, summed-ELBO units); tests
    # assert it is reached and Eq. (4) then holds to 2 * gtol / N.
    "solver_gtol": 1e-6,
    # Gauss-Hermite order doubling / grid halving on the small test problems:
    # typically <= 1e-3 nats, up to ~3e-3 where an example sits far from its
    # neighbours (N = 4) and the optimal decoder switches sharply between them,
    # which slows Gauss-Hermite; a cap that keeps the ELBO <= log p check meaningful.
    "quadrature_nats": 1e-2,
    # Statistical checks of the stochastic log-det estimators (fixed seeds): a
    # mean must lie within this many standard errors of its target; 4 SE is a
    # false-alarm rate ~6e-5 per check for a truly unbiased estimator.
    "logdet_z": 4.0,
    # Log-det estimators that become exact (Krylov space = whole space, n <= 40):
    # Lanczos with full reorthogonalisation loses ~cond * eps per step, cond <= 1e3.
    "logdet_exact": 1e-7,
    # gpu/analysis + the Eq. (6) GEMM kernel.  Eq. (6) at z ~ 1000 with Sigma = 1e-8: the spacing of z
    # (1.1e-13) times Delta / Sigma = 2e4 moves the exponent by ~2e-9; 1e-7 relative leaves 50x.
    "decoder_far_f64": 1e-7,
    # Second central difference (h = 1e-4) of an O(1) function: truncation h^2 (4th derivative) / 12
    # ~ 1e-9, round-off 4 eps |f| / h^2 ~ 1e-7; absolute 1e-6 leaves 10x.
    "fd_second_diff": 1e-6,
    # IWAE (k = 4000, diagonal proposal for a correlated 2-D posterior) vs exact log p(x) per image:
    # the estimator's bias and spread are ~5e-3 nats here; 2e-2 nats.
    "iwae_nats": 2e-2,
    # Our hand-written loss/gradients vs PyTorch autograd, same network in float64: the same arithmetic
    # in another order (BLAS blocking, sums over B * m = 23,520 terms); measured ~2e-15 relative; 1e-11.
    "torch_same_f64": 1e-11,
    # Three Adam steps, ours vs torch.optim.Adam, float64: g / (sqrt(v) + eps) amplifies gradient round-off on
    # entries with |g| ~ eps = 1e-8 by ~1 / (4 eps); measured 2.5e-11 of the largest displacement; 1e-8.
    "torch_adam_f64": 1e-8,
    # mlpvae.accel.gemm: one product computed by two GEMM codes (column-major emulation vs numpy.matmul, our cuBLAS
    # call vs cupy.matmul's): the same sums in another blocking order.  float64 with inner sizes <= 784 on
    # O(1) entries: ~sqrt(784) eps ~ 6e-15 relative; 1e-12 is known_answer_f64.  float32 with inner size
    # 53-200 on N(0, 1) entries: relative 1e-5 (f32_vs_f64), and an absolute floor for sums that cancel:
    # |terms| up to ~5 summed 200 times, 200 * 5 * 6e-8 = 6e-5; 1e-3 leaves 15x (the step's products in each
    # peer's library, inner sizes up to 784: 2.4e-4, 4x).
    "f32_gemm_abs": 1e-3,
    # mlpvae.evidence.grid against a closed form or a brute-force grid, asked for tol = 1e-8 on its halving
    # change: the trapezoid converges geometrically (measured 1e-14 to 5e-8 nats on the linear-Gaussian
    # cases, the largest for a sharp posterior, t = 1e-3, where log p ~ -1e3 carries ~1e-13 relative
    # round-off from sums over m); 1e-6 nats absolute.
    "grid_nats": 1e-6,
    # The same for ReLU decoders (tol = 1e-4): the log joint has kinks where a unit switches, so the
    # trapezoid converges at second order only, and the brute-force reference (1201^2 nodes, spacing 0.017)
    # carries an error of the same order; measured 1e-7 to 2.4e-5 nats (BAGGINS, whose log |x - nu|^2 peaks
    # sharply with m = 3 outputs); 1e-4.
    "grid_relu_nats": 1e-4,
    # A speed peer's float32 training step against ours (mlpvae.experiments.peer_bench.LOSS_RTOL): the first
    # loss is the same float32 forward pass summed in another order over B * m terms; measured 0 to 2 ulps of a
    # loss near 540 (1e-7 relative); 1e-5.  Later steps (after Adam's sign-like first updates) 1e-4.
    "peer_loss_f32": 1e-5,
    "peer_loss_f32_later": 1e-4,
    # mlpvae.nn.model.BatchSplit in float32: the weight and bias gradients are sums over the batch's rows, added
    # block by block instead of in one product; sqrt(B) ulps of the largest entry, ~1e-6 at B = 300; measured
    # 5e-7 of the largest entry; 1e-5.  (In float64 the same reordering is known_answer_f64.)
    "split_grad_f32": 1e-5,
}


@pytest.fixture
def tol():
    return TOL


def _cupy_with_device():
    """CuPy when it imports and sees a CUDA device, else None (the GPU-only tests then skip)."""
    from vaetheory.xp import cupy_or_none

    cp = cupy_or_none()
    try:
        return cp if cp is not None and cp.cuda.runtime.getDeviceCount() > 0 else None
    except Exception:
        return None


CUPY = _cupy_with_device()
needs_gpu = pytest.mark.skipif(CUPY is None, reason="CuPy with a CUDA device is not available on this machine")
