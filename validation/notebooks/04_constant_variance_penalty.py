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
# # The constant posterior variance penalty (Sec. 4.3, Eqs. (21)-(22))
#
# For each problem we solve twice, with per-example diagonal variances and with one constant
# variance (the constant solve first; the diagonal solve starts from it), and compare the
# measured drop in the expected ELBO with the predicted penalty `1/4 tr CV^2[S^-2 + J^T J]`.

# %%
import os

import matplotlib.pyplot as plt
import numpy as np

from vaetheory.claims import measure
from vaetheory.plotting import STYLE, legend_outside
from vaetheory.solver.stationary import find_stationary_point
from vaetheory.solver.synthetic import manifold

plt.style.use(STYLE)  # the project's one plotting style (vaetheory/vaetheory.mplstyle)

SMALL = os.environ.get("VAETHEORY_NB_SMALL") == "1"
N = 32 if SMALL else 64
CURVATURES = [0.0, 0.8] if SMALL else [0.0, 0.2, 0.4, 0.8, 1.6]

# %%
rows = []
for k in CURVATURES:
    x, _ = manifold(N, 1, 2, np.random.default_rng(4), scale=3.0, curvature=k, noise=1.0)
    sc = find_stationary_point(x, 1, rng=np.random.default_rng(7), variant="constant")
    sd = find_stationary_point(
        x, 1, rng=np.random.default_rng(7), variant="diagonal", init=(sc.mu, sc.var.copy(), sc.s2)
    )
    mc, md = measure(sc), measure(sd)
    measured = np.mean(md["elbo"]) - np.mean(mc["elbo"])
    rows.append((k, mc["penalty22"], measured, np.mean(md["elbo"])))
    print(
        f"curvature {k:4.2f}: predicted {mc['penalty22']:.4f}  measured {measured:.4f} nats  "
        f"(ELBO {np.mean(md['elbo']):.3f}; penalty is {100 * measured / abs(np.mean(md['elbo'])):.2f}% of it)"
    )
    assert measured >= -1e-9  # the diagonal family contains the constant one and starts from it
rows = np.array(rows)

# %%
fig, ax = plt.subplots(figsize=(8, 4.8))
for i, r in enumerate(rows):
    ax.plot(r[1], r[2], "osD^vPX*"[i % 8], ms=8, label=f"curvature k = {r[0]:g}")
hi = rows[:, 1:3].max() * 1.1
ax.plot([0, hi], [0, hi], "k--", lw=1, label="measured = predicted")
ax.set_xlabel("predicted penalty, Eq. (22) (nats)")
ax.set_ylabel(r"measured $E[$ELBO$_{diag}] - E[$ELBO$_{const}]$ (nats)")
legend_outside(ax)
plt.show()
