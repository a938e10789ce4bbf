"""mlpvae: a multilayer-perceptron VAE with hand-written gradients on CuPy or NumPy, trained on MNIST (Sec. 7).

The same source runs on CuPy (GPU) or NumPy (CPU); the objectives are the
xp-generic functions of :mod:`vaetheory.objectives`.  Layers, each importing
only from itself and those below it (and from :mod:`vaetheory`): ``accel``
<- ``nn`` <- ``training`` <- ``evidence`` <- ``experiments``.
"""
