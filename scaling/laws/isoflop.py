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

Interpolated budgets are points along the same curves, not separate runs, so many of them cost
nothing and lose nothing: the default is 1,000, the frontier fit's grid. With few (8, as many as a
designed sweep has), the censoring of budgets whose minimum lies at the smallest or largest size
leaves a couple of nearby budgets whose slope is mostly noise: on the truncated ladders of
``benchmarks/bench_frontier_noise.py`` (1% noise, 3 runs per size, smooth 9) 8 budgets landed
within 0.01 of the true a on 14 of 30 draws, 1,000 on 23. There each budget sees about three
sizes, so when the minimum lies at one size at every budget the slope rests on how the parabola's
vertex drifts between the same three sizes; such a fit is refused, as the frontier fit refuses a
single optimal size.
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


def fit_isoflop(curves: Curves, *, num_budgets: int = 1000, smooth: int = 0,
                window: int = 2, pool: str = "mean") -> IsoflopFit:
    """Fit Method 2 on shared or interpolated FLOP budgets.

    At each budget the parabola is fitted to the best model and ``window`` sizes on each side;
    runs of one size are pooled first (``pool``: ``"mean"`` of their log losses for seeds, or
    ``"min"``; see :data:`scaling.laws.frontier.POOLS`).

    Raises:
        FitError: when fewer than two budgets have an interior loss minimum over model sizes,
            or, on interpolated budgets, when that minimum lies at the same size at every one.
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
    keep, log_n, best = _parabola_vertices(sizes, pooled, window)
    C, N = budgets[keep], np.exp(log_n[keep])
    best = np.unique(best[keep])
    if C.size < 2:
        raise FitError(f"IsoFLOP fit found an interior loss minimum over model sizes at "
                       f"{C.size} of {budgets.size} compute budgets, need 2; train sizes "
                       f"on both sides of the optimum at each budget, or use the frontier or "
                       f"parametric fit")
    if not shared and best.size < 2:
        raise FitError(f"IsoFLOP fit found the loss minimum at one model size "
                       f"({math.exp(best[0]):.3g}) at all {C.size} budgets where it is "
                       f"bracketed, so the slope of N_opt against C is not identified; train "
                       f"models past their compute-optimal point so that neighbouring sizes' "
                       f"curves cross, or use the parametric fit")
    a, loga0 = np.polyfit(np.log(C), np.log(N), 1)
    return IsoflopFit(a=float(a), a0=math.exp(loga0), b=float(1 - a),
                      b0=math.exp(-math.log(6.0) - loga0), budgets=C, N_opt=N,
                      shared_budgets=bool(shared), candidate_budgets=budgets)


def _parabola_vertices(sizes: np.ndarray, log_loss: np.ndarray, window: int
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vertex of a least-squares parabola ``L(log N)`` at every budget (column) at once.

    At each budget the sizes that reach it are ranked; the parabola goes through the best one
    and up to ``window`` neighbours on each side (a parabola is only a local model of
    ``L(log N)``). A budget is kept when its minimum is interior (neither the smallest nor the
    largest size reached: else censored), the parabola opens upwards and its vertex lies between
    the sizes it was fitted to.

    Args:
        sizes: (S,) log N of the distinct sizes, ascending.
        log_loss: (S, B) pooled log losses, inf where a size does not reach a budget.
        window: neighbours on each side of the best size.

    Returns:
        ``(keep, log_n_opt, best)``: (B,) mask of usable budgets, the vertex (log N) and the log
        N of the best size at each budget.
    """
    have = np.isfinite(log_loss)
    L = np.exp(log_loss)  # inf where absent
    rank = np.cumsum(have, axis=0) - 1  # each size's rank among the sizes reached
    j = np.argmin(L, axis=0)
    cols = np.arange(L.shape[1])
    jr, count = rank[j, cols], have.sum(axis=0)
    interior = (count >= 3) & (jr > 0) & (jr < count - 1)
    use = have & (np.abs(rank - jr) <= window)  # (S, B)
    best = sizes[j]
    dx = np.where(use, sizes[:, None] - best, 0.0)  # centred on the best size: well conditioned
    y = np.where(use, L, 0.0)
    m = [np.sum(dx ** k * use, axis=0) for k in range(5)]
    v = [np.sum(dx ** k * y, axis=0) for k in range(3)]
    G = np.stack([np.stack(m[r:r + 3], axis=-1) for r in range(3)], axis=-2)  # (B, 3, 3)
    rhs = np.stack(v, axis=-1)
    G[~interior] = np.eye(3)  # placeholder systems for budgets left out
    _, c1, c2 = np.linalg.solve(G, rhs[..., None])[..., 0].T
    with np.errstate(divide="ignore", invalid="ignore"):
        vertex = -c1 / (2 * c2)
    lo = np.where(use, dx, np.inf).min(axis=0)
    hi = np.where(use, dx, -np.inf).max(axis=0)
    keep = interior & (c2 > 0) & (lo < vertex) & (vertex < hi)
    return keep, np.where(keep, best + vertex, np.nan), best


def _nearest_losses(curves: Curves, budgets: np.ndarray, widths: np.ndarray) -> np.ndarray:
    out = np.full((curves.num_curves, budgets.size), np.inf)
    for i, sl in enumerate(curves.curve_slices()):
        lc = np.log(curves.C[sl])
        for k, C in enumerate(budgets):
            j = int(np.argmin(np.abs(lc - math.log(C))))
            if abs(lc[j] - math.log(C)) <= widths[k]:
                out[i, k] = curves.L[sl][j]
    return out
