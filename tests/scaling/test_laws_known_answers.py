"""Fits recover the known exponents of synthetic curves from L = E + A/N^alpha + B/D^beta."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import optimize

from scaling.laws.frontier import fit_frontier, fit_loss_prediction
from scaling.laws.identification import loss_prediction_issues
from scaling.laws.isoflop import fit_isoflop
from scaling.laws.parametric import fit_huber, fit_lsq
from scaling.laws.synthetic import EPOCH_LAW, synthetic_curves

A_TRUE = EPOCH_LAW["beta"] / (EPOCH_LAW["alpha"] + EPOCH_LAW["beta"])  # 0.5126


@pytest.fixture(scope="module")
def clean():
    return synthetic_curves()


def test_truth_is_0513():
    assert A_TRUE == pytest.approx(0.513, abs=5e-4)


@pytest.mark.parametrize("fit", [fit_huber, fit_lsq], ids=["huber", "lsq"])
def test_parametric_recovers_law_without_noise(clean, fit):
    f = fit(clean)
    assert abs(f.a - A_TRUE) < 0.01
    assert f.a + f.b == pytest.approx(1.0)
    for k in ("E", "A", "B", "alpha", "beta"):
        assert getattr(f, k) == pytest.approx(EPOCH_LAW[k], rel=1e-3), k


def test_frontier_recovers_a_without_noise(clean):
    f = fit_frontier(clean)
    assert abs(f.a - A_TRUE) < 0.01
    assert abs(f.b - (1 - A_TRUE)) < 0.01
    assert f.num_models >= 5


def test_grid_points_show_staircase_bias(clean):
    # Hoffmann's all-grid-points regression is biased low by about 1/k^2 (k optimal sizes).
    mid, grid = fit_frontier(clean, points="midpoint"), fit_frontier(clean, points="grid")
    k = grid.num_models
    assert grid.a < mid.a
    assert grid.a == pytest.approx(mid.a * (1 - 1 / k**2), abs=0.004)


def test_isoflop_recovers_a_without_noise(clean):
    assert abs(fit_isoflop(clean).a - A_TRUE) < 0.01


def test_isoflop_uses_shared_budgets():
    # Every size trained to the same three budgets: the CSV-of-final-losses layout.
    law = EPOCH_LAW
    sizes = np.geomspace(1e7, 4e9, 11)
    budgets = np.array([1e18, 1e19, 1e20])
    N = np.repeat(sizes, 3)
    C = np.tile(budgets, sizes.size)
    D = C / (6 * N)
    L = law["E"] + law["A"] * N ** -law["alpha"] + law["B"] * D ** -law["beta"]
    from scaling.laws.data import make_curves

    f = fit_isoflop(make_curves(N, D, L))
    assert f.shared_budgets is True and f.budgets.size == 3  # a bool that fit.json can hold
    assert abs(f.a - A_TRUE) < 0.01


def test_loss_prediction_exponent(clean):
    # Along the optimal allocation both terms fall as C^-(alpha beta / (alpha + beta)).
    lp = fit_loss_prediction(clean)
    al, be = EPOCH_LAW["alpha"], EPOCH_LAW["beta"]
    assert lp.c == pytest.approx(al * be / (al + be), abs=0.01)
    assert lp.E == pytest.approx(EPOCH_LAW["E"], abs=0.05)
    C = 3e19
    assert lp.compute_for_loss(float(lp.predict(C))) == pytest.approx(C, rel=1e-6)
    with pytest.raises(ValueError, match="not reachable"):
        lp.compute_for_loss(lp.E - 0.1)
    assert loss_prediction_issues(lp) == []  # set by the data, not by the bounds


def test_loss_prediction_at_its_bounds_is_not_identified():
    # An envelope that falls off a cliff: no c in [-1, 1] fits it, so c sits at 1 and E at 0.1.
    C = np.geomspace(1e10, 1e13, 40)
    L = 0.1 + 1e30 * C ** -3.0
    from scaling.laws.frontier import Envelope

    env = Envelope(C=C, L=L, winner=np.zeros(C.size, int), N=np.full(C.size, 1e6),
                   bracketed=np.ones(C.size, bool))
    lp = fit_loss_prediction(None, env=env)
    issues = loss_prediction_issues(lp, {"c": [lp.c, lp.c], "E": [0.2, 0.3]})
    assert any(i.startswith("c = 1 (at the edge") for i in issues), issues
    assert any("c has a zero-width interval" in i for i in issues), issues


def test_optimal_allocation_matches_brute_force(clean):
    f = fit_lsq(clean)
    C = 1e20
    res = optimize.minimize_scalar(lambda ln: float(f.predict(np.exp(ln), C / (6 * np.exp(ln)))),
                                   bounds=(np.log(1e6), np.log(1e12)), method="bounded",
                                   options={"xatol": 1e-10})
    n_opt, d_opt = f.optimal(C)
    assert n_opt == pytest.approx(np.exp(res.x), rel=1e-4)
    assert 6 * n_opt * d_opt == pytest.approx(C, rel=1e-9)


@pytest.mark.parametrize("seed", [1, 2])
def test_noisy_fits_within_003(seed):
    noisy = synthetic_curves(noise=0.01, seed=seed)
    assert abs(fit_huber(noisy).a - A_TRUE) < 0.03
    assert abs(fit_lsq(noisy).a - A_TRUE) < 0.03
    assert abs(fit_frontier(noisy, smooth=5).a - A_TRUE) < 0.03
    assert abs(fit_isoflop(noisy).a - A_TRUE) < 0.03


def test_isoflop_dense_curves_are_interpolated_not_matched():
    # 80 points per curve: compute values of different runs meet within 1% by chance.
    f = fit_isoflop(synthetic_curves(np.geomspace(2e5, 2e7, 6), points_per_curve=80))
    assert not f.shared_budgets
    assert abs(f.a - A_TRUE) < 0.01


@pytest.mark.parametrize("fit", [fit_huber, fit_lsq], ids=["huber", "lsq"])
@pytest.mark.parametrize("scale", [1e-3, 3e-2, 1e5])
def test_parametric_fits_do_not_depend_on_the_unit_of_the_loss(fit, scale):
    """Losses scaled by s: E, A and B scaled by s, the same exponents (the starts move too)."""
    from scaling.laws.data import make_curves

    c = synthetic_curves(np.geomspace(1e7, 1e9, 5), points_per_curve=20, noise=0.01, seed=7)
    ref, scaled = fit(c), fit(make_curves(c.N, c.D, c.L * scale))
    assert scaled.a == pytest.approx(ref.a, abs=1e-5)
    assert scaled.E / scale == pytest.approx(ref.E, rel=1e-4)
