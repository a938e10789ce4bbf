"""vaetheory: the VAE theory paper "There and Back Again" as verified, runnable code.

Shape letters (used in every docstring):

=====  =======================================================
N      population (number of data examples / posteriors)
B      batch
M      query points (latent points where the decoder is evaluated)
n      latent dimension
m      data dimension
K      models trained as one stack (mlpvae.training.train.train_many): a leading axis
=====  =======================================================

Arrays are batch-first: ``mu (N, n)``, ``var (N, n)`` or ``(n,)`` (diagonal
posterior variances Sigma), ``x (N, m)``, ``J (N, m, n)``.  Symbols follow the
paper: ``mu, var (Sigma), s2 (S^2), nu, J, T, tau``.

Everything in this package is float64 NumPy/SciPy unless a function says it is
written against an array module ``xp`` (those also run on CuPy).
"""

__version__ = "0.1.0"
