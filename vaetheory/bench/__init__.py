"""Benchmarks of the reference code (not in the paper).

* :mod:`vaetheory.bench.logdet`: the Eq. (19) log-determinant estimator against
  baselines (``vaetheory bench logdet``);
* :mod:`vaetheory.bench.optimal`: the optimal decoder Eqs. (6)-(7) as GEMMs,
  its FLOP rate against a plain GEMM and its peak memory.
"""
