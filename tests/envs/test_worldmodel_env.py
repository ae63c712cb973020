"""World-model env facades: gymnasium Env, gymnasium VectorEnv, SB3 VecEnv."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from envs.simulator import Simulator, SimulatorStep
from envs.worldmodel_env import WorldModelEnv, WorldModelVecEnv, WorldModelVectorEnv
from tests.helpers.world_models import (
    FRAME,
    tiny_episodes,
    tiny_model,
    tiny_simulator,
    tiny_tokenizer,
)


class CountingSimulator:
    """Known-answer simulator: the frame value counts the summed actions; ends past ``limit``."""

    def __init__(self, num_envs: int, limit: int = 6):
        self.num_envs = num_envs
        self.observation_shape = (8, 8, 3)
        self.action_space = gym.spaces.Discrete(3)
        self.limit = limit
        self.state = np.zeros(num_envs, np.int64)
        self.rng = np.random.default_rng(0)

    def seed(self, seed):
        self.rng = np.random.default_rng(seed)

    def _frames(self, values):
        return np.broadcast_to(values[:, None, None, None], (len(values), 8, 8, 3)).astype(np.uint8)

    def reset(self, env_indices, observations=None):
        if observations is None:
            self.state[env_indices] = self.rng.integers(0, 3, len(env_indices))
        else:
            self.state[env_indices] = observations[:, 0, 0, 0]
        return self._frames(self.state[env_indices])

    def step(self, actions):
        self.state += actions
        return SimulatorStep(self._frames(self.state), actions.astype(np.float32),
                             self.state > self.limit)


def test_counting_simulator_follows_protocol():
    assert isinstance(CountingSimulator(1), Simulator)
    with pytest.raises(TypeError, match="Simulator"):
        WorldModelEnv(object())


def test_gym_env_steps_and_truncates_at_horizon():
    env = WorldModelEnv(CountingSimulator(1, limit=100), max_episode_steps=3)
    obs, _ = env.reset(options={"observation": np.full((8, 8, 3), 5, np.uint8)})
    assert obs[0, 0, 0] == 5
    for t in range(3):
        obs, r, term, trunc, _ = env.step(2)
        assert r == 2.0 and not term and trunc == (t == 2)
    assert obs[0, 0, 0] == 11


def test_vector_env_next_step_autoreset():
    env = WorldModelVectorEnv(CountingSimulator(2, limit=3), max_episode_steps=None)
    env.reset(options={"observation": np.zeros((2, 8, 8, 3), np.uint8)})
    _, _, term, _, _ = env.step(np.array([2, 0]))
    _, _, term, _, _ = env.step(np.array([2, 0]))
    assert term.tolist() == [True, False]
    obs, rew, term, trunc, _ = env.step(np.array([1, 1]))  # row 0 ignores its action, restarts
    assert rew.tolist() == [0.0, 1.0] and not term.any() and not trunc.any()
    assert obs[0, 0, 0, 0] <= 2 and obs[1, 0, 0, 0] == 1


def test_vector_env_same_step_autoreset_reports_final_obs():
    env = WorldModelVectorEnv(CountingSimulator(2, limit=3), max_episode_steps=None,
                              autoreset_mode="SameStep")
    env.reset(options={"observation": np.zeros((2, 8, 8, 3), np.uint8)})
    env.step(np.array([2, 0]))
    obs, _, term, _, info = env.step(np.array([2, 0]))
    assert term.tolist() == [True, False]
    assert info["_final_obs"].tolist() == [True, False] and info["final_obs"][0][0, 0, 0] == 4
    assert info["final_info"] == {} and info["_final_info"].tolist() == [True, False]  # gymnasium's
    assert obs[0, 0, 0, 0] <= 2


def test_sb3_vec_env_autoreset_infos():
    env = WorldModelVecEnv(CountingSimulator(2, limit=100), max_episode_steps=2)
    env.reset()
    env.step(np.array([1, 1]))
    _, _, dones, infos = env.step(np.array([1, 1]))
    assert dones.all()
    assert all(i["TimeLimit.truncated"] and "terminal_observation" in i for i in infos)


def test_facades_pass_both_env_checkers_on_counting_simulator():
    gym_check_env(WorldModelEnv(CountingSimulator(1), max_episode_steps=10), skip_render_check=True)
    sb3_check_env(WorldModelEnv(CountingSimulator(1), max_episode_steps=10))


def test_bad_actions_and_start_observations_raise():
    env = WorldModelEnv(CountingSimulator(1), max_episode_steps=10)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="outside the action space"):
        env.step(3)
    with pytest.raises(ValueError, match="outside the action space"):
        env.step(-1)
    with pytest.raises(ValueError, match="outside the action space"):
        env.step(1.5)
    with pytest.raises(ValueError, match="start observation has shape"):
        env.reset(options={"observation": np.zeros((16, 16, 3), np.uint8)})
    venv = WorldModelVecEnv(CountingSimulator(2), max_episode_steps=10)
    venv.reset()
    with pytest.raises(ValueError, match="actions have shape"):
        venv.step(np.array([1, 1, 1]))
    with pytest.raises(ValueError, match="num_envs=1"):
        WorldModelEnv(CountingSimulator(2))


@pytest.mark.parametrize("facade", [WorldModelEnv, WorldModelVectorEnv, WorldModelVecEnv])
def test_render_modes_other_than_rgb_array_are_refused(facade):
    sim = CountingSimulator(1 if facade is WorldModelEnv else 2)
    with pytest.raises(ValueError, match="render_mode must be None or 'rgb_array', got 'human'"):
        facade(sim, max_episode_steps=10, render_mode="human")
    if facade is WorldModelVecEnv:  # SB3 asks each row to render through env_method
        venv = facade(sim, max_episode_steps=10, render_mode="rgb_array")
        venv.reset()
        frames = venv.env_method("render")
        assert len(frames) == 2 and frames[0].shape == venv.observation_space.shape


# ----- the real simulator: a random-init VQ-VAE and WM-Token transformer -----



def test_real_world_model_env_passes_both_env_checkers():
    gym_check_env(WorldModelEnv(tiny_simulator(), max_episode_steps=20), skip_render_check=True)
    sb3_check_env(WorldModelEnv(tiny_simulator(), max_episode_steps=20))


def test_real_world_model_vector_envs_step_with_autoreset():
    venv = WorldModelVecEnv(tiny_simulator(num_envs=3), max_episode_steps=3)
    obs = venv.reset()
    assert obs.shape == (3, FRAME, FRAME, 3) and obs.dtype == np.uint8
    for _ in range(3):
        obs, rew, dones, infos = venv.step(np.array([0, 1, 2]))
    # Every episode ends by the horizon at the latest (a random head may terminate earlier).
    assert dones.all() and all("terminal_observation" in i for i in infos)
    genv = WorldModelVectorEnv(tiny_simulator(num_envs=2), max_episode_steps=5)
    obs, _ = genv.reset(seed=1)
    obs, rew, term, trunc, _ = genv.step(genv.action_space.sample())
    assert obs.shape == (2, FRAME, FRAME, 3) and rew.dtype == np.float32


def test_cached_imagination_equals_full_recompute():
    # Same seed, same actions, resets in between and a sliding window: identical frames.
    runs = []
    for use_cache in (True, False):
        sim = tiny_simulator(num_envs=2, seed=3, use_cache=use_cache)
        frames = [sim.reset(np.arange(2))]
        for t in range(5):  # context of 4 steps after a burn-in of 2: slides at t = 2
            out = sim.step(np.array([t % 4, 1]))
            frames.append(out.observations)
            if t == 1:
                frames.append(np.concatenate([out.observations[:1], sim.reset(np.array([1]))]))
        runs.append(np.stack(frames))
    np.testing.assert_array_equal(runs[0], runs[1])


def test_start_observation_is_used_and_checked():
    env = WorldModelEnv(tiny_simulator(), max_episode_steps=5)
    vq = tiny_tokenizer()
    frame = np.zeros((FRAME, FRAME, 3), np.uint8)
    obs, _ = env.reset(options={"observation": frame})
    np.testing.assert_array_equal(obs, vq.decode(vq.encode(frame[None]))[0].numpy())
    with pytest.raises(ValueError, match="start observation has shape"):
        env.reset(options={"observation": np.zeros((32, 32, 3), np.uint8)})
    with pytest.raises(ValueError, match="outside the action space"):
        env.step(4)


def test_simulator_refuses_a_policy_model_and_mismatched_actions():
    from gymnasium import spaces

    from offline_data.discretize import discretizer_for_space
    from worldmodels.simulator import TokenWorldModelSimulator

    vq = tiny_tokenizer()
    d4 = discretizer_for_space(spaces.Discrete(4))
    with pytest.raises(ValueError, match="WM-Token world model"):
        TokenWorldModelSimulator(tiny_model(task="bc"), vq, d4, 1, tiny_episodes(vq))
    with pytest.raises(ValueError, match="vocab sizes"):
        TokenWorldModelSimulator(tiny_model(), vq, discretizer_for_space(spaces.Discrete(6)), 1)


def test_checkpoint_kind_is_checked(tmp_path):
    import agents.bc_cnn  # noqa: F401  (registers the bc_cnn kind, as loading agents does)
    from worldmodels.checkpoint import load_model, read_model_checkpoint
    from worldmodels.token_model import TokenModel, save_token_model

    save_token_model(tiny_model(task="bc"), tmp_path / "bc.pt")
    save_token_model(tiny_model(task="wm"), tmp_path / "wm.pt")
    with pytest.raises(ValueError, match="BC-Token policy, not a world model"):
        read_model_checkpoint(tmp_path / "bc.pt", expect="world model")
    with pytest.raises(ValueError, match="not a policy"):
        read_model_checkpoint(tmp_path / "wm.pt", expect="policy")
    with pytest.raises(FileNotFoundError):
        read_model_checkpoint(tmp_path / "missing.pt", expect="policy")
    with pytest.raises(ValueError, match="not a 'bc_cnn' model"):
        read_model_checkpoint(tmp_path / "wm.pt", expect="bc_cnn")
    model = load_model(tmp_path / "wm.pt", expect="world model")
    assert isinstance(model, TokenModel) and model.config.task == "wm" and not model.training


def test_reward_modes():
    from worldmodels.simulator import SimulatorConfig

    for mode in ("expected", "argmax"):
        sim = tiny_simulator(num_envs=2, reward=mode)
        sim.reset(np.arange(2))
        r = sim.step(np.array([1, 2])).rewards
        assert r.dtype == np.float32 and np.all(np.abs(r) <= 1)
        if mode == "argmax":
            assert set(r.tolist()) <= {-1.0, 0.0, 1.0}
    with pytest.raises(ValueError, match="reward"):
        SimulatorConfig(reward="mean")


def test_simulator_leaves_its_config_as_given():
    from gymnasium import spaces

    from offline_data.discretize import discretizer_for_space
    from worldmodels.simulator import SimulatorConfig, TokenWorldModelSimulator

    # burn-in is capped at the context (4 steps here) on the simulator's own copy of the config
    vq = tiny_tokenizer()
    cfg = SimulatorConfig(burn_in=4)
    sim = TokenWorldModelSimulator(tiny_model(), vq, discretizer_for_space(spaces.Discrete(4)), 1,
                                   None, cfg)
    assert sim.config.burn_in == 3 and cfg.burn_in == 4
