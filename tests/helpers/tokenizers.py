"""Tiny real Minari datasets of synthetic frames for the tokenizer tests."""

from __future__ import annotations

import numpy as np
import torch
from gymnasium import spaces

from offline_data.minari_writer import MinariWriter

TINY_VQ = dict(codebook_size=16, code_dim=4, channels=8, max_channels=8)


def synthetic_episode(rng: np.random.Generator, steps: int, size: int = 64):
    """A bright square bouncing over a dark background with a static coloured band."""
    obs = np.zeros((steps + 1, size, size, 3), np.uint8)
    obs[:, : size // 8] = (200, 80, 40)
    pos = rng.integers(size // 8, size - 8, size=2)
    vel = rng.choice([-3, 3], size=2)
    for t in range(steps + 1):
        obs[t, pos[0]:pos[0] + 6, pos[1]:pos[1] + 6] = (250, 250, 250)
        pos = pos + vel
        for d in range(2):
            if not size // 8 <= pos[d] <= size - 8:
                vel[d] = -vel[d]
                pos[d] = np.clip(pos[d], size // 8, size - 8)
    actions = rng.integers(0, 4, size=steps)
    rewards = rng.integers(0, 2, size=steps).astype(np.float64)
    terminations = np.zeros(steps, bool)
    terminations[-1] = True
    return obs, actions, rewards, terminations, np.zeros(steps, bool)


def make_dataset(dataset_id: str, num_episodes: int = 6, steps: int = 12, size: int = 64,
                 seed: int = 0):
    rng = np.random.default_rng(seed)
    obs_space = spaces.Box(0, 255, (size, size, 3), np.uint8)
    with MinariWriter(dataset_id, observation_space=obs_space,
                      action_space=spaces.Discrete(4), algorithm_name="random") as writer:
        for i in range(num_episodes):
            writer.add_episode(*synthetic_episode(rng, steps + i, size), {"skill": 0.5})
    from offline_data.datasets import load_dataset

    return load_dataset(dataset_id)


def one_torch_thread():
    """Context: one torch thread (much faster on a shared CPU), restoring the setting after."""
    import contextlib

    @contextlib.contextmanager
    def ctx():
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(before)

    return ctx()
