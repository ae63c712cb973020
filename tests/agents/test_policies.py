"""BC-Token and BC-CNN checkpoints as SB3-protocol policies."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import VecMonitor

import envs  # noqa: E402
from agents.bc_cnn import BCCNN, BCCNNConfig  # noqa: E402
from agents.policies import CNNPolicy, TokenPolicy, load_policy  # noqa: E402
from envs.worldmodel_env import WorldModelVecEnv  # noqa: E402
from offline_data.discretize import discretizer_for_space  # noqa: E402
from tests.helpers.world_models import FRAME, tiny_model, tiny_simulator, tiny_tokenizer


def token_policy(seed=0):
    return TokenPolicy(tiny_model(task="bc"), tiny_tokenizer(),
                       discretizer_for_space(spaces.Discrete(4)), seed=seed)


def cnn_policy(seed=0):
    torch.manual_seed(0)
    model = BCCNN(BCCNNConfig.for_width(1, 2, 32, seq_len=4, action_vocab_sizes=(4,)))
    return CNNPolicy(model.eval(), discretizer_for_space(spaces.Discrete(4)), None, seed=seed)


@pytest.mark.parametrize("make", [token_policy, cnn_policy])
def test_evaluate_policy_in_the_real_env(make):
    policy = make()
    env = Monitor(envs.make("embscale/Breakout-v0", max_episode_steps=30))
    policy.check_env(env)
    mean, std = evaluate_policy(policy, env, n_eval_episodes=2, deterministic=False)
    assert np.isfinite(mean) and std >= 0


def test_evaluate_policy_in_the_world_model_vec_env():
    venv = VecMonitor(WorldModelVecEnv(tiny_simulator(num_envs=2), max_episode_steps=4))
    rewards, lengths = evaluate_policy(token_policy(), venv, n_eval_episodes=2,
                                       return_episode_rewards=True)
    assert len(rewards) == 2 and all(1 <= n <= 4 for n in lengths)


@pytest.mark.parametrize("make", [token_policy, cnn_policy])
def test_batched_context_and_episode_start(make):
    policy = make()
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (3, 2, FRAME, FRAME, 3), dtype=np.uint8)  # steps, rows
    state, starts = None, np.array([True, True])
    for t in range(3):
        actions, state = policy.predict(frames[t], state, starts, deterministic=True)
        assert actions.shape == (2,) and all(0 <= a < 4 for a in actions)
        starts = np.array([False, t == 1])  # row 1 starts a new episode at t = 2
    # Row 1's context holds its last frame only: the same as a fresh single-row call.
    alone, _ = policy.predict(frames[2][1], None, None, deterministic=True)
    assert actions[1] == alone
    # Row 0 decided from its whole history: equal to replaying it alone.
    s = None
    for t in range(3):
        a0, s = policy.predict(frames[t][:1], s, None, deterministic=True)
    assert a0[0] == actions[0]
    if isinstance(policy, TokenPolicy):
        assert (state[1, :, 0] >= 0).sum() == 1 and (state[0, :, 0] >= 0).sum() == 3
    with pytest.raises(ValueError, match="episode_start has 3 entries for 2 observations"):
        policy.predict(frames[0], None, np.array([True, False, True]))


def test_sampling_is_seeded_and_differs_from_greedy():
    obs = np.random.default_rng(1).integers(0, 256, (64, FRAME, FRAME, 3), dtype=np.uint8)
    a1, _ = token_policy(seed=5).predict(obs)
    a2, _ = token_policy(seed=5).predict(obs)
    greedy, _ = token_policy().predict(obs, deterministic=True)
    np.testing.assert_array_equal(a1, a2)
    assert len(set(a1.tolist())) > 1 or not np.array_equal(a1, greedy)


def test_env_mismatches_are_refused():
    policy = token_policy()
    with pytest.raises(ValueError, match="observations have shape"):
        policy.check_env(envs.make("embscale/Breakout-v0", size=32))
    env = envs.make("embscale/Breakout-v0")
    env.action_space = spaces.Discrete(6)
    with pytest.raises(ValueError, match="action space"):
        policy.check_env(env)
    with pytest.raises(ValueError, match="observations have shape"):
        policy.predict(np.zeros((2, 32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="state has shape"):
        policy.predict(np.zeros((2, FRAME, FRAME, 3), np.uint8), np.zeros((3, 4, 17), np.int64))


def test_wrong_checkpoint_kinds_are_refused(tmp_path):
    from worldmodels.token_model import save_token_model

    save_token_model(tiny_model(task="wm"), tmp_path / "wm.pt")
    with pytest.raises(ValueError, match="not a policy"):
        load_policy(tmp_path / "wm.pt")
    save_token_model(tiny_model(task="bc"), tmp_path / "bc.pt")
    with pytest.raises(ValueError, match="tokenizer"):
        load_policy(tmp_path / "bc.pt")
    with pytest.raises(ValueError, match="BC-Token model"):
        TokenPolicy(tiny_model(task="wm"), tiny_tokenizer(),
                    discretizer_for_space(spaces.Discrete(4)))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_token_policy_samples_on_cuda():
    policy = TokenPolicy(tiny_model(task="bc").cuda(), tiny_tokenizer().cuda(),
                         discretizer_for_space(spaces.Discrete(4)), seed=5)
    obs = np.random.default_rng(1).integers(0, 256, (8, FRAME, FRAME, 3), dtype=np.uint8)
    a1, state = policy.predict(obs)
    a2, _ = policy.predict(obs, state)
    assert a1.shape == a2.shape == (8,) and all(0 <= a < 4 for a in np.concatenate([a1, a2]))
