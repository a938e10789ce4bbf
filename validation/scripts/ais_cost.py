"""CPU (or GPU) time of one AIS gradient for the MNIST MLP, per (chain, image) row: the cost model of docs/ais.md.

    OMP_NUM_THREADS=1 python validation/scripts/ais_cost.py

Times three HMC transitions of 10 leapfrog steps (mlpvae.evidence.ais.hmc) on 100 images x 16 chains of an
untrained 784-200-200-200-n decoder (the cost depends on the architecture only), n = 2 and n = 100, float64,
and prints the process time per (row, gradient).
"""

from __future__ import annotations

import time

import numpy as np

from mlpvae.evidence import ais as A
from mlpvae.nn import model as M


def main() -> int:
    for n in (2, 100):
        mc = M.ModelConfig(n=n, posterior="constant")
        p = M.init_params(mc, np.random.default_rng(0), dtype=np.float64)
        B, C, L = 100, 16, 10
        x = np.random.default_rng(1).random((B, mc.m))
        mu, var, s2 = np.zeros((B, n)), np.ones((B, n)), np.ones(n)
        target, _, _ = A.setup(p, x, mc, s2, mu, var, None, C, "mixture", 0.5)
        z = target.sample_initial(np.random.default_rng(2))
        state = [z, *target.joint(z), *target.initial(z)]
        rng = np.random.default_rng(3)
        t0 = time.process_time()
        for _ in range(3):
            state, _ = A.hmc(target, state, 0.5, np.full(B * C, 0.01), L, rng)
        dt = (time.process_time() - t0) / (3 * L * B * C)
        print(f"n = {n}: {dt * 1e6:.1f} us of process time per (row, gradient), {B * C} rows")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
