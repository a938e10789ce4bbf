"""``vaetheory verify``: every claim of the paper measured at real stationary points.

For each default synthetic problem (:mod:`vaetheory.claims.problems`, data from
:mod:`vaetheory.solver.synthetic`) the command solves for stationary points of
the nonparametric VAE's expected ELBO (:mod:`vaetheory.solver.stationary`,
per-example diagonal and constant posterior variances), computes the fitted
model's true log evidence by latent grid quadrature
(:mod:`vaetheory.solver.quadrature`), and measures each identity of the paper
there (:mod:`vaetheory.claims.measure`).  The linear-Gaussian closed forms
(:mod:`vaetheory.linear`) give the exact cases.

Each claim is a row: ``id``, ``equations``, ``problem``, ``measured``,
``threshold``, ``holds`` (``measured <= threshold``), ``kind`` ("exact": must
hold to numerical tolerance; "check": a consistency check of the computation,
true by construction and not evidence for the paper; "approximate": the paper
says "~=" and the threshold is the order of error we read its argument to
promise), and the ``condition`` under which the paper says it holds.  The exit
status is 0 when every exact claim and every check holds.

Modules: ``registry`` (the :class:`Claim` row and the ``@claim`` decorator),
``problems``, ``measure``, the claims by topic (``linear``, ``nonparametric``,
``variance``, ``logdet``, ``sweeps``), ``runner`` (:func:`run_all`),
``report`` (table, report.md, claims.json), ``plots`` (the PNGs) and ``command`` (the CLI).
"""

from vaetheory.claims.command import add_arguments, run
from vaetheory.claims.measure import measure
from vaetheory.claims.plots import PLOTS, write_plots
from vaetheory.claims.problems import curvature_sweep, default_problems, density_sweep
from vaetheory.claims.registry import CLAIM_IDS, Claim, claim, make_claim
from vaetheory.claims.report import report_markdown, table
from vaetheory.claims.runner import run_all

__all__ = [
    "CLAIM_IDS",
    "PLOTS",
    "Claim",
    "add_arguments",
    "claim",
    "curvature_sweep",
    "default_problems",
    "density_sweep",
    "make_claim",
    "measure",
    "report_markdown",
    "run",
    "run_all",
    "table",
    "write_plots",
]
