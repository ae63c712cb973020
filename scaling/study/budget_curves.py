"""Loss-vs-FLOPs curves as the budget protocol sees them: smoothed, with a noise estimate."""

from __future__ import annotations

import math

import numpy as np

SMOOTH_POINTS = 5  # points per moving mean of a smoothed curve


def smooth(loss: np.ndarray, half_window: int = SMOOTH_POINTS // 2) -> np.ndarray:
    """Centred moving mean over ``2 * half_window + 1`` points (shrinking at the ends)."""
    out = np.empty_like(loss)
    for i in range(len(loss)):
        lo, hi = max(0, i - half_window), min(len(loss), i + half_window + 1)
        out[i] = loss[lo:hi].mean()
    return out


def curve_noise(flops: np.ndarray, loss: np.ndarray, late_fraction: float = 0.5) -> float:
    """Scatter (sigma) of a curve's late points around the mean of their 4 nearest neighbours.

    The scale is robust (1.4826 times the median absolute deviation of the residuals): where
    the late part still holds a steep stretch of the curve (a short run, or a behaviour-cloning
    curve leaving the action marginal), a few points sit far from their neighbours' mean because
    the curve bends there, not because it is noisy, and a standard deviation would count them.
    """
    order = np.argsort(flops)
    logc, loss = np.log(flops[order]), loss[order]
    if len(loss) < 5:
        return 0.0
    keep = logc >= logc[-1] - late_fraction * (logc[-1] - logc[0])
    resid = np.array([loss[i] - (loss[i - 2] + loss[i - 1] + loss[i + 1] + loss[i + 2]) / 4.0
                      for i in range(2, len(loss) - 2) if keep[i]])
    if len(resid) < 2:
        return 0.0
    mad = float(np.median(np.abs(resid - np.median(resid))))
    return 1.4826 * mad / math.sqrt(1.25)


class Size:
    """The pooled (seed-mean) smoothed curve of one size, on log compute."""

    def __init__(self, runs: list, late_fraction: float):
        self.runs = runs
        self.name, self.params = runs[0].size, runs[0].params
        # optimizer steps trained so far (the fewest of the seeds)
        self.steps = min(r.tokens / r.inputs_per_update for r in runs)
        per_run, raw = [], []
        for r in runs:
            c, y = np.asarray(r.flops, float), np.asarray(r.loss, float)
            ok = np.isfinite(c) & np.isfinite(y) & (c > 0)
            c, y = c[ok], y[ok]
            order = np.argsort(c)
            per_run.append((np.log(c[order]), smooth(y[order]), curve_noise(c, y, late_fraction)))
            raw.append(y[order])
        self.lo = max(p[0][0] for p in per_run) if all(len(p[0]) for p in per_run) else math.inf
        self.hi = min(p[0][-1] for p in per_run) if all(len(p[0]) for p in per_run) else -math.inf
        self._per_run = per_run
        self._raw = raw  # each run's unsmoothed losses, in the order of its log compute
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

    def plateaued(self, noise_sigmas: float, min_steps: float = 0.0) -> bool:
        """The loss does not fall measurably over the last two doublings of compute.

        Over each run's points in its last two doublings (or its whole curve when shorter, but
        at least one doubling), a least-squares line in log compute gives the fall per doubling,
        averaged over the seeds; its standard error follows from the curve's noise ``sigma``.
        The curve has plateaued when the fall is below ``noise_sigmas`` standard errors: a
        slow but steady fall (a behaviour-cloning model learning what the frames show) is not a
        plateau, however small each doubling's step, as long as the points resolve it.

        A curve younger than ``min_steps`` optimizer steps never counts as plateaued: early in
        training a model can sit on a flat stretch (a behaviour-cloning model at the action
        marginal) long before it stops improving.
        """
        if self.hi - self.lo < math.log(2.0) or self.steps < min_steps:
            return False
        falls, variances = [], []
        for (logc, _, _), raw in zip(self._per_run, self._raw, strict=True):
            window = logc >= self.hi - math.log(4.0)
            x, y = logc[window], raw[window]
            sxx = float(np.sum((x - x.mean()) ** 2))
            if x.size < 4 or sxx <= 0:
                return False
            slope = float(np.sum((x - x.mean()) * (y - y.mean())) / sxx)
            falls.append(-slope * math.log(2.0))
            variances.append((math.log(2.0) * self.sigma) ** 2 / sxx)
        fall = float(np.mean(falls))
        stderr = math.sqrt(float(np.sum(variances))) / len(falls)
        return fall < noise_sigmas * stderr


def equal_inputs_gap(small: Size, large: Size) -> tuple[float, float] | None:
    """``(D, gap)`` where two sizes' common range of inputs D ends; None without overlap.

    Compute is C = 6ND, so a size's curve over log D is its curve over log C shifted by
    ``log(6N)``. ``gap`` is the smaller size's smoothed loss less the larger's at that D (> 0:
    the larger is lower at equal inputs). At equal compute the smaller size has seen
    N_large / N_small times the inputs; while the larger is not lower at equal inputs, the
    smaller stays ahead at equal compute wherever the loss still falls with D.
    """
    shift_s, shift_l = math.log(6.0 * small.params), math.log(6.0 * large.params)
    hi = min(small.hi - shift_s, large.hi - shift_l)
    if not (small.valid and large.valid) or hi <= max(small.lo - shift_s, large.lo - shift_l):
        return None
    gap = small.at(np.array([hi + shift_s]))[0] - large.at(np.array([hi + shift_l]))[0]
    return float(math.exp(hi)), float(gap)


__all__ = ["SMOOTH_POINTS", "Size", "curve_noise", "equal_inputs_gap", "smooth"]
