"""The BC-CNN − BC-Token difference interval: every pair of the two tasks' bootstrap refits."""

import numpy as np
import pytest

from scaling.study import report_exponents
from scaling.study.report_exponents import difference_interval


def test_difference_interval_pairs_every_refit():
    lo, hi = difference_interval([0.6, 0.7, 0.8], [0.3, 0.4], level=0.5)
    # differences 0.3 0.2 0.4 0.3 0.5 0.4, sorted 0.2 0.3 0.3 0.4 0.4 0.5: quartiles 0.3, 0.4
    assert (lo, hi) == pytest.approx((0.3, 0.4))
    with pytest.raises(ValueError, match="at least 2 refits"):
        difference_interval([1.0], [0.0, 1.0])


def test_difference_interval_of_many_refits_draws_pairs(monkeypatch):
    rng = np.random.default_rng(0)
    x, y = rng.normal(1.0, 0.1, 400), rng.normal(0.0, 0.1, 400)
    monkeypatch.setattr(report_exponents, "MAX_PAIRS", 20_000)
    lo, hi = difference_interval(x, y)
    half = 1.96 * np.sqrt(0.02)  # the difference of two independent N(., 0.1^2)
    assert lo == pytest.approx(1.0 - half, abs=0.04) and hi == pytest.approx(1.0 + half, abs=0.04)
