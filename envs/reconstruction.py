"""Real-env observations seen through a model's eyes: each frame replaced by its reconstruction.

A policy trained inside a world model sees only decoded frames: the tokenizer's reconstructions,
which blur and shift what the real renderer draws. Acting on the env's own frames is then a
change of input distribution. IRIS feeds its agent the autoencoder's reconstruction of every real
frame for this reason; :class:`ReconstructedObservation` does the same for any env and any
``reconstruct`` function (for a token world model: encode, then decode, with its tokenizer).
"""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import numpy as np


class ReconstructedObservation(gym.ObservationWrapper):
    """Replace every observation by ``reconstruct(observation[None])[0]``.

    Args:
        env: an env with image observations (uint8 ``(H, W, C)``).
        reconstruct: maps a batch of observations ``(B, H, W, C)`` to a batch of the same shape
            and dtype (e.g. a tokenizer's encode-decode round trip).
    """

    def __init__(self, env: gym.Env, reconstruct: Callable[[np.ndarray], np.ndarray]):
        super().__init__(env)
        self.reconstruct = reconstruct

    def observation(self, observation: np.ndarray) -> np.ndarray:
        """The reconstruction of one observation, checked against the observation space."""
        out = np.asarray(self.reconstruct(np.asarray(observation)[None]))[0]
        space = self.observation_space
        if out.shape != space.shape or out.dtype != space.dtype:
            raise ValueError(f"reconstruct returned a frame of shape {out.shape} and dtype "
                             f"{out.dtype}, but the env's observations are {space.shape} "
                             f"{space.dtype}; reconstruct with a model made for this env's frames")
        return out
