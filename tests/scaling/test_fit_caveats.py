"""An identified parametric fit whose refits reach E = 0 says so in fit.json, table.md, the study
report and the planner's advice."""

from __future__ import annotations

from pathlib import Path

from scaling.fitting import exponent_line, fit_curves, table_markdown
from scaling.inputs import load_curves
from scaling.laws.analysis import FitOptions
from scaling.laws.identification import bound_caveats, bound_issues
from scaling.laws.parametric import ParametricFit
from scaling.planner import plan
from scaling.study.report_exponents import agreement_sentence, difference_sentence

LAW_POINTS = Path(__file__).parent / "data" / "bc_token_law_points.csv"
"""BC-Token's law points from the default study's runs continued with a 2,400-second budget
(docs/bc-token-coefficient.md): its parametric fit has E = 0.503 inside the bounds, while the
refits' interval of E reaches down to 0."""

CAVEAT = "reaches its bound 0"


def _law(E: float) -> ParametricFit:
    return ParametricFit(E=E, A=17.9, B=3.92, alpha=0.644, beta=0.160, loss="huber",
                         objective=0.0, num_points=105)


def test_bound_caveats_flag_only_an_identified_E_whose_interval_reaches_zero():
    assert CAVEAT in bound_caveats(_law(0.5), {"E": [1.2e-73, 0.62]})[0]
    assert bound_caveats(_law(0.5), {"E": [0.31, 0.62]}) == []
    assert bound_caveats(_law(0.5), None) == []  # no refits judged: nothing to say
    at_bound = _law(0.0)  # E at its bound is no caveat but an issue: not identified
    assert bound_caveats(at_bound, {"E": [0.0, 0.0]}) == []
    assert any("at its bound 0" in s for s in bound_issues(at_bound, {"E": [0.0, 0.0]}))
    # a fit not identified for another reason (alpha at its edge) gets its issues, no caveat
    edge = ParametricFit(E=0.5, A=17.9, B=3.92, alpha=1e-4, beta=0.160, loss="huber",
                         objective=0.0, num_points=105)
    assert bound_issues(edge, {"E": [1e-70, 0.6]})
    assert bound_caveats(edge, {"E": [1e-70, 0.6]}) == []


def test_the_continued_default_study_reports_its_E_interval_reaching_zero():
    curves = load_curves([LAW_POINTS])
    opts = FitOptions(methods=("parametric",), num_bootstrap=200,
                      bootstrap_scheme="within-run")
    fit = fit_curves(curves, opts).to_json()
    pa = fit["parametric"]
    assert pa["not_identified"] == [] and 0.1 < pa["E"] < 1.0
    assert pa["ci"]["E"][0] < 1e-6  # some refits put E at 0
    assert len(pa["caveats"]) == 1 and CAVEAT in pa["caveats"][0]
    table = table_markdown(fit)
    assert "- **parametric**: identified, but E's interval" in table
    assert "The parametric fit is identified, but E's interval" in agreement_sentence(fit)
    assert "(identified, but E's interval" in exponent_line(pa)
    advice = plan(fit, flops=1e14)
    assert advice.allocation_source == "parametric"
    assert any(c.startswith("the parametric fit is identified, but E's interval")
               for c in advice.caveats)
    # the loss predicted from it says so too (without a loss prediction, the parametric law's)
    alone = plan({**fit, "loss_prediction": {"status": "skipped", "reason": "-"}}, flops=1e14)
    assert alone.loss_source == "parametric"
    assert any(c.startswith("the loss comes from the parametric fit, which is identified, but")
               for c in alone.caveats)
    # beta outside the planner's sensible range adds its own caveat and keeps this one
    odd = {**fit, "parametric": {**pa, "beta": 0.05}}
    text = " ".join(plan(odd, flops=1e14).caveats)
    assert "beta = 0.05 lies outside" in text and "identified, but E's interval" in text


def test_a_fit_without_caveats_or_not_identified_adds_no_caveat_sentence():
    entry = {"status": "ok", **_law(0.5).coefficients(), "ci": {"a": [0.1, 0.3]},
             "not_identified": [], "caveats": []}
    fit = {"bootstrap": {"level": 0.95},
           "frontier": {"status": "skipped", "reason": "the curves never cross"},
           "parametric": entry}
    assert "identified, but" not in agreement_sentence(fit)
    assert "identified, but" not in table_markdown(
        {**fit, "loss_prediction": {"status": "skipped", "reason": "-"},
         "isoflop": {"status": "skipped", "reason": "-"},
         "extrapolation": {"status": "skipped", "reason": "-"}})
    stuck = {**entry, "not_identified": ["E = 0 (the irreducible loss at its bound 0)"],
             "caveats": ["E's interval [0, 0.6] reaches its bound 0"]}
    text = agreement_sentence({**fit, "parametric": stuck})
    assert "identified, but" not in text
    # a skipped frontier still lets the caveat of an identified parametric fit through
    caveated = {**fit, "parametric": {**entry, "caveats": ["E's interval [0, 0.6] reaches "
                                                           "its bound 0"]}}
    assert agreement_sentence(caveated, reasons=False).endswith(
        "The parametric fit is identified, but E's interval [0, 0.6] reaches its bound 0.")


def test_the_difference_of_exponents_names_a_caveat_of_either_parametric_fit():
    def task(a: float, caveats: list[str]) -> dict:
        samples = [a - 0.05, a - 0.02, a, a + 0.02, a + 0.05]
        return {"frontier": {"status": "skipped", "reason": "the curves never cross"},
                "parametric": {"status": "ok", "a": a, "ci": {"a": [a - 0.05, a + 0.05]},
                               "not_identified": [], "caveats": caveats,
                               "bootstrap": {"samples": {"a": samples}}}}
    caveat = "E's interval [1e-70, 0.6] reaches its bound 0"
    text = difference_sentence({"bc-token": task(0.2, [caveat]), "bc-cnn": task(0.6, [])})
    assert text.endswith(f"BC-Token's parametric fit is identified, but {caveat}.")
    assert "identified, but" not in difference_sentence(
        {"bc-token": task(0.2, []), "bc-cnn": task(0.6, [])})


def test_section_51_names_the_caveat_of_an_identified_fit():
    from scaling.mechanisms.common import Estimate
    from scaling.mechanisms.section51 import _fit_lines, _fits_json, _verdict

    est = Estimate(0.5, 0.4, 0.6)
    caveat = "E's interval [1e-70, 0.6] reaches its bound 0"
    fits = {loss: {"a": est, "b": est, "alpha": est, "beta": est, "E": est, "samples_a": None,
                   "not_identified": stuck, "caveats": [caveat],
                   "bootstrap": {"num_failed": {}, "num": 10, "scheme": "within-run"}}
            for loss, stuck in (("dense", []), ("sparse", ["E = 0 (at its bound 0)"]))}
    fitted = {"fits": fits, "failed": {}, "effects": {}, "frontier": {}, "min_tokens": 0}
    text = "\n".join(_fit_lines(fitted))
    assert f": identified, but {caveat}." in text  # the dense loss
    assert text.count("identified, but") == 1  # not the sparse one, which is not identified
    assert _fits_json(fitted)["caveats"] == {"dense": [caveat]}
    # a difference of a's that rests on a caveated fit says so beside its verdict
    fitted = {"unidentified": {}, "caveated": {"dense - superclass": ["dense"]}}
    assert _verdict(Estimate(0.2, 0.1, 0.3), fitted, "dense - superclass") == (
        "yes; caveat: the dense fit's E interval reaches 0")
    assert _verdict(Estimate(0.2, 0.1, 0.3), fitted, "dense - sparse") == "yes"
    both = {"unidentified": {}, "caveated": {"dense - sparse": ["dense", "sparse"]}}
    assert _verdict(Estimate(0.1, -0.2, 0.3), both, "dense - sparse") == (
        "not significant (interval includes 0); caveat: the dense and sparse fits' E intervals "
        "reach 0")


def test_fits_without_the_caveats_key_or_not_identified_show_no_caveat():
    old = {"status": "ok", **_law(0.5).coefficients(), "ci": {"a": [0.1, 0.3]},
           "not_identified": []}  # a fit.json written before caveats existed
    fit = {"bootstrap": {"level": 0.95},
           "frontier": {"status": "skipped", "reason": "the curves never cross"},
           "parametric": old, "loss_prediction": {"status": "skipped", "reason": "-"},
           "isoflop": {"status": "skipped", "reason": "-"},
           "extrapolation": {"status": "skipped", "reason": "-"}}
    caveat = "E's interval [0, 0.6] reaches its bound 0"
    stuck = {**old, "not_identified": ["alpha = 0.0001 (at the edge of (0, 10))"],
             "caveats": [caveat]}  # hand-made: a caveat beside an issue is never shown
    for entry in (old, stuck):
        this = {**fit, "parametric": entry}
        assert "identified, but" not in table_markdown(this)
        assert "identified, but" not in agreement_sentence(this)
        assert "identified, but" not in exponent_line(entry)
        assert not any("identified, but" in c for c in plan(this, flops=1e14).caveats)


def test_a_frontier_difference_and_section_53_coefficients():
    from scaling.mechanisms.section53 import coefficient

    caveat = "E's interval [1e-70, 0.6] reaches its bound 0"
    pa = {"status": "ok", "a": 0.2, "ci": {"a": [0.1, 0.3]}, "not_identified": [],
          "caveats": [caveat]}
    fr = {"status": "skipped", "reason": "the curves never cross"}
    assert coefficient({"frontier": fr, "parametric": pa})["caveats"] == [caveat]
    stuck = {**pa, "not_identified": ["E = 0 (at its bound 0)"]}
    assert coefficient({"frontier": fr, "parametric": stuck})["caveats"] == []
    # a difference of frontier a's names no parametric caveat
    front = {"status": "ok", "a": 0.3, "ci": {"a": [0.25, 0.35]}, "not_identified": [],
             "num_models": 3, "bootstrap": {"samples": {"a": [0.26, 0.3, 0.34]}}}
    both = {t: {"frontier": {**front, "a": a}, "parametric": pa}
            for t, a in (("bc-token", 0.3), ("bc-cnn", 0.6))}
    assert "identified, but" not in difference_sentence(both)


def test_the_coefficient_table_and_section_53_pooled_lines_mark_a_caveat():
    from scaling.mechanisms.section53_report import pooled_lines
    from scaling.study.report_page import coefficient_table

    caveat = "E's interval [0, 0.437] reaches its bound 0"
    pa = {"status": "ok", **_law(0.5).coefficients(), "ci": {"a": [0.1, 0.3]},
          "not_identified": [], "caveats": [caveat]}
    fr = {"status": "skipped", "reason": "the curves never cross"}
    rows = coefficient_table({"bc-token": {"frontier": fr, "parametric": pa},
                              "wm-token": {"frontier": fr, "parametric": {**pa, "caveats": []}}})
    assert rows[1][3].endswith(" (caveat below)") and rows[1][4].endswith(" (caveat below)")
    assert "caveat" not in rows[2][3]
    pooled = [{"tokens_per_frame": 100, "runs": 8, "method": "parametric", "a": 0.61,
               "a_ci": [0.43, 0.69], "failed_refits": 5, "refits": 200, "not_identified": [],
               "caveats": [caveat]}]
    text = "\n".join(pooled_lines(pooled, 2))
    assert f"Repeats together at d_z = 100: identified, but {caveat}." in text
