"""Loss-vs-FLOPs curves as the budget protocol sees them: smoothed, with a noise estimate."""

from __future__ import annotations

import math

import numpy as np

SMOOTH_POINTS = 5  # points per moving mean of a smoothed curve


def smooth(loss: np.ndarray, half_window: int = 2) -> np.ndarray:
    """Centred moving mean over ``2 * half_window + 1`` points (shrinking at the ends)."""
    out = np.empty_like(loss)
    for i in range(len(loss)):
        lo, hi = max(0, i - half_window), min(len(loss), i + half_window + 1)
        out[i] = loss[lo:hi].mean()
    return out


def curve_noise(flops: np.ndarray, loss: np.ndarray, late_fraction: float = 0.5) -> float:
    """Scatter (sigma) of a curve's late points around the mean of their 4 nearest neighbours."""
    order = np.argsort(flops)
    logc, loss = np.log(flops[order]), loss[order]
    if len(loss) < 5:
        return 0.0
    keep = logc >= logc[-1] - late_fraction * (logc[-1] - logc[0])
    resid = [loss[i] - (loss[i - 2] + loss[i - 1] + loss[i + 1] + loss[i + 2]) / 4.0
             for i in range(2, len(loss) - 2) if keep[i]]
    if len(resid) < 2:
        return 0.0
    return float(np.std(resid, ddof=1) / math.sqrt(1.25))


class Size:
    """The pooled (seed-mean) smoothed curve of one size, on log compute."""

    def __init__(self, runs: list, late_fraction: float):
        self.runs = runs
        self.name, self.params = runs[0].size, runs[0].params
        # optimizer steps trained so far (the fewest of the seeds)
        self.steps = min(r.tokens / r.inputs_per_update for r in runs)
        per_run = []
        for r in runs:
            c, y = np.asarray(r.flops, float), np.asarray(r.loss, float)
            ok = np.isfinite(c) & np.isfinite(y) & (c > 0)
            c, y = c[ok], y[ok]
            order = np.argsort(c)
            per_run.append((np.log(c[order]), smooth(y[order]), curve_noise(c, y, late_fraction)))
        self.lo = max(p[0][0] for p in per_run) if all(len(p[0]) for p in per_run) else math.inf
        self.hi = min(p[0][-1] for p in per_run) if all(len(p[0]) for p in per_run) else -math.inf
        self._per_run = per_run
        sigma = float(np.sqrt(np.mean([p[2] ** 2 for p in per_run])))
        if len(per_run) > 1 and self.hi > self.lo:
            finals = [np.interp(self.hi, p[0], p[1]) for p in per_run]
            sigma = max(sigma, float(np.std(finals, ddof=1)))
        self.sigma = sigma

    @property
    def valid(self) -> bool:
        """True when every seed has at least two points."""
        return self.hi > self.lo and all(len(p[0]) >= 2 for p in self._per_run)

    def at(self, logc: np.ndarray) -> np.ndarray:
        """Seed-mean smoothed loss at log compute ``logc``."""
        return np.mean([np.interp(logc, p[0], p[1]) for p in self._per_run], axis=0)

    def plateaued(self, margin: float, min_steps: float = 0.0) -> bool:
        """The smoothed loss fell by less than ``margin`` over the last doubling of compute.

        A curve younger than ``min_steps`` optimizer steps never counts as plateaued: early in
        training a model can sit on a flat stretch (a behaviour-cloning model at the action
        marginal) long before it stops improving.
        """
        if self.hi - self.lo < math.log(2.0) or self.steps < min_steps:
            return False
        before, end = self.at(np.array([self.hi - math.log(2.0), self.hi]))
        return float(before - end) < margin


__all__ = ["SMOOTH_POINTS", "Size", "curve_noise", "smooth"]
