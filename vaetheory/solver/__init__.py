"""The nonparametric VAE solved numerically on synthetic data (n = 1 or 2).

* :mod:`vaetheory.solver.synthetic`: the synthetic data sets (anisotropic
  Gaussian, curved manifolds, Gaussian mixtures);
* :mod:`vaetheory.solver.quadrature`: Gauss-Hermite and latent-grid quadrature,
  the true log evidence and posterior moments of a fitted model;
* :mod:`vaetheory.solver.stationary`: the expected ELBO with the optimal
  decoder, its exact gradient, and stationary points by L-BFGS-B.

``vaetheory verify`` (:mod:`vaetheory.claims`) measures the paper's claims there.
"""
