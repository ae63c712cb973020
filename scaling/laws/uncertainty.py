"""Bootstrap confidence intervals for fitted coefficients.

Three resampling schemes (``SCHEMES``):

* ``"runs"`` (the default): draw whole curves (training runs) with replacement and keep every
  point of each drawn curve. Points along one run are not independent (a constant-LR curve is
  smooth), so the uncertainty that matters lies between runs; this scheme is the only one that
  changes which runs the fit sees. A curve drawn twice enters twice, as two curves of the same
  size. When every curve holds a single point (final losses only), drawing curves is drawing
  points, as Besiroglu et al. (2024) did for Chinchilla's data; the scheme is then reported as
  ``"points"``.
* ``"within-run"``: draw each curve's points with replacement (every curve keeps its size and
  point count); the set of runs never changes, so the intervals are narrower.
* ``"points"``: draw all points with replacement, ignoring curves.

The interval of a coefficient is the percentile interval of its refits. Refits that fail are
counted, never hidden.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from scaling.laws._threads import single_threaded_blas
from scaling.laws.data import Curves, FitError

logger = logging.getLogger(__name__)

SCHEMES = ("runs", "within-run", "points")

COARSE_DRAWS = 100
"""Below this many distinct draws of the runs, a whole-run interval is called coarse."""


def distinct_run_draws(num_runs: int) -> int:
    """Distinct sets of runs (with repeats, order ignored) a whole-run resample can draw.

    ``C(2R - 1, R)`` for ``R`` runs: with 2 runs only 3 (both, or one of them twice), so the
    refits take at most 3 values and a percentile interval says little; with 5 runs, 126.

    >>> [distinct_run_draws(r) for r in (1, 2, 3, 4, 5)]
    [1, 3, 10, 35, 126]
    """
    return math.comb(2 * num_runs - 1, num_runs) if num_runs > 0 else 0


def coarse_runs_note(scheme: str, num_runs: int) -> str | None:
    """A clause saying why a whole-run interval over few runs is coarse (None when it is not)."""
    if scheme != "runs" or num_runs < 1 or distinct_run_draws(num_runs) >= COARSE_DRAWS:
        return None
    return (f"whole-run resampling of {num_runs} run{'s' if num_runs != 1 else ''} can draw only "
            f"{distinct_run_draws(num_runs)} distinct sets of runs, so these intervals are "
            "coarse: train more runs (seeds or sizes), or resample within runs, which keeps the "
            "runs fixed (--bootstrap-scheme within-run; fit.bootstrap_scheme in a study spec)")


@dataclass(frozen=True)
class Bootstrap:
    """Bootstrap refits of one method.

    Attributes:
        samples: coefficient name -> refitted values, (num_ok,).
        num_requested: refits asked for.
        num_failed: refits that raised :class:`FitError` or failed the acceptance checks of the
            main fit (left out of ``samples``).
        level: confidence level of :meth:`ci` (e.g. 0.95).
        seed: seed of the resampling.
        scheme: resampling scheme actually used (see :data:`SCHEMES`).
    """

    samples: dict[str, np.ndarray]
    num_requested: int
    num_failed: int
    level: float
    seed: int
    scheme: str = "runs"

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
        """JSON-able description: scheme, count, failures, level, seed."""
        return {"scheme": self.scheme, "num": self.num_requested, "num_failed": self.num_failed,
                "level": self.level, "seed": self.seed}

    def json_samples(self, keys: tuple[str, ...] = ("a", "b")) -> dict[str, list[float | None]]:
        """The refitted values of ``keys`` as JSON lists (6 significant digits; None: not finite).

        ``fit.json`` keeps these for ``a`` and ``b`` so two fits' exponents can be compared
        (e.g. the interval of a difference of two tasks' ``a``) without refitting.
        """
        return {k: [float(f"{v:.6g}") if np.isfinite(v) else None
                    for v in np.asarray(self.samples[k], dtype=np.float64)]
                for k in keys if k in self.samples}


def effective_scheme(curves: Curves, scheme: str) -> str:
    """The scheme a request amounts to: ``"points"`` for runs or within-run on one-point runs.

    Drawing whole one-point runs is drawing points; drawing the one point of each run (within
    runs) would never change the data.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"bootstrap scheme must be one of {SCHEMES}, got {scheme!r}")
    if scheme in ("runs", "within-run") and int(np.bincount(curves.run).max()) == 1:
        return "points"
    return scheme


def resample_within_curves(curves: Curves, rng: np.random.Generator) -> np.ndarray:
    """Indices of one bootstrap sample: each curve's points drawn with replacement, (P,)."""
    parts = []
    for sl in curves.curve_slices():
        n = sl.stop - sl.start
        parts.append(sl.start + rng.integers(0, n, n))
    return np.concatenate(parts)


def resample_runs(curves: Curves, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One whole-run sample: curves drawn with replacement, all points of each.

    Returns:
        ``(index, copy)``: point indices, and for each the draw (0..num_curves-1) it came from,
        so a curve drawn twice can be kept as two curves.
    """
    slices = curves.curve_slices()
    picks = rng.integers(0, len(slices), len(slices))
    index = [np.arange(slices[i].start, slices[i].stop) for i in picks]
    copy = [np.full(ix.size, j) for j, ix in enumerate(index)]
    return np.concatenate(index), np.concatenate(copy)


def resample(curves: Curves, rng: np.random.Generator, scheme: str
             ) -> tuple[np.ndarray, np.ndarray | None]:
    """Point indices of one sample under ``scheme``, and the draw of each (``runs`` only)."""
    if scheme == "within-run":
        return resample_within_curves(curves, rng), None
    if scheme == "points":
        return rng.integers(0, curves.num_points, curves.num_points), None
    return resample_runs(curves, rng)


def sample_curves(curves: Curves, index: np.ndarray, copy: np.ndarray | None) -> Curves:
    """The resampled points as curves; a run drawn twice becomes two curves of its size."""
    if copy is None:
        return curves.take(index)
    names = np.asarray(curves.names, dtype=object)[curves.run[index]]
    labels = np.array([f"{n}#{c}" for n, c in zip(names, copy, strict=True)], dtype=object)
    return curves.take(index, names=labels)


def check_bootstrap_args(num: int, level: float) -> None:
    """``ValueError`` on a bad refit count or confidence level."""
    if num < 1:
        raise ValueError(f"bootstrap count must be >= 1, got {num}; use e.g. 1000")
    if not 0 < level < 1:
        raise ValueError(f"confidence level must be in (0, 1), got {level}; use e.g. 0.95")


def too_many_failed(failed: int, num: int, scheme: str, at_least: bool = False) -> FitError:
    """The error raised when more than half the refits failed."""
    return FitError(f"{'at least ' if at_least else ''}{failed} of {num} bootstrap refits "
                    f"({scheme} resampling) failed, so the fit is not stable under resampling; "
                    f"the intervals would be meaningless. Add curves or points, or choose "
                    f"another method or --bootstrap-scheme")


def bootstrap(curves: Curves, refit: Callable[[Curves], dict[str, float]], *, num: int = 1000,
              seed: int = 0, level: float = 0.95, scheme: str = "runs",
              progress: Callable[[int], None] | None = None) -> Bootstrap:
    """Refit ``num`` bootstrap resamples of ``curves``.

    Args:
        curves: the points.
        refit: fits one resample and returns its coefficients by name; raises
            :class:`FitError` when it cannot or when the refit fails the main fit's checks.
        num: bootstrap samples (>= 1).
        seed: seed of the resampling.
        level: confidence level of the intervals, in (0, 1).
        scheme: ``"runs"`` (whole curves, default), ``"within-run"`` or ``"points"``.
        progress: called with 1 after each refit (e.g. a progress bar's ``update``).

    Raises:
        ValueError: on a bad ``num``, ``level`` or ``scheme``; :class:`FitError` when more than
            half the refits fail.
    """
    check_bootstrap_args(num, level)
    used = effective_scheme(curves, scheme)
    rng = np.random.default_rng(seed)
    rows: list[dict[str, float]] = []
    failed = 0
    with single_threaded_blas():
        for _ in range(num):
            sample = sample_curves(curves, *resample(curves, rng, used))
            try:
                rows.append(refit(sample))
            except FitError as e:
                failed += 1
                logger.debug("bootstrap refit failed: %s", e)
            if progress is not None:
                progress(1)
            if failed > num // 2:
                raise too_many_failed(failed, num, used, at_least=True)
    if failed:
        logger.warning("%d of %d bootstrap refits failed and were left out", failed, num)
    names = rows[0].keys() if rows else ()
    samples = {k: np.array([r[k] for r in rows]) for k in names}
    return Bootstrap(samples=samples, num_requested=num, num_failed=failed, level=level, seed=seed,
                     scheme=used)
