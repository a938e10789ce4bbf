"""The values behind the AIS tests' assertions, printed: the numbers docs/ais.md quotes for its validation.

    OMP_NUM_THREADS=1 python validation/scripts/ais_test_values.py

Same constructions, seeds and settings as tests/mlpvae/test_ais.py and test_ais_modes.py: the component-dependent
kernel against a shared one (linear-Gaussian decoder), the two-mode posterior with each p0, the two-Gaussian
posterior with the multimodal and the single-mode Laplace starts, and the defaults on the small trained 2-D model
of tests/tiny_runs.py against the exact grid (with its process time).
"""

from __future__ import annotations

import pathlib
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "mlpvae")]

import test_ais as TA  # noqa: E402
import test_ais_modes as TM  # noqa: E402
from tiny_runs import train_synthetic  # noqa: E402

from mlpvae.evidence import ais as A  # noqa: E402
from mlpvae.evidence import ais_target as AT  # noqa: E402
from mlpvae.evidence.grid import grid_log_px  # noqa: E402
from mlpvae.evidence.laplace import training_priors  # noqa: E402
from mlpvae.nn.batched import encode_all  # noqa: E402
from mlpvae.training.runs import load_run  # noqa: E402


def main() -> int:
    for name, (diff, se) in TA.component_kernel_errors().items():
        print("kernel", name, f"{diff:+.3f} +- {se:.3f}")
    # two modes
    mc, p, x = TA._two_modes()
    s2 = np.ones(2)
    exact = grid_log_px(p, x, mc, s2, tol=1e-6)["log_px"][0]
    mu, var = encode_all(p, x, mc)
    opts = dict(mu=mu, var=var, chains=256, steps=200, leapfrog=5)
    r = A.ais_log_px(p, x, mc, s2, np.random.default_rng(0), init="q", **opts)
    print("two-mode q", f"{r['log_px'][0] - exact:+.3f} +- {r['se'][0]:.3f}")
    for init in ("modes-mixture", "laplace-mixture", "mixture", "prior"):
        r = A.ais_log_px(p, x, mc, s2, np.random.default_rng(1), init=init, **opts)
        print("two-mode", init, f"{r['log_px'][0] - exact:+.3f} +- {r['se'][0]:.3f}")
    r = A.ais_log_px(p, x, mc, s2, np.random.default_rng(2), mu=mu, var=var, chains=256)
    print("two-mode defaults 256 chains", f"{r['log_px'][0] - exact:+.3f} +- {r['se'][0]:.3f}")
    # two Gaussians (test_ais_modes)
    mc, p, x = TM._bimodal()
    exact = grid_log_px(p, x, mc, s2, tol=1e-6)["log_px"][0]
    mu, var = encode_all(p, x, mc)
    _, _, lm = AT.laplace_modes(p, x, mu, var, mc, s2)
    print("two-Gaussian Laplace mass shares", np.round(np.exp(lm[0] - exact), 4).tolist())
    opts = dict(mu=mu, var=var, chains=64, steps=200, leapfrog=5)
    for init, seed in (("modes", 0), ("laplace", 0), ("modes-mixture", 1), ("laplace-mixture", 1)):
        r = A.ais_log_px(p, x, mc, s2, np.random.default_rng(seed), init=init, **opts)
        print("two-Gaussian", init, f"{r['log_px'][0] - exact:+.2e} +- {r['se'][0]:.2e}")
    d = pathlib.Path(tempfile.mkdtemp())
    train_synthetic(d / "run")
    run = load_run(d / "run", float64=True)
    _, _, s2, s2b = training_priors(run)
    x = run.x_test
    mu, var = encode_all(run.params, x, run.mc)
    exact = grid_log_px(run.params, x, run.mc, s2, baggins_s2=s2b, tol=1e-4)["log_px"]
    t0 = time.process_time()
    r = A.ais_log_px(run.params, x, run.mc, s2, np.random.default_rng(0), mu=mu, var=var)
    dd = r["log_px"] - exact
    print(
        f"tiny defaults: {len(x)} images, max |diff| {np.abs(dd).max():.4f}, mean {dd.mean():+.4f}, "
        f"max se {r['se'].max():.4f}, cpu {time.process_time() - t0:.1f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
