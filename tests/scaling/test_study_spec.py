"""Study spec: loading JSON/TOML, typed validation, clear errors."""

from __future__ import annotations

import json

import pytest

from scaling.study.spec import StudySpec, TaskSweep, load_spec, spec_from_dict

SPEC = {
    "name": "mini",
    "dataset": {"id": "embscale/breakout/scripted-v1"},
    "tasks": [{"task": "wm-token", "sizes": ["s10k", "s30k"], "tokens": 1e5},
              {"task": "bc-cnn", "sizes": ["s10k", "s30k"], "flops": 1e12, "seeds": [0, 1]}],
    "loss_vs_quality": {"clips": 4},
}


def test_json_and_toml_load_the_same_spec(tmp_path):
    j = tmp_path / "s.json"
    j.write_text(json.dumps(SPEC))
    t = tmp_path / "s.toml"
    t.write_text('name = "mini"\n[dataset]\nid = "embscale/breakout/scripted-v1"\n'
                 '[loss_vs_quality]\nclips = 4\n'
                 '[[tasks]]\ntask = "wm-token"\nsizes = ["s10k", "s30k"]\ntokens = 1e5\n'
                 '[[tasks]]\ntask = "bc-cnn"\nsizes = ["s10k", "s30k"]\nflops = 1e12\n'
                 'seeds = [0, 1]\n')
    a, b = load_spec(j), load_spec(t)
    assert a == b
    assert a.task("bc-cnn").run_name("s30k", 1) == "bc-cnn-s30k-seed1"
    assert spec_from_dict(a.to_dict()) == a
    assert a.fingerprint() == b.fingerprint()
    assert str(a.study_dir).endswith("runs/mini")


def test_fingerprint_ignores_report_settings():
    a = spec_from_dict(SPEC)
    b = spec_from_dict({**SPEC, "loss_vs_quality": {"clips": 8}})
    c = spec_from_dict({**SPEC, "tasks": SPEC["tasks"][:1]})
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


@pytest.mark.parametrize("bad, match", [
    ({"colour": "red"}, r"unknown key.*colour"),
    ({"tasks": [{"task": "wm-pixels", "sizes": ["s10k"], "tokens": 1}]}, "wm-pixels"),
    ({"tasks": [{"task": "wm-token", "sizes": ["s10k"]}]}, "exactly one of tokens= or flops="),
    ({"tasks": [{"task": "wm-token", "sizes": [], "tokens": 1}]}, "sizes is empty"),
    ({"tasks": [{"task": "wm-token", "sizes": ["a"], "tokens": -5}]}, "positive"),
    ({"tasks": [{"task": "wm-token", "sizes": ["a"], "tokens": 5, "lr": 1}]}, r"tasks\[0\].*lr"),
    ({"tasks": [{"task": "wm-token", "sizes": ["a"], "tokens": 5,
                 "overrides": {"learning_rte": 1e-3}}]},
     r"unknown tasks\[wm-token\].overrides keys \['learning_rte'\].*learning_rate"),
    ({"loss_vs_quality": {"clip_frames": 8}}, "9 frames"),
    ({"name": "../x"}, "plain directory name"),
    ({"tasks": []}, "tasks is empty"),
    ({"dataset": {"frame_size": [72]}}, r"dataset.frame_size=\[72\].*HEIGHTxWIDTH"),
    ({"dataset": {"frame_size": 4}}, r"dataset.frame_size=4"),
    ({"tokenizer": {"overrides": {"foreground": 20}}}, r"unknown keys \['foreground'\].*"
                                                       r"foreground_weight"),
])
def test_bad_specs_name_the_problem(bad, match):
    with pytest.raises((ValueError, TypeError), match=match):
        spec_from_dict({**SPEC, **bad})


def test_dataset_frame_size_may_be_height_by_width():
    from scaling.study.spec import DatasetSpec

    assert DatasetSpec(frame_size=[72, 120]).frame_size == [72, 120]


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_spec(tmp_path / "nope.json")
    bad = tmp_path / "s.yaml"
    bad.write_text("name: x")
    with pytest.raises(ValueError, match=r"\.json or \.toml"):
        load_spec(bad)
    broken = tmp_path / "s.json"
    broken.write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_spec(broken)


def test_defaults_are_valid():
    spec = StudySpec(tasks=[TaskSweep(task="bc-token", sizes=["s10k"], tokens=1e4)])
    assert spec.loss_vs_return.env_id == "embscale/Breakout-v1"
    assert spec.dataset.env == "embscale/Breakout-v1"


@pytest.mark.parametrize("skill", [[0.9, 0.1], [0.2, 1.5], [0.5]])
def test_dataset_skill_must_be_a_range_in_unit_interval(skill):
    from scaling.study.spec import DatasetSpec

    with pytest.raises(ValueError, match="dataset.skill"):
        DatasetSpec(skill=skill)
    assert DatasetSpec(skill=[0.7, 1]).skill == [0.7, 1.0]
    assert DatasetSpec(skill=0.8).skill == 0.8


def test_tokenizer_overrides_reach_the_model_and_the_trainer():
    from scaling.study.adapters.tokenizer import split_tokenizer_overrides

    spec = spec_from_dict({**SPEC, "tokenizer": {"overrides": {"code_dim": 16,
                                                                "foreground_weight": 20.0}}})
    model, train = split_tokenizer_overrides(spec.tokenizer.overrides)
    assert model == {"code_dim": 16} and train == {"foreground_weight": 20.0}
    with pytest.raises(ValueError, match="tokens_per_frame"):  # set by the spec itself
        split_tokenizer_overrides({"tokens_per_frame": 64})


@pytest.mark.parametrize("name", ["default", "quick", "breakout-256", "paper-wm-token-256",
                                  "paper-wm-token-540", "paper-bc-token-540", "paper-bc-cnn"])
def test_every_study_preset_round_trips_and_names_known_sizes(name):
    from scaling.study.presets import PRESETS, get_preset
    from scaling.study.steps import check_sizes

    assert name in PRESETS
    spec = get_preset(name)
    again = spec_from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again.fingerprint() == spec.fingerprint()
    check_sizes(spec)


def test_breakout_256_budgets_pass_every_optimum_in_whole_windows(tmp_path):
    """The 256-token study runs the frontier protocol: its study budget (10 times the first
    round) would take every size past its compute optimum, an update is a whole number of
    10-step windows of 257 tokens, and the first round stays within 4 passes over the data."""
    import dataclasses

    from scaling.study.presets import get_preset
    from scaling.study.steps import check_budgets
    from worldmodels.tokenizer import VQConfig

    spec = get_preset("breakout-256")
    spec.runs_dir = str(tmp_path)
    assert spec.protocol == "frontier" and spec.study_budget == 0  # 10x the first round
    assert sum(t.budget_share for t in spec.tasks) == pytest.approx(1.0)
    VQConfig(tokens_per_frame=spec.tokenizer.tokens_per_frame,
             codebook_size=spec.tokenizer.codebook_size)  # tiles a 64x64 frame
    per_step = spec.tokenizer.tokens_per_frame + 1
    tenfold = dataclasses.replace(spec, tasks=[dataclasses.replace(t, tokens=10 * t.tokens)
                                               for t in spec.tasks])
    passing = check_budgets(tenfold)
    for t in spec.tasks:
        assert passing[t.task] == t.sizes
        if t.task != "bc-cnn":
            assert t.overrides["tokens_per_update"] % (10 * per_step) == 0
            assert t.tokens <= 0.4 * spec.dataset.max_total_steps * per_step


@pytest.mark.parametrize("name", ["default", "breakout-256", "paper-wm-token-256",
                                  "paper-wm-token-540", "paper-bc-token-540", "paper-bc-cnn"])
def test_every_full_study_preset_runs_the_frontier_protocol(name):
    from scaling.study.presets import get_preset

    assert get_preset(name).protocol == "frontier"


def test_tokenizer_threads_do_not_follow_the_machine_load(monkeypatch):
    # Thread counts change float sums: a load-dependent count made the study's tokenizer (and all
    # downstream results) differ between an idle and a busy machine.
    import os

    from scaling.study.adapters.tokenizer import tokenizer_threads

    monkeypatch.delenv("EMBSCALE_THREADS", raising=False)
    monkeypatch.setattr(os, "getloadavg", lambda: (64.0, 64.0, 64.0))
    assert tokenizer_threads() == (os.cpu_count() or 1)
    monkeypatch.setenv("EMBSCALE_THREADS", "1")
    assert tokenizer_threads() == 1
