"""Which batched pieces of a stack of models part from the lone models' numbers, on this device.

    python validation/scripts/device/stack_parts.py [--models 5] [--batch 300] [--n 2] [--device gpu]

A stack of K models (mlpvae.training.train.train_many) runs each kernel once over all K.  For the pieces of a
training step at the paper's sizes (784-200-200-200-n, batch 300) this prints, per piece, whether
model k's result is bit for bit the one a lone model computes (a (1, ...) array of its own), and
the largest difference where it is not:

  * the dense layers' products, batched (one cuBLAS call of K) and one call per model on views
    of the stack (the pointers moved, the call a lone model makes);
  * the reductions over the batch (bias gradients, batch means) and over the data axis;
  * the whole loss_and_grads, batched and one model at a time (VAETHEORY_STACK_EXACT=1).

Exit status 0 always: this reports, the tests assert (tests/test_gpu_stacked.py).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from mlpvae.accel import device as dev
from mlpvae.accel import gemm
from mlpvae.nn import model as M
from mlpvae.training import train as T
from vaetheory.xp import to_numpy


def _apart(xp, f, *stacked):
    """``f`` of each model's (1, ...) views of the stacked operands, stacked again (the pointers moved)."""
    return xp.concatenate([f(*(a[k : k + 1] for a in stacked)) for k in range(stacked[0].shape[0])])


def _compare(name: str, stacked, alone: list) -> str:
    diffs = [
        float(np.max(np.abs(to_numpy(stacked[k]).astype(np.float64) - to_numpy(a[0])))) for k, a in enumerate(alone)
    ]
    same = sum(d == 0.0 for d in diffs)
    return f"{name:58s} {same}/{len(alone)} models identical" + (
        f"; max |diff| {max(diffs):.3g}" if same < len(alone) else ""
    )


def report(xp, K: int, B: int, n: int) -> list[str]:
    cfg = M.ModelConfig(n=n)
    rng = np.random.default_rng(0)
    lines = []

    def alone(f, *stacked):  # each model on (1, ...) copies: arrays of its own, as a lone model's
        return [f(*(a[k : k + 1].copy() for a in stacked)) for k in range(K)]

    def rand(*shape):
        return xp.asarray(rng.standard_normal(shape).astype(np.float32))

    for fi, fo in sorted(
        {(cfg.m, cfg.hidden), (cfg.hidden, cfg.hidden), (cfg.hidden, n), (n, cfg.hidden), (cfg.hidden, cfg.m)}
    ):
        h, W, g = rand(K, B, fi), rand(K, fi, fo), rand(K, B, fo)
        for what, f, ops in (
            (f"h @ W      ({B}x{fi} @ {fi}x{fo})", gemm.matmul, (h, W)),
            (f"h^T @ g    ({fi}x{B} @ {B}x{fo})", lambda a, b: gemm.matmul(a.swapaxes(-1, -2), b), (h, g)),
            (f"g @ W^T    ({B}x{fo} @ {fo}x{fi})", lambda a, b: gemm.matmul(a, b.swapaxes(-1, -2)), (g, W)),
        ):
            want = alone(f, *ops)
            lines.append(_compare(f"{what}, batched", f(*ops), want))
            lines.append(_compare(f"{what}, one call per model", _apart(xp, f, *ops), want))
    for F in sorted({n, cfg.hidden, cfg.m}):
        g = rand(K, B, F)
        lines.append(_compare(f"sum over the batch of ({B}, {F})", g.sum(axis=-2), alone(lambda a: a.sum(axis=-2), g)))
        lines.append(
            _compare(f"sum over the last axis of ({B}, {F})", g.sum(axis=-1), alone(lambda a: a.sum(axis=-1), g))
        )
    v = rand(K, B)
    lines.append(
        _compare(f"mean over the batch of ({B},)", xp.mean(v, axis=-1), alone(lambda a: xp.mean(a, axis=-1), v))
    )

    for posterior, likelihood in (("learned", "bernoulli"), ("constant", "bernoulli"), ("bilbo", "baggins")):
        mc = M.ModelConfig(n=n, posterior=posterior, likelihood=likelihood)
        singles = [M.init_params(mc, np.random.default_rng(k), xp=xp) for k in range(K)]
        params = T.stack(singles, xp)
        x = xp.asarray(rng.uniform(0, 1, (K, B, mc.m)).astype(np.float32))
        eps = rand(K, B, n)
        want = []
        for k in range(K):
            loss, grads, aux = M.loss_and_grads(
                {name: a[k : k + 1].copy() for name, a in params.items()},
                x[k : k + 1].copy(),
                eps[k : k + 1].copy(),
                mc,
            )
            want.append({"loss": loss, **aux, **grads})
        for apart in (False, True):
            with M.models_apart(apart):
                loss, grads, aux = M.loss_and_grads(params, x, eps, mc)
            got = {"loss": loss, **aux, **grads}
            parted = [
                name
                for name in got
                if any(not np.array_equal(to_numpy(got[name][k]), to_numpy(want[k][name][0])) for k in range(K))
            ]
            how = "one model at a time" if apart else "batched"
            lines.append(
                f"loss_and_grads {posterior}/{likelihood}, {how}: "
                + (f"all {len(got)} outputs identical" if not parted else f"differ in {', '.join(parted)}")
            )
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=5)
    parser.add_argument("--batch", type=int, default=300)
    parser.add_argument("--n", type=int, default=2)
    parser.add_argument("--device", default="gpu", choices=["cpu", "gpu"])
    args = parser.parse_args(argv)
    xp, device = dev.select(args.device)
    print(f"{device}: stack of {args.models}, batch {args.batch}, n = {args.n}, float32")
    for line in report(xp, args.models, args.batch, args.n):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
