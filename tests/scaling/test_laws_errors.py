"""Bad input and unsupported fits give clear errors; the analysis records skipped methods."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scaling.laws.analysis import FitOptions, analyze
from scaling.laws.data import FitError, NotAPowerLawError, make_curves
from scaling.laws.frontier import fit_frontier
from scaling.laws.parametric import fit_huber, fit_lsq
from scaling.laws.synthetic import EPOCH_LAW, synthetic_curves


def test_fewer_than_two_model_sizes():
    with pytest.raises(ValueError, match="at least 2 distinct model sizes"):
        make_curves([1e6, 1e6], [1e8, 2e8], [3.0, 2.9])


@pytest.mark.parametrize("col", ["N", "D"])
def test_non_positive_sizes(col):
    N, D = [1e6, 2e6], [1e8, 1e8]
    (N if col == "N" else D)[1] = 0.0
    with pytest.raises(ValueError, match=rf"{col} must be positive.*row 1"):
        make_curves(N, D, [3.0, 2.9])


def test_nan_and_inf_losses_name_rows():
    with pytest.raises(ValueError, match=r"NaN or infinite at a\.csv:3, a\.csv:4.*drop-nonfinite"):
        make_curves([1e6, 2e6, 3e6, 4e6], [1e8] * 4, [3.0, math.nan, math.inf, 2.0],
                    labels=["a.csv:1", "a.csv:2", "a.csv:3", "a.csv:4"][:1] + [
                        "a.csv:3", "a.csv:4", "a.csv:5"])


def test_curves_that_never_overlap_fail_frontier_and_suggest_parametric():
    # Each model logged only far below its optimum: no crossings anywhere.
    c = synthetic_curves(np.geomspace(1e6, 1e9, 4), span=(1e-3, 3e-3), points_per_curve=8)
    with pytest.raises(FitError, match="parametric"):
        fit_frontier(c)


def test_unsupported_method_is_skipped_not_fatal():
    c = synthetic_curves(np.geomspace(1e6, 1e9, 5), span=(1e-4, 1e-3), points_per_curve=10)
    res = analyze(c, FitOptions(num_bootstrap=0, extrapolation=False))
    assert res.frontier is None and "frontier" in res.skipped
    assert res.parametric is not None
    j = res.to_json()
    assert j["frontier"]["status"] == "skipped" and "parametric" in j["frontier"]["reason"]
    assert j["parametric"]["status"] == "ok"


def test_all_methods_failing_is_an_error():
    c = synthetic_curves(np.geomspace(1e6, 1e9, 4), span=(1e-3, 3e-3), points_per_curve=8)
    with pytest.raises(FitError, match="no fit succeeded.*frontier"):
        analyze(c, FitOptions(methods=("frontier",), num_bootstrap=0))


def test_non_converged_fit_is_reported():
    c = synthetic_curves(np.geomspace(1e7, 1e9, 4), points_per_curve=6)
    with pytest.raises(FitError, match="did not converge"):
        fit_huber(c, maxiter=1)


def test_loss_rising_with_scale_is_not_returned_as_a_law():
    # Loss that grows with N and D: no power law with positive exponents fits it.
    N = np.repeat([1e6, 1e7, 1e8], 5)
    D = np.tile(np.geomspace(1e8, 1e10, 5), 3)
    L = 1.0 + 0.05 * np.log(N) + 0.05 * np.log(D)
    c = make_curves(N, D, L)
    for fit in (fit_huber, fit_lsq):
        with pytest.raises(FitError):
            fit(c)


def test_options_validated():
    with pytest.raises(ValueError, match="methods"):
        FitOptions(methods=("frontier", "magic"))
    with pytest.raises(ValueError, match="parametric_loss"):
        FitOptions(parametric_loss="l2")
    with pytest.raises(ValueError, match="level"):
        FitOptions(level=1.5)


def test_extrapolation_check_reports_held_out_run():
    res = analyze(synthetic_curves(), FitOptions(num_bootstrap=0, methods=("frontier",)))
    ex = res.extrapolation
    assert ex["held_out"] == "N=1e+09"
    assert ex["C_max"] > ex["C_max_fitted"]
    # Noise-free data from the law itself: the held-out run is predicted well.
    assert abs(ex["loss_prediction_L_rel_error"]) < 0.02
    cp = ex["closest_point"]
    assert cp["source"] == "frontier"
    assert 1 / 3 < cp["N_ratio"] < 3


def test_truth_constants():
    assert EPOCH_LAW["E"] == 1.82


def test_unstable_bootstrap_keeps_estimate_and_says_why(monkeypatch):
    import scaling.laws.analysis as an

    def failing(*args, **kwargs):
        raise FitError("40 of 50 bootstrap refits failed")

    monkeypatch.setattr(an, "bootstrap", failing)
    res = analyze(synthetic_curves(points_per_curve=10),
                  FitOptions(methods=("frontier",), num_bootstrap=5, extrapolation=False))
    j = res.to_json()["frontier"]
    assert j["status"] == "ok" and j["ci"] == {} and "40 of 50" in j["ci_error"]
    from scaling.fitting import table_markdown

    text = table_markdown(res.to_json())
    assert "## Without intervals" in text and "- **frontier**: 40 of 50 bootstrap" in text


def test_frontier_with_three_sizes_asks_for_more_sizes():
    with pytest.raises(FitError, match="at least 4 sizes.*Train more model sizes"):
        fit_frontier(synthetic_curves(np.geomspace(1e6, 1e8, 3), points_per_curve=8))


def test_bootstrap_interval_of_an_overflowed_coefficient_is_json_finite():
    """A refit whose prefactor overflowed (exp -> inf) must not turn fit.json into NaN."""
    import json

    from scaling.laws.uncertainty import Bootstrap

    boot = Bootstrap(samples={"A": np.array([1.0, 2.0, np.inf, np.inf]),
                              "a": np.array([0.4, np.nan, 0.5, 0.6])},
                     num_requested=4, num_failed=0, level=0.95, seed=0)
    ci = boot.ci()
    assert ci["A"][0] >= 1.0 and ci["A"][1] == np.finfo(np.float64).max
    assert 0.4 <= ci["a"][0] <= ci["a"][1] <= 0.6
    json.dumps(ci, allow_nan=False)


def test_bootstrap_stops_once_most_refits_fail_and_skips_futile_restarts(monkeypatch):
    """A refit that converges outside the power-law family is not retried from the grid, and
    refitting stops as soon as more than half the samples have failed."""
    import scaling.laws.batched as batched
    from scaling.laws.parametric import fit_huber as real_fit

    curves = synthetic_curves(points_per_curve=6)
    fit = real_fit(curves)
    calls = []

    def not_converged(x, y, logl, W, theta0, delta):
        return np.tile(theta0, (len(W), 1)), np.zeros(len(W), dtype=bool), np.zeros(len(W))

    def outside_family(sample, delta, init=None, num_starts=None):
        calls.append("grid" if init is None else "init")
        raise NotAPowerLawError("exponents outside (0, 10)")

    monkeypatch.setattr(batched, "huber_refit_batch", not_converged)
    monkeypatch.setattr(batched, "fit_huber", outside_family)
    with pytest.raises(FitError, match=r"at least 21 of 40 bootstrap refits \(runs"):
        batched.bootstrap_huber(curves, fit, num=40)
    assert calls == ["init"] * 21


def test_bootstrap_refits_whose_A_overflows_count_as_failed(monkeypatch):
    """As for the fit itself, a refit with A = exp(800) = inf is not a power law."""
    import scaling.laws.batched as batched
    from scaling.laws.parametric import fit_huber as real_fit

    curves = synthetic_curves(points_per_curve=6)
    fit = real_fit(curves)

    def overflowing(x, y, logl, W, theta0, delta):
        th = np.tile(theta0, (len(W), 1))
        th[:, 0] = 800.0
        return th, np.ones(len(W), dtype=bool), np.zeros(len(W))

    monkeypatch.setattr(batched, "huber_refit_batch", overflowing)
    with pytest.raises(FitError, match=r"at least 40 of 40 bootstrap refits \(runs"):
        batched.bootstrap_huber(curves, fit, num=40)


def test_degenerate_frontier_is_a_fit_error_not_an_overflow():
    # Two optimal sizes whose compute ranges nearly coincide: the slope of log N_opt on log C is
    # in the thousands and exp(intercept) overflows; the fit must say why instead of crashing.
    from scaling.laws.frontier import Envelope

    env = Envelope(C=np.array([1e14, 1.0001e14]), L=np.array([1.0, 0.99]),
                   winner=np.array([1, 2]), N=np.array([4e5, 2.4e6]),
                   bracketed=np.array([True, True]))
    curves = synthetic_curves(np.geomspace(2e5, 2e7, 4))
    with pytest.raises(FitError, match="degenerate.*--method parametric"):
        fit_frontier(curves, env=env, points="midpoint")


def test_a_fit_whose_n_term_vanished_is_not_a_power_law():
    from scaling.laws.parametric import ParametricFit, _validated, huber_theta, lsq_theta

    c = synthetic_curves(np.geomspace(1e6, 1e8, 4), points_per_curve=8)
    flat = ParametricFit(E=0.8, A=0.0, B=5.1, alpha=2.2, beta=0.26, loss="lsq", objective=0.05,
                         num_points=c.num_points)
    # Warm starts from such a fit stay finite (a log of 0 used to crash the lsq bootstrap) ...
    assert np.all(np.isfinite(lsq_theta(flat))) and np.all(np.isfinite(huber_theta(flat)))
    # ... and the fit itself is refused with the reason, not a math domain error later.
    with pytest.raises(NotAPowerLawError, match="A = 0, so its law does not depend on N"):
        _validated(flat, c)


@pytest.mark.parametrize("fit", [fit_huber, fit_lsq], ids=["huber", "lsq"])
def test_a_parametric_fit_on_two_sizes_is_refused(fit):
    """With two sizes E, A and alpha trade off along a line of equal fits: a is not set."""
    from scaling.laws.synthetic import synthetic_curves

    c = synthetic_curves([1e7, 1e8], points_per_curve=20, noise=0.005, seed=0)
    with pytest.raises(FitError, match="at least 3 distinct model sizes N, got 2"):
        fit(c)


def test_a_loss_prediction_of_one_size_is_refused():
    from scaling.laws.frontier import fit_loss_prediction
    from scaling.laws.synthetic import synthetic_curves

    c = synthetic_curves([1e7, 1e8, 1e9], points_per_curve=20, noise=0.0, seed=0)
    one = c.take(np.flatnonzero(c.N == c.N.min()))
    with pytest.raises(FitError, match="at least 2 model sizes"):
        fit_loss_prediction(one)


def test_extrapolation_check_on_designed_budgets_is_skipped_not_an_interpolation():
    """Every size ends at the same budgets: holding one out predicts inside the others' compute."""
    N = np.repeat([1e7, 3e7, 1e8, 3e8], 3)
    C = np.tile([1e17, 1e18, 1e19], 4)
    D = C / (6 * N)
    law = EPOCH_LAW
    L = law["E"] + law["A"] / N ** law["alpha"] + law["B"] / D ** law["beta"]
    res = analyze(make_curves(N, D, L, run=[f"r{i}" for i in range(N.size)]),
                  FitOptions(num_bootstrap=0, methods=("parametric",)))
    assert res.extrapolation is None and "interpolation" in res.skipped["extrapolation"]
