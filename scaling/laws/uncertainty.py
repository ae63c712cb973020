"""Bootstrap confidence intervals for fitted coefficients.

A bootstrap sample resamples the points *within each curve* with replacement (so every curve
keeps its number of points and its model size), then refits. The interval of a coefficient is
the percentile interval of its refits. Refits that fail are counted, not hidden.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from scaling.laws._threads import single_threaded_blas
from scaling.laws.data import Curves, FitError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Bootstrap:
    """Bootstrap refits of one method.

    Attributes:
        samples: coefficient name -> refitted values, (num_ok,).
        num_requested: refits asked for.
        num_failed: refits that raised :class:`FitError` (left out of ``samples``).
        level: confidence level of :meth:`ci` (e.g. 0.95).
        seed: seed of the resampling.
    """

    samples: dict[str, np.ndarray]
    num_requested: int
    num_failed: int
    level: float
    seed: int

    def ci(self) -> dict[str, list[float]]:
        """Percentile interval ``[low, high]`` of every coefficient.

        A refit whose coefficient overflowed (e.g. ``A = exp(a)`` of an unconstrained prefactor)
        counts at the largest float, so an unbounded side reads as ~1.8e308 rather than NaN.
        """
        lo, hi = 50 * (1 - self.level), 50 * (1 + self.level)
        big = np.finfo(np.float64).max
        out = {}
        for k, v in self.samples.items():
            v = np.clip(np.asarray(v, dtype=np.float64)[~np.isnan(v)], -big, big)
            if v.size:
                out[k] = [float(np.percentile(v, lo)), float(np.percentile(v, hi))]
        return out

    def summary(self) -> dict:
        """JSON-able description: count, failures, level, seed."""
        return {"num": self.num_requested, "num_failed": self.num_failed, "level": self.level,
                "seed": self.seed}


def resample_within_curves(curves: Curves, rng: np.random.Generator) -> np.ndarray:
    """Indices of one bootstrap sample: each curve's points drawn with replacement, (P,)."""
    parts = []
    for sl in curves.curve_slices():
        n = sl.stop - sl.start
        parts.append(sl.start + rng.integers(0, n, n))
    return np.concatenate(parts)


def bootstrap(curves: Curves, refit: Callable[[Curves], dict[str, float]], *, num: int = 1000,
              seed: int = 0, level: float = 0.95,
              progress: Callable[[int], None] | None = None) -> Bootstrap:
    """Refit ``num`` bootstrap resamples of ``curves``.

    Args:
        curves: the points.
        refit: fits one resample and returns its coefficients by name; raises
            :class:`FitError` when it cannot.
        num: bootstrap samples (>= 1).
        seed: seed of the resampling.
        level: confidence level of the intervals, in (0, 1).
        progress: called with 1 after each refit (e.g. a progress bar's ``update``).

    Raises:
        ValueError: on a bad ``num`` or ``level``, or when more than half the refits fail.
    """
    if num < 1:
        raise ValueError(f"bootstrap count must be >= 1, got {num}; use e.g. 1000")
    if not 0 < level < 1:
        raise ValueError(f"confidence level must be in (0, 1), got {level}; use e.g. 0.95")
    rng = np.random.default_rng(seed)
    rows: list[dict[str, float]] = []
    failed = 0
    with single_threaded_blas():
        for _ in range(num):
            sample = curves.take(resample_within_curves(curves, rng))
            try:
                rows.append(refit(sample))
            except FitError as e:
                failed += 1
                logger.debug("bootstrap refit failed: %s", e)
            if progress is not None:
                progress(1)
    if failed > num // 2:
        raise FitError(f"{failed} of {num} bootstrap refits failed, so the fit is not stable "
                       f"under resampling; the intervals would be meaningless. Add curves or "
                       f"points, or choose another method")
    if failed:
        logger.warning("%d of %d bootstrap refits failed and were left out", failed, num)
    names = rows[0].keys() if rows else ()
    samples = {k: np.array([r[k] for r in rows]) for k in names}
    return Bootstrap(samples=samples, num_requested=num, num_failed=failed, level=level, seed=seed)
