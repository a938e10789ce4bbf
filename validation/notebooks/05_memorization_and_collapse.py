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
# # Memorization and collapse (Sec. 6)
#
# Directions of the data whose variance is not above the likelihood variance (1) collapse:
# exactly in the linear-Gaussian VAE, and at the nonparametric stationary points too.  Examples
# far from their neighbours (relative to the likelihood's standard deviation) are memorised:
# their posteriors shrink.

# %%
import os

import matplotlib.pyplot as plt
import numpy as np

from vaetheory import linear as lin
from vaetheory.plotting import STYLE
from vaetheory.solver.stationary import find_stationary_point
from vaetheory.solver.synthetic import anisotropic_gaussian, gaussian_mixture

plt.style.use(STYLE)  # the project's one plotting style (vaetheory/vaetheory.mplstyle)

SMALL = os.environ.get("VAETHEORY_NB_SMALL") == "1"
N = 40 if SMALL else 96

# %%
spectrum = [6.0, 2.0, 0.9, 0.5, 0.3]
x, C = anisotropic_gaussian(2000, spectrum, np.random.default_rng(0))
mdl = lin.linear_stationary_point(cov=C, n=5)
print("data eigenvalues      ", np.round(mdl.lam, 3))
print("collapsed             ", mdl.collapsed)
print("|W_k|^2 S^2_k (= lam-1)", np.round(np.sum(mdl.W**2, 0) * mdl.s2, 3))
assert np.array_equal(mdl.collapsed, mdl.lam <= 1)

# %%
x, _ = anisotropic_gaussian(N, [6.0, 0.6, 0.4, 0.3], np.random.default_rng(1))
sp = find_stationary_point(x, 2, rng=np.random.default_rng(2), variant="diagonal")
ratio = np.mean(sp.mu**2, 0) / sp.s2
print(
    "nonparametric: E[mu_k^2]/S^2_k =", ratio, " sample eigenvalues", np.round(np.linalg.eigvalsh(np.cov(x.T))[::-1], 3)
)

# %% [markdown]
# Memorization: three clusters 8 apart (far relative to the unit likelihood) with a 1-D latent.
# The posterior variance of each example against its distance to its nearest neighbour.

# %%
means = np.array([[-4.0, 0.0, 0.0], [4.0, 0.0, 0.0], [0.0, 5.0, 0.0]])
x, labels = gaussian_mixture(N, means, np.random.default_rng(3))
sp = find_stationary_point(x, 1, rng=np.random.default_rng(4), variant="diagonal")
d = np.linalg.norm(x[:, None] - x[None], axis=2)
np.fill_diagonal(d, np.inf)
nn = d.min(1)
fig, ax = plt.subplots(figsize=(6, 4))
ax.semilogy(nn, sp.var[:, 0] / sp.s2[0], "o")
ax.set_xlabel("distance to the nearest neighbour (likelihood sd = 1 data unit)")
ax.set_ylabel(r"posterior variance / prior variance, $\sigma^2 / S^2$")
plt.show()
print("smallest relative posterior variances:", np.sort(sp.var[:, 0] / sp.s2[0])[:5])
