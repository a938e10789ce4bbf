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
# # ELBO = log evidence at stationary points (Sec. 4.2, Eqs. (16)-(18))
#
# 1. The linear-Gaussian VAE: at its closed-form stationary point the ELBO, the Laplace form
#    Eq. (16) and the exact log likelihood agree to round-off.
# 2. The nonparametric VAE: at a solved stationary point, the per-example ELBO against the
#    fitted model's true `log p(x)` by latent grid quadrature, and Eq. (16) at `z = mu`.

# %%
import os

import matplotlib.pyplot as plt
import numpy as np

from vaetheory import linear as lin
from vaetheory.claims import measure
from vaetheory.plotting import STYLE, legend_outside
from vaetheory.solver.stationary import find_stationary_point
from vaetheory.solver.synthetic import anisotropic_gaussian, manifold

plt.style.use(STYLE)  # the project's one plotting style (vaetheory/vaetheory.mplstyle)

SMALL = os.environ.get("VAETHEORY_NB_SMALL") == "1"
N = 32 if SMALL else 96

# %%
x, C = anisotropic_gaussian(400, [6.0, 3.0, 0.6, 0.4], np.random.default_rng(0))
for n in (1, 2, 3):
    mdl = lin.linear_stationary_point(x, n=n, var=0.5)
    logp = lin.linear_log_likelihood(mdl, x)
    elbo = lin.linear_elbo(x, mdl.W, mdl.b, mdl.V, mdl.var, mdl.s2)
    q16 = lin.linear_laplace_log_evidence(mdl, x)
    print(
        f"n={n}: collapsed={mdl.collapsed}  max|ELBO-log p|={np.max(np.abs(elbo - logp)):.1e}  "
        f"max|Eq.16-log p|={np.max(np.abs(q16 - logp)):.1e}"
    )
    assert np.max(np.abs(elbo - logp)) < 1e-10 and np.max(np.abs(q16 - logp)) < 1e-10

# %%
x, _ = manifold(N, 1, 2, np.random.default_rng(0), scale=3.0, curvature=0.3, noise=1.0)
fig, axes = plt.subplots(1, 2, figsize=(10, 5))
for ax, variant in zip(axes, ("diagonal", "constant")):
    sp = find_stationary_point(x, 1, rng=np.random.default_rng(1), variant=variant)
    m = measure(sp)
    gap = m["log_px"] - m["elbo"]
    print(
        f"{variant}: mean ELBO {np.mean(m['elbo']):.4f}, mean log p {np.mean(m['log_px']):.4f}, "
        f"mean gap {np.mean(gap):.4f} nats (max {np.max(gap):.3f}), "
        f"Eq.(18) predicted mean gap {np.mean(m['gap18']):.4f}, mean |Eq.16 - log p| "
        f"{np.mean(np.abs(m['eq16'] - m['log_px'])):.4f}"
    )
    assert np.all(gap >= -m["quad_err"] - 1e-12)  # Jensen, up to the quadrature error
    ax.plot(m["log_px"], m["elbo"], ".", label="ELBO")
    ax.plot(m["log_px"], m["eq16"], "x", label=r"Eq. (16) at $\mu$")
    lo, hi = m["log_px"].min(), m["log_px"].max()
    ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="equality")
    ax.set_xlabel(r"true $\log p(x)$ (nats)")
    ax.set_ylabel("ELBO or Eq. (16) (nats)")
    ax.set_title(rf"{variant} $\Sigma$")
    legend_outside(ax, where="below", ncols=3)
plt.show()
