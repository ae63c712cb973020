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
    ({"tasks": [{"task": "wm-token", "sizes": ["a"], "tokens": 5,
                 "overrides": {"learning_rate": -1}}]},
     r"tasks\[wm-token\].overrides: TrainConfig.learning_rate -1 is not a usable"),
    ({"loss_vs_quality": {"clip_frames": 8}}, "9 frames"),
    ({"name": "../x"}, "plain directory name"),
    ({"tasks": []}, "tasks is empty"),
    ({"dataset": {"frame_size": [72]}}, r"dataset.frame_size=\[72\].*HEIGHTxWIDTH"),
    ({"dataset": {"frame_size": 4}}, r"dataset.frame_size=4"),
    ({"tokenizer": {"overrides": {"foreground": 20}}}, r"unknown keys \['foreground'\].*"
                                                       r"foreground_weight"),
    ({"tokenizer": {"overrides": {"lr": -1}}}, r"tokenizer.overrides: .*lr must be > 0"),
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


def _task(**fields):
    """SPEC with its first task's fields replaced by ``fields``."""
    return {**SPEC, "tasks": [{**SPEC["tasks"][0], **fields}, SPEC["tasks"][1]]}


@pytest.mark.parametrize("key, fix", [
    ("seed", r"tasks\[\]\.seeds"), ("run_dir", "runs_dir"), ("max_tokens", r"tasks\[\]\.tokens"),
    ("max_flops", r"tasks\[\]\.flops"), ("max_steps", r"tasks\[\]\.tokens or"),
    ("resume", "resumes"), ("device", "device"), ("keep_checkpoints", r"tasks\[\]\.checkpoints")])
def test_overrides_of_what_the_study_sets_are_refused(key, fix):
    # seed and run_dir made the worker die ("got multiple values for keyword argument"); a
    # max_tokens override silently replaced the task's budget
    value = {"seed": 3, "run_dir": "x", "resume": False, "device": "cpu"}.get(key, 5)
    with pytest.raises(ValueError, match=rf"tasks\[wm-token\]\.overrides\.{key} is set by the "
                                         rf"study itself: drop it and use .*{fix}"):
        spec_from_dict(_task(overrides={"warmup_steps": 5, key: value}))


def test_train_model_refuses_a_budget_given_as_an_override(tmp_path):
    from scaling.training import train_model

    with pytest.raises(ValueError, match=r"\['max_tokens'\] set the budget; pass tokens="):
        train_model("wm-token", "s10k", str(tmp_path / "no-data"), tmp_path / "run", tokens=1e5,
                    max_tokens=5)


def test_a_preset_of_another_task_is_refused():
    with pytest.raises(ValueError, match=r"tasks\[wm-token\]\.preset='bc-cnn' is a preset for "
                                         r"bc-cnn, not wm-token; use one of .*wm-token-256"):
        spec_from_dict(_task(preset="bc-cnn"))
    with pytest.raises(ValueError, match=r"tasks\[wm-token\]\.preset='nope' is unknown"):
        spec_from_dict(_task(preset="nope"))
    assert spec_from_dict(_task(preset="ladder")).tasks[0].preset == "ladder"  # task "any"
    assert spec_from_dict(_task(preset="wm-token-256")).tasks[0].preset == "wm-token-256"


def test_repeated_seeds_are_refused():
    with pytest.raises(ValueError, match=r"tasks\[wm-token\]\.seeds=\[0, 1, 0\] repeats a seed"):
        spec_from_dict(_task(seeds=[0, 1, 0]))


@pytest.mark.parametrize("bad, match", [
    ({"dataset": {"id": 5}}, r"^dataset\.id must be str, got 5 \(int\)$"),
    ({"dataset": {"episodes": "40"}}, r"^dataset\.episodes must be int, got '40' \(str\)$"),
    ({"dataset": {"episodes": 2.5}}, r"^dataset\.episodes must be int, got 2\.5 \(float\)$"),
    ({"dataset": {"skill": [0.5, "a"]}}, r"^dataset\.skill must be list\[float\] \| float \| "),
    ({"parallel": "2"}, r"^parallel must be int, got '2' \(str\)$"),
    ({"parallel": 1.5}, r"^parallel must be int, got 1\.5 \(float\)$"),
    ({"study_budget": "1e13"}, r"^study_budget must be float, got '1e13' \(str\)$"),
    ({"name": 5}, r"^name must be str, got 5 \(int\)$"),
    ({"loss_vs_quality": {"clips": 2.5}}, r"^loss_vs_quality\.clips must be int, got 2\.5"),
    ({"loss_vs_return": {"deterministic": 1}}, r"^loss_vs_return\.deterministic must be bool"),
    ({"tokenizer": {"checkpoint": 3}}, r"^tokenizer\.checkpoint must be str \| None, got 3"),
    (_task(sizes="s10k"), r"^tasks\[0\]\.sizes must be list\[str\], got 's10k' \(str\)$"),
    (_task(seeds=[0.5]), r"^tasks\[0\]\.seeds\[0\] must be int, got 0\.5 \(float\)$"),
    (_task(tokens=True), r"^tasks\[0\]\.tokens must be float \| None, got True \(bool\)$"),
    (_task(overrides={"learning_rate": "1e-3"}),
     r"^tasks\[wm-token\]\.overrides\.learning_rate must be float, got '1e-3' \(str\)$"),
    (_task(overrides={"seq_len": 2.5}), r"^tasks\[wm-token\]\.overrides\.seq_len must be int"),
    ({"tasks": "wm-token"}, r"^tasks must be a list of tables, got str$"),
    ({"dataset": "x"}, r"^dataset must be a table/object, got str$"),
])
def test_spec_values_are_type_checked(bad, match):
    with pytest.raises(ValueError, match=match):
        spec_from_dict({**SPEC, **bad})


def test_type_checks_accept_an_int_for_a_float_and_every_union_arm():
    spec = spec_from_dict({**_task(tokens=100000, overrides={"learning_rate": 1}),
                           "study_budget": 0, "dataset": {"skill": 1, "frame_size": [72, 120]}})
    assert spec.tasks[0].tokens == 100000 and spec.dataset.frame_size == [72, 120]
    assert spec_from_dict({**SPEC, "dataset": {"skill": [0.7, 1]}}).dataset.skill == [0.7, 1.0]


def test_validate_spec_refuses_a_missing_tokenizer_checkpoint(tmp_path):
    from scaling.study.steps import validate_spec

    spec = spec_from_dict({**SPEC, "runs_dir": str(tmp_path), "dataset": {"collect": True},
                           "tokenizer": {"checkpoint": str(tmp_path / "tok.pt")}})
    with pytest.raises(ValueError, match=r"^tokenizer\.checkpoint='.*tok\.pt' is not a file; "
                                         r"fix the path, train one with `embscale tokenizer"):
        validate_spec(spec)


@pytest.mark.parametrize("fields, match", [
    ({"overrides": {"seed": 3}}, r"overrides\.seed is set by the study"),
    ({"preset": "bc-cnn"}, r"preset='bc-cnn' is a preset for bc-cnn"),
    ({"seeds": [0, 0]}, "repeats a seed")])
def test_emit_jobs_refuses_such_specs_with_status_2(tmp_path, capsys, fields, match):
    import re

    from scaling.cli import main

    path = tmp_path / "s.json"
    path.write_text(json.dumps({**_task(**fields), "dataset": {"collect": True}}))
    assert main(["study", "--spec", str(path), "--runs-dir", str(tmp_path / "runs"),
                 "--emit-jobs", "jsonl"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(match, err), err
    assert not list((tmp_path / "runs").rglob("jobs.*"))
