"""Frontier fit (Hoffmann et al. 2022, Method 1) and loss prediction (Pearce et al. eq. 8).

Each curve is interpolated linearly in log-log on a common log-spaced compute grid, and the runs
of one size are pooled (:data:`POOLS`); at each grid point the size with the lowest loss is the
compute-optimal model, giving ``N_opt(C)`` and
``D_opt(C) = C / (6 N_opt)``. A grid point is informative only when the optimal model beat both a
smaller and a larger model there (it is *bracketed*); elsewhere the true optimum may lie outside
the sizes trained, so those points are censored.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize

from scaling.laws._threads import single_threaded_blas
from scaling.laws.data import Curves, FitError, size_key

logger = logging.getLogger(__name__)

FRONTIER_POINTS = ("vertex", "grid", "midpoint")
"""Frontier regression rules of :func:`fit_frontier`, the default first."""

POOLS = ("mean", "min")
"""How runs of one model size are pooled at a compute value, the default first: ``mean`` of
their log losses (runs of one size are seeds, as under a constant learning rate; a run drawn
twice by the bootstrap counts twice) or ``min`` (runs of one size differ in their schedules, as
in Hoffmann's Method 1 with cosine schedules of several lengths, whose envelope takes the best)."""


def pool_sizes(log_loss: np.ndarray, N: np.ndarray, pool: str = "mean"
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pool the rows of ``log_loss`` (one per curve, inf where a curve is absent) by model size.

    Args:
        log_loss: (num_curves, G) log losses.
        N: (num_curves,) model sizes (runs of one size share :func:`size_key`).
        pool: ``"mean"`` over the runs of a size that reach a column, or ``"min"`` (see
            :data:`POOLS`).

    Returns:
        ``(sizes, which, M)``: the distinct sizes' keys (log N, ascending), the size index of
        each curve, and the (num_sizes, G) pooled log losses (inf where no run of a size is
        present).
    """
    if pool not in POOLS:
        raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
    sizes, which = np.unique(size_key(N), return_inverse=True)
    M = np.full((sizes.size, log_loss.shape[1]), np.inf)
    if pool == "min":
        np.minimum.at(M, which, log_loss)
        return sizes, which, M
    have = np.isfinite(log_loss)
    total = np.zeros_like(M)
    count = np.zeros_like(M)
    np.add.at(total, which, np.where(have, log_loss, 0.0))
    np.add.at(count, which, have)
    np.divide(total, count, out=M, where=count > 0)
    return sizes, which, M


@dataclass(frozen=True)
class Envelope:
    """Lower envelope of the loss-vs-compute curves on a grid.

    Attributes:
        C: compute grid (FLOPs, (G,)).
        L: lowest interpolated loss at each grid point (NaN where no curve reaches it), (G,).
        winner: index of a curve of the size with that loss, the runs of a size pooled (-1
            where none), (G,).
        N: model size of the winner (NaN where none), (G,).
        bracketed: the winner beat both a smaller and a larger model there, (G,).
    """

    C: np.ndarray
    L: np.ndarray
    winner: np.ndarray
    N: np.ndarray
    bracketed: np.ndarray


def _curve_loglog(curves: Curves, i: int, sl: slice, smooth: int):
    """Sorted unique log C and (optionally smoothed) log L of one curve."""
    lc, ll = np.log(curves.C[sl]), np.log(curves.L[sl])  # sorted by compute
    if smooth > 1 and ll.size > 2:
        # Smooth before merging the repeated points of a bootstrap resample, so the window
        # spans the same share of the curve as on the original data.
        k = np.ones(min(smooth, ll.size))
        ll = np.convolve(ll, k, "same") / np.convolve(np.ones_like(ll), k, "same")
    uc, inv = np.unique(lc, return_inverse=True)
    return uc, np.bincount(inv, ll) / np.bincount(inv)


def _loss_matrix(interp, grid: np.ndarray) -> np.ndarray:
    """Log loss of every curve at every log-compute in ``grid``; inf where a curve is absent."""
    loss = np.full((len(interp), grid.size), np.inf)
    for i, (c, ll) in enumerate(interp):
        if c.size == 1:
            hit = np.isclose(grid, c[0], rtol=0, atol=1e-9)
            loss[i, hit] = ll[0]
        else:
            v = np.interp(grid, c, ll, left=np.nan, right=np.nan)
            loss[i, np.isfinite(v)] = v[np.isfinite(v)]
    return loss


def interpolate_curves(curves: Curves, C, *, smooth: int = 0) -> np.ndarray:
    """Loss of every curve at compute values ``C``, interpolated in log-log (inf outside a curve).

    Returns:
        (num_curves, len(C)) losses.
    """
    interp = [_curve_loglog(curves, i, sl, smooth) for i, sl in enumerate(curves.curve_slices())]
    return np.exp(_loss_matrix(interp, np.log(np.asarray(C, dtype=np.float64))))


def envelope(curves: Curves, *, num_grid: int = 1000, smooth: int = 0,
             pool: str = "mean") -> Envelope:
    """Lower envelope of all curves, interpolated in log-log on ``num_grid`` compute values.

    Runs of one model size are pooled first (``pool``, see :data:`POOLS`), so seeds of one
    size compete as one curve, not as several draws of the noise.

    Args:
        curves: the points.
        num_grid: log-spaced grid points between the smallest and largest compute logged
            (Hoffmann used 1,500).
        smooth: if > 1, average each curve's log loss over this many neighbouring points first
            (use with noisy curves, e.g. 5).
        pool: how runs of one size are pooled: ``"mean"`` (seeds) or ``"min"`` (schedules).
    """
    interp = [_curve_loglog(curves, i, sl, smooth) for i, sl in enumerate(curves.curve_slices())]
    lo = min(c[0] for c, _ in interp)
    hi = max(c[-1] for c, _ in interp)
    grid = np.linspace(lo, hi, num_grid)
    logn = np.log(curves.curve_N)
    _, which, M = pool_sizes(_loss_matrix(interp, grid), curves.curve_N, pool)
    covered = np.isfinite(M)
    any_cov = covered.any(axis=0)
    k = np.argmin(M, axis=0)
    first = np.unique(which, return_index=True)[1]  # each size's first curve stands for it
    winner = np.where(any_cov, first[k], -1)
    wn = np.where(any_cov, logn[np.maximum(winner, 0)], np.nan)
    rows = np.arange(M.shape[0])[:, None]
    smaller = (covered & (rows < k)).any(axis=0)
    larger = (covered & (rows > k)).any(axis=0)
    best = np.where(any_cov, M.min(axis=0), np.nan)
    return Envelope(C=np.exp(grid), L=np.exp(best), winner=winner, N=np.exp(wn),
                    bracketed=any_cov & smaller & larger)


@dataclass(frozen=True)
class FrontierFit:
    """``N_opt = a0 C^a`` and ``D_opt = b0 C^b`` fitted to the efficient frontier.

    Attributes:
        a, a0, b, b0: the power laws (C in FLOPs).
        points_C, points_N: the (C, N_opt) points regressed.
        num_models: distinct model sizes that are optimal somewhere uncensored.
        envelope: the envelope the points came from.
    """

    a: float
    a0: float
    b: float
    b0: float
    points_C: np.ndarray
    points_N: np.ndarray
    num_models: int
    envelope: Envelope

    def optimal(self, C) -> tuple[np.ndarray, np.ndarray]:
        """Predicted ``(N_opt, D_opt)`` at compute ``C``."""
        C = np.asarray(C, dtype=np.float64)
        return self.a0 * C ** self.a, self.b0 * C ** self.b

    def coefficients(self) -> dict[str, float]:
        """Every coefficient by name."""
        return {"a": self.a, "a0": self.a0, "b": self.b, "b0": self.b0}


def fit_frontier(curves: Curves, *, num_grid: int = 1000, smooth: int = 0,
                 points: str = "vertex", env: Envelope | None = None,
                 pool: str = "mean") -> FrontierFit:
    """Fit ``N_opt = a0 C^a``, ``D_opt = b0 C^b`` by least squares in log space on the frontier.

    Args:
        curves: the points.
        num_grid: compute grid size of the envelope.
        smooth: smoothing window of the envelope (see :func:`envelope`).
        points: which ``(C, N_opt)`` points are regressed (see :data:`FRONTIER_POINTS`).
            ``"vertex"`` (default): every uncensored grid point, with ``N_opt`` the vertex of a
            parabola in log N through the log losses of the optimal size and its nearest smaller
            and larger sizes there, so ``N_opt`` moves smoothly between the sizes trained.
            ``"grid"``: every uncensored grid point with the optimal size itself (Hoffmann's
            Method 1 as described; the staircase of a few sizes biases the slope).
            ``"midpoint"``: one point per optimal size at the log-centre of the compute range
            where it is optimal (biased when the data's ends cut those ranges short).
        env: a precomputed envelope of ``curves`` (made with the same ``pool``).
        pool: how runs of one size are pooled (see :data:`POOLS`).

    Raises:
        FitError: when the curves do not overlap enough for two models to be optimal at
            uncensored compute values.
    """
    if points not in FRONTIER_POINTS:
        raise ValueError(f"points must be one of {FRONTIER_POINTS}, got {points!r}")
    env = envelope(curves, num_grid=num_grid, smooth=smooth, pool=pool) if env is None else env
    mask = env.bracketed
    winners = np.unique(size_key(env.N[mask]))  # sizes, not runs
    num_sizes = np.unique(size_key(curves.curve_N)).size
    if winners.size < 2:
        if num_sizes < 4:
            why = (f"with {num_sizes} model sizes at most {max(num_sizes - 2, 0)} can be optimal "
                   f"between a smaller and a larger one; it needs at least 4 sizes")
        elif not mask.any():
            why = ("the curves never overlap in compute, or at every compute value the smallest "
                   "or largest model available is optimal")
        else:
            why = (f"only one model size ({env.N[mask][0]:.3g}) is optimal where the optimum is "
                   f"bracketed by smaller and larger models")
        fix = ("Train more model sizes" if num_sizes < 4 else
               "Train models past their compute-optimal point so that curves of neighbouring "
               "sizes cross")
        raise FitError(f"frontier fit needs at least two model sizes on the efficient frontier, "
                       f"but {why}. {fix}, or use the parametric fit (--method parametric)")
    logc, logn = np.log(env.C[mask]), np.log(env.N[mask])
    if points == "vertex":
        logc, logn = _vertex_log_n(curves, env.C[mask], smooth, pool)
    elif points == "midpoint":
        w = size_key(env.N[mask])
        logc = np.array([logc[w == i].mean() for i in winners])
        logn = np.array([logn[w == i][0] for i in winners])
    a, loga0 = np.polyfit(logc, logn, 1)
    if not (np.isfinite(a) and abs(loga0) < 700):  # exp(700) is near float64's largest
        sizes = ", ".join(f"{n:.3g} at C = {c:.3g}"
                          for n, c in zip(np.exp(logn), np.exp(logc), strict=True))
        raise FitError(f"the efficient frontier is degenerate: its optimal sizes ({sizes}) give "
                       f"N_opt ~ C^{a:.3g}, too steep to be a power law (the optimal models' "
                       "compute ranges nearly coincide). Smooth noisy curves (--smooth), train "
                       "more sizes or seeds, or use the parametric fit (--method parametric)")
    # D_opt = C / (6 N_opt) on the same points, so b = 1 - a exactly (paper footnote 2).
    b, logb0 = 1.0 - a, -math.log(6.0) - loga0
    return FrontierFit(a=float(a), a0=math.exp(loga0), b=float(b), b0=math.exp(logb0),
                       points_C=np.exp(logc), points_N=np.exp(logn), num_models=int(winners.size),
                       envelope=env)


def _vertex_log_n(curves: Curves, C: np.ndarray, smooth: int, pool: str = "mean"
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Log N_opt at each compute in ``C`` from a parabola through three neighbouring sizes.

    At each compute the log losses of the best size and of the nearest smaller and larger sizes
    that reach it (runs of one size pooled, see :data:`POOLS`) define a parabola in log N; its
    vertex is log N_opt. As the best size is the lowest of the three, the parabola opens upward
    (or is flat) and its vertex lies between the two neighbours; the clip only guards rounding.

    Returns:
        ``(log C, log N_opt)`` at the computes where a smaller and a larger size are reached.
    """
    loss = np.log(interpolate_curves(curves, C, smooth=smooth))  # inf where a curve is absent
    sizes, _, M = pool_sizes(loss, curves.curve_N, pool)
    rows = np.arange(sizes.size)[:, None]
    have = np.isfinite(M)
    k = np.argmin(M, axis=0)
    lo = np.where(have & (rows < k), rows, -1).max(axis=0)
    hi = np.where(have & (rows > k), rows, sizes.size).min(axis=0)
    keep = (lo >= 0) & (hi < sizes.size)  # a curve's end can round out of a grid point
    cols = np.flatnonzero(keep)
    lo, k, hi = lo[keep], k[keep], hi[keep]
    x0, x1, x2 = sizes[lo], sizes[k], sizes[hi]
    y0, y1, y2 = M[lo, cols], M[k, cols], M[hi, cols]
    num = (x1 - x0) ** 2 * (y1 - y2) - (x1 - x2) ** 2 * (y1 - y0)
    den = (x1 - x0) * (y1 - y2) - (x1 - x2) * (y1 - y0)
    with np.errstate(divide="ignore", invalid="ignore"):
        v = x1 - 0.5 * num / den
    v = np.where(np.isfinite(v), v, x1)  # three equal losses: no curvature, keep the best size
    return np.log(C[cols]), np.clip(v, x0, x2)


@dataclass(frozen=True)
class LossPrediction:
    """``L_opt(C) = c0 C^-c + E`` fitted to the lower envelope (Pearce et al. eq. 8).

    ``censored`` is true when the fit had to use the whole envelope, ends included.
    """

    c0: float
    c: float
    E: float
    num_points: int
    censored: bool = False

    def predict(self, C) -> np.ndarray:
        """Predicted compute-optimal loss at ``C`` (FLOPs)."""
        return self.c0 * np.asarray(C, dtype=np.float64) ** -self.c + self.E

    def compute_for_loss(self, L: float) -> float:
        """Compute needed to reach loss ``L``; raises ``ValueError`` if ``L`` is unreachable."""
        if L <= self.E or self.c <= 0:
            raise ValueError(f"target loss {L:g} is not reachable: the fitted compute-optimal "
                             f"loss only approaches E={self.E:.4g} (c={self.c:.3g}); ask for a "
                             f"loss above E")
        return float(((L - self.E) / self.c0) ** (-1.0 / self.c))

    def coefficients(self) -> dict[str, float]:
        """Every coefficient by name."""
        return {"c0": self.c0, "c": self.c, "E": self.E}


LOSS_PREDICTION_BOUNDS = ([0.0, -1.0, 0.1], [np.inf, 1.0, np.inf])
"""Bounds of ``(k, c, E)`` in :func:`fit_loss_prediction`, as in the paper."""


def fit_loss_prediction(curves: Curves, *, env: Envelope | None = None, num_grid: int = 1000,
                        smooth: int = 0, init: tuple[float, float, float] | None = None,
                        pool: str = "mean") -> LossPrediction:
    """Fit ``L_opt(C) = c0 C^-c + E`` with ``curve_fit`` on the envelope's grid points.

    Only the uncensored (bracketed) part of the envelope is used when it has at least 4 grid
    points: at the ends of the compute range the only model available is far from its optimum,
    and its loss would bend the fit. Otherwise the whole envelope is used (the frontier fit
    would have failed on such data; treat the prediction as an upper bound).

    Bounds as in the paper: ``c0 >= 0``, ``-1 <= c <= 1``, ``E >= 0.1``. ``c0`` is fitted as
    ``k (C/C_ref)^-c`` with ``C_ref`` the geometric mean of the grid, which is the same model
    but keeps the problem well conditioned.

    Raises:
        FitError: on curves of one model size, or when ``curve_fit`` does not converge.
    """
    if curves is not None and np.unique(size_key(curves.N)).size < 2:
        raise FitError("loss prediction needs at least 2 model sizes: with one, the envelope is "
                       "that size's own curve, not the compute-optimal loss")
    env = envelope(curves, num_grid=num_grid, smooth=smooth, pool=pool) if env is None else env
    ok = env.bracketed if env.bracketed.sum() >= 4 else np.isfinite(env.L)
    if ok.sum() < 4:
        raise FitError("loss prediction needs at least 4 points on the envelope; log more points "
                       "per training curve")
    lc, L = np.log(env.C[ok]), env.L[ok]
    ref = lc.mean()
    if init is None:
        E0 = max(0.1, 0.5 * float(L.min()))
        init = (float(L.max() - E0), 0.05, E0)
    k0, c_init, E_init = init
    p0 = [max(k0, 1e-12), min(max(c_init, -0.999), 0.999), max(E_init, 0.1 + 1e-9)]

    def model(x, k, c, E):
        return k * np.exp(-c * (x - ref)) + E

    def jac(x, k, c, E):
        t = np.exp(-c * (x - ref))
        return np.stack([t, -k * (x - ref) * t, np.ones_like(x)], axis=1)

    try:
        with single_threaded_blas():
            (k, c, E), _ = optimize.curve_fit(model, lc, L, p0=p0, jac=jac,
                                              bounds=LOSS_PREDICTION_BOUNDS,
                                              maxfev=5000, x_scale="jac")
    except (RuntimeError, optimize.OptimizeWarning, ValueError) as e:
        raise FitError(f"loss prediction fit (curve_fit) did not converge: {e}") from e
    c0 = math.exp(math.log(k) + c * ref) if k > 0 else 0.0
    return LossPrediction(c0=c0, c=float(c), E=float(E), num_points=int(ok.sum()),
                          censored=bool(env.bracketed.sum() < 4))
