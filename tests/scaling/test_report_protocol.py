"""The report's budget-protocol section, the crossings in the figure, and the exponent sentences.

A fake study directory holds a ``protocol.json`` made of real :func:`plan_round` plans (synthetic
curves from a known L(N, D) law, run round after round as the protocol runs them), each run's
``metrics.jsonl`` and minimal ``fit.json`` files.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from scaling.laws.uncertainty import Bootstrap
from scaling.study.budget_costs import RunCurve, next_grid_tokens
from scaling.study.budget_protocol import ProtocolConfig, plan_round
from scaling.study.budget_rounds import protocol_crossings, training_seconds
from scaling.study.report_exponents import (
    agreement_sentence,
    difference_interval,
    difference_sentence,
    frontier_identified,
)
from scaling.study.report_page import Report
from scaling.study.report_pairs import frontier_from_crossings
from scaling.study.report_protocol import protocol_notes, protocol_section, run_rows

TPS = 1000  # inputs per optimizer step
SIZES = {"s10k": 10_000, "s30k": 30_000}


def law(n, d):
    return 1.0 + 40.0 / n ** 0.5 + 60.0 / d ** 0.35


def curve(task, size, tokens):
    steps = int(tokens // TPS)
    logged = sorted({s for s in np.unique(np.geomspace(1, steps, 60).astype(int))} | {steps})
    n = SIZES[size]
    loss = [law(n, s * TPS) + 0.003 * np.random.default_rng([n, s]).standard_normal()
            for s in logged]
    return RunCurve(name=f"{task}-{size}-seed0", size=size, params=n,
                    flops=[6.0 * n * s * TPS for s in logged], loss=loss,
                    tokens=float(steps * TPS), inputs_per_update=TPS)


def simulate(task, cfg, rounds=40):
    budget = {s: next_grid_tokens(1e5, TPS, cfg.val_points_per_decade) for s in SIZES}
    plans = []
    for _ in range(rounds):
        plan = plan_round([curve(task, s, budget[s]) for s in SIZES], cfg)
        plans.append(plan)
        if plan.done:
            return plans
        budget.update({d.name.split("-")[-2]: d.tokens for d in plan.decisions.values()
                       if d.extend})
    raise AssertionError("the protocol did not finish")


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A study directory after a protocol: BC-Token crosses, BC-CNN runs out of budget."""
    study_dir = tmp_path_factory.mktemp("study")
    first = sum(6.0 * n * next_grid_tokens(1e5, TPS, 5) for n in SIZES.values())
    token = simulate("bc-token", ProtocolConfig(budget=1e14))
    cnn = simulate("bc-cnn", ProtocolConfig(budget=3 * first))
    rounds = [{"bc-token": token[min(k, len(token) - 1)].to_dict(),
               "bc-cnn": cnn[min(k, len(cnn) - 1)].to_dict()}
              for k in range(max(len(token), len(cnn)))]
    budgets = {d.name: d.tokens for p in (token[-1], cnn[-1]) for d in p.decisions.values()}
    state = {"budgets": budgets, "unit": "flops", "budget": 1e14 + 3 * first, "rounds": rounds,
             "final": rounds[-1]}
    (study_dir / "protocol.json").write_text(json.dumps(state))
    for name, tokens in budgets.items():
        run = study_dir / name
        run.mkdir()
        n = SIZES[name.split("-")[-2]]
        recs = [{"step": 1, "tokens": tokens / 2, "flops": 3.0 * n * tokens, "params": n,
                 "tokens_per_s": 1000.0, "epoch": 0.5},
                {"step": 2, "tokens": tokens, "flops": 6.0 * n * tokens, "params": n,
                 "tokens_per_s": (500.0 if name.startswith("bc-token") else 50.0), "epoch": 1.0}]
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
        if name.startswith("bc-token"):  # the BC-CNN runs are known by their names only
            (run / "run_spec.json").write_text(json.dumps({"size": name.split("-")[-2],
                                                           "seed": 0, "params": n}))
    fits = study_dir / "fits"
    for task, fit in FITS.items():
        (fits / task).mkdir(parents=True)
        (fits / task / "fit.json").write_text(json.dumps(fit))
    return study_dir, state, token[-1], cnn[-1]


def entry(a, ci, samples):
    return {"status": "ok", "a": a, "b": 1 - a, "ci": {"a": ci},
            "bootstrap": {"scheme": "runs", "samples": {"a": samples}}}


FITS = {
    "bc-token": {"bootstrap": {"level": 0.95},
                 "frontier": {**entry(0.30, [0.25, 0.36], [0.28, 0.3, 0.32]),
                              "optimal_N": [30_000.0]},
                 "parametric": entry(0.34, [0.28, 0.40], [0.3, 0.4])},
    "bc-cnn": {"bootstrap": {"level": 0.95},
               "frontier": {"status": "skipped", "reason": "the curves never cross"},
               "parametric": entry(0.70, [0.6, 0.8], [0.6, 0.7, 0.8, None])},
}


def test_run_table_has_budgets_seconds_passes_and_reasons(study):
    study_dir, state, token, _ = study
    rows, totals = run_rows(state, study_dir, "bc-token")
    assert rows[0][:4] == ["Run", "size", "seed", "N"]
    assert [r[1] for r in rows[1:]] == ["s10k", "s30k"]
    small = rows[1]
    tokens = token.decisions["bc-token-s10k-seed0"].tokens
    # seconds: half the tokens at 1000/s, the other half at 500/s
    assert totals["seconds"] == pytest.approx(sum(0.5 * t / 1000 + 0.5 * t / 500 for t in (
        tokens, token.decisions["bc-token-s30k-seed0"].tokens)))
    assert small[9] == "crossing" and "crosses below s10k at C=" in small[10]
    assert small[6] == "1" and small[8] != "0"  # one pass; extended at least once
    assert totals["flops"] == pytest.approx(6 * sum(SIZES[s] * token.decisions[
        f"bc-token-{s}-seed0"].tokens for s in SIZES))
    cnn_rows, _ = run_rows(state, study_dir, "bc-cnn")  # sizes read from the run names
    assert [r[1] for r in cnn_rows[1:]] == ["s10k", "s30k"]
    assert "budget" in {r[9] for r in cnn_rows[1:]}


def test_section_shows_pairs_crossings_frontier_compute_and_notes(study):
    study_dir, state, token, cnn = study
    r = Report(study_dir / "report", "study")
    assert protocol_section(r, study_dir)
    md = r.markdown()
    assert "## Budget protocol" in md and f"in {len(state['rounds'])} round(s)" in md
    spent = sum(p["spent"] for p in state["final"].values())
    assert f"spent {spent:.2e} flops" in md
    (pair,) = [p for p in token.pairs if p.status == "crossing"]
    assert f"| s10k, s30k | crossing | {pair.crossing_flops:.2e} | {pair.crossing_loss:.3g} |" \
        in md
    assert "the frontier fit finds s30k optimal" in md
    assert f"s10k (start to C {pair.crossing_flops:.2e}), s30k (C {pair.crossing_flops:.2e} " \
           "to end)" in md
    assert "BC-CNN efficient frontier: the frontier fit was skipped (the curves never cross)" in md
    # BC-CNN trains at a tenth of BC-Token's speed in its second half: more seconds per FLOP
    assert "Per second of training, BC-Token reaches" in md and "convolution" in md
    refusal = next(d for d in cnn.decisions.values() if d.reason == "budget")
    assert refusal.detail in md and "Notes of the protocol" in md
    assert json.loads((study_dir / "report" / "protocol.json").read_text()) == state
    assert not protocol_section(Report(study_dir / "r2", "x"), study_dir / "fits")  # no log
    started = study_dir / "started"
    started.mkdir()
    (started / "protocol.json").write_text(json.dumps({"budgets": {}, "rounds": []}))
    r = Report(started / "report", "x")
    assert protocol_section(r, started) and "no round has finished" in r.markdown()
    charged = study_dir / "charged"  # a seconds budget that paid for growing the data
    charged.mkdir()
    (charged / "protocol.json").write_text(json.dumps({**state, "growth_charge": 2 * spent}))
    r = Report(charged / "report", "x")
    assert protocol_section(r, charged)
    assert (f"spent {3 * spent:.2e} flops (" in r.markdown()
            and f", {2 * spent:.2e} of them charged for growing the data" in r.markdown())


def test_notes_are_listed_once_with_their_rounds():
    plan = {"notes": ["a: extended only to the data limit"], "decisions": {
        "r": {"reason": "budget", "detail": "would cost 5 flops, but only 1 of the study's 9 are "
                                            "left"}},
        "data_request": 1200}
    later = {**plan, "notes": [], "data_request": None, "decisions": {
        "r": {"reason": "budget", "detail": "would cost 5 flops, but only 0.5 of the study's 8 "
                                            "are left"},
        "q": {"reason": "budget", "detail": "would cost 7 flops, but only 0.5 of the study's 8 "
                                            "are left"}}}
    notes = protocol_notes({"notes": ["n", "n"], "rounds": [{"wm-token": plan},
                                                            {"wm-token": plan},
                                                            {"wm-token": later}]})
    assert notes == ["before round 1: n",
                     "round 1 (again in round 2), WM-Token: a: extended only to the data limit",
                     "round 1 (again in rounds 2, 3), WM-Token: r: budget: would cost 5 flops, "
                     "but only 1 of the study's 9 are left",
                     "round 1 (again in round 2), WM-Token: the runs need 1,200 training frames "
                     "to stay within the data-pass limit",
                     "round 3, WM-Token: q: budget: would cost 7 flops, but only 0.5 of the "
                     "study's 8 are left"]


def test_frontier_from_crossings_of_neighbours():
    def pair(small, large, c=None):
        return {"small": small, "large": large, "status": "crossing" if c else "open",
                "crossing_flops": c}
    plan = {"pairs": [pair("a", "b", 1e10), pair("b", "c", 1e12), pair("c", "d")]}
    assert frontier_from_crossings(plan) == [("a", None, 1e10), ("b", 1e10, 1e12),
                                             ("c", 1e12, None)]
    # b crossed below a after c had crossed below b: b is never the lowest
    plan = {"pairs": [pair("a", "b", 1e12), pair("b", "c", 1e10)]}
    assert [s for s, _, _ in frontier_from_crossings(plan)] == ["a", "c"]


def test_crossings_reach_the_figure(study, monkeypatch):
    from scaling import plots
    from scaling.laws.analysis import FitOptions, analyze
    from scaling.laws.synthetic import synthetic_curves

    crossings = protocol_crossings(study[1])
    (c, loss), = crossings["bc-token"]
    assert crossings["bc-cnn"] == [] and c == study[2].pairs[0].crossing_flops
    analysis = analyze(synthetic_curves(np.geomspace(5e6, 1e9, 5), noise=0.005, seed=1,
                                        points_per_curve=8),
                       FitOptions(num_bootstrap=0, extrapolation=False,
                                  methods=("frontier",)))
    figs = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: figs.append(fig))
    plots.figure5(analysis, "unused.png", crossings=[(c, loss)])
    plots.figure5(analysis, "unused.png")
    import matplotlib.pyplot as plt

    labels = [f.axes[0].get_legend_handles_labels()[1] for f in figs]
    marks = [h for h in figs[0].axes[0].collections if h.get_label() == "crossing (protocol)"]
    assert "crossing (protocol)" in labels[0] and "crossing (protocol)" not in labels[1]
    assert marks[0].get_offsets().tolist() == [[c, loss]]
    for f in figs:
        plt.close(f)


def test_training_seconds_sum_tokens_over_throughput():
    recs = [{"tokens": 100, "tokens_per_s": 10.0}, {"tokens": 300, "tokens_per_s": 50.0},
            {"tokens": 400}]
    assert training_seconds(recs) == pytest.approx(10.0 + 4.0)


def test_difference_sentence_uses_the_fit_both_tasks_have():
    text = difference_sentence(FITS)
    lo, hi = difference_interval([0.6, 0.7, 0.8], [0.3, 0.4])
    assert f"= 0.360 [{lo:.3f}, {hi:.3f}]" in text  # 0.70 - 0.34, from the parametric fits
    assert "the parametric a of both tasks (the frontier fit is missing for BC-CNN)" in text
    assert "(3 and 2)" in text and "0.66 against 0.32" in text
    assert "excludes 0" in text and "includes the paper's 0.34" in text
    both = {t: {**f, "frontier": FITS["bc-token"]["frontier"]} for t, f in FITS.items()}
    t = difference_sentence(both)  # a frontier of 1 size identifies no a: no verdict on 0
    assert "= 0.000 [" in t and "the frontier a of both tasks" in t and "includes 0" not in t
    no_samples = {t: {**f, "parametric": {**f["parametric"], "bootstrap": {}}}
                  for t, f in FITS.items()}
    assert "no interval: the fit.json of BC-CNN holds no bootstrap refits" in \
        difference_sentence(no_samples)
    assert "; the fit.json of BC-Token holds no bootstrap refits" in difference_sentence(no_samples)
    # refits that failed are named as such, and an unidentified a is no finding
    failed = {**FITS, "bc-cnn": {**FITS["bc-cnn"], "parametric": {
        **FITS["bc-cnn"]["parametric"], "bootstrap": {}, "ci": {},
        "ci_error": "147 of 200 refits failed", "not_identified": ["E = 0 (at its bound 0)"]}}}
    text = difference_sentence(failed)
    assert "no interval: BC-CNN's refits failed (147 of 200 refits failed); but BC-CNN's " \
        "parametric fit is not identified (E = 0 (at its bound 0)), so the difference is no " \
        "finding." in text
    assert "BC-Token's frontier fit is not identified (1 size on the efficient frontier" in \
        difference_sentence(both)
    assert "no finding" not in difference_sentence(FITS)
    lacking = {"bc-token": FITS["bc-token"], "bc-cnn": {
        "frontier": {"status": "skipped", "reason": "too few sizes"},
        "parametric": {"status": "skipped", "reason": "did not converge"}}}
    assert "BC-CNN has no fitted a (frontier: too few sizes; parametric: did not converge)" in \
        difference_sentence(lacking)
    assert "the study has no BC-CNN task" in difference_sentence({"bc-token": FITS["bc-token"]})
    assert difference_sentence({"wm-token": FITS["bc-token"]}) is None


def test_agreement_sentence_checks_each_interval():
    text = agreement_sentence(FITS["bc-token"])
    assert "the parametric a lies inside the frontier fit's 95% interval" in text
    assert "the frontier a lies inside the parametric fit's 95% interval" in text
    assert text.endswith("(at least 3 needed)), so its a is no check on the parametric's.")
    far = {**FITS["bc-token"], "parametric": entry(0.5, [0.45, 0.55], [])}
    assert "outside the frontier fit's 95% interval" in agreement_sentence(far)
    no_ci = {**FITS["bc-token"], "parametric": {**far["parametric"], "ci": {},
                                                "ci_error": "refits failed"}}
    assert "parametric fit has no interval (refits failed)" in agreement_sentence(no_ci)
    assert "the frontier fit was skipped (the curves never cross)" in agreement_sentence(
        FITS["bc-cnn"])
    # a page that lists the reasons once names the skipped fit without repeating its reason
    assert agreement_sentence(FITS["bc-cnn"], reasons=False) == (
        "the frontier fit was skipped (reasons below), so the frontier and parametric a cannot "
        "be compared.")
    both = {"frontier": FITS["bc-cnn"]["frontier"], "parametric": FITS["bc-cnn"]["frontier"]}
    assert agreement_sentence(both, reasons=False).startswith(
        "the frontier and parametric fits were skipped (reasons below)")
    assert agreement_sentence(None).startswith("no fit")
    at_bound = {**FITS["bc-token"], "parametric": {**FITS["bc-token"]["parametric"],
                                                   "not_identified": ["E = 0 at its bound"]}}
    text = agreement_sentence(at_bound)
    assert "neither fit is identified (parametric: E = 0 at its bound; frontier: 1 size" in text
    assert "agree." not in text


def test_agreement_in_one_direction_says_which_interval_misses_and_why():
    # The default study's WM-Token: a narrow frontier interval from points resampled within its
    # five runs misses the parametric a; the parametric interval holds the frontier a.
    fit = {"bootstrap": {"level": 0.95, "scheme": "within-run"},
           "frontier": {**entry(0.533, [0.497, 0.538], []), "not_identified": []},
           "parametric": {**entry(0.439, [0.392, 0.535], []), "not_identified": []}}
    text = agreement_sentence(fit)
    assert ("the methods agree only in one direction: the frontier interval (0.041 wide) misses "
            "the parametric a, while the parametric interval (0.143 wide) holds the frontier a, "
            "and with points resampled within fixed runs") in text
    fit["bootstrap"]["scheme"] = "runs"
    text = agreement_sentence(fit)
    assert text.endswith("holds the frontier a.") and "fixed runs" not in text
    swapped = {**fit, "frontier": {**entry(0.45, [0.30, 0.65], []), "not_identified": []},
               "parametric": {**entry(0.62, [0.58, 0.66], []), "not_identified": []}}
    assert ("the parametric interval (0.080 wide) misses the frontier a, while the frontier "
            "interval (0.350 wide) holds the parametric a.") in agreement_sentence(swapped)


def test_frontier_identified_needs_three_sizes_and_a_narrow_interval():
    three = {"frontier": {**entry(0.52, [0.45, 0.53], []), "num_models": 3}}
    ok, text = frontier_identified(three)
    assert ok and text == ("identified: 3 sizes on the efficient frontier (at least 3 needed); "
                           "the 95% interval of a is 0.080 wide (at most 0.3)")
    # the default study's BC-CNN: two sizes and an interval 2.99 wide
    wide = {"frontier": {**entry(0.34, [-1.39, 1.60], []), "num_models": 2}}
    ok, text = frontier_identified(wide)
    assert not ok and "2 sizes on the efficient frontier" in text and "2.99 wide" in text
    narrow_two = {"frontier": {**entry(0.3, [0.25, 0.36], []), "optimal_N": [1e4, 3e4]}}
    assert not frontier_identified(narrow_two)[0]  # a narrow interval from two sizes is not enough
    no_ci = {"frontier": {**entry(0.5, [], []), "num_models": 4, "ci_error": "refits failed"}}
    ok, text = frontier_identified(no_ci)
    assert not ok and "no interval (refits failed)" in text
    ok, text = frontier_identified(FITS["bc-cnn"])
    assert not ok and text == ("not identified: the frontier fit was skipped (the curves never "
                               "cross)")
    assert frontier_identified(FITS["bc-cnn"], reasons=False) == (
        False, "not identified: the frontier fit was skipped")
    assert not frontier_identified(None)[0]


def test_a_frontier_whose_optimal_size_falls_with_compute_is_not_identified():
    # A BC-CNN study at 16x16 frames: three sizes "optimal", a narrow interval, but a < 0 because
    # the argmin at the lowest compute came from each run's first updates.
    falling = {"frontier": {**entry(-0.284, [-0.446, -0.151], []), "num_models": 3}}
    ok, text = frontier_identified(falling)
    assert not ok and "a = -0.284 <= 0 (the optimal size falls as compute grows" in text
    assert "3 sizes on the efficient frontier" in text and "0.295 wide (at most 0.3)" in text
    rising = {"frontier": {**entry(0.284, [0.151, 0.446], []), "num_models": 3}}
    assert frontier_identified(rising)[0]


def test_bootstrap_samples_for_fit_json_are_finite_or_null():
    b = Bootstrap(samples={"a": np.array([0.31234567, np.nan, np.inf]), "E": np.ones(3)},
                  num_requested=3, num_failed=0, level=0.95, seed=0)
    assert b.json_samples(("a", "b")) == {"a": [0.312346, None, None]}


def test_study_report_has_the_protocol_and_the_exponent_sentences(study, monkeypatch):
    from scaling.study import report
    from scaling.study.spec import StudySpec, TaskSweep

    study_dir = study[0]
    spec = StudySpec(name=study_dir.name, runs_dir=str(study_dir.parent),
                     tasks=[TaskSweep(task=t, sizes=list(SIZES), tokens=1e5) for t in FITS],
                     protocol="frontier")
    monkeypatch.setattr(report, "plan_runs", lambda spec: [])  # no run table: sizes need data
    md = open(report.write_study_report(spec)["markdown"]).read()
    assert md.index("## Budget protocol") < md.index("## Scaling coefficients")
    assert "BC-Token: frontier a = 0.300 [0.250, 0.360], parametric a = 0.340" in md
    assert "Frontier fit not identified: 1 size on the efficient frontier" in md
    assert "BC-CNN a − BC-Token a (the paper found 0.66 against 0.32" in md
    assert (study_dir / "report" / "protocol.json").is_file()
    assert "with the budget protocol's crossings (x)" in md


def test_a_run_at_the_data_limit_marks_its_task_not_identified(tmp_path):
    from scaling.study.budget_protocol import ProtocolConfig as Cfg
    from scaling.study.report_protocol import data_limit_note

    curves = [curve("wm-token", s, 1e5) for s in SIZES]
    for c in curves:  # 2e4 distinct training inputs: the first round is already at 5 passes
        c.train_items, c.items_per_frame = 2e4, 10
    plan = plan_round(curves, Cfg(budget=1e14))
    state = {"final": {"wm-token": plan.to_dict()}, "rounds": [{"wm-token": plan.to_dict()}]}
    (tmp_path / "protocol.json").write_text(json.dumps(state))
    note = data_limit_note(tmp_path, "wm-token")
    needed = max(d.frames_needed or 0 for d in plan.decisions.values())
    assert needed > 2e3 and note.startswith("not identified: data limit")
    assert f"{needed:,} training frames would be needed" in note
    assert data_limit_note(tmp_path, "bc-cnn") is None


def test_isoflop_sentence_places_its_a_against_both_intervals():
    from scaling.study.report_exponents import isoflop_sentence

    fit = {**FITS["bc-token"], "isoflop": {**entry(0.38, [0.35, 0.42], []), "not_identified": []}}
    assert isoflop_sentence(fit) == ("IsoFLOP fit (Method 2): a = 0.380 [0.350, 0.420], outside "
                                     "the frontier fit's interval, inside the parametric fit's.")
    falling = {**fit, "isoflop": {**entry(-0.2, [-0.5, -0.1], []),
                                  "not_identified": ["a = -0.2 <= 0"]}}
    assert isoflop_sentence(falling).endswith("; not identified: a = -0.2 <= 0.")
    skipped = {**fit, "isoflop": {"status": "skipped", "reason": "one size optimal"}}
    assert isoflop_sentence(skipped) == "IsoFLOP fit (Method 2): skipped (one size optimal)."
    assert isoflop_sentence(skipped, reasons=False).endswith("skipped (reasons below).")
    assert isoflop_sentence(FITS["bc-token"]) is None  # a fit.json without IsoFLOP
    # the frontier skipped: only the parametric interval is a reference
    assert "frontier" not in isoflop_sentence({**FITS["bc-cnn"], "isoflop": fit["isoflop"]})
