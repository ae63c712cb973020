"""Whether a fit's coefficients are set by the data or by the optimiser's bounds."""

from __future__ import annotations

from scaling.laws.frontier import LOSS_PREDICTION_BOUNDS, LossPrediction
from scaling.laws.parametric import _MAX_EXPONENT, ParametricFit


def bound_issues(fit: ParametricFit, ci: dict[str, list[float]] | None = None) -> list[str]:
    """Why a parametric fit's coefficients are not identified by the data (empty when they are).

    A coefficient at the edge of its range (E collapsed to 0, an exponent at 0 or at the cap of
    10) or with a bootstrap interval of zero width (every refit stuck at the same value) is set
    by the optimiser's bounds, not by the data; a result built on it is not a finding.
    """
    out = []
    if fit.E <= 1e-6:
        out.append(f"E = {fit.E:.3g} (the irreducible loss at its bound 0)")
    for name in ("alpha", "beta"):
        v = getattr(fit, name)
        if v <= 1e-3 or v >= 0.99 * _MAX_EXPONENT:
            out.append(f"{name} = {v:.3g} (at the edge of (0, {_MAX_EXPONENT:g}))")
    for name in ("E", "alpha", "beta"):
        lo_hi = (ci or {}).get(name)
        if lo_hi and lo_hi[1] - lo_hi[0] <= 1e-9 * max(1.0, abs(getattr(fit, name))):
            out.append(f"{name} has a zero-width interval [{lo_hi[0]:.3g}, {lo_hi[1]:.3g}]")
    return out


def loss_prediction_issues(fit: LossPrediction, ci: dict[str, list[float]] | None = None
                           ) -> list[str]:
    """Why a loss prediction ``L_opt(C) = c0 C^-c + E`` is not identified (empty when it is).

    Its exponent at the edge of [-1, 1] or its floor at the lowest E allowed (0.1), or either
    with a bootstrap interval of zero width, is set by the bounds of the fit, not by the data.

    >>> loss_prediction_issues(LossPrediction(c0=2.0, c=1.0, E=1.5, num_points=20))
    ['c = 1 (at the edge of [-1, 1])']
    """
    (_, c_lo, e_lo), (_, c_hi, _) = LOSS_PREDICTION_BOUNDS
    out = []
    if fit.c <= c_lo + 1e-3 or fit.c >= c_hi - 1e-3:
        out.append(f"c = {fit.c:.3g} (at the edge of [{c_lo:g}, {c_hi:g}])")
    if fit.E <= e_lo * (1 + 1e-3):  # curve_fit stops just inside a bound
        out.append(f"E = {fit.E:.3g} (at its lower bound {e_lo:g})")
    for name in ("c", "E"):
        lo_hi = (ci or {}).get(name)
        if lo_hi and lo_hi[1] - lo_hi[0] <= 1e-9 * max(1.0, abs(getattr(fit, name))):
            out.append(f"{name} has a zero-width interval [{lo_hi[0]:.3g}, {lo_hi[1]:.3g}]")
    return out
