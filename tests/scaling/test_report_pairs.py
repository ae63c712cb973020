"""The report's comparison of neighbouring sizes at equal inputs D (scaling/study/report_pairs)."""

import json
import math

import numpy as np
import pytest

from scaling.study.budget_curves import equal_inputs_gap
from scaling.study.report_pairs import equal_inputs_sentence, pair_rows, task_sizes
from worldmodels.run_metrics import MEAN_LOSS_KEY

TPS = 1000
SIZES = {"s10k": 10_000, "s30k": 30_000}


def data_only(n, d):  # every size learns alike from the same inputs
    return 1.0 + 60.0 / d ** 0.35


def with_capacity(n, d):  # the larger size is lower at every D
    return 1.0 + 40.0 / n ** 0.5 + 60.0 / d ** 0.35


def make_study(root, law, steps=2000):
    logged = np.unique(np.geomspace(1, steps, 50).astype(int))
    for size, n in SIZES.items():
        run = root / f"bc-cnn-{size}-seed0"
        run.mkdir(parents=True)
        recs = [{"step": int(s), "tokens": float(s * TPS), "flops": 6.0 * n * s * TPS,
                 "params": n, "train/loss_mean": law(n, s * TPS),
                 "val/loss": law(n, s * TPS) + (0.5 if size == "s30k" else 0.0)} for s in logged]
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    return {"decisions": {f"bc-cnn-{s}-seed0": {} for s in SIZES},
            "pairs": [{"small": "s10k", "large": "s30k", "status": "open", "margin": 0.01,
                       "crossing_flops": None, "crossing_loss": None, "target_flops": 1e12}]}


def test_sizes_that_learn_alike_are_level_at_equal_inputs_and_the_report_says_why(tmp_path):
    plan = make_study(tmp_path, data_only)
    sizes = task_sizes(tmp_path, plan, "bc-cnn", MEAN_LOSS_KEY)
    d, gap = equal_inputs_gap(sizes["s10k"], sizes["s30k"])
    assert d == pytest.approx(2000 * TPS) and abs(gap) < 1e-9
    # at their common compute the smaller size has seen 3x the inputs and is ahead
    c = min(sizes["s10k"].hi, sizes["s30k"].hi)
    assert sizes["s10k"].at(np.array([c]))[0] < sizes["s30k"].at(np.array([c]))[0] - 0.01
    rows = pair_rows(plan, sizes)
    assert rows[0][-1] == "larger below smaller at equal D (at D)"
    assert rows[1][-1] in ("+0.000 (D 2.00e+06)", "-0.000 (D 2.00e+06)")
    text = equal_inputs_sentence("bc-cnn", plan, sizes)
    assert text.startswith("BC-CNN: at equal inputs D") and "s10k/s30k" in text


def test_a_larger_size_lower_at_equal_inputs_needs_no_explanation(tmp_path):
    plan = make_study(tmp_path, with_capacity)
    sizes = task_sizes(tmp_path, plan, "bc-cnn", MEAN_LOSS_KEY)
    _, gap = equal_inputs_gap(sizes["s10k"], sizes["s30k"])
    assert gap == pytest.approx(40.0 * (1 / math.sqrt(1e4) - 1 / math.sqrt(3e4)), rel=1e-6)
    assert pair_rows(plan, sizes)[1][-1].startswith("+0.169")
    assert equal_inputs_sentence("bc-cnn", plan, sizes) is None


def test_runs_without_curves_give_no_comparison(tmp_path):
    plan = make_study(tmp_path, data_only)
    (tmp_path / "bc-cnn-s30k-seed0" / "metrics.jsonl").write_text("")
    sizes = task_sizes(tmp_path, plan, "bc-cnn", MEAN_LOSS_KEY)
    assert set(sizes) == {"s10k"}
    assert pair_rows(plan, sizes)[1][-1] == "n/a"
    assert equal_inputs_sentence("bc-cnn", plan, sizes) is None
    assert len(pair_rows(plan)[0]) == 6  # without sizes, the protocol's columns only


def test_the_pairs_are_read_at_the_loss_key_the_protocol_compared(tmp_path):
    """A study that fits another key (here val/loss, 0.5 higher for s30k) gets its pairs from it."""
    plan = make_study(tmp_path, with_capacity)
    _, mean_gap = equal_inputs_gap(*(task_sizes(tmp_path, plan, "bc-cnn", MEAN_LOSS_KEY)[s]
                                     for s in SIZES))
    _, val_gap = equal_inputs_gap(*(task_sizes(tmp_path, plan, "bc-cnn", "val/loss")[s]
                                    for s in SIZES))
    assert val_gap == pytest.approx(mean_gap - 0.5, abs=1e-6)


def test_an_unidentified_frontier_gives_every_reason():
    """Three sizes and a narrow interval, but every refit at one value: the clause says so."""
    from scaling.study.report_exponents import frontier_identified

    stuck = {"status": "ok", "a": 0.5, "b": 0.5, "ci": {"a": [0.5, 0.5]}, "num_models": 3,
             "not_identified": ["a has a zero-width interval [0.5, 0.5]"]}
    ok, text = frontier_identified({"frontier": stuck})
    assert not ok and text.endswith("a has a zero-width interval [0.5, 0.5]")
