"""Dyna-style PPO inside a (small, real) world model, evaluated in real Breakout."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from gymnasium import spaces

import envs  # noqa: E402
from agents.dyna import DynaConfig, confidence_interval, run_dyna  # noqa: E402
from tests.helpers.world_models import tiny_simulator


def breakout(size=64):
    return lambda: envs.make("embscale/Breakout-v0", size=size, max_episode_steps=25)


@pytest.mark.slow
def test_short_ppo_inside_the_world_model_with_real_steps_and_updates(tmp_path, caplog):
    caplog.set_level("INFO", logger="agents.dyna")
    sim = tiny_simulator(num_envs=4)
    calls = []
    reconstruct = sim.reconstruct_frames
    sim.reconstruct_frames = lambda frames: calls.append(len(frames)) or reconstruct(frames)
    before = [p.detach().clone() for p in sim.model.parameters()]
    starts = len(sim.start_episodes)
    cfg = DynaConfig(timesteps_per_round=128, n_steps=32, batch_size=64, n_epochs=1, horizon=10,
                     real_steps_per_round=30, wm_updates_per_round=2, eval_episodes=2)
    results = run_dyna(sim, breakout(), cfg, tmp_path)
    assert results["rounds"][0]["imagined_steps"] >= 128
    # off a terminal, progress comes as log lines, the last at the end of the round
    progress = [r.getMessage() for r in caplog.records if "imagined steps" in r.getMessage()]
    assert len(progress) >= 2 and progress[-1].startswith("imagined steps 128/128")
    # and so does the evaluation, over episodes
    messages = [r.getMessage() for r in caplog.records]
    assert "real episodes (PPO) 2/2" in messages and "real episodes (random) 2/2" in messages
    assert np.isfinite(results["rounds"][0]["wm_loss"])
    assert any(not torch.equal(a, b) for a, b in zip(before, sim.model.parameters(), strict=True))
    assert len(sim.start_episodes) > starts
    # the agent saw the tokenizer's reconstructions of the real frames (30 real steps, then
    # every step of its evaluation episodes), one frame at a time
    assert len(calls) > 30 and set(calls) == {1}
    for who in ("ppo", "random"):
        assert len(results[who]["returns"]) == 2
        # every step of the evaluation episodes counted once, by action
        counts = results[who]["action_counts"]
        assert len(counts) == 4 and sum(counts) == sum(results[who]["lengths"])
        assert results[who]["ci95"][0] <= results[who]["mean"] <= results[who]["ci95"][1]
    assert json.loads((tmp_path / "results.json").read_text())["ppo"] == results["ppo"]
    assert (tmp_path / "ppo.zip").is_file() and any((tmp_path / "tb").rglob("events.*"))
    # the updated world model is kept, and loads as it was left
    saved = torch.load(tmp_path / "world_model.pt", weights_only=True)["model"]
    assert all(torch.equal(saved[k], v) for k, v in sim.model.state_dict().items())


def test_env_mismatches_and_bad_config_are_refused(tmp_path):
    sim = tiny_simulator(num_envs=2)
    with pytest.raises(ValueError, match="observations have shape"):
        run_dyna(sim, breakout(size=32), DynaConfig(), tmp_path)

    def six_actions():
        env = breakout()()
        env.action_space = spaces.Discrete(6)
        return env

    with pytest.raises(ValueError, match="action space"):
        run_dyna(sim, six_actions, DynaConfig(), tmp_path)
    with pytest.raises(ValueError, match="at least 2 imagined steps per update, got n_steps=1 x "
                                         "1 env.*raise --n-steps or --num-envs"):
        run_dyna(tiny_simulator(num_envs=1), breakout(), DynaConfig(n_steps=1), tmp_path)
    with pytest.raises(ValueError, match="real_steps_per_round"):
        DynaConfig(wm_updates_per_round=5)
    with pytest.raises(ValueError, match="real_observations"):
        DynaConfig(real_observations="pixels")


def test_confidence_interval_known_answer():
    mean, lo, hi = confidence_interval([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5 and hi - mean == pytest.approx(1.96 * np.std([1, 2, 3, 4], ddof=1) / 2)


def test_episodes_in_progress_continue_under_the_updated_world_model():
    import copy
    import dataclasses

    from agents.dyna import update_world_model
    from tests.helpers.world_models import tiny_episodes, tiny_tokenizer

    sim = tiny_simulator(num_envs=3, seed=1, decode="eager")
    rng = np.random.default_rng(5)
    sim.reset(np.arange(3))
    sim.step(rng.integers(0, 4, 3))  # one step: a full context slides, re-encoding it anyway
    update_world_model(sim, tiny_episodes(tiny_tokenizer(), n=3, length=8), steps=20,
                       learning_rate=1e-2, seed=0)
    # the same state stepped by recomputing the whole context with the new weights
    recompute = copy.deepcopy(sim)
    recompute.config = dataclasses.replace(sim.config, use_cache=False)
    recompute.decoder = None
    recompute.generator.set_state(sim.generator.get_state())
    actions = rng.integers(0, 4, 3)
    cached, full = sim.step(actions), recompute.step(actions)
    np.testing.assert_allclose(cached.rewards, full.rewards, atol=1e-5)
    np.testing.assert_array_equal(cached.observations, full.observations)


def test_a_finished_run_is_not_replaced_without_overwrite(tmp_path):
    from agents.dyna_runs import check_run_dir

    tmp_path = tmp_path / "run"
    tmp_path.mkdir()
    (tmp_path / "ppo.zip").write_bytes(b"agent")
    (tmp_path / "results.json").write_text("{}")
    (tmp_path / "evaluation-seed3.json").write_text("{}")
    with pytest.raises(FileExistsError, match="already holds a dyna run.*--overwrite"):
        run_dyna(tiny_simulator(num_envs=2), breakout(), DynaConfig(), tmp_path)
    assert (tmp_path / "ppo.zip").read_bytes() == b"agent"  # nothing lost
    check_run_dir(tmp_path, overwrite=True)  # allowed, and nothing removed before the checks
    assert (tmp_path / "ppo.zip").read_bytes() == b"agent"
    with pytest.raises(ValueError, match="observations have shape"):  # a run that fails its
        run_dyna(tiny_simulator(num_envs=2), breakout(size=32), DynaConfig(), tmp_path,
                 overwrite=True)  # checks leaves the old run as it was
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "evaluation-seed3.json", "ppo.zip", "results.json"]
    (tmp_path / "world_model.pt").write_bytes(b"tuned")
    with pytest.raises(ValueError, match="lies in --run-dir.*copy it out"):
        check_run_dir(tmp_path, True, [tmp_path / "world_model.pt"])
    (tmp_path / "not-a-dir").write_text("")
    with pytest.raises(FileExistsError, match="is a file"):
        check_run_dir(tmp_path / "not-a-dir")


def test_a_burn_in_past_the_context_is_clamped_before_episodes_are_chosen():
    from offline_data.discretize import discretizer_for_space
    from tests.helpers.world_models import tiny_episodes, tiny_model, tiny_tokenizer
    from worldmodels.simulator import SimulatorConfig, TokenWorldModelSimulator

    vq = tiny_tokenizer()
    with pytest.warns(UserWarning, match="burn-in 10000 is longer than the model's context"):
        sim = TokenWorldModelSimulator(tiny_model(), vq, discretizer_for_space(spaces.Discrete(4)),
                                       1, tiny_episodes(vq), SimulatorConfig(burn_in=10_000))
    assert sim.config.burn_in == sim.context_steps - 1 and sim.start_episodes
