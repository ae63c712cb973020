"""IsoFLOP fit (Hoffmann et al. 2022, Method 2): at fixed compute, a parabola in log N.

At each compute budget the loss of every model that reaches it is taken (interpolated in log-log
along its curve); a parabola ``L(log N)`` is fitted and its vertex is ``N_opt`` at that budget.
Then ``N_opt = a0 C^a`` by least squares in log space and ``D_opt = C / (6 N_opt)``.

Budgets: the designed budgets of a sweep that trains several sizes to the same FLOPs are found
by clustering each run's *final* compute in log space (values within 10% of their neighbour join
one cluster, so a budget that runs missed by a few percent is not split in two); each cluster
holding runs of three or more model sizes is a budget (seeds of one size, which end together,
count once), at the geometric mean of its members. Curves that hold several
budgets as separate points (a CSV of final losses with one curve per size) contribute every point
when they have at most ``10`` points. With at least two such budgets they are used, each curve's
loss taken at its point nearest the budget (within the cluster); otherwise ``num_budgets``
log-spaced budgets where curves of at least three sizes overlap, with losses interpolated along each
curve. :class:`IsoflopFit` reports the budgets found and the budgets used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from scaling.laws.data import Curves, FitError, size_key
from scaling.laws.frontier import interpolate_curves, pool_sizes

_CLUSTER_GAP = math.log(1.1)  # neighbouring log final computes closer than this: one budget
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
    candidate_budgets: np.ndarray | None = None
    """the budgets considered (designed or log-spaced) before censoring; ``budgets`` are used"""

    def coefficients(self) -> dict[str, float]:
        """Every coefficient by name."""
        return {"a": self.a, "a0": self.a0, "b": self.b, "b0": self.b0}


def _shared_budgets(curves: Curves) -> tuple[np.ndarray, np.ndarray]:
    """Designed budgets and the log-compute half-width of each cluster.

    Candidates are every run's final compute, and every point of runs with at most
    ``_MAX_POINTS_SHARED`` points; candidates are clustered in log space by single linkage with
    gap ``_CLUSTER_GAP``, and clusters holding runs of three or more distinct model sizes are
    budgets.
    """
    lc_all = np.log(curves.C)
    idx = []
    for sl in curves.curve_slices():
        n = sl.stop - sl.start
        idx.extend(range(sl.start, sl.stop) if n <= _MAX_POINTS_SHARED else [sl.stop - 1])
    idx = np.array(idx, dtype=np.int64)
    order = np.argsort(lc_all[idx])
    lc, size = lc_all[idx][order], size_key(curves.N[idx][order])
    breaks = np.flatnonzero(np.diff(lc) > _CLUSTER_GAP) + 1
    budgets, widths = [], []
    for g in np.split(np.arange(lc.size), breaks):
        if np.unique(size[g]).size >= 3:
            centre = lc[g].mean()
            budgets.append(math.exp(centre))
            widths.append(float(np.max(np.abs(lc[g] - centre))) + 1e-9)
    return np.array(budgets), np.array(widths)


def fit_isoflop(curves: Curves, *, num_budgets: int = 8, smooth: int = 0,
                window: int = 2, pool: str = "mean") -> IsoflopFit:
    """Fit Method 2 on shared or interpolated FLOP budgets.

    At each budget the parabola is fitted to the best model and ``window`` sizes on each side;
    runs of one size are pooled first (``pool``: ``"mean"`` of their log losses for seeds, or
    ``"min"``; see :data:`scaling.laws.frontier.POOLS`).

    Raises:
        FitError: when fewer than two budgets have an interior loss minimum over model sizes.
    """
    budgets, widths = _shared_budgets(curves)
    shared = budgets.size >= 2
    if not shared:
        spans = [(curves.C[sl].min(), curves.C[sl].max()) for sl in curves.curve_slices()]
        lo = np.log([s[0] for s in spans])
        hi = np.log([s[1] for s in spans])
        grid = np.linspace(lo.min(), hi.max(), 400)
        reached = (lo[:, None] <= grid) & (grid <= hi[:, None])  # (curves, grid)
        _, which = np.unique(size_key(curves.curve_N), return_inverse=True)
        by_size = np.zeros((which.max() + 1, grid.size), dtype=bool)
        np.logical_or.at(by_size, which, reached)
        ok = grid[by_size.sum(axis=0) >= 3]  # seeds of one size count once
        if ok.size == 0:
            raise FitError("IsoFLOP fit needs compute budgets reached by at least three model "
                           "sizes, but no three sizes' curves overlap in compute; train longer "
                           "or use the parametric fit (--method parametric)")
        budgets = np.exp(np.linspace(ok.min(), ok.max(), num_budgets))
    if shared:  # take each curve's point nearest the budget, within the budget's cluster
        loss = _nearest_losses(curves, budgets, widths)
    else:
        loss = interpolate_curves(curves, budgets, smooth=smooth)
    # Runs of one size (seeds, or a run drawn twice by the bootstrap) pool to one loss.
    sizes, _, pooled = pool_sizes(np.log(loss), curves.curve_N, pool)
    keep_c, keep_n = [], []
    for k, C in enumerate(budgets):
        have = np.isfinite(pooled[:, k])
        x, L = sizes[have], np.exp(pooled[have, k])
        if x.size < 3:
            continue
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
                      shared_budgets=bool(shared), candidate_budgets=budgets)


def _nearest_losses(curves: Curves, budgets: np.ndarray, widths: np.ndarray) -> np.ndarray:
    out = np.full((curves.num_curves, budgets.size), np.inf)
    for i, sl in enumerate(curves.curve_slices()):
        lc = np.log(curves.C[sl])
        for k, C in enumerate(budgets):
            j = int(np.argmin(np.abs(lc - math.log(C))))
            if abs(lc[j] - math.log(C)) <= widths[k]:
                out[i, k] = curves.L[sl][j]
    return out
