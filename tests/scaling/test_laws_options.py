"""IsoFLOP budgets from clustered final FLOPs, multi-start least squares, refit acceptance, and
what fit.json and table.md say about the bootstrap."""

from __future__ import annotations

import json

import numpy as np
import pytest

from scaling.laws.analysis import FitOptions, analyze
from scaling.laws.data import FitError, make_curves
from scaling.laws.identification import frontier_issues
from scaling.laws.isoflop import fit_isoflop
from scaling.laws.parametric import fit_huber, fit_lsq
from scaling.laws.synthetic import EPOCH_LAW, synthetic_curves

A_TRUE = EPOCH_LAW["beta"] / (EPOCH_LAW["alpha"] + EPOCH_LAW["beta"])


def _isoflop_sweep(points_per_run: int, jitter: float):
    """Every size trained to three budgets as separate runs; final FLOPs miss by up to jitter."""
    law = EPOCH_LAW
    rng = np.random.default_rng(0)
    N, D, run = [], [], []
    for i, n in enumerate(np.geomspace(1e7, 4e9, 11)):
        for budget in (1e18, 1e19, 1e20):
            final = budget * (1 + jitter * rng.uniform(-1, 1))
            C = np.geomspace(final / 100, final, points_per_run)[-points_per_run:]
            C[-1] = final
            N += [n] * points_per_run
            D += list(C / (6 * n))
            run += [f"s{i}-{budget:.0e}"] * points_per_run
    N, D = np.array(N), np.array(D)
    L = law["E"] + law["A"] * N ** -law["alpha"] + law["B"] * D ** -law["beta"]
    return make_curves(N, D, L, run)


@pytest.mark.parametrize("points_per_run", [1, 40])
def test_isoflop_finds_designed_budgets_from_final_flops(points_per_run):
    # Runs that miss their budget by up to 4% and log many points: the old 1% grouping split
    # or missed these budgets.
    f = fit_isoflop(_isoflop_sweep(points_per_run, jitter=0.04))
    assert f.shared_budgets is True
    np.testing.assert_allclose(np.sort(f.candidate_budgets), [1e18, 1e19, 1e20], rtol=0.03)
    assert abs(f.a - A_TRUE) < 0.02


def test_lsq_failure_says_what_failed():
    c = synthetic_curves(np.geomspace(1e7, 1e9, 4), points_per_curve=6)
    with pytest.raises(FitError, match="did not converge from any of 3 starts"):
        fit_lsq(c, num_starts=3, maxfev=1)


def test_lsq_from_many_starts_finds_what_one_start_misses():
    c = synthetic_curves(np.geomspace(1e7, 1e9, 5), noise=0.01, seed=4, points_per_curve=20)
    many = fit_lsq(c)
    assert len(many.optima) >= 1 and abs(many.a - A_TRUE) < 0.03
    assert many.objective <= fit_lsq(c, num_starts=1).objective + 1e-12


def test_refits_failing_the_r2_check_are_counted_as_failed():
    from scaling.laws.batched import accepted

    c = synthetic_curves(np.geomspace(1e7, 1e9, 4), points_per_curve=6)
    x, y, logl = np.log(c.N), np.log(c.D), np.log(c.L)
    xc, yc = x - x.mean(), y - y.mean()
    fit = fit_huber(c, num_starts=4)
    good = np.array([[np.log(fit.A) - fit.alpha * x.mean(), np.log(fit.B) - fit.beta * y.mean(),
                      np.log(fit.E), fit.alpha, fit.beta]])
    flat = good.copy()
    flat[0, :2] = -50.0  # a law that predicts a constant loss E: R^2 about 0
    W = np.ones((2, c.num_points))
    assert accepted(np.vstack([good, flat]), W, xc, yc, logl).tolist() == [True, False]


def test_fit_json_and_table_state_scheme_and_failed_refits():
    from scaling.fitting import table_markdown

    c = synthetic_curves(np.geomspace(5e6, 1e9, 7), noise=0.005, seed=1, points_per_curve=10)
    res = analyze(c, FitOptions(num_bootstrap=12, extrapolation=False))
    j = res.to_json()
    assert j["schema"] == "embscale.fit/2"
    b = j["bootstrap"]
    assert b["scheme"] == "runs" and b["num"] == 12
    assert set(b["num_failed"]) == set(res.boot)
    for name in res.boot:
        assert j[name]["bootstrap"]["scheme"] == "runs"
    assert j["frontier"]["rule"] == "vertex"
    # the refits of a and b are kept, so two fits' exponents can be compared later
    for name in ("frontier", "parametric"):
        kept = j[name]["bootstrap"]["samples"]
        assert set(kept) == {"a", "b"} and len(kept["a"]) == res.boot[name].samples["a"].size
        assert kept["a"] == pytest.approx(res.boot[name].samples["a"], rel=1e-5)
    assert set(j["frontier"]["optimal_N"]) <= set(c.curve_N.tolist())
    assert len(j["frontier"]["optimal_N"]) == j["frontier"]["num_models"]
    assert j["frontier"]["not_identified"] == frontier_issues(j["frontier"]["num_models"],
                                                              j["frontier"]["a"])
    json.dumps(j, allow_nan=False)
    text = table_markdown(j)
    assert "whole runs (curves) resampled with replacement" in text
    assert "failed refits, left out:" in text
    within = analyze(c, FitOptions(num_bootstrap=5, bootstrap_scheme="within-run",
                                   methods=("parametric",), extrapolation=False)).to_json()
    assert "within each run" in table_markdown(within)
    with pytest.raises(ValueError, match="bootstrap_scheme"):
        FitOptions(bootstrap_scheme="cases")


def test_the_laws_can_be_fitted_to_other_points_than_the_envelope(tmp_path):
    from scaling.fitting import curve_points

    curves = synthetic_curves(np.geomspace(1e7, 1e9, 6), noise=0.002, seed=1)
    late = synthetic_curves(np.geomspace(1e7, 1e9, 6), span=(1.0, 10.0), points_per_curve=10,
                            noise=0.002, seed=1)
    opts = FitOptions(num_bootstrap=0, extrapolation=False)
    split = analyze(curves, opts, law_curves=late)
    assert split.parametric.num_points == late.num_points < curves.num_points
    whole = analyze(curves, opts)
    assert split.frontier.a == whole.frontier.a  # the envelope's points
    # IsoFLOP compares sizes at equal compute, as the frontier does: the envelope's points too
    assert split.isoflop is not None and split.isoflop.a == whole.isoflop.a
    # past 10% of each final D alone, the sizes' curves share too little compute to bracket N_opt
    assert "IsoFLOP" in analyze(late, opts).skipped["isoflop"]
    assert split.to_json()["data"]["law_points"] == late.num_points
    # a run extended past its first budget keeps the start that budget gave it
    run = tmp_path / "r"
    run.mkdir()
    (run / "metrics.jsonl").write_text("".join(
        json.dumps({"step": s, "tokens": 100 * s, "params": 1000, "train/loss": 5.0 / s}) + "\n"
        for s in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)))
    assert min(p["D"] for p in curve_points([run], "train/loss", 0.1)) == 10_000
    assert min(p["D"] for p in curve_points([run], "train/loss", 0.1, {"r": 1000})) == 100
    # points logged during the learning-rate warmup are never fitted, whatever the fraction
    (run / "config.json").write_text(json.dumps({"train": {"warmup_steps": 10}}))
    kept = curve_points([run], "train/loss", 0.1, {"r": 1000})
    assert min(p["D"] for p in kept) == 2_000 and len(kept) == 6
    assert min(p["D"] for p in curve_points([run], "train/loss", 0.0)) == 2_000


def test_curves_start_after_their_last_loss_above_a_uniform_guess(tmp_path):
    from scaling.fitting import curve_points
    from scaling.inputs import load_curves, uniform_loss

    bc = {"task": "bc-token", "model_config": {"action_vocab_sizes": [4], "image_vocab": 256}}
    wm = {**bc, "task": "wm-token"}
    assert uniform_loss(bc) == pytest.approx(np.log(4))
    assert uniform_loss({**bc, "task": "bc-cnn"}) == pytest.approx(np.log(4))
    assert uniform_loss(wm) == pytest.approx(np.log(256))  # WM-Token scores image tokens
    assert uniform_loss({"task": "char-lm"}) is None and uniform_loss({}) is None
    # a large model's first updates overshoot above ln 4 (and come back) before it learns
    losses = [2.1, 1.7, 4.3, 1.2, 1.1, 1.05, 1.3, 1.0, 0.95, 0.9]
    run = tmp_path / "bc-token-s300k-seed0"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(bc))
    (run / "metrics.jsonl").write_text("".join(
        json.dumps({"step": i + 1, "tokens": 100 * (i + 1), "params": 1000, "train/loss": v})
        + "\n" for i, v in enumerate(losses)))
    assert len(curve_points([run], "train/loss", 0.0)) == len(losses)  # off: every point
    kept = curve_points([run], "train/loss", 0.0, skip_above_uniform=True)
    # the curve starts after its last point above ln 4 = 1.386 (the third); a later point above
    # the curve's trend (1.3 > 1.05) stays, since the rule cuts the start and selects nothing
    assert [p["L"] for p in kept] == losses[3:]
    # embscale fit --skip-above-uniform reads run directories the same way
    other = tmp_path / "bc-token-s3k-seed0"
    other.mkdir()
    (other / "config.json").write_text(json.dumps(bc))
    (other / "metrics.jsonl").write_text((run / "metrics.jsonl").read_text().replace(
        '"params": 1000', '"params": 300'))
    curves = load_curves([run, other], loss_key="train/loss", skip_above_uniform=True)
    assert sorted(curves.L[curves.N == 1000]) == sorted(losses[3:])
    assert load_curves([run, other], loss_key="train/loss").num_points == 2 * len(losses)
    # a task whose uniform loss is unknown keeps its points
    (run / "config.json").write_text(json.dumps({"task": "char-lm"}))
    assert len(curve_points([run], "train/loss", 0.0, skip_above_uniform=True)) == len(losses)


def test_whole_run_intervals_over_few_runs_are_called_coarse(caplog):
    from scaling.fitting import bootstrap_sentence

    # 7 runs: 1,716 distinct draws of the runs, no note (the test above); 4 runs: only 35
    assert "coarse" not in bootstrap_sentence(
        analyze(synthetic_curves(np.geomspace(5e6, 1e9, 7), points_per_curve=10),
                FitOptions(num_bootstrap=4, methods=("parametric",),
                           extrapolation=False)).to_json())
    few = synthetic_curves(np.geomspace(5e6, 1e9, 4), noise=0.005, seed=1, points_per_curve=10)
    with caplog.at_level("WARNING", logger="scaling.laws.analysis"):
        j = analyze(few, FitOptions(num_bootstrap=4, methods=("parametric",),
                                    extrapolation=False)).to_json()
    note = "whole-run resampling of 4 runs can draw only 35 distinct sets of runs"
    assert note in bootstrap_sentence(j) and caplog.text.count(note) == 1  # once, not per method
    assert "--bootstrap-scheme within-run" in bootstrap_sentence(j)
    within = analyze(few, FitOptions(num_bootstrap=4, bootstrap_scheme="within-run",
                                     methods=("parametric",), extrapolation=False)).to_json()
    assert "coarse" not in bootstrap_sentence(within)


def test_an_isoflop_allocation_falling_with_compute_is_not_identified():
    import dataclasses

    from scaling.fitting import table_markdown

    curves = synthetic_curves(np.geomspace(1e7, 1e9, 6), noise=0.002, seed=1)
    res = analyze(curves, FitOptions(num_bootstrap=0, extrapolation=False))
    assert res.to_json()["isoflop"]["not_identified"] == []  # a > 0: identified
    res.isoflop = dataclasses.replace(res.isoflop, a=-0.2, b=1.2)
    entry = res.to_json()
    assert entry["isoflop"]["not_identified"][0].startswith("a = -0.2 <= 0")
    assert "the IsoFLOP optima" in table_markdown(entry)


def test_one_point_runs_are_resampled_as_points_and_few_refits_judge_no_width():
    """Within-run resampling of one-point runs never changes the data: it draws points instead;
    and an interval from a single refit has zero width without saying anything."""
    from scaling.laws.data import make_curves
    from scaling.laws.uncertainty import effective_scheme

    c = synthetic_curves(np.geomspace(1e7, 1e9, 5), points_per_curve=8, noise=0.01, seed=2)
    one_point = make_curves(c.N, c.D, c.L, run=[f"r{i}" for i in range(c.num_points)])
    assert effective_scheme(one_point, "within-run") == "points"
    assert effective_scheme(c, "within-run") == "within-run"
    j = analyze(one_point, FitOptions(num_bootstrap=40, bootstrap_scheme="within-run",
                                      methods=("parametric",), extrapolation=False)).to_json()
    lo, hi = j["parametric"]["ci"]["a"]
    assert hi > lo and not any("zero-width" in i for i in j["parametric"]["not_identified"])
    single = analyze(c, FitOptions(num_bootstrap=1, methods=("parametric",),
                                   extrapolation=False)).to_json()["parametric"]
    assert not any("zero-width" in i for i in single["not_identified"])
