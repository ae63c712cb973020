"""Real-env observations replaced by a model's reconstruction of them."""

from __future__ import annotations

import numpy as np
import pytest

import envs
from envs.reconstruction import ReconstructedObservation


def test_every_observation_is_the_reconstruction_of_the_real_one():
    seen = []

    def invert(frames):
        seen.append(frames.copy())
        return 255 - frames

    env = ReconstructedObservation(envs.make("embscale/Breakout-v0", max_episode_steps=5), invert)
    obs, _ = env.reset(seed=0)
    assert seen[-1].shape == (1, *obs.shape)
    np.testing.assert_array_equal(obs, 255 - seen[-1][0])
    obs, *_ = env.step(env.action_space.sample())
    np.testing.assert_array_equal(obs, 255 - seen[-1][0])
    assert env.observation_space.contains(obs)


def test_a_reconstruction_of_the_wrong_shape_is_refused():
    env = ReconstructedObservation(envs.make("embscale/Breakout-v0", max_episode_steps=5),
                                   lambda frames: frames[:, ::2, ::2])
    with pytest.raises(ValueError, match="reconstruct returned a frame of shape"):
        env.reset(seed=0)
