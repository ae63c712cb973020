"""Pieces shared by the Section 5 reproductions: a resumable local job pool and fit summaries."""

from __future__ import annotations

import logging
import math
import multiprocessing as mp
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def run_jobs(fn: Callable[[dict], dict], jobs: Sequence[dict], workers: int = 0,
             desc: str = "runs") -> list[dict]:
    """Run ``fn(job)`` for every job, ``workers`` processes at a time, with a progress bar.

    Each job must be resumable by itself (the trainer resumes a run directory that holds a
    checkpoint, and returns at once when its budget is already spent), so an interrupted sweep
    started again skips finished runs and continues interrupted ones.

    Args:
        fn: a picklable module-level function.
        jobs: JSON-able job descriptions.
        workers: processes (0: one per two cores, at least 1; 1: run in this process).
        desc: progress-bar label.
    """
    from tqdm import tqdm

    cores = os.cpu_count() or 1
    workers = workers or max(1, min(len(jobs), cores))
    results: list[dict] = []
    if workers <= 1 or len(jobs) <= 1:
        for job in tqdm(jobs, desc=desc, unit="run"):
            results.append(fn(job))
        return results
    threads = max(1, cores // workers)
    ctx = mp.get_context("spawn")
    with ctx.Pool(workers, initializer=_init_worker, initargs=(threads,)) as pool:
        for res in tqdm(pool.imap(fn, jobs), total=len(jobs), desc=desc, unit="run"):
            results.append(res)
    return results


@dataclass(frozen=True)
class Estimate:
    """A coefficient with a bootstrap interval."""

    value: float
    low: float
    high: float

    def fmt(self, digits: int = 2) -> str:
        """``0.63 [0.55, 0.70]``."""
        if math.isnan(self.low):
            return f"{self.value:.{digits}f}"
        return f"{self.value:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"

    def to_json(self) -> dict:
        """``{"value", "ci"}``."""
        return {"value": self.value, "ci": [self.low, self.high]}


def estimate(value: float, samples: np.ndarray | None, level: float = 0.95) -> Estimate:
    """``value`` with the percentile interval of bootstrap ``samples`` (NaN when none)."""
    if samples is None or np.size(samples) < 2:
        return Estimate(float(value), math.nan, math.nan)
    s = np.asarray(samples, dtype=np.float64)
    s = s[np.isfinite(s)]
    lo, hi = np.percentile(s, [50 * (1 - level), 50 * (1 + level)])
    return Estimate(float(value), float(lo), float(hi))


def difference(a_value: float, a_samples, b_value: float, b_samples, level: float = 0.95,
               seed: int = 0) -> Estimate:
    """``a - b`` with an interval from independent bootstrap samples of each (paired at random)."""
    if a_samples is None or b_samples is None or min(np.size(a_samples), np.size(b_samples)) < 2:
        return Estimate(a_value - b_value, math.nan, math.nan)
    a = np.asarray(a_samples, dtype=np.float64)
    b = np.asarray(b_samples, dtype=np.float64)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    rng = np.random.default_rng(seed)
    n = max(a.size, b.size)
    diff = rng.choice(a, n) - rng.choice(b, n)
    return estimate(a_value - b_value, diff, level)


def pearson(x, y) -> float:
    """Pearson correlation of two sequences (NaN when undefined)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan
    return float(np.corrcoef(x, y)[0, 1])


def check_dataset_arg(dataset_id: str, default: str, flag: str = "--dataset") -> None:
    """Refuse a dataset id that is not stored locally (only a default is ever collected)."""
    from offline_data.datasets import datasets_root
    from scaling.study.paths import dataset_exists

    if not dataset_exists(dataset_id):
        raise FileNotFoundError(f"{flag} {dataset_id} is not a local Minari dataset (none under "
                                f"{datasets_root()}); list them with `embscale data list`, or "
                                f"leave {flag} out for the default {default} (collected when "
                                "missing)")
