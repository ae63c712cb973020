"""Several seeds per model size: the envelope, frontier and IsoFLOP fits pool a size's runs.

Seeds of one size are draws of the same curve. The envelope used to let them compete as curves
(the lowest of three noisy draws wins, and counts as a "model" of its own) and IsoFLOP took the
three seeds that end together for a designed budget of one size; both broke on seeded studies.
"""

from __future__ import annotations

import numpy as np
import pytest

from scaling.fitting import table_markdown
from scaling.laws.analysis import FitOptions, analyze
from scaling.laws.frontier import envelope, fit_frontier, pool_sizes
from scaling.laws.isoflop import _shared_budgets, fit_isoflop
from scaling.laws.synthetic import EPOCH_LAW, truncated_ladder

A_TRUE = EPOCH_LAW["beta"] / (EPOCH_LAW["alpha"] + EPOCH_LAW["beta"])


def test_pool_sizes_means_log_losses_where_runs_reach_and_min_takes_the_best():
    inf = np.inf
    loss = np.log(np.array([[2.0, 3.0, inf], [4.0, 3.0, 5.0], [1.0, inf, inf]]))
    n = np.array([10.0, 10.0, 20.0])
    sizes, which, M = pool_sizes(loss, n, "mean")
    assert which.tolist() == [0, 0, 1]
    np.testing.assert_allclose(np.exp(M[0]), [np.sqrt(8.0), 3.0, 5.0])  # geometric mean
    np.testing.assert_array_equal(M[1, 1:], [inf, inf])
    _, _, low = pool_sizes(loss, n, "min")
    np.testing.assert_allclose(np.exp(low[0]), [2.0, 3.0, 5.0])
    with pytest.raises(ValueError, match="pool must be one of"):
        pool_sizes(loss, n, "median")


def test_identical_seeds_give_the_fit_of_one_run():
    one = truncated_ladder(5, 0)
    three = truncated_ladder(5, 0, seeds=3)
    same = type(one)(N=np.tile(one.N, 3), D=np.tile(one.D, 3), L=np.tile(one.L, 3),
                     run=np.repeat(np.arange(3 * one.num_curves), 100),
                     names=tuple(f"{n}/{i}" for i in range(3) for n in one.names))
    assert three.num_curves == 15 and len(set(three.names)) == 15
    f1, f3 = fit_frontier(one, smooth=11), fit_frontier(same, smooth=11)
    assert f3.a == pytest.approx(f1.a, abs=1e-12) and f3.num_models == f1.num_models


def test_the_frontier_counts_sizes_not_seeds():
    c = truncated_ladder(4, 0, seeds=3)
    env = envelope(c, smooth=11)
    winners = np.unique(env.N[env.bracketed])
    f = fit_frontier(c, smooth=11)
    # With 4 sizes only the two middle ones can be bracketed, whatever the number of seeds.
    assert f.num_models == winners.size <= 2
    low = fit_frontier(c, smooth=11, pool="min")
    assert low.num_models <= 2


def test_mean_pooling_is_not_pulled_down_by_the_luckiest_seed():
    c = truncated_ladder(6, 1, seeds=3)
    mean, low = envelope(c, smooth=11), envelope(c, smooth=11, pool="min")
    ok = mean.bracketed & low.bracketed
    # the min of three noisy draws lies below their mean at (nearly) every compute
    assert np.mean(low.L[ok] < mean.L[ok]) > 0.95


def test_isoflop_fits_seeded_ladders():
    c = truncated_ladder(6, 0, seeds=3)
    budgets, _ = _shared_budgets(c)
    assert budgets.size == 0  # three seeds of one size ending together are not a budget
    f = fit_isoflop(c, smooth=9)
    assert abs(f.a - A_TRUE) < 0.03
    assert fit_isoflop(c, smooth=9, pool="min").a == pytest.approx(f.a, abs=0.05)


@pytest.mark.slow
def test_seeded_ladders_within_001_for_parametric_and_vertex_on_5_and_6_sizes():
    """Three seeds per size (1% noise each), the draws of test_laws_truncated: see docs."""
    from scaling.laws.parametric import fit_huber, fit_lsq

    for k in (5, 6):
        for draw in (0, 1, 2):
            c = truncated_ladder(k, draw, seeds=3)
            for fit in (lambda c: fit_huber(c, num_starts=4), lambda c: fit_lsq(c, num_starts=4),
                        lambda c: fit_frontier(c, smooth=11)):
                assert abs(fit(c).a - A_TRUE) <= 0.01, (k, draw, fit(c).a)


def test_fit_json_states_the_pooling():
    c = truncated_ladder(5, 0, seeds=2)
    res = analyze(c, FitOptions(methods=("frontier",), num_bootstrap=0, smooth=11,
                                extrapolation=False, pool="min"))
    out = res.to_json()
    assert out["options"]["pool"] == "min" and out["frontier"]["pool"] == "min"
    assert "runs of one size pooled by their lowest loss" in table_markdown(out)
    with pytest.raises(ValueError, match="pool must be one of"):
        FitOptions(pool="max")


def test_the_extrapolation_check_leaves_out_every_seed_of_the_held_out_size():
    from scaling.laws.analysis import extrapolation_check

    c = truncated_ladder(5, 0, seeds=3, points=30)
    ex = extrapolation_check(c, FitOptions(num_bootstrap=0, smooth=5, extrapolation=False))
    top = c.N[np.argmax(c.C)]  # the size of the run reaching the largest compute
    held = [n for n in c.names if n.startswith(f"N={top:.3g}/")]
    assert sorted(ex["held_out_runs"]) == sorted(held) and len(held) == 3
    assert ex["held_out"] in held and ex["C_max_fitted"] < ex["C_max"]
