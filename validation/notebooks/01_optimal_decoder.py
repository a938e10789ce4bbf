# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # The optimal decoder, Eq. (6), and its smoothness (Sec. 4.1)
#
# At a stationary point of the nonparametric VAE's expected ELBO we plot the optimal decoder
# `nu(z)` (Eq. (6)), check its Jacobian (Eqs. (7)-(8)) against finite differences, and measure
# how far it is from locally linear over each posterior: the approximation behind Eqs. (9)-(12).
# `VAETHEORY_NB_SMALL=1` (set by the test suite) picks small settings.

# %%
import os

import matplotlib.pyplot as plt
import numpy as np

from vaetheory.claims import measure
from vaetheory.optimal import optimal_decoder, optimal_decoder_jacobian
from vaetheory.plotting import STYLE, legend_outside
from vaetheory.solver.stationary import find_stationary_point
from vaetheory.solver.synthetic import manifold

plt.style.use(STYLE)  # the project's one plotting style (vaetheory/vaetheory.mplstyle)

SMALL = os.environ.get("VAETHEORY_NB_SMALL") == "1"
N = 32 if SMALL else 96
CURVATURES = [0.0, 0.8] if SMALL else [0.0, 0.2, 0.4, 0.8, 1.6]

# %%
x, t = manifold(N, 1, 2, np.random.default_rng(0), scale=3.0, curvature=0.3, noise=1.0)
sp = find_stationary_point(x, 1, rng=np.random.default_rng(1), variant="diagonal")
print(f"converged={sp.converged}  |grad|={sp.grad_norm:.1e}  iterations={sp.n_iter}  S^2={sp.s2}")

# %%
z = np.linspace(-3.5 * np.sqrt(sp.s2[0]), 3.5 * np.sqrt(sp.s2[0]), 400)[:, None]
nu = optimal_decoder(z, sp.mu, sp.var, x)
fig, ax = plt.subplots(1, 2, figsize=(10, 4))
ax[0].plot(x[:, 0], x[:, 1], ".", color="0.6", label="data x")
ax[0].plot(nu[:, 0], nu[:, 1], "k-", label=r"$\nu(z)$, Eq. (6)")
ax[0].set_title("decoded curve in data space")
ax[0].set_xlabel("$x_1$ (data units)")
ax[0].set_ylabel("$x_2$ (data units)")
legend_outside(ax[0], where="below")
for k in range(x.shape[1]):
    ax[1].plot(z[:, 0], nu[:, k], label=f"$\\nu_{k + 1}(z)$")
ax[1].errorbar(
    sp.mu[:, 0],
    np.full(N, x.min() - 1),
    xerr=np.sqrt(sp.var[:, 0]),
    fmt="|",
    alpha=0.4,
    label=r"posteriors: $\mu \pm \sigma$",
)
ax[1].set_xlabel("latent $z$ (latent units)")
ax[1].set_ylabel("decoder output (data units)")
legend_outside(ax[1], where="below", ncols=3)
ax[1].set_title("decoder components and posterior widths")
plt.show()

# %% [markdown]
# The decoder saturates beyond the outermost posteriors (it tends to the nearest example's `x`),
# so its slope there falls to zero: this is where Eq. (11) is furthest off (see `vaetheory verify`).
#
# Eq. (7) against central differences at the posterior means:

# %%
nu_mu, J = optimal_decoder_jacobian(sp.mu, sp.mu, sp.var, x)
h = 1e-6
fd = (optimal_decoder(sp.mu + h, sp.mu, sp.var, x) - optimal_decoder(sp.mu - h, sp.mu, sp.var, x)) / (2 * h)
err = np.max(np.abs(fd - J[:, :, 0])) / np.max(np.abs(J))
print(f"max relative error of Eq. (7) vs finite differences: {err:.1e}")
assert err < 1e-6

# %% [markdown]
# Decoder nonlinearity over the posterior window, `E_q|nu(z) - nu(mu) - J (z - mu)|^2 / tr(J Sigma J^T)`,
# against the curvature of the data manifold, with the relative residual of Eq. (11):

# %%
rows = []
for k in CURVATURES:
    xk, _ = manifold(N, 1, 2, np.random.default_rng(4), scale=3.0, curvature=k, noise=1.0)
    spk = find_stationary_point(xk, 1, rng=np.random.default_rng(1), variant="diagonal")
    m = measure(spk)
    rows.append((k, m["nonlin"], m["eq11"]))
    print(f"curvature {k:4.2f}: nonlinearity {m['nonlin']:.3f}  Eq.(11) residual {m['eq11']:.3f}")
rows = np.array(rows)
fig, ax = plt.subplots(figsize=(8, 3.8))
ax.plot(rows[:, 0], rows[:, 1], "o-", label="decoder nonlinearity")
ax.plot(rows[:, 0], rows[:, 2], "s-", label="Eq. (11) relative residual")
ax.set_xlabel("manifold curvature $k$ (synthetic data parameter)")
ax.set_ylabel("dimensionless")
legend_outside(ax)
plt.show()
