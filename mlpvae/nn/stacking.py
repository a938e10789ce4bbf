"""K models' parameters and Adam states stacked on a leading axis, and each model's share of them (Sec. 7).

Training K models of one shape (differing in seed and scalar settings,
:mod:`mlpvae.training.stacks`) as one batched computation keeps every array
as ``(K, ...)``; these helpers build such stacks from K single-model dicts and
take model k's arrays back out, in the single-model format a checkpoint stores.
"""

from __future__ import annotations

import numpy as np


def stack(dicts: list[dict], xp=np) -> dict:
    """One dict of ``(K, ...)`` arrays from K dicts with the same keys and shapes."""
    return {k: xp.stack([xp.asarray(d[k]) for d in dicts]) for k in dicts[0]}


def model_view(stacked: dict, k: int) -> dict:
    """Model ``k``'s arrays of a stacked dict, as views."""
    return {name: a[k] for name, a in stacked.items()}


def adam_state(opt, k: int) -> dict:
    """Model ``k``'s share of a stacked Adam state, in the single-model format of a checkpoint.

    Views of the optimiser's moments, which :class:`mlpvae.training.checkpoint.Writer`
    copies to the host at once, instead of :meth:`Adam.state_dict`'s copies
    of every model's moments.
    """
    d: dict = {"step": int(opt.t)}
    for name in opt.m:
        d[f"m.{name}"] = opt.m[name][k]
        d[f"v.{name}"] = opt.v[name][k]
    return d


def stack_adam_states(states: list[dict], xp) -> dict:
    """One stacked Adam state from K single-model ones, which must be at the same step."""
    steps = {int(np.asarray(st["step"]).item()) for st in states}
    if len(steps) > 1:
        raise ValueError(
            f"--resume: the runs' optimisers are at different steps {sorted(steps)}; resume them separately"
        )
    out = stack([{k: v for k, v in st.items() if k != "step"} for st in states], xp)
    out["step"] = steps.pop()
    return out
