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
# # The role of Sigma: a trace-based log-determinant estimator (Eqs. (19)-(20))
#
# `min_Sigma tr(A Sigma) - log|e Sigma| = log|A|`.  At a stationary point the ELBO performs this
# minimisation for `A = I + S J^T J S` (Eq. (20)).  We take the per-example matrices of a solved
# stationary point, stack them block-diagonally, and run the stochastic estimator of Eq. (19)
# with an increasing number of probes.  A restricted Sigma family (scalar, diagonal) converges to
# log|A| plus its bias floor; the 2x2 blocks here are not diagonal, so only a richer family
# (diag+lowrank) removes it.

# %%
import os

import matplotlib.pyplot as plt
import numpy as np

from vaetheory.claims import measure
from vaetheory.logdet import logdet_trace_estimator, trace_identity_minimiser, trace_identity_objective
from vaetheory.plotting import STYLE, decade_labels, legend_outside
from vaetheory.solver.stationary import find_stationary_point
from vaetheory.solver.synthetic import anisotropic_gaussian

plt.style.use(STYLE)  # the project's one plotting style (vaetheory/vaetheory.mplstyle)

SMALL = os.environ.get("VAETHEORY_NB_SMALL") == "1"
N = 32 if SMALL else 80
BUDGETS = [40, 160, 640] if SMALL else [50, 200, 800, 3200, 12800]

# %%
x, _ = anisotropic_gaussian(N, [6.0, 2.5, 0.4, 0.3], np.random.default_rng(0))
sp = find_stationary_point(x, 2, rng=np.random.default_rng(1), variant="diagonal")
m = measure(sp)
s = np.sqrt(sp.s2)
A = np.eye(2) + np.einsum("k,imk,iml,l->ikl", s, m["J"], m["J"], s)

# %% [markdown]
# Eq. (19) exactly on one example's matrix (the minimiser is `A^-1`):

# %%
A0 = A[0]
Sig = trace_identity_minimiser(A0)
print("min value", trace_identity_objective(A0, Sig), " log|A|", np.linalg.slogdet(A0)[1])

# %%
exact = float(np.sum(np.linalg.slogdet(A)[1]))


def matvec(X):
    return np.einsum("ikl,ilb->ikb", A, X.reshape(N, 2, -1)).reshape(2 * N, -1)


dense = np.zeros((2 * N, 2 * N))
for i in range(N):
    dense[2 * i : 2 * i + 2, 2 * i : 2 * i + 2] = A[i]
fig, ax = plt.subplots(figsize=(9, 4))
for par in ("scalar", "diagonal", "diag+lowrank"):
    errors = []
    for b in BUDGETS:
        est = [
            logdet_trace_estimator(dense, rng=np.random.default_rng([b, r]), budget=b, parameterization=par)
            for r in range(5)
        ]
        errors.append(np.sqrt(np.mean([(e.estimate - exact) ** 2 for e in est])) / abs(exact))
    floor = est[0].bias_floor / abs(exact)
    print(f"{par:13s} RMS relative error {np.array2string(np.array(errors), precision=2)}  bias floor {floor:.1e}")
    ax.loglog(BUDGETS, errors, "o-", label=rf"Eq. (19), {par} $\Sigma$ (relative bias floor {floor:.0e})")
ax.loglog(
    BUDGETS,
    errors[0] * np.sqrt(BUDGETS[0] / np.array(BUDGETS, float)),
    "k:",
    label=r"slope of $1/\sqrt{\mathrm{probes}}$",
)
ax.set_xlabel("probes (matrix-vector products)")
ax.set_ylabel(r"RMS relative error of $\log|A|$")
legend_outside(ax)
decade_labels(fig)
plt.show()
