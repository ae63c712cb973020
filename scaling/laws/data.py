"""Training-curve data for the fits: points (N, D, L) grouped into curves.

A *curve* is the sequence of logged points of one training run: fixed model size N, growing data
D, loss L. Compute is C = 6ND (paper Section 3.4). Every fit in :mod:`scaling.laws` takes a
:class:`Curves` and never reads files.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def size_key(N) -> np.ndarray:
    """The key under which model sizes are equal: log N rounded to 9 decimals.

    Runs of one size (seeds, or a run drawn twice by the bootstrap) share it even when their N
    went through a CSV or JSON and back; it orders like N.
    """
    return np.round(np.log(np.asarray(N, dtype=np.float64)), 9)


def size_labels(N) -> np.ndarray:
    """A curve label ``"N=<size>"`` per point, as short as keeps distinct sizes apart.

    >>> size_labels([1e7, 1e7, 3e8]).tolist()
    ['N=1e+07', 'N=1e+07', 'N=3e+08']
    >>> size_labels([1.0001e7, 1.0004e7]).tolist()
    ['N=1.0001e+07', 'N=1.0004e+07']
    """
    N = np.asarray(N, dtype=np.float64).ravel()
    with np.errstate(invalid="ignore", divide="ignore"):  # bad N are refused by make_curves
        sizes = np.unique(size_key(N)).size
    for digits in range(3, 18):
        labels = np.array([f"N={n:.{digits}g}" for n in N], dtype=object)
        if np.unique(labels.astype(str)).size == sizes:
            return labels
    return labels


class FitError(ValueError):
    """A fit did not converge or the data cannot support it; the message says why and what to do."""


class NotAPowerLawError(FitError):
    """The fit converged, but its optimum is not a power law (exponents outside their range).

    Unlike a failure to converge, this is an answer about the data: bootstrap refits count such
    a sample as failed instead of searching the grid for another local optimum.
    """


@dataclass(frozen=True)
class Curves:
    """Points of several training curves, sorted by curve then compute.

    Attributes:
        N: parameters of the model of each point (float64, (P,)).
        D: training inputs (tokens) seen at each point (float64, (P,)).
        L: loss at each point (float64, (P,)).
        run: index of the curve each point belongs to (int64, (P,), values 0..num_curves-1).
        names: name of each curve (tuple of str, (num_curves,)).
    """

    N: np.ndarray
    D: np.ndarray
    L: np.ndarray
    run: np.ndarray
    names: tuple[str, ...]

    @property
    def C(self) -> np.ndarray:
        """Training compute of each point, C = 6ND (FLOPs)."""
        return 6.0 * self.N * self.D

    @property
    def num_points(self) -> int:
        """Number of points P."""
        return int(self.L.shape[0])

    @property
    def num_curves(self) -> int:
        """Number of curves."""
        return len(self.names)

    @property
    def curve_N(self) -> np.ndarray:
        """Model size of each curve (the geometric mean if a curve's N varies), (num_curves,)."""
        logn = np.bincount(self.run, np.log(self.N), self.num_curves)
        return np.exp(logn / np.bincount(self.run, minlength=self.num_curves))

    def curve_slices(self) -> list[slice]:
        """The slice of points of each curve (points are stored contiguously per curve)."""
        bounds = np.searchsorted(self.run, np.arange(self.num_curves + 1))
        return [slice(int(bounds[i]), int(bounds[i + 1])) for i in range(self.num_curves)]

    def take(self, index: np.ndarray, names: np.ndarray | None = None) -> Curves:
        """The points at ``index`` (e.g. a bootstrap resample), re-sorted by curve then compute.

        ``names`` gives each taken point a curve name instead of its own (e.g. to keep a run
        drawn twice as two curves).
        """
        if names is None:
            names = np.asarray(self.names, dtype=object)[self.run[index]]
        return make_curves(self.N[index], self.D[index], self.L[index], names,
                           min_model_sizes=1)

    def without_curves(self, drop) -> Curves:
        """All points except those of the curves whose indices are in ``drop``."""
        keep = ~np.isin(self.run, np.asarray(list(drop), dtype=np.int64))
        return make_curves(self.N[keep], self.D[keep], self.L[keep],
                           np.asarray(self.names, dtype=object)[self.run[keep]],
                           min_model_sizes=1)


def make_curves(N, D, L, run=None, *, min_model_sizes: int = 2, labels=None) -> Curves:
    """Validate points and group them into curves.

    Args:
        N: model size of each point (parameters, > 0).
        D: training inputs seen at each point (tokens, > 0).
        L: loss at each point (finite).
        run: curve label of each point; default: one curve per distinct N.
        min_model_sizes: fewest distinct model sizes accepted.
        labels: a description of each point used in error messages (e.g. ``"file.csv:12"``);
            default: the row index.

    Returns:
        The points as :class:`Curves`, sorted by curve then compute.

    Raises:
        ValueError: on shapes that disagree, non-positive N or D, NaN or infinite N, D or L
            (naming the rows), or fewer than ``min_model_sizes`` distinct model sizes.

    Example:
        >>> c = make_curves([1e6, 1e6, 2e6], [1e8, 2e8, 1e8], [3.0, 2.9, 2.95])
        >>> c.num_curves, c.names
        (2, ('N=1e+06', 'N=2e+06'))
    """
    N, D, L = (np.asarray(x, dtype=np.float64).ravel() for x in (N, D, L))
    if not (N.shape == D.shape == L.shape):
        raise ValueError(f"N, D and L must have the same length, got {N.size}, {D.size} and "
                         f"{L.size}; pass one value of each per point")
    if N.size == 0:
        raise ValueError("no points to fit; give at least two training curves of (N, D, L) points")
    where = labels if labels is not None else [f"row {i}" for i in range(N.size)]

    def _rows(mask: np.ndarray) -> str:
        idx = np.flatnonzero(mask)
        shown = ", ".join(str(where[i]) for i in idx[:10])
        return shown + (f" and {idx.size - 10} more" if idx.size > 10 else "")

    for name, x in (("N", N), ("D", D)):
        bad = ~np.isfinite(x)
        if bad.any():
            raise ValueError(f"{name} is NaN or infinite at {_rows(bad)}; fix or drop those rows")
        bad = x <= 0
        if bad.any():
            raise ValueError(f"{name} must be positive but is <= 0 at {_rows(bad)}; model size N "
                             f"and data D (and so C = 6ND) are counts: fix or drop those rows")
    bad = ~np.isfinite(L)
    if bad.any():
        raise ValueError(f"loss is NaN or infinite at {_rows(bad)} (a diverged run?); drop those "
                         f"rows (the CLI's --drop-nonfinite does this) or fix the run")
    bad = L <= 0
    if bad.any():
        raise ValueError(f"loss must be positive but is <= 0 at {_rows(bad)}; every fit works with "
                         f"log L, so give a cross-entropy (nats) or another positive loss, or drop "
                         f"those rows")
    if run is None:
        run = size_labels(N)
    run = np.asarray(run, dtype=object).ravel()
    if run.shape != N.shape:
        raise ValueError(f"run has {run.size} labels for {N.size} points; give one per point")
    names, inverse = np.unique(run.astype(str), return_inverse=True)
    inverse = inverse.ravel()
    keys = size_key(N)
    low = np.full(names.size, np.inf)
    high = np.full(names.size, -np.inf)
    np.minimum.at(low, inverse, keys)
    np.maximum.at(high, inverse, keys)
    if (mixed := np.flatnonzero(low != high)).size:  # one pass over the points, not per run
        i = int(mixed[0])
        raise ValueError(f"run {str(names[i])!r} holds points of more than one model size (N = "
                         f"{np.exp(low[i]):.10g} and {np.exp(high[i]):.10g}): a run is one "
                         f"model's curve; label each run apart (a CSV's run column)")
    # Order curves by model size, then name, so colours and tables read small to large.
    logn = np.bincount(inverse, np.log(N)) / np.bincount(inverse)
    order = np.lexsort((names, logn))
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    run_idx = rank[inverse].astype(np.int64)
    num_sizes = np.unique(keys).size
    if num_sizes < min_model_sizes:
        raise ValueError(f"need at least {min_model_sizes} distinct model sizes N to fit a scaling "
                         f"law, got {num_sizes}; add training curves of other model sizes")
    perm = np.lexsort((6.0 * N * D, run_idx))
    return Curves(N=N[perm], D=D[perm], L=L[perm], run=run_idx[perm],
                  names=tuple(str(names[i]) for i in order))
