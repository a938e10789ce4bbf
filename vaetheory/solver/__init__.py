"""The nonparametric VAE solved numerically on synthetic data (n = 1 or 2).

* :mod:`vaetheory.solver.synthetic`: the synthetic data sets (anisotropic
  Gaussian, curved manifolds, Gaussian mixtures);
* :mod:`vaetheory.solver.quadrature`: Gauss-Hermite and latent-grid quadrature,
  the true log evidence and posterior moments of a fitted model;
* :mod:`vaetheory.solver.stationary`: the expected ELBO with the optimal
  decoder, its exact gradient, and stationary points by L-BFGS-B;
* :mod:`vaetheory.solver.polish`: the Newton steps that finish a solve at a sharp optimum;
* :mod:`vaetheory.solver.symmetry`: the objective's continuous symmetries as directions;
* :mod:`vaetheory.solver.certificate`: the second-order certificate (Hessian extremes off the symmetries).

``vaetheory verify`` (:mod:`vaetheory.claims`) measures the paper's claims there.
"""
