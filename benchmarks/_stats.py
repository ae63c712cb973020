"""Statistics the benchmarks share: a mean with its Student-t interval.

Benchmarks run as scripts (``python benchmarks/bench_x.py``), so they import this module by its
bare name: ``from _stats import mean_interval``.
"""

from __future__ import annotations

import math
import statistics

from scipy import stats


def mean_interval(values: list[float], level: float = 0.95) -> tuple[float, float, float]:
    """Mean of ``values`` and its Student-t interval (NaN bounds for fewer than two values).

    >>> [round(v, 3) for v in mean_interval([1.0, 2.0, 3.0])]
    [2.0, -0.484, 4.484]
    """
    if not values:
        raise ValueError("mean_interval needs at least one value")
    m = statistics.fmean(values)
    if len(values) < 2:
        return m, math.nan, math.nan
    half = (float(stats.t.ppf(0.5 + level / 2, len(values) - 1)) * statistics.stdev(values)
            / math.sqrt(len(values)))
    return m, m - half, m + half
