"""Which runs can train as one stack, and how many fit (Sec. 7 training).

A stack (:func:`mlpvae.training.train.train_many`) computes K models as one
batched computation, so its models must agree in every shape and in the code
path: data set and size, architecture, posterior and likelihood, dtype,
epochs, batch size, device and evaluation.  They may differ in the scalar
settings of :data:`FREE` (seed, sigma2, t, tau, latent scale, data scale
lambda, learning rate), which the step reads per model
(:mod:`mlpvae.nn.scalars`), so each model still computes what it computes
alone.  One exception: with BAGGINS and a constant Sigma, sigma2 enters T per
example in a shape that differs from the other uses, and the models must
agree in it.
"""

from __future__ import annotations

import math
import os

import numpy as np

from mlpvae.accel import device as dev
from mlpvae.nn import model
from mlpvae.training import config as C

FREE = ("seed", "out", "sigma2", "t", "tau", "latent_scale", "scale", "lr")  # what a stack's models may differ in


def _must_agree(cfg: C.TrainConfig) -> tuple[str, ...]:
    """The settings of ``cfg`` that every model of its stack must share (:data:`FREE` aside)."""
    keys = tuple(k for k in cfg.to_dict() if k not in FREE)
    if cfg.likelihood == "baggins" and cfg.posterior != "learned":
        keys += ("sigma2",)  # Eq. (29)'s trace with a constant Sigma: one sigma2 per stack
    return keys


def stack_key(cfg: C.TrainConfig) -> tuple:
    """What runs must share to train in one stack: two configs with the same key can (Not in the paper)."""
    d = cfg.to_dict()
    return tuple((k, d[k]) for k in _must_agree(cfg))


def check_together(cfgs: list, outs: list) -> None:
    """Refuse a stack of configs that differ in a shape or code path, repeat a model, or share a directory.

    The error names the settings that differ (Not in the paper).
    """
    if not cfgs or len(cfgs) != len(outs):
        raise ValueError(f"give one run directory per config: {len(cfgs)} configs, {len(outs)} directories")
    for c in cfgs:
        if not isinstance(c, C.TrainConfig):
            raise ValueError(f"configs must be mlpvae.training.config.TrainConfig, got {type(c).__name__}")
    keys = _must_agree(cfgs[0])
    base = cfgs[0].to_dict()
    for c in cfgs[1:]:
        d = c.to_dict()
        diff = sorted(k for k in set(keys) | set(_must_agree(c)) if base.get(k) != d.get(k))
        if diff:
            raise ValueError(
                f"models trained together must share every setting except {', '.join(FREE)} "
                f"(and sigma2 with BAGGINS and a constant Sigma); {diff} differ"
            )
    seen = set()
    for c in cfgs:
        own = tuple(sorted((k, v) for k, v in c.to_dict().items() if k != "out"))
        if own in seen:
            raise ValueError(f"two models have the same settings (seed {c.seed}): the same model twice")
        seen.add(own)
    dirs = [os.path.realpath(o) for o in outs]
    if len(set(dirs)) != len(dirs):
        raise ValueError("every run needs its own directory, got a repeated one")


def differing(cfgs: list) -> dict:
    """``name -> [value of each model]`` of the :data:`FREE` settings (``out`` aside) the models differ in
    (Not in the paper)."""
    dicts = [c.to_dict() for c in cfgs]
    return {k: [d[k] for d in dicts] for k in FREE if k != "out" and len({repr(d[k]) for d in dicts}) > 1}


def model_config(cfgs: list):
    """The model settings of the stack: model 0's :class:`~mlpvae.nn.model.ModelConfig`, or a
    :class:`~mlpvae.nn.model.StackConfig` holding each model's value of the settings they differ in (Sec. 7)."""
    varied = tuple((name, tuple(values)) for name, values in differing(cfgs).items() if name in model.STACKABLE)
    mc = cfgs[0].model_config()
    if not varied:
        return mc
    return model.StackConfig(**{f: getattr(mc, f) for f in model.ModelConfig.__dataclass_fields__}, varied=varied)


def own_targets(cfgs: list) -> bool:
    """Whether each model needs training targets of its own: dynamic binarization, or data scales that differ
    (Sec. 7; data scale lambda of Fig. 6)."""
    return cfgs[0].binarize == "dynamic" or len({c.scale for c in cfgs}) > 1


def model_bytes(cfg: C.TrainConfig) -> int:
    """An upper estimate of one stacked model's memory: parameters, gradients, Adam moments, its own training
    and test targets and the step's activations and their gradients (Not in the paper)."""
    count = sum(math.prod(s) for s in model.param_shapes(cfg.model_config()).values())
    images = (cfg.limit or 60000) + (cfg.test_limit or 10000)
    width = 2 * cfg.layers * cfg.hidden + 3 * cfg.m + 4 * cfg.n
    return np.dtype(cfg.dtype).itemsize * (4 * count + images * cfg.m + 3 * cfg.batch_size * width)


def memory_bytes(device: str) -> int | None:
    """The memory of the device ``device`` selects: the GPU's, or this machine's (also where ``device`` names a
    GPU this machine lacks, e.g. to list or redraw a figure); None if unknown (Not in the paper)."""
    try:
        xp, _ = dev.select(device)
    except RuntimeError:  # no GPU here: nothing is trained on one
        xp = np
    if xp is not np:
        return int(xp.cuda.runtime.memGetInfo()[1])
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return None


def models_per_stack(cfg: C.TrainConfig, have: int | None = None) -> int:
    """How many models like ``cfg`` one stack may hold: half the device's memory over :func:`model_bytes`
    (``have`` bytes in all, default :func:`memory_bytes`), at least one (Not in the paper)."""
    have = memory_bytes(cfg.device) if have is None else have
    if have is None:
        return 1 << 30
    return max(1, (have // 2) // model_bytes(cfg))
