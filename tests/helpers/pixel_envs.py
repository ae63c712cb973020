"""Tiny image envs for offline_data tests (fast, deterministic, with string entry points)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces

PIXEL_ID = "embscale-test/Pixel-v0"
PIXEL_ARM_ID = "embscale-test/PixelArm-v0"
STATE_ID = "embscale-test/State-v0"


class PixelEnv(gym.Env):
    """A dot moved left/stay/right on a noisy 16x16 RGB canvas; reward 1 at the right edge.

    Observations: uint8 (size, size, 3). Actions: Discrete(3). Terminates at the right edge,
    truncation by ``max_episode_steps``.
    """

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, size: int = 16, render_mode: str | None = None):
        self.size = size
        self.render_mode = render_mode
        self.observation_space = spaces.Box(0, 255, (size, size, 3), np.uint8)
        self.action_space = spaces.Discrete(3)
        self.pos = 0

    def _obs(self):
        frame = self.np_random.integers(0, 40, (self.size, self.size, 3), dtype=np.uint8)
        frame[self.size // 2, self.pos] = (255, 200, 10)
        return frame

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = int(self.np_random.integers(0, self.size // 2))
        return self._obs(), {}

    def step(self, action):
        self.pos = int(np.clip(self.pos + int(action) - 1, 0, self.size - 1))
        terminated = self.pos == self.size - 1
        return self._obs(), float(terminated), terminated, False, {}

    def render(self):
        return self._obs()


class PixelArmEnv(PixelEnv):
    """PixelEnv with a continuous Box(-1, 1, (2,)) action (the first entry moves the dot)."""

    def __init__(self, size: int = 16, render_mode: str | None = None):
        super().__init__(size, render_mode)
        self.action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)

    def step(self, action):
        return super().step(int(np.round(float(action[0]))) + 1)


class StateEnv(gym.Env):
    """Vector observations (not images): datasets must refuse it."""

    def __init__(self):
        self.observation_space = spaces.Box(-1, 1, (4,), np.float32)
        self.action_space = spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(4, np.float32), {}

    def step(self, action):
        return np.zeros(4, np.float32), 0.0, False, False, {}


def register() -> None:
    """Register the test ids once."""
    for env_id, cls in ((PIXEL_ID, "PixelEnv"), (PIXEL_ARM_ID, "PixelArmEnv"),
                        (STATE_ID, "StateEnv")):
        if env_id not in gym.registry:
            gym.register(env_id, entry_point=f"tests.helpers.pixel_envs:{cls}",
                         max_episode_steps=40)


class FailingPolicy:
    """Random actions that raise on the ``fail_at``-th call to ``predict`` (collection errors)."""

    def __init__(self, env, seed: int = 0, fail_at: int = 30):
        self.action_space, self.calls, self.fail_at = env.action_space, 0, fail_at
        self.action_space.seed(seed)

    def predict(self, observation, state=None, episode_start=None, deterministic=False):
        self.calls += 1
        if self.calls >= self.fail_at:
            raise RuntimeError(f"policy failure on call {self.calls} (a test's planned error)")
        return self.action_space.sample(), state


class FailingRamPolicy(FailingPolicy):
    """``FailingPolicy`` that ignores observations, so one stream of it is pipelined."""

    reads_observations = False
