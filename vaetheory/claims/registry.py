"""The claim registry: the :class:`Claim` row, its constructor, and the ``@claim`` decorator.

A claim function measures one claim of the paper (one ``id``) in one *scope*,
the unit of work ``vaetheory verify`` hands it (see :mod:`vaetheory.claims.runner`):

=========  ====================================================================
scope      the function receives
=========  ====================================================================
linear     :class:`LinearCase`: the closed-form linear stationary point, one latent dimension
problem    :class:`ProblemCase`: one synthetic problem and the shared generator
point      :class:`PointCase`: one stationary point and its measurements
pair       :class:`PairCase`: the diagonal and constant-variance points of one problem
curvature  :class:`SweepCase`: the curvature sweep's rows
density    :class:`SweepCase`: the density sweep's rows
=========  ====================================================================

and returns a list of :class:`Claim` rows (empty where the claim does not apply).
Within a scope, claims run in the order of :data:`CLAIM_IDS`; that order, and
the order of the scopes in the runner, fix the order of ``claims.json``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from vaetheory.linear import LinearVAE
from vaetheory.solver.certificate import Certificate
from vaetheory.solver.stationary import StationaryPoint

# Every claim id, in the order ``--claims`` lists them and each scope runs them.
CLAIM_IDS = [
    "linear",
    "solver",
    "gradient",
    "eq4",
    "appendix",
    "eq11",
    "eq12",
    "bound",
    "eq18",
    "eq16",
    "eq22",
    "main",
    "eq25",
    "collapse",
    "hessian",
    "eq19",
    "smoothness",
    "density",
]

SCOPES = ("linear", "problem", "point", "pair", "curvature", "density")


@dataclass
class Claim:
    """One measured claim (a row of the table and of ``claims.json``)."""

    id: str
    equations: list
    problem: str
    measured: float
    threshold: float
    holds: bool
    kind: str
    description: str
    condition: str
    details: dict = field(default_factory=dict)
    # At two quadrature orders (vaetheory.claims.convergence): the coarse order's measurement, and whether
    # the verdict is the same at both (an unresolved verdict is neither "holds" nor "off").
    measured_coarse: float | None = None
    resolved: bool = True


def make_claim(id, equations, problem, measured, threshold, kind, description, condition, **details) -> Claim:
    """A :class:`Claim` whose verdict is ``measured <= threshold`` (a non-finite measurement fails)."""
    measured = float(measured)
    return Claim(
        id=id,
        equations=list(equations),
        problem=problem,
        measured=measured,
        threshold=float(threshold),
        holds=bool(np.isfinite(measured) and measured <= threshold),
        kind=kind,
        description=description,
        condition=condition,
        details={k: jsonable(v) for k, v in details.items()},
    )


def jsonable(v):
    """``v`` with NumPy arrays and scalars turned into lists and Python numbers (recursively)."""
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    if isinstance(v, dict):
        return {k: jsonable(u) for k, u in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(u) for u in v]
    return v


# ---------------------------------------------------------------------------
# What each scope hands a claim function
# ---------------------------------------------------------------------------
@dataclass
class LinearCase:
    """The closed-form linear-Gaussian stationary point of ``problem`` with latent dimension ``n``."""

    problem: dict
    n: int
    model: LinearVAE
    C: np.ndarray  # data covariance (biased)
    b: np.ndarray  # data mean


@dataclass
class ProblemCase:
    """One synthetic problem and the run's shared generator."""

    problem: dict
    rng: np.random.Generator


@dataclass
class PointCase:
    """One stationary point ``sp`` of problem ``name``, its measurements, the solve's tolerance, and its
    second-order certificate where the runner computed one."""

    name: str
    sp: StationaryPoint
    meas: dict
    gtol: float
    certificate: Certificate | None = None


@dataclass
class PairCase:
    """The diagonal and constant-variance stationary points of one problem, measured.

    ``figs`` is the report's figure data; a claim may record its curve there.
    """

    problem: dict
    sp_d: StationaryPoint
    meas_d: dict
    sp_c: StationaryPoint
    meas_c: dict
    rng: np.random.Generator
    quick: bool
    figs: dict


@dataclass
class SweepCase:
    """The rows of a sweep (one dict of errors per setting, in sweep order), and every data draw's row.

    ``draws`` holds one dict per solved data set (its setting, ``draw`` index and errors); the claims
    that compare settings pair the draws by index and put a confidence interval on the ratio.
    """

    rows: list
    draws: list = field(default_factory=list)


@dataclass(frozen=True)
class ClaimSpec:
    """A registered claim function: its claim id, scope, and the function."""

    id: str
    scope: str
    func: Callable


REGISTRY: list[ClaimSpec] = []


def claim(id: str, scope: str):
    """Register the decorated function as the measurement of claim ``id`` in ``scope``."""
    if id not in CLAIM_IDS:
        raise ValueError(f"claim id {id!r} is not in CLAIM_IDS")
    if scope not in SCOPES:
        raise ValueError(f"scope {scope!r} is not one of {SCOPES}")

    def register(func):
        REGISTRY.append(ClaimSpec(id, scope, func))
        return func

    return register


def in_scope(scope: str, wanted) -> list[ClaimSpec]:
    """The registered claims of ``scope`` whose id is in ``wanted``, in :data:`CLAIM_IDS` order."""
    specs = [s for s in REGISTRY if s.scope == scope and s.id in wanted]
    return sorted(specs, key=lambda s: CLAIM_IDS.index(s.id))
