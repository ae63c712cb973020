"""A miniature study end to end on the real pipeline, then resuming it and refusing changed specs.

Real Breakout data, a real VQ-VAE, real WM-Token/BC-Token/BC-CNN training, real fits, real
policies in the real env, real FVD/LPIPS networks: only the sizes are miniature.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import replace

import pytest

from scaling.study.loss_vs_quality import run_quality_study
from scaling.study.loss_vs_return import run_return_study
from scaling.study.report_page import skipped_reason
from scaling.study.runner import StudyMismatchError, run_study
from scaling.study.spec import (
    DatasetSpec,
    FitSpec,
    QualityStudySpec,
    ReturnStudySpec,
    StudySpec,
    TaskSweep,
    TokenizerSpec,
    spec_from_dict,
)
from scaling.study.sweep import SpecMismatchError

TRAIN = {"warmup_steps": 2, "micro_batch_size": 4, "tokens_per_update": 680,
         "val_batches": 2, "tensorboard": False}


def mini_spec(runs_dir, **changes) -> StudySpec:
    spec = StudySpec(
        name="mini", runs_dir=str(runs_dir),
        dataset=DatasetSpec(id="embscale/breakout/mini-v0", collect=True, episodes=4,
                            max_total_steps=700, max_episode_steps=250),
        tokenizer=TokenizerSpec(tokens_per_frame=16, codebook_size=32, steps=8, batch_size=8),
        tasks=[
            TaskSweep(task="wm-token", sizes=["s10k", "s30k"], tokens=6800, checkpoints=3,
                      overrides=dict(TRAIN)),
            TaskSweep(task="bc-token", sizes=["s10k", "s30k"], tokens=6800, checkpoints=3,
                      overrides=dict(TRAIN)),
            TaskSweep(task="bc-cnn", sizes=["s10k", "s30k"], tokens=400, checkpoints=3,
                      overrides={**TRAIN, "tokens_per_update": 40}),
        ],
        # miniature BC-Token runs end above a uniform guess over the actions: keep them, so
        # that both tasks' policies are evaluated online (the rule is checked below)
        loss_vs_return=ReturnStudySpec(episodes=2, num_envs=2, max_episode_steps=25,
                                       bootstrap=20, skip_above_uniform=False),
        loss_vs_quality=QualityStudySpec(clips=2, clip_frames=9, videos=1, bootstrap=20),
        fit=FitSpec(bootstrap=4),
        parallel=2, optimum_tokens_per_param=0.1)
    d = spec.to_dict()
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            d[section] = {**d[section], field: value}
        else:
            d[key] = value
    return spec_from_dict(d)


@pytest.mark.slow
def test_miniature_study_end_to_end(tmp_path):
    spec = mini_spec(tmp_path / "runs")
    lines = []
    out = run_study(spec, progress=False, echo=lines.append)
    study = spec.study_dir

    # Every stage ran and reported progress.
    record = json.loads((study / "study.json").read_text())
    assert set(record["stage_seconds"]) == {"dataset", "tokenizer", "sweep", "fit",
                                            "loss_vs_return", "loss_vs_quality", "report"}
    assert any("sweep done" in ln for ln in lines)
    assert out["dataset"]["episodes"] >= 2 and out["dataset"]["action_vocab_sizes"] == [4]
    assert (study / "tokens" / "header.json").is_file()
    runs = sorted(p.name for p in study.iterdir() if (p / "done.json").is_file())
    assert runs == sorted(f"{t}-{s}-seed0" for t in ("wm-token", "bc-token", "bc-cnn")
                          for s in ("s10k", "s30k"))
    for task in ("wm-token", "bc-token", "bc-cnn"):
        fit = json.loads((study / "fits" / task / "fit.json").read_text())
        assert {"frontier", "parametric"} <= set(fit)  # ok or skipped with a reason
        for name in ("frontier", "parametric"):
            assert fit[name]["status"] == "ok" or fit[name]["reason"]

    ret = out["loss_vs_return"]
    assert len(ret["rows"]) >= 6  # BC-Token and BC-CNN checkpoints, each evaluated online
    assert all(len(r["returns"]) == 2 for r in ret["rows"])
    assert {"all", "bc-token", "bc-cnn"} <= set(ret["summary"])
    assert (study / "loss_vs_return" / "loss_vs_return.png").stat().st_size > 1000
    # With the rule on, no checkpoint whose loss is above a uniform guess over the four
    # actions is kept (scored rows are reused; newly chosen checkpoints are evaluated).
    strict_dir = tmp_path / "strict"
    strict_dir.mkdir()
    shutil.copy(study / "loss_vs_return" / "rows.jsonl", strict_dir / "rows.jsonl")
    strict = run_return_study(
        [study / f"{t}-{s}-seed0" for t in ("bc-token", "bc-cnn") for s in ("s10k", "s30k")],
        strict_dir, replace(spec.loss_vs_return, skip_above_uniform=True),
        checkpoints_per_run=3, tokenizer=study / "tokenizer", progress=False)
    assert strict["skip_above_uniform"] and strict["rows"]
    assert all(r["loss"] <= math.log(4) for r in strict["rows"])
    assert {r["checkpoint"] for r in ret["rows"] if r["loss"] <= math.log(4)
            and r["step"] == max(q["step"] for q in ret["rows"] if q["run"] == r["run"])
            } <= {r["checkpoint"] for r in strict["rows"]}  # a run's last checkpoint stays

    # The study evaluated in 2 worker processes (parallel=2): one process gives the same rows
    serial = run_return_study(
        [study / f"{t}-{s}-seed0" for t in ("bc-token", "bc-cnn") for s in ("s10k", "s30k")],
        tmp_path / "serial-return", spec.loss_vs_return, checkpoints_per_run=3,
        tokenizer=study / "tokenizer", progress=False, parallel=1)
    assert ({r["checkpoint"]: r["returns"] for r in serial["rows"]}
            == {r["checkpoint"]: r["returns"] for r in ret["rows"]})

    q = out["loss_vs_quality"]
    serial = run_quality_study(
        [study / f"wm-token-{s}-seed0" for s in ("s10k", "s30k")], study / "tokenizer" /
        "tokenizer.pt", spec.dataset.id, tmp_path / "serial-quality", spec.loss_vs_quality,
        checkpoints_per_run=3, progress=False, parallel=1)
    assert [r["checkpoint"] for r in serial["rows"]] == [r["checkpoint"] for r in q["rows"]]
    for a, b in zip(serial["rows"], q["rows"], strict=True):  # the same up to rounding
        assert [a[k] for k in ("fvd", "lpips", "psnr", "ssim")] == pytest.approx(
            [b[k] for k in ("fvd", "lpips", "psnr", "ssim")], rel=1e-4, abs=1e-7)
    assert len(q["rows"]) >= 3
    for r in q["rows"]:
        assert r["fvd"] >= 0 and 0 <= r["lpips"] and r["psnr"] > 0 and -1 <= r["ssim"] <= 1
    videos = list((study / "loss_vs_quality").glob("*.mp4"))
    assert len(videos) == 1 and videos[0].stat().st_size > 1000

    md = (study / "report" / "report.md").read_text()
    for heading in ("## Dataset", "## Scaling coefficients (paper Table 1)",
                    "## Pre-training loss vs online return", "## Pre-training loss vs world-model",
                    "## Planner", "## Exact configuration"):
        assert heading in md
    # Each skipped fit's reason is given once in the coefficients section: in the list below
    # its per-task sentences, which name the skipped fits without repeating why.
    section = md.split("## Scaling coefficients")[1].split("\n## ")[0]
    # which points the fits use (fit.skip_fraction, fit.skip_above_uniform) is said once
    assert "after its first 10% of inputs and its learning-rate warmup and after its last loss " \
        "above a uniform guess" in section
    for task, title in (("wm-token", "WM-Token"), ("bc-token", "BC-Token"), ("bc-cnn", "BC-CNN")):
        fit = json.loads((study / "fits" / task / "fit.json").read_text())
        (sentence,) = [ln for ln in section.splitlines() if ln.startswith(f"{title}: ")
                       and "Frontier fit" in ln]
        for name in ("frontier", "parametric", "isoflop"):
            why = skipped_reason(fit[name])
            if why:
                assert why not in sentence and "(reasons below)" in sentence
                assert why in section
    # The planner names the law behind each predicted loss.
    planner = md.split("## Planner")[1].split("\n## ")[0]
    for task in ("wm-token", "bc-token", "bc-cnn"):
        advice = json.loads((study / "fits" / task / "advice.json").read_text())
        if advice.get("loss") is not None:
            law = {"loss_prediction": "loss prediction", "parametric": "parametric law"}
            assert f"({law[advice['loss_source']]})" in planner
    baselines = json.loads((study / "fits" / "action_baselines.json").read_text())
    assert baselines["marginal"] > 0 and baselines["actions"] > 0
    assert baselines["context_steps"] >= 1 and baselines["best_order_in_context"] >= 1
    assert "Action-only baselines on the held-out split" in md and "BC-CNN's best run scores" in md
    assert {"bc-token", "bc-cnn"} <= set(baselines["bc_held_out"])  # the bar test's BC losses
    # one held-out episode here: no standard error, so the report makes no bar claim
    assert baselines["marginal_stderr"] is None or baselines["marginal_stderr"] > 0
    assert "cannot tell them apart" in md or "standard errors, so" in md
    html = (study / "report" / "report.html").read_text()
    # Figures are embedded (data URIs: the page travels alone); videos stay links to media/.
    assert "<video src=\"media/" in html and "<img src=\"data:image/png;base64," in html
    assert "<img src=\"media/" not in html

    # Resuming a finished study trains nothing and scores nothing again.
    stamps = {p: os.stat(p).st_mtime_ns for p in study.glob("*/done.json")}
    rows = (study / "loss_vs_return" / "rows.jsonl").read_text()
    run_study(spec, stages=("sweep", "loss_vs_return"), progress=False)
    assert {p: os.stat(p).st_mtime_ns for p in study.glob("*/done.json")} == stamps
    assert (study / "loss_vs_return" / "rows.jsonl").read_text() == rows

    # A changed spec is refused instead of mixing results.
    with pytest.raises(StudyMismatchError, match="tokenizer.steps"):
        run_study(mini_spec(tmp_path / "runs", tokenizer__steps=9), stages=("sweep",))
    changed = mini_spec(tmp_path / "runs")
    changed.tasks[0].tokens = 9000
    with pytest.raises(SpecMismatchError, match="(?s)wm-token-s10k-seed0.*tokens: 6800"):
        run_study(changed, stages=("sweep",), progress=False)


def test_missing_dataset_and_unknown_size_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="embscale/nothing/here-v0.*embscale data"):
        run_study(mini_spec(tmp_path, dataset__id="embscale/nothing/here-v0",
                            dataset__collect=False), stages=("dataset",))
    bad = mini_spec(tmp_path)
    bad.tasks[1].sizes = ["s10k", "s7"]
    with pytest.raises(ValueError, match="unknown size.*s7.*s30k"):
        run_study(bad, stages=("dataset",))


def test_too_small_budget_says_which_budget_would_do(tmp_path):
    spec = mini_spec(tmp_path, optimum_tokens_per_param=20.0)
    with pytest.raises(ValueError, match=r"tasks\[wm-token\].*needs tokens >= "):
        run_study(spec, stages=("dataset",))
