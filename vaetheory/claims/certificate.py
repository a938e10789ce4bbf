"""The second-order certificate as a claim row: is each solution a local maximum of the expected ELBO?

:func:`vaetheory.solver.certificate.certify` gives the extreme Hessian
eigenvalues off the symmetry directions (latent scale; latent rotations where
the variances are isotropic).  A solver that maximises should stop at a local
maximum, so the row is a check: a saddle or an unexplained flat direction
fails it.
"""

from __future__ import annotations

from vaetheory.claims.registry import Claim, PointCase, claim, make_claim


@claim("hessian", "point")
def hessian(case: PointCase) -> list[Claim]:
    """Eq. (2): the largest Hessian eigenvalue off the symmetries is negative (a local maximum)."""
    cert = case.certificate
    if cert is None:
        return []
    symmetries = ", ".join(cert.symmetries) or "none"
    return [
        make_claim(
            "hessian",
            ["(2)"],
            f"{case.name} [{case.sp.variant}]",
            cert.top,
            -cert.tol,
            "check",
            (
                "largest eigenvalue of the Hessian of the summed ELBO off the symmetry directions "
                "(< 0: local maximum; > 0: saddle; ~0: flat)"
            ),
            f"{cert.kind}; flat by symmetry: {symmetries}; Gauss-Hermite order {case.sp.order}",
            certificate=cert.kind,
            top=cert.top,
            bottom=cert.bottom,
            tol=cert.tol,
            symmetries=cert.symmetries,
            symmetry_residual=cert.symmetry_residual,
            method=cert.method,
            products=cert.products,
            parameters=cert.parameters,
            order=case.sp.order,
        )
    ]
