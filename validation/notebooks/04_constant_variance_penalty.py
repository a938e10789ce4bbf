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
from vaetheory.solver.stationary import find_stationary_point
from vaetheory.solver.synthetic import manifold

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
plt.figure(figsize=(4.5, 4.5))
plt.plot(rows[:, 1], rows[:, 2], "o")
for r in rows:
    plt.annotate(f"k={r[0]:g}", (r[1], r[2]))
hi = rows[:, 1:3].max() * 1.1
plt.plot([0, hi], [0, hi], "k--", lw=0.8)
plt.xlabel("predicted, Eq. (22) (nats)")
plt.ylabel("measured E[ELBO_diag] - E[ELBO_const] (nats)")
plt.show()
