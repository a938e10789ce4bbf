"""The constant-variance penalty of ``--quick``'s first problem at several quadrature orders (issue 18).

Solves the constant and the diagonal stationary points of ``gauss-m4-n2-N40``
(seed 0) as ``vaetheory verify --quick`` does, then prints
E[ELBO_diag] - E[ELBO_const] with the ELBO evaluated at the solve's order 12
and at 24, 36, 48.

Usage: ``PYTHONPATH=. OMP_NUM_THREADS=1 python3 validation/scripts/eq22_orders.py``
"""

import numpy as np

from vaetheory.claims.problems import default_problems
from vaetheory.solver.stationary import find_stationary_point, nonparametric_elbo

p = default_problems(0, True)[0]
sc = find_stationary_point(p["x"], p["n"], rng=np.random.default_rng([0, 7]), variant="constant")
init = (sc.mu, sc.var.copy(), sc.s2)
sd = find_stationary_point(p["x"], p["n"], rng=np.random.default_rng([0, 7]), variant="diagonal", init=init)
print(p["name"], "solve order", sc.order, "max-abs gradients", sd.grad_norm, sc.grad_norm)
for q in (12, 24, 36, 48):
    e_d = nonparametric_elbo(sd.x, sd.mu, sd.var, sd.s2, order=q).mean()
    e_c = nonparametric_elbo(sc.x, sc.mu, sc.var, sc.s2, order=q).mean()
    print(f"order {q}: E[ELBO_diag] - E[ELBO_const] = {e_d - e_c:+.4f} nats")
print("diagonal variances: min", sd.var.min(axis=0), "max", sd.var.max(axis=0), "constant", sc.var[0])
