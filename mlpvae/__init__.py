"""gpu: a multilayer-perceptron VAE with hand-written gradients on CuPy or NumPy.

The same source runs on CuPy (GPU) or NumPy (CPU); the objectives are the
xp-generic functions of :mod:`vaetheory.objectives`.
"""
