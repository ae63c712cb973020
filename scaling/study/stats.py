"""Correlation statistics shared by the loss-vs-return and loss-vs-quality studies."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from worldmodels.run_metrics import read_metrics


@dataclass
class Correlation:
    """Pearson and Spearman correlation of paired samples with bootstrap intervals."""

    n: int  # number of (x, y) pairs
    pearson: float  # Pearson r
    pearson_ci: tuple[float, float]  # bootstrap percentile interval of r
    pearson_p: float  # two-sided p-value of r = 0
    spearman: float  # Spearman rho
    spearman_ci: tuple[float, float]  # bootstrap percentile interval of rho
    spearman_p: float  # two-sided p-value of rho = 0
    level: float  # interval level, e.g. 0.95

    def to_dict(self) -> dict:
        """JSON-able form."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


@dataclass
class LinearFit:
    """Least-squares line ``y = slope * x + intercept`` with bootstrap intervals."""

    slope: float  # dy/dx
    intercept: float  # y at x = 0
    slope_ci: tuple[float, float]  # bootstrap percentile interval
    intercept_ci: tuple[float, float]  # bootstrap percentile interval
    r2: float  # coefficient of determination

    def to_dict(self) -> dict:
        """JSON-able form."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


def _check(x, y) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1-D of equal length, got {x.shape} and {y.shape}")
    bad = ~(np.isfinite(x) & np.isfinite(y))
    if bad.any():
        raise ValueError(f"non-finite values at pairs {np.flatnonzero(bad).tolist()}; drop them")
    if len(x) < 3:
        raise ValueError(f"need at least 3 pairs for a correlation, got {len(x)}; evaluate more "
                         "checkpoints")
    return x, y


def _interval(samples: np.ndarray, level: float) -> tuple[float, float]:
    samples = samples[np.isfinite(samples)]
    if samples.size == 0:
        return (math.nan, math.nan)
    lo, hi = np.percentile(samples, [50 * (1 - level), 50 * (1 + level)])
    return (float(lo), float(hi))


def correlate(x, y, n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> Correlation:
    """Pearson and Spearman correlation with percentile-bootstrap intervals over pairs.

    >>> c = correlate([1, 2, 3, 4], [2, 4, 6, 8.5], n_boot=50)
    >>> round(c.spearman, 3)
    1.0
    """
    from scipy import stats

    x, y = _check(x, y)
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        raise ValueError("x or y is constant, so the correlation is undefined; the checkpoints "
                         "must differ in loss and in the metric")
    pr = stats.pearsonr(x, y)
    sr = stats.spearmanr(x, y)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(x), size=(n_boot, len(x)))
    bp, bs = np.full(n_boot, np.nan), np.full(n_boot, np.nan)
    for i, j in enumerate(idx):
        xs, ys = x[j], y[j]
        if np.ptp(xs) == 0 or np.ptp(ys) == 0:
            continue
        bp[i] = np.corrcoef(xs, ys)[0, 1]
        rx, ry = stats.rankdata(xs), stats.rankdata(ys)
        bs[i] = np.corrcoef(rx, ry)[0, 1]
    return Correlation(n=len(x), pearson=float(pr[0]), pearson_ci=_interval(bp, level),
                       pearson_p=float(pr[1]), spearman=float(sr[0]),
                       spearman_ci=_interval(bs, level), spearman_p=float(sr[1]), level=level)


def linear_fit(x, y, n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> LinearFit:
    """Least-squares line through the pairs, with bootstrap intervals on both coefficients."""
    x, y = _check(x, y)
    slope, intercept = np.polyfit(x, y, 1)
    resid = y - (slope * x + intercept)
    ss_tot = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float((resid**2).sum()) / ss_tot if ss_tot > 0 else math.nan
    rng = np.random.default_rng(seed)
    bs, bi = np.full(n_boot, np.nan), np.full(n_boot, np.nan)
    for i in range(n_boot):
        j = rng.integers(0, len(x), size=len(x))
        if np.ptp(x[j]) == 0:
            continue
        bs[i], bi[i] = np.polyfit(x[j], y[j], 1)
    return LinearFit(slope=float(slope), intercept=float(intercept),
                     slope_ci=_interval(bs, level), intercept_ci=_interval(bi, level), r2=r2)


@dataclass
class Checkpoint:
    """A checkpoint kept along a training run, with the pre-training loss at its step."""

    run: str  # run directory name
    path: str  # checkpoint file
    step: int  # optimizer step
    tokens: float  # D seen at this step
    flops: float  # C = 6ND at this step
    params: int  # N
    loss: float  # pre-training loss at this step (val/loss when logged, else train/loss)
    loss_key: str  # which metrics key ``loss`` came from


def load_scored_rows(path) -> dict[str, dict]:
    """Rows already scored by a correlation study (``rows.jsonl``), keyed by checkpoint.

    A line cut short by an interrupted write is skipped: that checkpoint is scored again.
    """
    import json
    from pathlib import Path

    rows: dict[str, dict] = {}
    path = Path(path)
    if path.is_file():
        for line in path.read_text().splitlines():
            if line.strip():
                try:
                    row = json.loads(line)
                except ValueError:
                    continue
                rows[row["checkpoint"]] = row
    return rows


def run_checkpoints(run_dir, count: int | None = None,
                    loss_keys: tuple[str, ...] = ("val/loss", "train/loss"),
                    skip_fraction: float = 0.0,
                    max_loss: float | None = None) -> list[Checkpoint]:
    """Checkpoints kept along a run (``checkpoints/step_*.pt``), log-spaced, each with its loss.

    Args:
        run_dir: the run directory.
        count: keep this many (all when fewer are kept), spread evenly in log(step), always
            including the last: each log-spaced target takes the nearest checkpoint not taken
            (None: all).
        loss_keys: metric keys tried in order for the loss logged at a checkpoint's step.
        skip_fraction: leave out checkpoints before this fraction of the last one's step.
        max_loss: leave out checkpoints whose loss is above this (None: keep every loss); the
            log-spaced choice is made among the rest.
    """
    from pathlib import Path

    from worldmodels.run_state import kept_checkpoints  # torch

    run_dir = Path(run_dir)
    records = {int(r["step"]): r for r in read_metrics(run_dir) if "step" in r}
    found = []
    for step, p in kept_checkpoints(run_dir / "checkpoints"):
        rec = records.get(step)
        if rec is None:
            continue
        key = next((k for k in loss_keys
                    if rec.get(k) is not None and math.isfinite(float(rec[k]))), None)
        if key is None:
            continue
        found.append(Checkpoint(run=run_dir.name, path=str(p), step=step,
                                tokens=float(rec.get("tokens", 0)),
                                flops=float(rec.get("flops", 0)),
                                params=int(rec.get("params", 0)), loss=float(rec[key]),
                                loss_key=key))
    if found and skip_fraction > 0:
        last = found[-1].step
        found = [c for c in found if c.step >= skip_fraction * last]
    if max_loss is not None:
        found = [c for c in found if c.loss <= max_loss]
    if count is None or len(found) <= count:
        return found
    steps = np.log(np.maximum([c.step for c in found], 1))  # a kept step 0 counts as step 1
    chosen = [len(found) - 1]  # the last, then the nearest free checkpoint to each target
    for t in np.linspace(steps[0], steps[-1], count)[:-1]:
        free = [i for i in range(len(found)) if i not in chosen]
        chosen.append(min(free, key=lambda i: (abs(steps[i] - t), i)))
    return [found[i] for i in sorted(chosen)]
