import json
import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from agents.held_out import held_out_loss
from offline_data.datasets import Episode
from offline_data.minari_writer import create_minari_dataset
from scaling import cli
from tests.helpers.token_shards import write_shards
from worldmodels.checkpoint import read_model_checkpoint
from worldmodels.token_data import TokenDataSource
from worldmodels.token_model import TokenModel, TokenModelConfig


def _train(tmp_path, task, data, name, *extra):
    run = tmp_path / name
    argv = ["train", "--task", task, "--size", "s10k", "--data", str(data), "--seq-len", "3",
            "--steps", "4", "--run-dir", str(run), "--no-tensorboard", "--micro-batch-size", "4",
            "--tokens-per-update", "0", *extra]
    assert cli.main(argv) == 0
    return run


@pytest.fixture
def token_run(tmp_path):
    write_shards(tmp_path / "shards")
    return _train(tmp_path, "bc-token", tmp_path / "shards", "bc-token")


def test_token_loss_is_the_mean_over_every_window(token_run, tmp_path):
    whole = held_out_loss(token_run, "val", stride=1, batch_size=10**6)
    # the same number by hand: the checkpoint's model on every val window in one batch
    ckpt = read_model_checkpoint(token_run, "policy")
    model = TokenModel(TokenModelConfig.from_dict(ckpt["model_config"]))
    model.load_state_dict(ckpt["model"])
    loader = TokenDataSource(tmp_path / "shards", seq_len=3).loader("val", 4, seed=0)
    with torch.no_grad():
        direct = float(model.eval().compute_loss(
            loader.get_batch(np.arange(loader.num_windows))).scaling_loss)
    assert whole["windows"] == loader.num_windows == 8 * (24 - 3 + 1)
    assert whole["loss"] == pytest.approx(direct, abs=1e-6) and math.isnan(whole["stderr"])
    assert whole["task"] == "bc-token" and whole["step"] == 4 and whole["params"] > 0
    # batches of 7 (the last one short) weigh windows alike; their spread gives an error
    batched = held_out_loss(token_run, "val", stride=1, batch_size=7)
    assert batched["loss"] == pytest.approx(direct, abs=1e-5)
    assert 0 < batched["stderr"] < 1
    # by default every T-th window: each timestep about once
    assert held_out_loss(token_run, "val")["windows"] == math.ceil(loader.num_windows / 3)


def _episode(rng, n=16):
    cols = rng.integers(0, 3, n + 1)
    frames = np.zeros((n + 1, 12, 12, 3), np.uint8)
    for t, c in enumerate(cols):
        frames[t, 4:8, 4 * c:4 * c + 4] = 255
    return Episode(frames, cols[:n].astype(np.int64), np.ones(n, np.float32),
                   np.eye(n, dtype=bool)[-1], np.zeros(n, bool), {})


def test_bc_cnn_test_split_from_the_command_line(tmp_path, capsys):
    rng = np.random.default_rng(0)
    dataset = "embscale/heldout-test/structured-v0"
    create_minari_dataset(dataset, [_episode(rng) for _ in range(30)],
                          observation_space=gym.spaces.Box(0, 255, (12, 12, 3), np.uint8),
                          action_space=gym.spaces.Discrete(3))
    run = _train(tmp_path, "bc-cnn", dataset, "bc-cnn")
    out = tmp_path / "loss.json"
    assert cli.main(["eval", "loss", str(run), "--split", "test", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "test loss" in printed and f"\n{run} " in printed  # the whole path, however long
    (row,) = json.loads(out.read_text())
    # 3 of the 30 episodes are the test split: 16 - 3 + 1 windows each, every 3rd scored
    assert row["task"] == "bc-cnn" and row["split"] == "test" and row["windows"] == 14
    assert row["stderr"] is None and "NaN" not in out.read_text()  # one batch: strict JSON null
    assert 0 < row["loss"] < 5 and row["tokens"] > 0
    # a model that reads the frames smaller holds them resized, in training and in evaluation
    small = _train(tmp_path, "bc-cnn", dataset, "bc-cnn-8px", "--image-size", "8")
    config = json.loads((small / "config.json").read_text())["model_config"]
    assert config["image_size"] == 8
    assert 0 < held_out_loss(small, "test")["loss"] < 5


def test_bad_input_is_named(token_run, tmp_path, capsys):
    with pytest.raises(ValueError, match="split must be one of train, val, test"):
        held_out_loss(token_run, "dev")
    with pytest.raises(ValueError, match="stride must be >= 1"):
        held_out_loss(token_run, "val", stride=0)
    assert cli.main(["eval", "loss", str(tmp_path / "missing")]) == 2
    assert "no checkpoint at" in capsys.readouterr().err
    not_a_checkpoint = tmp_path / "notes.txt"
    not_a_checkpoint.write_text("not a checkpoint\n")
    assert cli.main(["eval", "loss", str(token_run), str(not_a_checkpoint), "--split", "val"]) == 2
    out, err = capsys.readouterr()
    assert "notes.txt is not a readable model checkpoint" in err
    assert out == ""  # refused before the table's header, and before the first run is scored
