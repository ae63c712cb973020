import json

import pytest

from scaling import cli
from tests.helpers.token_shards import write_shards


def test_train_command_writes_a_run(tmp_path, capsys):
    write_shards(tmp_path / "shards")
    run = tmp_path / "runs" / "r"
    argv = ["train", "--task", "wm-token", "--size", "s10k", "--data", str(tmp_path / "shards"),
            "--seq-len", "3", "--steps", "4", "--run-dir", str(run), "--no-tensorboard",
            "--micro-batch-size", "4", "--tokens-per-update", "0"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "metrics.jsonl" in out and "N=" in out
    config = json.loads((run / "config.json").read_text())
    assert config["task"] == "wm-token" and config["preset"] == "ladder"
    assert config["model_config"]["reward_head"] is True
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 4 and rows[-1]["lr"] > 0


def test_train_model_calls_its_callbacks_after_every_step(tmp_path):
    from scaling.training import train_model

    write_shards(tmp_path / "shards")
    seen = []
    result = train_model("wm-token", "s10k", str(tmp_path / "shards"), tmp_path / "r", steps=5,
                         seq_len=3, micro_batch_size=4, tokens_per_update=0, tensorboard=False,
                         callbacks=[lambda step, record: seen.append((step, record is None))])
    assert result.steps == 5
    assert [s for s, _ in seen] == [1, 2, 3, 4, 5]
    assert not seen[0][1] and not seen[-1][1]  # step 1 and the last step are log points


def test_bad_size_and_task_data_mismatch_are_user_errors(tmp_path, capsys):
    write_shards(tmp_path / "shards")
    base = ["train", "--data", str(tmp_path / "shards"), "--steps", "1", "--run-dir",
            str(tmp_path / "r")]
    assert cli.main([*base, "--task", "wm-token", "--size", "7M"]) == 2
    err = capsys.readouterr().err
    assert "unknown model size '7M'" in err and "s100k" in err
    assert cli.main([*base, "--task", "bc-cnn", "--size", "s10k"]) == 2
    assert "token shard" in capsys.readouterr().err
    assert cli.main([*base, "--task", "bc-token", "--size", "s10k", "--preset", "bc-cnn"]) == 2
    assert "is for task 'bc-cnn'" in capsys.readouterr().err


def test_help_explains_options(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    out = capsys.readouterr().out
    for option in ("--task", "--size", "--data", "--tokens", "--flops", "--lr", "--preset"):
        assert option in out


def test_every_trainer_field_has_a_flag():
    # `embscale train` and the typed configs cannot drift: each TrainConfig field and model
    # option is set by a flag, and each flag of FLAG_FIELDS exists and names a real field.
    import argparse
    from dataclasses import fields

    from scaling.cli import train as train_cli
    from scaling.tasks import MODEL_OPTIONS
    from worldmodels.trainer import TrainConfig

    known = {f.name for f in fields(TrainConfig)} | set(MODEL_OPTIONS)
    covered = set(train_cli.FLAG_FIELDS.values()) | set(train_cli.FIELDS_SET_OTHERWISE)
    assert known == covered, f"fields without a flag: {sorted(known - covered)}; " \
                             f"flags for no field: {sorted(covered - known)}"
    parser = argparse.ArgumentParser()
    train_cli.register(parser.add_subparsers())
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    dests = {a.dest for a in sub.choices["train"]._actions}
    assert set(train_cli.FLAG_FIELDS) <= dests
    flags = {s for a in sub.choices["train"]._actions for s in a.option_strings}
    for flag in train_cli.FIELDS_SET_OTHERWISE.values():
        assert flag == "(preset)" or set(flag.split("/")) <= flags, flag
