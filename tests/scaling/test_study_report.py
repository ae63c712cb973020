"""Study statistics, budget validation, checkpoint selection and report rendering."""

from __future__ import annotations

import base64
import json
import math

import numpy as np
import pytest

from scaling.inputs import uniform_action_loss
from scaling.study.report_page import (
    Report,
    coefficient_table,
    compact_json,
    skipped_reason,
    with_ci,
)
from scaling.study.spec import TaskSweep
from scaling.study.stats import correlate, linear_fit, run_checkpoints
from scaling.study.steps import check_budget


def test_correlation_known_answers_and_intervals():
    rng = np.random.default_rng(1)
    x = np.linspace(1.0, 3.0, 40)
    y = -2.0 * x + rng.normal(0, 0.1, size=x.size)
    c = correlate(x, y, n_boot=300)
    assert c.pearson < -0.98 and c.spearman < -0.97
    assert c.pearson_ci[0] <= c.pearson <= c.pearson_ci[1] and c.pearson_ci[1] < -0.95
    assert c.pearson_p < 1e-10
    # Independent data: the interval covers zero.
    z = correlate(x, rng.normal(size=x.size), n_boot=300)
    assert z.pearson_ci[0] < 0 < z.pearson_ci[1]
    f = linear_fit(x, y, n_boot=300)
    assert abs(f.slope + 2.0) < 0.05 and f.slope_ci[0] < -2.0 + 0.1 and f.r2 > 0.99


def test_correlation_errors():
    with pytest.raises(ValueError, match="at least 3 pairs"):
        correlate([1, 2], [2, 3])
    with pytest.raises(ValueError, match="non-finite.*\\[1\\]"):
        correlate([1, np.nan, 3], [1, 2, 3])
    with pytest.raises(ValueError, match="constant"):
        correlate([1, 2, 3], [5, 5, 5])


def test_budget_too_small_names_the_budget_that_would_do():
    params = {"s10k": 10_000, "s30k": 30_000}
    t = TaskSweep(task="wm-token", sizes=list(params), tokens=1e5)
    with pytest.raises(ValueError, match=r"smallest size s10k \(N=10,000\) needs tokens >= 2e\+05"):
        check_budget(t, params, tokens_per_param=20)
    f = TaskSweep(task="wm-token", sizes=list(params), flops=1e9)
    with pytest.raises(ValueError, match=r"needs flops >= 1\.2e\+10"):
        check_budget(f, params, tokens_per_param=20)
    assert check_budget(TaskSweep(task="wm-token", sizes=list(params), tokens=7e5), params,
                        20) == ["s10k", "s30k"]
    assert check_budget(TaskSweep(task="wm-token", sizes=list(params), flops=1.3e10), params,
                        20) == ["s10k"]


def test_run_checkpoints_pairs_each_kept_checkpoint_with_its_loss(tmp_path):
    run = tmp_path / "bc-token-s10k-seed0"
    (run / "checkpoints").mkdir(parents=True)
    lines = []
    for step in (1, 2, 4, 8, 16, 32, 64, 128):
        rec = {"step": step, "tokens": step * 10, "flops": step * 60.0, "params": 1,
               "train/loss": 3.0 / step}
        if step >= 4:
            rec["val/loss"] = 4.0 / step
            (run / "checkpoints" / f"step_{step:08d}.pt").write_bytes(b"")
        lines.append(json.dumps(rec))
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    (run / "checkpoints" / "last.pt").write_bytes(b"")
    all_ = run_checkpoints(run)
    assert [c.step for c in all_] == [4, 8, 16, 32, 64, 128]
    assert all(c.loss_key == "val/loss" and c.loss == 4.0 / c.step for c in all_)
    assert [c.step for c in run_checkpoints(run, count=4)] == [4, 16, 32, 128]  # log-spaced
    # skip_fraction drops checkpoints before 10% of the last step (128 -> below 12.8)
    assert [c.step for c in run_checkpoints(run, skip_fraction=0.1)] == [16, 32, 64, 128]
    assert [c.step for c in run_checkpoints(run, count=2, skip_fraction=0.1)] == [16, 128]
    # max_loss drops checkpoints whose loss is above it (step 4's 1.0 goes, step 8's 0.5 stays),
    # before the log-spaced choice, so the count is still met
    assert [c.step for c in run_checkpoints(run, max_loss=0.5)] == [8, 16, 32, 64, 128]
    assert [c.step for c in run_checkpoints(run, count=2, max_loss=0.5)] == [8, 128]


def test_run_checkpoints_keeps_the_count_asked_for_and_skips_null_losses(tmp_path):
    run = tmp_path / "bc-token-s10k-seed0"
    (run / "checkpoints").mkdir(parents=True)
    steps = [0, *range(1000, 10001, 1000)]  # a kept step 0 too
    rows = [{"step": s, "tokens": s, "flops": 6.0 * s, "params": 1, "val/loss": 1.0} for s in steps]
    rows.append({"step": 11000, "tokens": 11000, "flops": 6.6e4, "params": 1, "val/loss": None})
    for r in rows:
        (run / "checkpoints" / f"step_{r['step']:08d}.pt").write_bytes(b"")
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for count in (3, 7, 9, 10):  # nearest targets that coincide no longer merge
        kept = [c.step for c in run_checkpoints(run, count=count)]
        assert len(kept) == len(set(kept)) == count and kept[-1] == 10000, kept
    assert [c.step for c in run_checkpoints(run, count=3)] == [0, 1000, 10000]


def test_uniform_action_loss_is_the_mean_log_of_the_action_classes():
    assert uniform_action_loss({"model_config": {"action_vocab_sizes": [4]}}) == pytest.approx(
        math.log(4))
    assert uniform_action_loss({"data": {"action_vocab_sizes": [3, 9]}}) == pytest.approx(
        (math.log(3) + math.log(9)) / 2)
    assert uniform_action_loss({}) is None


FIT = {
    "data": {"num_points": 120},
    "frontier": {"status": "ok", "a": 0.49, "b": 0.51, "a0": 1.0, "b0": 1.0,
                 "ci": {"a": [0.41, 0.57], "b": [0.43, 0.59]}, "not_identified": []},
    "parametric": {"status": "ok", "a": 0.52, "b": 0.48, "E": 1.8, "alpha": 0.35, "beta": 0.37,
                   "ci": {"a": [0.5, 0.54]}, "not_identified": []},
}


def test_coefficient_table_and_skips():
    skipped = {"data": {"num_points": 40}, "frontier": {"status": "skipped",
                                                         "reason": "curves do not overlap"},
               "parametric": FIT["parametric"]}
    rows = coefficient_table({"wm-token": FIT, "bc-token": skipped})
    assert rows[1][:3] == ["WM-Token", "0.490 [0.410, 0.570]", "0.510 [0.430, 0.590]"]
    assert rows[2][1] == "N/A" and rows[2][3].startswith("0.520")
    assert skipped_reason(skipped["frontier"]) == "curves do not overlap"
    assert skipped_reason(FIT["frontier"]) is None
    assert with_ci({"a": 0.5}, "a") == "0.500"
    # fits that do not identify a say so in their cells; E collapsed onto 0 reads 0
    weak = {"data": {}, "frontier": {**FIT["frontier"], "a": -0.07, "not_identified": ["2 sizes"]},
            "parametric": {**FIT["parametric"], "E": 1.06e-81, "not_identified": ["E = 0"]}}
    row = coefficient_table({"bc-token": weak})[1]
    assert row[1].endswith("(not identified)") and row[2].endswith("(not identified)")
    assert row[3].endswith("(not identified)") and row[5] == "0, 0.350, 0.370"


def test_report_writes_markdown_and_html_with_media(tmp_path):
    fig = tmp_path / "fig.png"
    fig.write_bytes(b"\x89PNG fake")
    r = Report(tmp_path / "report", "Scaling study: x")
    r.add("h2", "Table")
    r.add("table", "", [["a", "b"], ["1", "**2**"]])
    r.media(fig, "img", "a figure")
    r.media(tmp_path / "missing.mp4", "video", "a video")
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"fake mp4")
    r.media(clip, "video", "a real video")
    r.add("code", '{"k": "<v>"}')
    md, page = r.write()
    text = md.read_text()
    assert "| a | b |" in text and "![a figure](media/fig.png)" in text
    assert "missing.mp4 was not produced" in text
    h = page.read_text()
    assert "<b>2</b>" in h and "&lt;v&gt;" in h
    # Figures travel inside the page (data URI), so report.html alone can be mailed; videos
    # stay links to media/.
    embedded = "data:image/png;base64," + base64.b64encode(fig.read_bytes()).decode()
    assert f'<img src="{embedded}"' in h and "media/fig.png" not in h
    assert '<video src="media/clip.mp4"' in h
    assert (tmp_path / "report" / "media" / "fig.png").read_bytes() == fig.read_bytes()


def test_return_section_flags_policies_above_their_action_only_bar(tmp_path):
    from scaling.study.report import _return_section

    study = tmp_path / "study"
    (study / "fits").mkdir(parents=True)
    (study / "loss_vs_return").mkdir()
    (study / "fits" / "action_baselines.json").write_text(json.dumps({
        "marginal": 1.04, "ngram": {"1": 0.99, "2": 0.90}, "best_order": 2, "split": "val",
        "actions": 100, "context_steps": 10, "ngram_in_context": {"1": 0.99, "2": 0.91},
        "best_order_in_context": 2, "marginal_stderr": 0.005,
        "ngram_in_context_stderr": {"1": 0.005, "2": 0.005}}))
    rows = [{"task": "bc-token", "loss": 0.95}, {"task": "bc-token", "loss": 0.97},
            {"task": "bc-cnn", "loss": 1.2}, {"task": "bc-cnn", "loss": 0.83}]
    (study / "loss_vs_return" / "return.json").write_text(json.dumps({
        "env_id": "embscale/Breakout-v0", "episodes": 2, "max_episode_steps": 100,
        "deterministic": False, "random_policy_return": 1.2, "rows": rows, "summary": {},
        "figure": "loss_vs_return.png"}))
    r = Report(tmp_path / "report", "t")
    _return_section(r, study)
    md = r.markdown()
    # BC-Token never got under the windowed n-gram (0.91); BC-CNN got under the marginal.
    assert "Every BC-Token checkpoint scored here has a held-out loss (0.950 or more) above" in md
    assert "(0.910 ± 0.005, see the scaling section)" in md and "Every BC-CNN" not in md


def test_bar_verdict_needs_both_standard_errors():
    from scaling.study.report import _bar_verdict

    b = {"split": "val", "bc_held_out": {"bc-token": {"loss": 0.904, "stderr": 0.01}}}
    text = _bar_verdict("bc-token", b, "that windowed n-gram", 0.912, 0.004)
    assert "0.904 ± 0.010" in text and "cannot tell them apart" in text
    b["bc_held_out"]["bc-token"]["stderr"] = 0.001
    assert "below it by more than two standard errors" in _bar_verdict(
        "bc-token", b, "that windowed n-gram", 0.912, 0.002)
    assert _bar_verdict("bc-cnn", b, "the marginal", 1.0, 0.01) is None


def test_quality_section_reports_n_and_clusters(tmp_path):
    from scaling.study.loss_vs_quality import cluster_note, correlations
    from scaling.study.report import _quality_section

    # two clusters: untrained-like points far away, no order within the trained ones
    rows = [{"loss": 5.5, "fvd": 900.0, "lpips": 0.6, "psnr": 10.0, "ssim": 0.2},
            {"loss": 5.51, "fvd": 910.0, "lpips": 0.61, "psnr": 10.1, "ssim": 0.21}]
    rows += [{"loss": 1.0 + 0.01 * i, "fvd": 100.0 + 5 * ((i * 7) % 5), "lpips": 0.1,
              "psnr": 20.0 + (i % 3), "ssim": 0.5 + 0.01 * (i % 2)} for i in range(6)]
    corr = correlations(rows, n_boot=50)
    assert corr["fvd"]["n"] == 8 and "clusters" in corr["fvd"]
    assert cluster_note({"pearson": 0.9, "spearman": 0.8}) is None
    study = tmp_path / "study"
    (study / "loss_vs_quality").mkdir(parents=True)
    (study / "loss_vs_quality" / "quality.json").write_text(json.dumps({
        "clips": 2, "clip_frames": 9, "episodes": [0], "n": 8, "skip_fraction": 0.05,
        "left_out_early": 3, "rows": rows, "correlation": corr, "figure": "q.png",
        "videos": []}))
    r = Report(tmp_path / "report", "t")
    _quality_section(r, study)
    md = r.markdown()
    assert ("8 trained checkpoints are correlated; the 3 saved before 5% of their run's last "
            "step are left out") in md
    assert "FVD: |Spearman|" in md and "form clusters" in md


def test_compact_json_keeps_short_lists_and_objects_on_one_line():
    from scaling.study.presets import PRESETS

    spec = PRESETS["default"]().to_dict()
    text = compact_json(spec)
    assert json.loads(text) == spec
    assert '"sizes": ["s3k", "s10k", "s30k", "s100k", "s300k"]' in text
    assert text.count("\n") < json.dumps(spec, indent=2).count("\n")
    long = {"k": list(range(40))}  # too wide for one line: one item per line, as indent=2
    assert compact_json(long) == json.dumps(long, indent=2)


def test_quality_scores_count_an_identical_frame_at_the_psnr_cap(monkeypatch):
    import types

    import scaling.metrics as metrics
    from scaling.metrics.rollout import PSNR_CAP_DB
    from scaling.study.loss_vs_quality import _Scorer

    rng = np.random.default_rng(0)
    real = rng.integers(0, 256, (2, 4, 16, 16, 3), dtype=np.uint8)
    fake = real.copy()
    fake[1, 1:] ^= 1  # clip 0 is generated exactly: its frames' PSNR is infinite
    for name, value in (("fvd_from_features", lambda a, b: 0.0), ("i3d_features",
                        lambda x, model: None), ("lpips", lambda a, b, model: np.zeros(len(a)))):
        monkeypatch.setattr(metrics, name, value)  # no networks: only the image metrics count
    scorer = object.__new__(_Scorer)
    scorer.real, scorer.real_features = types.SimpleNamespace(frames=real), None
    scorer.i3d = scorer.lpips_net = None
    psnr = scorer.score(fake)["psnr"]
    # frames 1-3 of each clip are scored: clip 0's at the cap, clip 1's off by one in every value
    # (MSE 1, so 20 log10(255) dB)
    assert psnr == pytest.approx((PSNR_CAP_DB + 20 * math.log10(255)) / 2, rel=1e-9)


def test_agreement_is_judged_only_between_identified_fits():
    from scaling.study.report_exponents import agreement_sentence

    def fit(fr_a, fr_ci, pa_a, pa_ci, fr_issues=(), pa_issues=()):
        return {"bootstrap": {"level": 0.95},
                "frontier": {"status": "ok", "a": fr_a, "b": 1 - fr_a, "ci": {"a": fr_ci},
                             "not_identified": list(fr_issues)},
                "parametric": {"status": "ok", "a": pa_a, "b": 1 - pa_a, "ci": {"a": pa_ci},
                               "not_identified": list(pa_issues)}}

    assert agreement_sentence(fit(0.5, [0.45, 0.55], 0.52, [0.4, 0.6])).endswith("agree.")
    assert "disagree beyond both intervals" in agreement_sentence(
        fit(0.5, [0.45, 0.55], 0.7, [0.65, 0.75]))
    weak = agreement_sentence(fit(-0.05, [-0.1, 0.0], -0.04, [-0.2, 0.1], ["2 sizes"]))
    assert "agree" not in weak and weak.endswith("(2 sizes), so its a is no check on the "
                                                 "parametric's.")
    both = agreement_sentence(fit(0.5, [0.45, 0.55], 0.52, [0.4, 0.6], ["2 sizes"], ["E = 0"]))
    assert "neither fit is identified (parametric: E = 0; frontier: 2 sizes)" in both


def test_a_fit_figure_caption_names_only_what_is_drawn():
    from scaling.study.report_page import fit_figure_caption

    full = fit_figure_caption("WM-Token", FIT, crossed=True)
    assert ("by N, efficient frontier and parametric fit, with the budget protocol's crossings "
            "(x) (left)") in full
    skipped = {**FIT, "frontier": {"status": "skipped", "reason": "one size optimal"}}
    bare = fit_figure_caption("BC-CNN", skipped, crossed=False)
    assert bare == ("BC-CNN: loss vs FLOPs coloured by N, parametric fit (left); N_opt and D_opt "
                    "vs compute (middle, right)")
