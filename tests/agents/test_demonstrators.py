import gymnasium
import numpy as np
import pytest
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv

import envs
from agents.demonstrators import (
    ScriptedBreakoutPolicy,
    ScriptedFetchPickAndPlacePolicy,
    SkillSpec,
)
from agents.demonstrators.breakout import FIRE, RAM_BALL_Y, fold_into


def _breakout_return(skill, seed, max_steps):
    env = envs.make("embscale/Breakout-v0", max_episode_steps=max_steps)
    policy = ScriptedBreakoutPolicy(skill=skill, seed=seed).bind(env)
    obs, _ = env.reset(seed=seed)
    start, total, done = True, 0.0, False
    while not done:
        action, _ = policy.predict(obs, episode_start=start)
        start = False
        obs, reward, terminated, truncated, _ = env.step(action)
        total += reward
        done = terminated or truncated
    env.close()
    return total


def test_breakout_returns_grow_with_skill():
    low = _breakout_return(0.0, seed=0, max_steps=600)
    high = _breakout_return(1.0, seed=0, max_steps=600)
    assert low <= 6  # random play
    assert high >= 12 and high >= low + 8


@pytest.mark.slow
def test_breakout_best_skill_scores_at_least_50():
    assert _breakout_return(1.0, seed=1, max_steps=4500) >= 50


def test_breakout_predict_batches_over_vector_envs():
    venv = gymnasium.vector.SyncVectorEnv(
        [lambda: envs.make("embscale/Breakout-v0", size=32) for _ in range(3)]
    )
    policy = ScriptedBreakoutPolicy(skill=(0.2, 0.9), seed=0).bind(venv)
    obs, _ = venv.reset(seed=0)
    starts = np.ones(3, dtype=bool)
    for _ in range(5):
        actions, state = policy.predict(obs, None, starts, deterministic=False)
        assert actions.shape == (3,) and actions.dtype == np.int64 and state is None
        assert all(venv.single_action_space.contains(int(a)) for a in actions)
        obs, *_ = venv.step(actions)
        starts[:] = False
    skills = policy.skills
    assert skills.shape == (3,) and np.all((skills >= 0.2) & (skills <= 0.9))
    assert len(set(skills.tolist())) == 3  # each env's episode drew its own skill
    with pytest.raises(ValueError, match="bound env has 3"):
        policy.predict(obs[:2])
    venv.close()


def test_breakout_policy_runs_in_sb3_evaluate_policy():
    venv = DummyVecEnv(
        [lambda: Monitor(envs.make("embscale/Breakout-v0", size=32, max_episode_steps=150))] * 2
    )
    policy = ScriptedBreakoutPolicy(skill=1.0, seed=0).bind(venv)
    mean, std = evaluate_policy(policy, venv, n_eval_episodes=2)
    assert np.isfinite(mean) and mean >= 0


def test_breakout_serves_the_ball_and_single_env_gives_one_action():
    ram = np.zeros(128, np.uint8)
    ram[RAM_BALL_Y] = 0  # no ball in play
    policy = ScriptedBreakoutPolicy(skill=1.0, seed=0)
    assert policy.act(ram[None], deterministic=True).tolist() == [FIRE]
    env = envs.make("embscale/Breakout-v0")
    obs, _ = env.reset(seed=0)
    action, _ = policy.bind(env).predict(obs, episode_start=True)
    assert np.ndim(action) == 0 and env.action_space.contains(int(action))
    actions, _ = policy.predict(obs[None], episode_start=np.array([False]))
    assert actions.shape == (1,)


def test_fold_into_reflects_off_both_walls():
    assert fold_into(50.0, 0.0, 100.0) == 50.0
    assert fold_into(250.0, 0.0, 100.0) == 50.0
    assert fold_into(-130.0, 0.0, 100.0) == 70.0


def test_demonstrator_errors_name_the_fix():
    with pytest.raises(RuntimeError, match="bind"):
        ScriptedBreakoutPolicy().predict(np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(ValueError, match="skill"):
        ScriptedBreakoutPolicy(skill=1.5)
    with pytest.raises(ValueError, match="skill"):
        ScriptedFetchPickAndPlacePolicy(skill=(0.9, 0.1))
    with pytest.raises(TypeError, match="skill"):
        SkillSpec.parse("expert")
    with pytest.raises(ValueError, match="128"):
        ScriptedBreakoutPolicy().act(np.zeros((2, 10), np.uint8))
    with pytest.raises(ValueError, match="desired_goal"):
        ScriptedFetchPickAndPlacePolicy().act({"observation": np.zeros((1, 25))})
    env = envs.make("embscale/Breakout-v0")
    env.reset(seed=0)
    with pytest.raises(TypeError, match="get_state"):
        ScriptedFetchPickAndPlacePolicy().bind(env).predict(np.zeros((64, 64, 3), np.uint8))


def test_fetch_controller_phases_on_synthetic_states():
    policy = ScriptedFetchPickAndPlacePolicy(skill=1.0, seed=0)
    obs = np.zeros((1, 25))
    obs[0, 0:3] = [1.3, 0.7, 0.6]  # gripper
    obs[0, 3:6] = [1.3, 0.8, 0.42]  # block, 10 cm to the side and below
    state = {"observation": obs, "desired_goal": np.array([[1.2, 0.7, 0.6]])}
    action = policy.act(state, episode_start=np.array([True]), deterministic=True)
    assert action.shape == (1, 4) and action.dtype == np.float32
    assert action[0, 1] > 0.5 and action[0, 3] == 1.0  # towards the block, fingers open


@pytest.mark.robotics
def test_fetch_best_skill_succeeds():
    pytest.importorskip("gymnasium_robotics")
    env = envs.make("embscale/FetchPickAndPlace-v0", size=16)
    policy = ScriptedFetchPickAndPlacePolicy(skill=1.0, seed=0).bind(env)
    successes = []
    for episode in range(2):
        obs, info = env.reset(seed=1000 + episode)
        start, done = True, False
        while not done:
            action, _ = policy.predict(obs, episode_start=start)
            start = False
            assert action.shape == (4,) and env.action_space.contains(action)
            obs, _, terminated, truncated, info = env.step(action)
            done = terminated or truncated
        successes.append(info["is_success"])
    env.close()
    assert successes == [1.0, 1.0]


def test_set_skill_applies_from_the_next_episode():
    policy = ScriptedBreakoutPolicy(skill=0.9, seed=0)
    rams = np.zeros((2, 128), np.uint8)
    policy.act(rams, episode_start=np.array([True, True]))
    policy.set_skill(0.2)
    policy.act(rams, episode_start=np.array([False, True]))
    np.testing.assert_allclose(policy.skills, [0.9, 0.2])
