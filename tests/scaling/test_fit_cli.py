"""``embscale fit`` on a CSV and on run directories; ``embscale plan`` on the result."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from scaling.cli import main
from scaling.laws.synthetic import synthetic_curves
from scaling.planner import load_presets, plan
from tests.helpers.fits import write_runs
from worldmodels.presets import SIZE_PRESETS


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fit")
    c = synthetic_curves(np.geomspace(5e6, 1e9, 8), noise=0.005, seed=2, points_per_curve=14)
    csv = tmp / "curves.csv"
    csv.write_text("N,D,L\n" + "".join(f"{n},{d},{loss}\n" for n, d, loss in
                                       zip(c.N, c.D, c.L, strict=True)))
    out = tmp / "out"
    assert main(["fit", str(csv), "--out", str(out), "--bootstrap", "20", "--smooth", "3"]) == 0
    return c, out


def test_fit_writes_json_table_and_figure(fitted):
    _, out = fitted
    fit = json.loads((out / "fit.json").read_text())
    for name, keys in (("frontier", ("a", "a0", "b", "b0")),
                       ("parametric", ("E", "A", "B", "alpha", "beta", "a", "b")),
                       ("loss_prediction", ("c0", "c", "E"))):
        assert fit[name]["status"] == "ok", fit[name]
        for k in keys:
            lo, hi = fit[name]["ci"][k]
            assert lo <= hi and np.isfinite(fit[name][k])
    assert fit["parametric"]["loss"] == "huber"
    assert abs(fit["frontier"]["a"] - 0.513) < 0.05
    assert fit["extrapolation"]["status"] == "ok"
    table = (out / "table.md").read_text()
    assert "Frontier fit N_opt ∝ C^a" in table and "Parametric fit D_opt ∝ C^b" in table
    assert f"{fit['parametric']['a']:.3f} [" in table
    img = Image.open(out / "scaling_fit.png")
    assert img.size[0] > 1000 and np.asarray(img).std() > 10


def test_fit_refuses_existing_out(fitted, tmp_path, capsys):
    _, out = fitted
    assert main(["fit", str(out.parent / "curves.csv"), "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_fit_on_run_dirs_lsq_and_skipped_method(tmp_path, capsys):
    # Short curves that never cross: frontier skipped with a reason, parametric still fitted.
    c = synthetic_curves(np.geomspace(1e6, 1e9, 5), span=(3e-4, 3e-3), points_per_curve=10)
    write_runs(tmp_path / "study", c)
    out = tmp_path / "fit"
    assert main(["fit", str(tmp_path / "study"), "--out", str(out), "--bootstrap", "5",
                 "--parametric-loss", "lsq", "--no-extrapolation", "--no-figures"]) == 0
    fit = json.loads((out / "fit.json").read_text())
    assert fit["frontier"]["status"] == "skipped" and "parametric" in fit["frontier"]["reason"]
    assert fit["parametric"]["status"] == "ok" and fit["parametric"]["loss"] == "lsq"
    assert abs(fit["parametric"]["a"] - 0.513) < 0.01
    assert fit["data"]["loss_key"] == "train/loss"
    assert not (out / "scaling_fit.png").exists()
    assert "frontier: skipped" in capsys.readouterr().out
    assert main(["fit", str(tmp_path / "study"), "--out", str(tmp_path / "f2"), "--method",
                 "frontier", "--bootstrap", "0"]) == 2
    assert "no fit succeeded" in capsys.readouterr().err
    assert not (tmp_path / "f2").exists()


def test_figure_without_frontier(tmp_path):
    from scaling.laws.analysis import FitOptions, analyze
    from scaling.plots import figure5

    c = synthetic_curves(np.geomspace(1e6, 1e9, 4), span=(3e-4, 3e-3), points_per_curve=6)
    res = analyze(c, FitOptions(methods=("parametric",), num_bootstrap=5, extrapolation=False))
    assert res.frontier is None and res.loss_prediction.censored
    path = figure5(res, tmp_path / "f.png")
    assert Image.open(path).size[0] > 1000


def test_save_figure_is_atomic_and_closes(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from scaling.plots import save_figure

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    path = save_figure(fig, tmp_path / "sub" / "a.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not plt.fignum_exists(fig.number)

    fig, _ = plt.subplots()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(fig, "savefig", broken)
    with pytest.raises(OSError, match="disk full"):
        save_figure(fig, tmp_path / "sub" / "b.png")
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["a.png"]  # no b.png, no temp file
    assert not plt.fignum_exists(fig.number)


def test_plan_from_parametric_only():
    law = {"E": 1.82, "A": 482.0, "B": 2085.0, "alpha": 0.348, "beta": 0.366}
    from scaling.laws.parametric import ParametricFit

    pf = ParametricFit(**law, loss="huber", objective=0.0, num_points=1)
    fit = {"frontier": {"status": "skipped"}, "loss_prediction": {"status": "skipped"},
           "parametric": {"status": "ok", **pf.coefficients()}}
    p = plan(fit, loss=2.5)
    assert p.allocation_source == "parametric" and p.loss_source == "parametric"
    n, d = pf.optimal(p.flops)
    assert float(pf.predict(n, d)) == pytest.approx(2.5, rel=1e-6)
    assert p.loss == pytest.approx(2.5, rel=1e-6)
    with pytest.raises(ValueError, match="below the fitted irreducible loss"):
        plan(fit, loss=1.5)



def test_plan_flags_a_degenerate_parametric_fit():
    from scaling.laws.parametric import ParametricFit

    def fit_for(**law):
        pf = ParametricFit(**law, loss="huber", objective=0.0, num_points=1)
        return {"frontier": {"status": "skipped"}, "loss_prediction": {"status": "skipped"},
                "parametric": {"status": "ok", **pf.coefficients()}}

    healthy = plan(fit_for(E=1.82, A=482.0, B=2085.0, alpha=0.348, beta=0.366), flops=1e18)
    assert healthy.caveats == () and healthy.to_dict()["caveats"] == []
    # The default study's old BC-CNN fit: no floor, alpha at 0.1, advice of 0.001 parameters.
    bad = plan(fit_for(E=2.3e-71, A=3.0, B=1.5, alpha=0.100, beta=0.036), flops=2e12)
    text = " ".join(bad.caveats)
    assert "no loss floor" in text and "alpha = 0.1" in text and "beta = 0.036" in text
    assert "degenerate" in text and min(bad.N_opt, bad.D_opt) < 1e3

def test_plan_allocates_with_an_identified_law_first():
    law = {"E": 1.82, "A": 482.0, "B": 2085.0, "alpha": 0.348, "beta": 0.366}
    from scaling.laws.parametric import ParametricFit

    pf = ParametricFit(**law, loss="huber", objective=0.0, num_points=1)
    # The default study's BC-Token: a frontier through two sizes with a < 0 (written before the
    # frontier entry carried not_identified, so the planner judges it itself).
    falling = {"status": "ok", "a": -0.071, "a0": 5e5, "b": 1.071, "b0": 1e-6, "num_models": 2}
    fit = {"frontier": falling, "loss_prediction": {"status": "skipped"},
           "parametric": {"status": "ok", **pf.coefficients(), "not_identified": []}}
    p = plan(fit, flops=1e18)
    assert p.allocation_source == "parametric" and p.caveats == ()
    assert p.N_opt == pytest.approx(pf.optimal(1e18)[0], rel=1e-6)
    # explicitly asked for, or with no identified law left, the frontier answers with a caveat
    for chosen in (plan(fit, flops=1e18, source="frontier"),
                   plan({**fit, "parametric": {"status": "skipped"}}, flops=1e18)):
        assert chosen.allocation_source == "frontier"
        text = " ".join(chosen.caveats)
        assert "allocation comes from the frontier fit, which is not identified" in text
        assert "2 sizes on the efficient frontier" in text and "a = -0.071 <= 0" in text
    rising = {**falling, "a": 0.5, "b": 0.5, "num_models": 3, "not_identified": []}
    assert plan({**fit, "frontier": rising}, flops=1e18).allocation_source == "frontier"


def test_plan_flops_loss_and_dataset(fitted, capsys):
    _, out = fitted
    f = str(out / "fit.json")
    assert main(["plan", "--fit", f, "--flops", "1e20", "--dataset-tokens", "1e10",
                 "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["allocation_source"] == "frontier"
    assert 6 * r["N_opt"] * r["D_opt"] == pytest.approx(1e20, rel=0.05)
    assert r["epochs"] == pytest.approx(r["D_opt"] / 1e10)
    assert r["supported"] == (r["epochs"] <= 4)
    assert main(["plan", "--fit", f, "--loss", f"{r['loss']}", "--json"]) == 0
    r2 = json.loads(capsys.readouterr().out)
    assert r2["flops"] == pytest.approx(1e20, rel=1e-6)
    assert main(["plan", "--fit", f, "--flops", "1e20"]) == 0
    assert "nearest preset" in capsys.readouterr().out
    assert main(["plan", "--fit", str(out), "--flops", "1e20"]) == 0  # fit's --out directory
    assert "nearest preset" in capsys.readouterr().out
    assert main(["plan", "--fit", f, "--loss", "0.5"]) == 2
    assert "not reachable" in capsys.readouterr().err
    assert main(["plan", "--fit", f + ".missing", "--flops", "1e20"]) == 2
    assert "embscale fit" in capsys.readouterr().err


def test_planner_presets_are_the_size_presets_with_the_papers_counts():
    presets = {p.name: p for p in load_presets()}
    assert set(presets) == set(SIZE_PRESETS)  # every size has a count (paper's or its name's)
    assert presets["110M"].num_params == 110e6 and presets["s30k"].num_params == 30e3
    assert (presets["27M"].n_layer, presets["27M"].n_head, presets["27M"].n_embd) == (8, 8, 512)
    fit = {"frontier": {"status": "ok", "a": 0.5, "a0": 0.1, "b": 0.5, "b0": 1 / 0.6},
           "loss_prediction": {"status": "skipped"}, "parametric": {"status": "skipped"}}
    p = plan(fit, flops=1e18)
    assert p.N_opt == pytest.approx(1e8)
    assert p.preset.name == "110M" and p.loss is None
    p = plan(fit, flops=1e18, dataset_tokens=1e9)
    assert p.supported is True and p.epochs == pytest.approx(1.667, rel=1e-3)
    assert p.max_flops_in_regime == pytest.approx(6 * 1e8 * 4e9)
    p = plan(fit, flops=1e18, dataset_tokens=1e8)
    assert p.supported is False and p.epochs == pytest.approx(16.67, rel=1e-3)
    with pytest.raises(ValueError, match="exactly one"):
        plan(fit)
    with pytest.raises(ValueError, match="no usable parametric"):
        plan(fit, flops=1e18, source="parametric")


def test_plan_predicts_the_loss_with_an_identified_law_first():
    from scaling.laws.parametric import ParametricFit

    pf = ParametricFit(E=1.82, A=482.0, B=2085.0, alpha=0.348, beta=0.366, loss="huber",
                       objective=0.0, num_points=1)
    # A loss prediction whose exponent sits at its bound, with a floor far above the law's E
    # (a truncated four-size ladder gave E = 2.93 against the parametric fit's 1.73).
    lp = {"status": "ok", "c0": 7.7e17, "c": 1.0, "E": 2.93,
          "not_identified": ["c = 1 (at the edge of [-1, 1])"]}
    fit = {"frontier": {"status": "skipped"}, "loss_prediction": lp,
           "parametric": {"status": "ok", **pf.coefficients(), "not_identified": []}}
    p = plan(fit, loss=2.5)  # reachable by the identified law, refused by the unidentified one
    assert p.loss_source == "parametric" and p.loss == pytest.approx(2.5, rel=1e-6)
    assert p.caveats == ()
    assert plan(fit, flops=1e20).loss_source == "parametric"
    # With no identified law left, the unidentified one still answers, with a caveat.
    fit["parametric"]["not_identified"] = ["E = 0 (at its bound)"]
    p = plan(fit, flops=1e20)
    assert p.loss_source == "loss_prediction" and p.loss == pytest.approx(2.93, abs=0.01)
    text = " ".join(p.caveats)
    assert "loss prediction fit, which is not identified (c = 1" in text
    assert "parametric fit is not identified (E = 0" in text
    with pytest.raises(ValueError, match="not reachable"):
        plan(fit, loss=2.5)


def test_identification_and_summary_lines_hold_their_examples():
    import doctest

    import scaling.cli.errors
    import scaling.fitting
    import scaling.laws.data
    import scaling.laws.identification
    import scaling.laws.objectives
    import scaling.planner
    import worldmodels.train_config

    for module in (scaling.laws.identification, scaling.fitting, scaling.planner,
                   scaling.laws.objectives, scaling.laws.data, scaling.cli.errors,
                   worldmodels.train_config):
        result = doctest.testmod(module)
        assert result.failed == 0 and result.attempted > 0, module.__name__
    from scaling.fitting import exponent_line

    line = exponent_line({"a": 0.533, "b": 0.467, "ci": {"a": [0.492, 0.539]},
                          "not_identified": []})
    assert line == "a = 0.533 [0.492, 0.539], b = 0.467"


def test_plan_prefers_an_identified_parametric_law_to_a_censored_loss_prediction():
    from scaling.laws.parametric import ParametricFit

    pf = ParametricFit(E=1.82, A=482.0, B=2085.0, alpha=0.348, beta=0.366, loss="huber",
                       objective=0.0, num_points=1)
    lp = {"status": "ok", "c0": 20.0, "c": 0.05, "E": 1.9, "censored": True, "not_identified": []}
    fit = {"frontier": {"status": "skipped"}, "loss_prediction": lp,
           "parametric": {"status": "ok", **pf.coefficients(), "not_identified": []}}
    assert plan(fit, flops=1e20).loss_source == "parametric"
    fit["frontier"] = {"status": "ok", "a": 0.5, "a0": 0.1, "b": 0.5, "b0": 1 / 0.6,
                       "not_identified": []}
    del fit["parametric"]  # the censored prediction alone answers, read as an upper bound
    p = plan(fit, flops=1e20)
    assert p.loss_source == "loss_prediction" and "upper bound" in " ".join(p.caveats)


def test_an_allocation_whose_data_shrinks_is_not_identified_and_plans_no_loss():
    from scaling.laws.identification import frontier_issues, isoflop_issues
    from scaling.laws.parametric import ParametricFit

    assert "a = 1.3 >= 1" in frontier_issues(4, 1.3)[0] and isoflop_issues(1.3)
    assert frontier_issues(4, 0.5) == []
    pf = ParametricFit(E=1.82, A=482.0, B=2085.0, alpha=0.348, beta=0.366, loss="huber",
                       objective=0.0, num_points=1)
    fit = {"frontier": {"status": "ok", "a": 1.3, "a0": 1e-3, "b": -0.3, "b0": 1e3,
                        "not_identified": frontier_issues(4, 1.3)},
           "loss_prediction": {"status": "skipped"},
           "parametric": {"status": "ok", **pf.coefficients(), "not_identified": []}}
    with pytest.raises(ValueError, match="not reachable"):  # D_opt shrinks: the law stays high
        plan(fit, loss=2.0, source="frontier")


def test_a_plan_far_beyond_the_fitted_compute_says_it_is_a_guess():
    fit = {"frontier": {"status": "ok", "a": 0.5, "a0": 0.1, "b": 0.5, "b0": 1 / 0.6,
                        "not_identified": []},
           "data": {"curves": [{"C_max": 1e15}, {"C_max": 1e16}]}}
    assert not any("decades beyond" in c for c in plan(fit, flops=1e17).caveats)
    far = " ".join(plan(fit, flops=1e30).caveats)
    assert "14.0 decades beyond the largest compute the fit saw (1e+16)" in far
