"""IsoFLOP fit (Hoffmann et al. 2022, Method 2): at fixed compute, a parabola in log N.

At each compute budget the loss of every model that reaches it is taken (interpolated in log-log
along its curve); a parabola ``L(log N)`` is fitted and its vertex is ``N_opt`` at that budget.
Then ``N_opt = a0 C^a`` by least squares in log space and ``D_opt = C / (6 N_opt)``.

Budgets: when runs log at most 10 points each and at least two compute values are each shared
(within 1%) by points of three or more runs, as in a sweep that trains every size to the same FLOP
budgets, those are used; otherwise ``num_budgets`` log-spaced budgets where at least three curves
overlap, with losses interpolated along each curve.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from scaling.laws.data import Curves, FitError
from scaling.laws.frontier import interpolate_curves

_SHARED_RTOL = 0.01
_MAX_POINTS_SHARED = 10


@dataclass(frozen=True)
class IsoflopFit:
    """``N_opt = a0 C^a``, ``D_opt = b0 C^b`` from parabola vertices at fixed compute."""

    a: float
    a0: float
    b: float
    b0: float
    budgets: np.ndarray
    N_opt: np.ndarray
    shared_budgets: bool

    def coefficients(self) -> dict[str, float]:
        """Every coefficient by name."""
        return {"a": self.a, "a0": self.a0, "b": self.b, "b0": self.b0}


def _shared_budgets(curves: Curves) -> np.ndarray:
    lc = np.log(curves.C)
    order = np.argsort(lc)
    lc, run = lc[order], curves.run[order]
    breaks = np.flatnonzero(np.diff(lc) > math.log1p(_SHARED_RTOL)) + 1
    budgets = []
    for g in np.split(np.arange(lc.size), breaks):
        if np.unique(run[g]).size >= 3:
            budgets.append(math.exp(lc[g].mean()))
    return np.array(budgets)


def fit_isoflop(curves: Curves, *, num_budgets: int = 8, smooth: int = 0,
                window: int = 2) -> IsoflopFit:
    """Fit Method 2 on shared or interpolated FLOP budgets.

    At each budget the parabola is fitted to the best model and ``window`` sizes on each side.

    Raises:
        FitError: when fewer than two budgets have an interior loss minimum over model sizes.
    """
    budgets = _shared_budgets(curves)
    per_curve = np.median(np.bincount(curves.run))
    # Dense curves meet at some compute values by chance: treat coinciding compute values as a
    # budget design only when runs log a few points each (e.g. final losses of an isoFLOP sweep).
    shared = budgets.size >= 2 and per_curve <= _MAX_POINTS_SHARED
    if not shared:
        spans = [(curves.C[sl].min(), curves.C[sl].max()) for sl in curves.curve_slices()]
        lo = np.log([s[0] for s in spans])
        hi = np.log([s[1] for s in spans])
        grid = np.linspace(lo.min(), hi.max(), 400)
        count = ((lo[:, None] <= grid) & (grid <= hi[:, None])).sum(axis=0)
        ok = grid[count >= 3]
        if ok.size == 0:
            raise FitError("IsoFLOP fit needs compute budgets reached by at least three model "
                           "sizes, but no three curves overlap in compute; train longer or use "
                           "the parametric fit (--method parametric)")
        budgets = np.exp(np.linspace(ok.min(), ok.max(), num_budgets))
    if shared:  # points sit within 1% of the budget: take each curve's nearest point
        loss = _nearest_losses(curves, budgets)
    else:
        loss = interpolate_curves(curves, budgets, smooth=smooth)
    logn = np.log(curves.curve_N)
    keep_c, keep_n = [], []
    for k, C in enumerate(budgets):
        have = np.isfinite(loss[:, k])
        if have.sum() < 3:
            continue
        order = np.argsort(logn[have])
        x, L = logn[have][order], loss[have, k][order]
        j = int(np.argmin(L))
        if j == 0 or j == x.size - 1:
            continue  # the minimum is at the smallest or largest size reached: censored
        # A parabola is only a local model of L(log N): fit the minimum and up to two
        # neighbours on each side rather than every size.
        sl = slice(max(0, j - window), j + window + 1)
        x, L = x[sl], L[sl]
        c2, c1, _ = np.polyfit(x, L, 2)
        if c2 <= 0:
            continue
        vertex = -c1 / (2 * c2)
        if x.min() < vertex < x.max():
            keep_c.append(C)
            keep_n.append(math.exp(vertex))
    if len(keep_c) < 2:
        raise FitError(f"IsoFLOP fit found an interior loss minimum over model sizes at "
                       f"{len(keep_c)} of {budgets.size} compute budgets, need 2; train sizes "
                       f"on both sides of the optimum at each budget, or use the frontier or "
                       f"parametric fit")
    C, N = np.array(keep_c), np.array(keep_n)
    a, loga0 = np.polyfit(np.log(C), np.log(N), 1)
    return IsoflopFit(a=float(a), a0=math.exp(loga0), b=float(1 - a),
                      b0=math.exp(-math.log(6.0) - loga0), budgets=C, N_opt=N,
                      shared_budgets=bool(shared))


def _nearest_losses(curves: Curves, budgets: np.ndarray) -> np.ndarray:
    out = np.full((curves.num_curves, budgets.size), np.inf)
    for i, sl in enumerate(curves.curve_slices()):
        lc = np.log(curves.C[sl])
        for k, C in enumerate(budgets):
            j = int(np.argmin(np.abs(lc - math.log(C))))
            if abs(lc[j] - math.log(C)) <= math.log1p(_SHARED_RTOL):
                out[i, k] = curves.L[sl][j]
    return out
