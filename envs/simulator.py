"""The protocol a learned simulator follows so the world-model envs can step it.

The envs never import a model: they are *handed* an object with this shape (IRIS's
``WorldModelEnv`` is handed its tokenizer and world model the same way). ``worldmodels.simulator``
turns a trained world model and its tokenizer into one; a test can hand in anything else that
follows the protocol.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol, runtime_checkable

import gymnasium as gym
import numpy as np


class SimulatorStep(NamedTuple):
    """One batched step of a simulator."""

    observations: np.ndarray
    """uint8 (B, H, W, 3): the next frame of every row."""
    rewards: np.ndarray
    """float32 (B,): reward of the transition."""
    terminations: np.ndarray
    """bool (B,): the row reached a terminal state."""


@runtime_checkable
class Simulator(Protocol):
    """A batch of ``num_envs`` independent imagined episodes, stepped together.

    Rows are reset one by one (``reset`` with their indices) and stepped all at once. The simulator
    owns its randomness: ``seed`` makes the next ``reset``/``step`` calls repeatable.
    """

    num_envs: int
    """Number of rows (imagined episodes) stepped together."""
    observation_shape: tuple[int, int, int]
    """(H, W, 3) of the uint8 RGB frames it produces."""
    action_space: gym.spaces.Space
    """The real env's action space for one row; ``step`` takes a batch of its elements."""

    def seed(self, seed: int | None) -> None:
        """Reseed the simulator's random number generators."""

    def reset(self, env_indices: np.ndarray, observations: np.ndarray | None = None) -> np.ndarray:
        """Start rows ``env_indices`` anew and return their first frames, uint8 (n, H, W, 3).

        Args:
            env_indices: int64 (n,) rows to reset.
            observations: optional uint8 (n, H, W, 3) start frames; without them the simulator
                picks its own start (e.g. a burn-in from real frames of held-out episodes).
        """

    def step(self, actions: np.ndarray) -> SimulatorStep:
        """Step every row with ``actions``, a batch (B, ...) of elements of ``action_space``."""
