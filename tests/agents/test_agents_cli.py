"""The agents' commands end to end on a small real world model, policy and token shard."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from gymnasium import spaces

from offline_data.discretize import discretizer_for_space  # noqa: E402
from offline_data.token_writer import write_token_shards  # noqa: E402
from offline_data.tokens import TokenHeader  # noqa: E402
from scaling.cli import main  # noqa: E402
from tests.helpers.world_models import tiny_episodes, tiny_model, tiny_tokenizer
from worldmodels.token_model import save_token_model  # noqa: E402
from worldmodels.tokenizer import save_tokenizer  # noqa: E402


@pytest.fixture
def world(tmp_path):
    vq = tiny_tokenizer()
    sha = save_tokenizer(vq, tmp_path / "tokenizer.pt")
    header = TokenHeader(tokens_per_frame=16, image_vocab=32, action_vocab_sizes=(4,),
                         tokenizer_id=vq.tokenizer_id(), tokenizer_sha256=sha,
                         dataset_id="embscale/breakout/test-v0",
                         action_discretizer=discretizer_for_space(spaces.Discrete(4)).to_spec())
    write_token_shards(tmp_path / "tokens", header,
                       {"train": tiny_episodes(vq), "test": tiny_episodes(vq, n=2, length=7)})
    save_token_model(tiny_model(task="wm"), tmp_path / "wm.pt")
    save_token_model(tiny_model(task="bc"), tmp_path / "bc.pt")
    return tmp_path


def _wm_args(w):
    return ["--world-model", str(w / "wm.pt"), "--tokenizer", str(w / "tokenizer.pt"),
            "--tokens", str(w / "tokens"), "--burn-in", "2"]


def test_dream_writes_side_by_side_mp4(world, capsys):
    out = world / "dream.mp4"
    assert main(["dream", *_wm_args(world), "--episode", "1", "--steps", "3",
                 "--out", str(out)]) == 0
    assert out.stat().st_size > 0 and "3 imagined steps" in capsys.readouterr().out
    assert main(["dream", *_wm_args(world), "--episode", "9"]) == 2
    assert "out of range" in capsys.readouterr().err


def test_play_runs_headless(world):
    assert main(["play", *_wm_args(world), "--max-steps", "3", "--fps", "100"]) == 0


def test_eval_policy_prints_return_and_writes_video(world, capsys):
    video = world / "bc.mp4"
    args = ["eval", "policy", "--checkpoint", str(world / "bc.pt"), "--env",
            "embscale/Breakout-v0", "--episodes", "2", "--num-envs", "2", "--max-steps", "15",
            "--tokenizer", str(world / "tokenizer.pt"), "--tokens", str(world / "tokens"),
            "--video", str(video)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "2 episodes, return" in printed and "95% CI" in printed and video.stat().st_size > 0
    # A world model given as a policy, and a policy given as a world model.
    args[3] = str(world / "wm.pt")
    assert main(args) == 2 and "not a policy" in capsys.readouterr().err
    bad = _wm_args(world)
    bad[1] = str(world / "bc.pt")
    assert main(["dream", *bad]) == 2
    assert "not a world model" in capsys.readouterr().err


def test_eval_policy_context_device_and_progress(world, capsys, caplog):
    args = ["eval", "policy", "--checkpoint", str(world / "bc.pt"), "--env",
            "embscale/Breakout-v0", "--episodes", "1", "--num-envs", "1", "--max-steps", "5",
            "--tokenizer", str(world / "tokenizer.pt"), "--tokens", str(world / "tokens"),
            "--context-steps", "1", "--device", "cpu"]
    with caplog.at_level(logging.INFO, logger="agents.cli"):
        assert main(args) == 0 and "1 episodes, return" in capsys.readouterr().out
    # off a terminal, progress is logged (every 10% of the capped env steps)
    assert "env steps 1/5" in caplog.text and "env steps 5/5" in caplog.text
    assert main([*args[:-1], "gpu7"]) == 2
    assert "unknown device 'gpu7'" in capsys.readouterr().err
    # the env renders the frames --size asks for; the policy says which size it was trained on
    assert main([*args, "--size", "32"]) == 2
    assert "trained on frames of shape (64, 64, 3)" in capsys.readouterr().err
    assert main([*args, "--size", "64"]) == 0
    capsys.readouterr()
    if not torch.cuda.is_available():
        assert main([*args[:-1], "cuda"]) == 2
        assert "CUDA is not available" in capsys.readouterr().err


def test_load_policy_context_steps(world):
    from agents.policies import load_policy

    policy = load_policy(world / "bc.pt", world / "tokenizer.pt", world / "tokens",
                         context_steps=1, device="auto")
    assert policy.context_steps == 1
    _, state = policy.predict(np.zeros((2, *policy.observation_space.shape), np.uint8))
    assert state.shape[1] == 1  # the state holds one timestep of history


@pytest.mark.slow
def test_dyna_command(world, capsys):
    run = world / "dyna"
    assert main(["dyna", *_wm_args(world), "--env", "embscale/Breakout-v0", "--run-dir",
                 str(run), "--num-envs", "2", "--timesteps", "64", "--n-steps", "32",
                 "--horizon", "8", "--eval-episodes", "2", "--eval-max-steps", "20"]) == 0
    results = json.loads((run / "results.json").read_text())
    assert np.isfinite(results["ppo"]["mean"]) and "random" in capsys.readouterr().out
    # the saved agent evaluated again, on other episodes, without training
    again = ["dyna", *_wm_args(world), "--env", "embscale/Breakout-v0", "--run-dir", str(run),
             "--eval-episodes", "3", "--eval-max-steps", "20", "--evaluate-only"]
    zip_stamp = (run / "ppo.zip").stat().st_mtime_ns
    assert main([*again, "--seed", "5"]) == 0
    out = json.loads((run / "evaluation-seed5.json").read_text())
    assert len(out["ppo"]["returns"]) == len(out["random"]["returns"]) == 3
    assert out["config"]["seed"] == 5 and "evaluation-seed5.json" in capsys.readouterr().out
    assert (run / "ppo.zip").stat().st_mtime_ns == zip_stamp
    assert json.loads((run / "results.json").read_text()) == results
    # the same seed gives the same episodes
    assert main([*again, "--seed", "5"]) == 0
    assert json.loads((run / "evaluation-seed5.json").read_text()) == out
    assert main([a if a != str(run) else str(world / "no-run") for a in again]) == 2
    assert "ppo.zip does not exist" in capsys.readouterr().err
