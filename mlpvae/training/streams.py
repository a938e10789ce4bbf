"""The registry of random streams: every generator of mlpvae derives from ``(seed, stream, epoch)`` here (Sec. 7).

A generator is ``SeedSequence([seed, stream, epoch])``, so the state of every
draw at an epoch boundary is fully given by the seed and the epoch (what makes
``--resume`` reproduce an uninterrupted run bit for bit on NumPy).  Each stream
number below is used by exactly one kind of draw; the numbers are part of the
results (changing one changes every number computed from it).
"""

from __future__ import annotations

import numpy as np

STREAM_INIT = 0  # the parameters' initialisation
STREAM_ORDER = 1  # each epoch's batch order
STREAM_NOISE = 2  # each epoch's reparameterisation noise and dynamic binarization of the training set
STREAM_TEST = 3  # the test set's dynamic binarization and the per-epoch test ELBO's noise
STREAM_EVAL = 1000  # `vaetheory evaluate`: its ELBO and IWAE noise
STREAM_PLOTS = 1001  # `vaetheory evaluate --plots`: the samples drawn for the figures
STREAM_ANALYSIS = 1002  # `vaetheory analyze` and the per-image evidence reports
STREAM_AIS = 1003  # `vaetheory analyze --ais`: the AIS and BDMC chains (pilot runs included)
STREAM_SIMULATE = 1004  # `vaetheory analyze --ais`: the images simulated from the model for BDMC
STREAM_FIGURES = (
    2001  # `vaetheory reproduce`: the figures' samples, from numpy.random.default_rng([seed, STREAM_FIGURES])
)


def generator(seed: int, stream: int, epoch: int, xp=np):
    """The generator of one stream and epoch on the array module ``xp`` (NumPy's, or CuPy's seeded from it)."""
    ss = np.random.SeedSequence([seed, stream, epoch])
    if xp is np:
        return np.random.default_rng(ss)
    return xp.random.default_rng(int(ss.generate_state(1, np.uint64)[0]))


def chunk_generator(seed: int, stream: int, epoch: int, first: int, xp=np):
    """The generator of the chunk of images starting at image ``first`` (> 0) of a per-image analysis.

    ``SeedSequence([seed, stream, epoch, first])``: the chunk's draws depend on
    where it starts, not on which process computes it.  The chunk starting at
    image 0 uses :func:`generator`, the stream of the unchunked analysis.
    """
    if first < 1:
        raise ValueError(f"first must be >= 1 (the chunk at 0 uses generator()), got {first}")
    ss = np.random.SeedSequence([seed, stream, epoch, first])
    if xp is np:
        return np.random.default_rng(ss)
    return xp.random.default_rng(int(ss.generate_state(1, np.uint64)[0]))
