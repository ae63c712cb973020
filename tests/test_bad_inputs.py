"""Bad input to every ``embscale`` subcommand: exit status 2 and one line naming the culprit.

Each case runs the real command in-process (``scaling.cli.main``) on tiny real fixtures and
asserts the status, that stderr is exactly one line (no traceback), and that the line names the
argument, value or file at fault. Cases that need no fixture still go through argument parsing
and the command's own checks, so a check that is removed makes its case fail.
"""

from __future__ import annotations

import pytest

from scaling.cli import main
from tests.helpers.bad_inputs import DAMAGED, DATASET, Fixtures, build, train_argv


@pytest.fixture(scope="module")
def fx(tmp_path_factory) -> Fixtures:
    return build(tmp_path_factory.mktemp("bad-inputs"))


@pytest.fixture(autouse=True)
def minari_datasets_path(fx, monkeypatch):
    """Overrides the suite's empty per-test root: these tests share the module's dataset."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(fx.minari))
    return fx.minari


def _train(fx, *extra):
    return train_argv(fx.tokens, fx.root / "runs" / "t", "--steps", "2", *extra)


def _train_no_budget(fx, *extra):
    return train_argv(fx.tokens, fx.root / "runs" / "t", *extra)


def _encode(fx, *extra, tokenizer=None, out=None):
    return ["tokenizer", "encode", "--tokenizer", str(tokenizer or fx.tokenizer), "--dataset",
            DATASET, "--out", str(out or fx.root / "enc"), "--no-progress", *extra]


def _tok_train(fx, *extra):
    return ["tokenizer", "train", "--dataset", DATASET, "--tokens-per-frame", "4",
            "--codebook-size", "16", "--out", str(fx.root / "tok-run"), "--steps", "1",
            "--no-progress", *extra]


def _collect(fx, *extra):
    return ["data", "collect", "--env", "embscale/Breakout-v0", "--episodes", "1",
            "--dataset-id", "embscale/bad/case-v0", "--no-progress", *extra]


def _eval_loss(fx, ckpt, *extra):
    return ["eval", "loss", str(ckpt), *extra]


def _dream(fx, *extra, world_model=None, tokenizer=None):
    return ["dream", "--world-model", str(world_model or fx.checkpoint), "--tokenizer",
            str(tokenizer or fx.tokenizer), "--tokens", str(fx.tokens), "--split", "train",
            "--burn-in", "2", "--steps", "1", "--out", str(fx.root / "d.mp4"), *extra]


def _fit(fx, *extra):
    return ["fit", str(fx.csv), "--no-figures", "--bootstrap", "0", *extra]


def _damaged_study(fx):
    """A study directory whose study.json is cut off mid-object."""
    study = fx.root / "st-damaged" / "breakout-quick"
    study.mkdir(parents=True, exist_ok=True)
    (study / "study.json").write_text("{\n,")
    return ["study", "--quick", "--stages", "report", "--runs-dir", str(study.parent)]


# (id, argv builder, substrings the one-line message must contain)
CASES = [
    # ----- train -----
    ("train-lr-inf", lambda fx: _train(fx, "--lr", "inf"), ["--lr", "inf"]),
    ("train-lr-1e39", lambda fx: _train(fx, "--lr", "1e39"), ["--lr", "1e39"]),
    ("train-lr-negative", lambda fx: _train(fx, "--lr", "-0.1"), ["--lr", "-0.1"]),
    ("train-lr-nan", lambda fx: _train(fx, "--lr", "nan"), ["--lr", "nan"]),
    ("train-lr-text", lambda fx: _train(fx, "--lr", "fast"), ["--lr", "fast"]),
    ("train-tokens-inf", lambda fx: _train_no_budget(fx, "--tokens", "inf"), ["--tokens", "inf"]),
    ("train-tokens-tiny", lambda fx: _train_no_budget(fx, "--tokens", "1e-3"),
     ["--tokens", "0.001", "one optimizer step"]),
    ("train-tokens-negative", lambda fx: _train_no_budget(fx, "--tokens", "-5"),
     ["--tokens", "-5"]),
    ("train-flops-nan", lambda fx: _train_no_budget(fx, "--flops", "nan"), ["--flops", "nan"]),
    ("train-steps-negative", lambda fx: _train_no_budget(fx, "--steps", "-2"), ["--steps", "-2"]),
    ("train-no-budget", lambda fx: _train_no_budget(fx), ["--tokens", "--steps"]),
    ("train-seq-len-0", lambda fx: _train(fx, "--seq-len", "0"), ["--seq-len", "0"]),
    ("train-micro-batch-0", lambda fx: _train(fx, "--micro-batch-size", "0"),
     ["--micro-batch-size", "0"]),
    ("train-warmup-negative", lambda fx: _train(fx, "--warmup-steps", "-1"),
     ["--warmup-steps", "-1"]),
    ("train-dropout-2", lambda fx: _train(fx, "--dropout", "2"), ["--dropout", "2"]),
    ("train-grad-clip-negative", lambda fx: _train(fx, "--grad-clip", "-1"),
     ["--grad-clip", "-1"]),
    ("train-unknown-size", lambda fx: _train(fx, "--size", "s999"), ["s999"]),
    ("train-unknown-preset", lambda fx: _train(fx, "--preset", "nope"), ["nope"]),
    ("train-unknown-task", lambda fx: _train(fx, "--task", "wm-pixels"), ["--task", "wm-pixels"]),
    ("train-missing-data", lambda fx: train_argv(fx.root / "no-tokens", fx.root / "r", "--steps",
                                                  "1"), ["no-tokens"]),
    ("train-data-is-random-file", lambda fx: train_argv(fx.random_bytes, fx.root / "r",
                                                         "--steps", "1"), ["random.bin"]),
    ("train-bc-cnn-on-shards", lambda fx: _train(fx, "--task", "bc-cnn"), ["token shard"]),
    ("train-token-ids-past-vocab", lambda fx: train_argv(fx.bad_ids_tokens, fx.root / "r2",
                                                          "--steps", "2"),
     ["tokens-bad-ids", "re-encode"]),
    ("train-device-banana", lambda fx: _train(fx, "--device", "banana"), ["banana"]),
    ("train-device-no-cuda", lambda fx: _train(fx, "--device", "cuda:7"), ["cuda:7"]),
    ("train-run-dir-under-file", lambda fx: train_argv(fx.tokens, fx.a_file / "run", "--steps",
                                                        "1"), ["a-file"]),
    ("train-threads-0", lambda fx: _train(fx, "--threads", "0"), ["--threads", "0"]),
    ("train-seed-negative", lambda fx: _train(fx, "--seed", "-1"), ["--seed", "-1"]),
    ("train-image-size-for-tokens", lambda fx: _train(fx, "--image-size", "32"),
     ["--image-size", "token shards"]),
    ("tok-train-resume-and-overwrite", lambda fx: _tok_train(fx, "--resume", "--overwrite"),
     ["--overwrite", "--resume"]),
    ("tok-train-cache-0", lambda fx: _tok_train(fx, "--max-cached-frames", "0"),
     ["--max-cached-frames", "0"]),
    ("dyna-wm-updates-alone", lambda fx: ["dyna", "--world-model", str(fx.checkpoint),
                                          "--tokenizer", str(fx.tokenizer), "--env",
                                          "embscale/Breakout-v0", "--run-dir",
                                          str(fx.root / "dy"), "--wm-updates", "5"],
     ["--wm-updates", "--real-steps"]),
    ("train-study-outside-runs", lambda fx: ["train", "--task", "wm-token", "--size", "s10k",
                                             "--data", str(fx.tokens), "--steps", "1",
                                             "--study", "../../x"], ["--study", "../../x"]),
    # ----- tokenizer encode -----
    ("encode-missing-tokenizer", lambda fx: _encode(fx, tokenizer=fx.root / "none.pt"),
     ["none.pt"]),
    ("encode-random-bytes-tokenizer", lambda fx: _encode(fx, tokenizer=fx.random_bytes),
     ["random.bin"]),
    ("encode-text-tokenizer", lambda fx: _encode(fx, tokenizer=fx.text), ["notes.txt"]),
    ("encode-truncated-tokenizer", lambda fx: _encode(fx, tokenizer=fx.truncated),
     ["truncated.pt"]),
    ("encode-world-model-as-tokenizer", lambda fx: _encode(fx, tokenizer=fx.checkpoint),
     ["last.pt", "tokenizer"]),
    ("encode-unknown-dataset", lambda fx: _encode(fx)[:4] + ["--dataset", "embscale/no/such-v0",
                                                               "--out", str(fx.root / "e")],
     ["embscale/no/such-v0"]),
    ("encode-malformed-dataset-id", lambda fx: _encode(fx)[:4] + ["--dataset", "no version",
                                                                    "--out", str(fx.root / "e")],
     ["no version"]),
    ("encode-overwrite-user-dir", lambda fx: _encode(fx, "--overwrite", out=fx.user_dir),
     ["my-files", "refusing"]),
    ("encode-overwrite-a-file", lambda fx: _encode(fx, "--overwrite", out=fx.a_file),
     ["a-file", "not a directory"]),
    ("encode-out-exists", lambda fx: _encode(fx, out=fx.tokens), ["tokens", "--overwrite"]),
    ("encode-out-under-file", lambda fx: _encode(fx, out=fx.a_file / "tokens"), ["a-file"]),
    ("encode-bad-split", lambda fx: _encode(fx, "--splits", "train,holdout"), ["holdout"]),
    ("encode-workers-0", lambda fx: _encode(fx, "--workers", "0"), ["--workers", "0"]),
    ("encode-batch-size-0", lambda fx: _encode(fx, "--batch-size", "0"), ["--batch-size", "0"]),
    ("encode-no-splits", lambda fx: _encode(fx, "--splits", ","), ["--splits", "names no split"]),
    ("tok-train-out-is-a-file", lambda fx: _tok_train(fx, "--out", str(fx.a_file)),
     ["--out", "a-file", "is a file"]),
    ("eval-loss-json-is-a-dir", lambda fx: _eval_loss(fx, fx.checkpoint, "--json",
                                                      str(fx.user_dir)), ["--json", "directory"]),
    ("dream-out-is-a-dir", lambda fx: _dream(fx) + ["--out", str(fx.user_dir)],
     ["--out", "directory"]),
    # ----- tokenizer train -----
    ("tok-train-unknown-dataset", lambda fx: _tok_train(fx)[:2] + ["--dataset", "embscale/x/y-v0"],
     ["embscale/x/y-v0"]),
    ("tok-train-untileable", lambda fx: _tok_train(fx, "--tokens-per-frame", "5"), ["5"]),
    ("tok-train-lr-inf", lambda fx: _tok_train(fx, "--lr", "inf"), ["--lr", "inf"]),
    ("tok-train-batch-0", lambda fx: _tok_train(fx, "--batch-size", "0"), ["--batch-size", "0"]),
    ("tok-train-codebook-1", lambda fx: _tok_train(fx, "--codebook-size", "0"),
     ["--codebook-size", "0"]),
    # ----- data -----
    ("collect-unknown-env", lambda fx: _collect(fx)[:2] + ["--env", "Nope-v9", "--episodes", "1",
                                                           "--dataset-id", "embscale/b/c-v0"],
     ["Nope-v9"]),
    ("collect-unknown-policy", lambda fx: _collect(fx, "--policy", "genius"), ["genius"]),
    ("collect-missing-factory", lambda fx: _collect(fx, "--policy", "no_such_mod:make"),
     ["no_such_mod:make"]),
    ("collect-missing-sb3-zip", lambda fx: _collect(fx, "--policy", "sb3:ppo:/nope/m.zip"),
     ["m.zip"]),
    ("collect-random-bytes-sb3", lambda fx: _collect(fx, "--policy",
                                                     f"sb3:ppo:{fx.random_bytes}"), ["random.bin"]),
    ("collect-unknown-sb3-algo", lambda fx: _collect(fx, "--policy", f"sb3:zzz:{fx.random_bytes}"),
     ["random.bin"]),
    ("collect-sb3-weights-random-bytes", lambda fx: _collect(fx, "--policy",
                                                             f"sb3-weights:ppo:{fx.random_bytes}"),
     ["random.bin"]),
    ("collect-episodes-0", lambda fx: _collect(fx, "--episodes", "0"), ["--episodes", "0"]),
    ("collect-malformed-id", lambda fx: _collect(fx, "--dataset-id", "not an id"), ["not an id"]),
    ("collect-skill-2", lambda fx: _collect(fx, "--skill", "2"), ["--skill", "2"]),
    ("collect-skill-random", lambda fx: _collect(fx, "--skill", "0.5"), ["--skill", "random"]),
    ("collect-size-0", lambda fx: _collect(fx, "--size", "0"), ["--size", "0"]),
    ("collect-seed-negative", lambda fx: _collect(fx, "--seed", "-1"), ["--seed", "-1"]),
    ("collect-id-without-version", lambda fx: _collect(fx, "--dataset-id", "embscale/x/y"),
     ["embscale/x/y", "-vN"]),
    ("collect-default-with-options", lambda fx: ["data", "collect", "--default", "breakout",
                                                 "--episodes", "1"], ["--episodes", "ignored"]),
    ("info-unknown-dataset", lambda fx: ["data", "info", "embscale/no/such-v0"],
     ["embscale/no/such-v0"]),
    ("info-truncated-episode", lambda fx: ["data", "info", DAMAGED], [DAMAGED, "episode 1"]),
    ("encode-truncated-episode", lambda fx: _encode(fx, "--dataset", DAMAGED),
     ["episode 1", "damaged", "data info"]),
    ("info-malformed-id", lambda fx: ["data", "info", "bad id"], ["bad id"]),
    ("import-gameplay-missing-dir", lambda fx: ["data", "import", "gameplay", "--source",
                                                str(fx.root / "nodir"), "--dataset-id",
                                                "embscale/g/h-v0"], ["nodir"]),
    ("import-rlds-missing", lambda fx: ["data", "import", "rlds", "--source",
                                        str(fx.root / "none.tfrecord"), "--dataset-id",
                                        "embscale/r/s-v0"], ["none.tfrecord"]),
    ("import-rlds-random-bytes-no-crc", lambda fx: ["data", "import", "rlds", "--source",
                                                    str(fx.random_bytes), "--dataset-id",
                                                    "embscale/r/s-v0", "--no-verify-crc",
                                                    "--no-progress"], ["random.bin"]),
    # ----- fit and plan -----
    ("fit-missing-input", lambda fx: ["fit", str(fx.root / "nope.csv"), "--out",
                                      str(fx.root / "f")], ["nope.csv"]),
    ("fit-random-bytes-input", lambda fx: ["fit", str(fx.random_bytes), "--out",
                                           str(fx.root / "f")], ["random.bin"]),
    ("fit-overwrite-user-dir", lambda fx: _fit(fx, "--out", str(fx.user_dir), "--overwrite"),
     ["my-files", "refusing"]),
    ("fit-out-exists", lambda fx: _fit(fx, "--out", str(fx.user_dir)), ["my-files", "--overwrite"]),
    ("fit-out-under-file", lambda fx: _fit(fx, "--out", str(fx.a_file / "fit")), ["a-file"]),
    ("fit-same-run-twice", lambda fx: ["fit", str(fx.run), str(fx.run), "--out",
                                       str(fx.root / "f")], ["given twice", "run"]),
    ("fit-level-2", lambda fx: _fit(fx, "--out", str(fx.root / "f"), "--level", "2"),
     ["level", "2"]),
    ("fit-bootstrap-negative", lambda fx: _fit(fx, "--out", str(fx.root / "f"), "--bootstrap",
                                               "-1"), ["bootstrap", "-1"]),
    ("plan-missing-fit", lambda fx: ["plan", "--fit", str(fx.root / "nofit.json"), "--flops",
                                     "1e15"], ["nofit.json"]),
    ("plan-text-fit", lambda fx: ["plan", "--fit", str(fx.text), "--flops", "1e15"],
     ["notes.txt"]),
    ("plan-not-a-fit", lambda fx: ["plan", "--fit", str(fx.root / "fit.json"), "--flops", "1e15"],
     ["fit.json"]),
    ("plan-flops-inf", lambda fx: ["plan", "--fit", str(fx.root / "fit.json"), "--flops", "inf"],
     ["--flops", "inf"]),
    # ----- eval, dream, dyna, play -----
    ("eval-loss-missing", lambda fx: _eval_loss(fx, fx.root / "no.pt"), ["no.pt"]),
    ("eval-loss-random-bytes", lambda fx: _eval_loss(fx, fx.random_bytes), ["random.bin"]),
    ("eval-loss-text", lambda fx: _eval_loss(fx, fx.text), ["notes.txt"]),
    ("eval-loss-truncated", lambda fx: _eval_loss(fx, fx.truncated), ["truncated.pt"]),
    ("eval-loss-tokenizer-as-model", lambda fx: _eval_loss(fx, fx.tokenizer), ["tok.pt"]),
    ("eval-loss-other-tokenizer-shards", lambda fx: _eval_loss(fx, fx.checkpoint, "--data",
                                                               str(fx.other_tokens)),
     ["tokens-other", "tokenizer"]),
    ("eval-loss-stride-0", lambda fx: _eval_loss(fx, fx.checkpoint, "--stride", "0"),
     ["--stride", "0"]),
    ("eval-policy-world-model", lambda fx: ["eval", "policy", "--checkpoint", str(fx.checkpoint),
                                            "--env", "embscale/Breakout-v0"],
     ["last.pt", "not a policy"]),
    ("dream-other-tokenizer", lambda fx: _dream(fx, tokenizer=fx.other_tokenizer),
     ["tok-other.pt", "sha256"]),
    ("dream-world-model-as-tokenizer", lambda fx: _dream(fx, tokenizer=fx.checkpoint),
     ["last.pt", "tokenizer"]),
    ("dream-random-bytes-model", lambda fx: _dream(fx, world_model=fx.random_bytes),
     ["random.bin"]),
    ("dream-episode-99", lambda fx: _dream(fx, "--episode", "99"), ["--episode", "99"]),
    ("dyna-missing-model", lambda fx: ["dyna", "--world-model", str(fx.root / "wm.pt"),
                                       "--tokenizer", str(fx.tokenizer), "--env",
                                       "embscale/Breakout-v0", "--run-dir", str(fx.root / "dy")],
     ["wm.pt"]),
    ("play-text-model", lambda fx: ["play", "--world-model", str(fx.text), "--tokenizer",
                                    str(fx.tokenizer)], ["notes.txt"]),
    # ----- study and reproduce -----
    ("study-missing-spec", lambda fx: ["study", "--spec", str(fx.root / "s.toml")], ["s.toml"]),
    ("study-garbage-spec", lambda fx: ["study", "--spec", str(fx.random_bytes)], ["random.bin"]),
    ("study-unknown-preset", lambda fx: ["study", "--preset", "galaxy-brain"], ["galaxy-brain"]),
    ("study-jobs-out-alone", lambda fx: ["study", "--quick", "--jobs-out", "j.sh", "--runs-dir",
                                         str(fx.root / "st-jobs")], ["--jobs-out", "--emit-jobs"]),
    ("study-parallel-0", lambda fx: ["study", "--quick", "--parallel", "0", "--runs-dir",
                                     str(fx.root / "st")], ["--parallel", "0"]),
    ("study-unknown-stage", lambda fx: ["study", "--quick", "--stages", "teleport", "--runs-dir",
                                        str(fx.root / "st")], ["teleport"]),
    ("study-time-limit-words", lambda fx: ["study", "--quick", "--time-limit", "soon",
                                           "--runs-dir", str(fx.root / "st")], ["soon", "29m"]),
    ("study-time-limit-emit", lambda fx: ["study", "--quick", "--time-limit", "29m",
                                          "--emit-jobs", "jsonl", "--runs-dir",
                                          str(fx.root / "st")], ["--time-limit", "--emit-jobs"]),
    ("study-started-at-alone", lambda fx: ["study", "--quick", "--started-at", "1700000000",
                                           "--runs-dir", str(fx.root / "st")],
     ["--started-at", "--time-limit"]),
    ("study-damaged-record", _damaged_study, ["st-damaged", "study.json", "delete"]),
    ("study-runs-dir-a-file", lambda fx: ["study", "--quick", "--stages", "report", "--runs-dir",
                                          str(fx.a_file)], ["--runs-dir", "a-file"]),
    ("study-runs-dir-under-file", lambda fx: ["study", "--quick", "--stages", "report",
                                              "--runs-dir", str(fx.a_file / "runs")],
     ["--runs-dir", "a-file"]),
    ("study-jobs-out-a-directory", lambda fx: ["study", "--quick", "--emit-jobs", "jsonl",
                                               "--jobs-out", str(fx.user_dir), "--runs-dir",
                                               str(fx.root / "st")], ["--jobs-out", "my-files"]),
    ("study-started-at-emit", lambda fx: ["study", "--quick", "--started-at", "1700000000",
                                          "--emit-jobs", "jsonl", "--runs-dir",
                                          str(fx.root / "st")], ["--started-at", "--emit-jobs"]),
    ("reproduce-tokens-inf", lambda fx: ["reproduce", "section-5.1", "--tokens", "inf"],
     ["--tokens", "inf"]),
    ("record-episodes-0", lambda fx: ["data", "record", "--env", "embscale/Breakout-v0",
                                      "--episodes", "0"], ["--episodes", "0"]),
    ("defaults-unknown", lambda fx: ["data", "defaults", "--only", "pong"], ["--only", "pong"]),
    ("eval-policy-episodes-0", lambda fx: ["eval", "policy", "--checkpoint", str(fx.checkpoint),
                                           "--env", "embscale/Breakout-v0", "--episodes", "0"],
     ["--episodes", "0"]),
    ("dyna-num-envs-0", lambda fx: ["dyna", "--world-model", str(fx.checkpoint), "--tokenizer",
                                    str(fx.tokenizer), "--env", "embscale/Breakout-v0",
                                    "--run-dir", str(fx.root / "dy"), "--num-envs", "0"],
     ["--num-envs", "0"]),
    ("play-fps-0", lambda fx: ["play", "--world-model", str(fx.checkpoint), "--tokenizer",
                               str(fx.tokenizer), "--fps", "0"], ["--fps", "0"]),
    ("reproduce-unknown", lambda fx: ["reproduce", "section-9.9"], ["section-9.9"]),
    ("reproduce-device-gpu", lambda fx: ["reproduce", "section-5.1", "--text", str(fx.text),
                                         "--out", str(fx.root / "r51"), "--device", "gpu"],
     ["unknown device 'gpu'"]),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_exits_2_with_one_line(case, fx, capsys):
    _, argv, culprits = case
    try:
        status = main(argv(fx))
    except SystemExit as e:  # argparse's own usage errors
        status = e.code
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert status == 2, f"exit status {status}; stderr: {err}"
    if case[0].startswith(("study-", "reproduce-")) or case[0] == "eval-loss-missing":
        # nothing printed before the check
        assert captured.out == "", f"printed before the input was checked: {captured.out}"
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith("embscale") and "error:" in err, err
    assert "weights_only=False" not in err, err
    for culprit in culprits:
        assert culprit in err, f"{culprit!r} not named in: {err}"


@pytest.mark.parametrize("stages", ["fit,bogus", "", ","])
def test_study_checks_its_stages_before_printing_or_running(stages, fx, capsys, monkeypatch):
    import scaling.study.runner as runner

    monkeypatch.setattr(runner, "run_study", lambda *a, **k: pytest.fail("the study ran"))
    assert main(["study", "--quick", "--stages", stages, "--runs-dir",
                 str(fx.root / "st-stages")]) == 2
    captured = capsys.readouterr()
    assert captured.out == "", captured.out
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and "--stages" in err and "loss_vs_quality" in err, err
    assert not (fx.root / "st-stages").exists()


def test_there_are_at_least_60_distinct_cases():
    assert len({c[0] for c in CASES}) == len(CASES) >= 60


def test_debug_shows_the_traceback_instead(fx):
    with pytest.raises((ValueError, FileNotFoundError), match="embscale/no/such-v0"):
        main(["--debug", "data", "info", "embscale/no/such-v0"])


def test_a_fault_of_ours_is_one_line_with_status_1(capsys):
    from scaling.cli.errors import run_command

    def broken(args):
        raise RuntimeError("internal state\nwent wrong")

    assert run_command(broken, None) == 1
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err] and "unexpected RuntimeError" in err and "--debug" in err
    with pytest.raises(RuntimeError):
        run_command(broken, None, debug=True)


def test_ctrl_c_says_that_running_the_command_again_continues(capsys):
    from scaling.cli.errors import run_command

    def interrupted(args):
        raise KeyboardInterrupt

    assert run_command(interrupted, None) == 130
    err = capsys.readouterr().err.strip()
    assert err.startswith("embscale: interrupted") and "same command again" in err
