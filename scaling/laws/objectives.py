"""The parametric fits' objectives and the grid they start from.

The Huber objective on log residuals (Hoffmann et al. 2022; Besiroglu et al. 2024) with its
analytic gradient, the squared error on L (the paper's ``curve_fit``), and Hoffmann's grid of
starting points, evaluated at every grid point at once to pick the best starts.

The grid is laid out in the log of the loss: its ``e``, ``a`` and ``b`` (the logs of E, A and B)
are shifted by the data's mean log loss, less the log loss the grid was laid out for
(:data:`GRID_LOG_LOSS`), so the starts, and with them the fits, do not depend on the unit of the
loss: losses scaled by s give E, A and B scaled by s and the same exponents.
"""

from __future__ import annotations

import itertools

import numpy as np

from scaling.laws.data import Curves

HUBER_DELTA = 1e-3
# Hoffmann et al. (2022) Appendix D.2 grid, also used by Besiroglu et al. (2024):
# alpha, beta in {0, .5, ..., 2}, e in {-1, -.5, ..., 1}, a, b in {0, 5, ..., 25}.
_GRID_ALPHA = (0.0, 0.5, 1.0, 1.5, 2.0)
_GRID_E = (-1.0, -0.5, 0.0, 0.5, 1.0)
_GRID_AB = (0.0, 5.0, 10.0, 15.0, 20.0, 25.0)
GRID_LOG_LOSS = 1.0
"""The mean log loss Hoffmann's grid is laid out for (language-model losses of about e nats):
the grid's ``e``, ``a`` and ``b`` move by the data's mean log loss less this."""


def huber_grid(shift: float = 0.0) -> np.ndarray:
    """Hoffmann's grid of starting points ``(a, b, e, alpha, beta)``, (4500, 5).

    ``shift`` is added to ``a``, ``b`` and ``e`` (see :func:`grid_shift`).
    """
    grid = np.array([(a, b, e, al, be) for al, be, e, a, b in itertools.product(
        _GRID_ALPHA, _GRID_ALPHA, _GRID_E, _GRID_AB, _GRID_AB)], dtype=np.float64)
    grid[:, :3] += shift
    return grid


def grid_shift(curves: Curves) -> float:
    """The shift of the grid's logs of E, A and B: mean log L less :data:`GRID_LOG_LOSS`.

    >>> from scaling.laws.data import make_curves
    >>> c = make_curves([1e6, 1e7], [1e9, 1e9], [np.e, np.e])
    >>> float(grid_shift(c))
    0.0
    """
    return float(np.mean(np.log(curves.L))) - GRID_LOG_LOSS


def _huber_objective(theta, x, y, logl, delta):
    """Sum of Huber losses of log residuals and its analytic gradient.

    ``theta`` is ``(a, b, e, alpha, beta)``; ``x = log N``, ``y = log D``.
    """
    a, b, e, al, be = theta
    t1, t2 = a - al * x, b - be * y
    m = np.maximum(np.maximum(t1, t2), e)
    p1, p2, p3 = np.exp(t1 - m), np.exp(t2 - m), np.exp(e - m)
    s = p1 + p2 + p3
    r = m + np.log(s) - logl
    ar = np.abs(r)
    quad = ar <= delta
    f = np.where(quad, 0.5 * r * r, delta * (ar - 0.5 * delta)).sum()
    psi = np.clip(r, -delta, delta) / s  # dHuber/dr times the softmax normaliser
    g1, g2 = psi * p1, psi * p2
    grad = np.array([g1.sum(), g2.sum(), (psi * p3).sum(), -(g1 * x).sum(), -(g2 * y).sum()])
    return f, grad


def _grid_chunks(grid: np.ndarray, num_points: int):
    """Row blocks of ``grid`` whose (rows x points) arrays stay near 1M elements."""
    step = max(1, 1_000_000 // max(num_points, 1))
    for lo in range(0, grid.shape[0], step):
        yield grid[lo:lo + step]


def _grid_objectives(grid, x, y, logl, delta):
    """Huber objective at every row of ``grid``, vectorised in blocks, (G,)."""
    out = []
    for g in _grid_chunks(grid, x.size):
        a, b, e, al, be = (g[:, i:i + 1] for i in range(5))
        t1, t2 = a - al * x, b - be * y
        m = np.maximum(np.maximum(t1, t2), e)
        r = m + np.log(np.exp(t1 - m) + np.exp(t2 - m) + np.exp(e - m)) - logl
        ar = np.abs(r)
        out.append(np.where(ar <= delta, 0.5 * r * r, delta * (ar - 0.5 * delta)).sum(axis=1))
    return np.concatenate(out)


def _grid_sse(grid, x, y, L):
    """Squared error of ``E + A/N^alpha + B/D^beta`` on L at every row of ``grid``, (G,)."""
    out = []
    with np.errstate(over="ignore", invalid="ignore"):
        for g in _grid_chunks(grid, x.size):
            a, b, e, al, be = (g[:, i:i + 1] for i in range(5))
            pred = np.exp(e) + np.exp(a - al * x) + np.exp(b - be * y)
            out.append(np.sum((pred - L) ** 2, axis=1))
    sse = np.concatenate(out)
    return np.where(np.isfinite(sse), sse, np.inf)


def huber_starts(curves: Curves, num_starts: int | None = 16, *,
                 delta: float = HUBER_DELTA) -> np.ndarray:
    """The ``num_starts`` points of Hoffmann's grid with the lowest Huber objective, best first.

    The objective is evaluated on the whole grid at once; ``None`` returns the whole grid.
    """
    grid = huber_grid(grid_shift(curves))
    if num_starts is None or num_starts >= grid.shape[0]:
        return grid
    obj = _grid_objectives(grid, np.log(curves.N), np.log(curves.D), np.log(curves.L), delta)
    return grid[np.argsort(obj, kind="stable")[:num_starts]]


def _lsq_model(X, E, a, b, alpha, beta):
    x, y = X
    return E + np.exp(a - alpha * x) + np.exp(b - beta * y)


def _lsq_jac(X, E, a, b, alpha, beta):
    x, y = X
    t1, t2 = np.exp(a - alpha * x), np.exp(b - beta * y)
    return np.stack([np.ones_like(x), t1, t2, -x * t1, -y * t2], axis=1)


def lsq_starts(curves: Curves, num_starts: int | None = 16) -> np.ndarray:
    """The ``num_starts`` points of Hoffmann's grid with the smallest squared error on L.

    Rows are ``(E, log A, log B, alpha, beta)``, best first; ``None`` keeps every finite one.
    """
    x, y, L = np.log(curves.N), np.log(curves.D), curves.L
    grid = huber_grid(grid_shift(curves))
    sse = _grid_sse(grid, x, y, L)
    order = np.argsort(sse, kind="stable")
    order = order[np.isfinite(sse[order])][:num_starts]
    g = grid[order]
    return np.column_stack([np.exp(g[:, 2]), g[:, 0], g[:, 1], g[:, 3], g[:, 4]])
