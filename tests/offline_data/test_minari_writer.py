"""MinariWriter.add_episode copies what it is given and checks every per-step length."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from gymnasium import spaces

import offline_data.minari_writer as mw
from offline_data.datasets import episode_metadata
from offline_data.minari_writer import MinariWriter
from offline_data.reader import read_episode

OBS = spaces.Box(0, 255, (8, 8, 3), np.uint8)
T = 5


def _writer(dataset_id: str) -> MinariWriter:
    return MinariWriter(dataset_id, observation_space=OBS, action_space=spaces.Discrete(3))


def test_reused_buffers_do_not_change_a_queued_episode(monkeypatch):
    release = threading.Event()
    original = mw._write_episode

    def held_write(*args):  # the background write starts only after the caller reused buffers
        assert release.wait(30)
        original(*args)

    monkeypatch.setattr(mw, "_write_episode", held_write)
    frames = np.random.default_rng(0).integers(0, 255, (T + 1, 8, 8, 3), dtype=np.uint8)
    actions, rewards = np.zeros(T, np.int64), np.ones(T)
    terms, truncs = np.zeros(T, bool), np.zeros(T, bool)
    truncs[-1] = True
    with _writer("embscale/t/reuse-v0") as w:
        w.add_episode(frames, actions, rewards, terms, truncs)
        expected = (frames.copy(), actions.copy(), rewards.copy())
        frames[:] = 7  # the caller fills its buffers with the next episode
        actions[:] = 2
        rewards[:] = 5.0
        terms[-1], truncs[-1] = True, False
        release.set()
        ds = w.commit()
    ep = read_episode(ds, 0)
    np.testing.assert_array_equal(ep.observations, expected[0])
    np.testing.assert_array_equal(ep.actions, expected[1])
    np.testing.assert_array_equal(ep.rewards, expected[2])
    assert ep.truncations[-1] and not ep.terminations.any()
    assert episode_metadata(ds)[0]["return"] == float(expected[2].sum())


@pytest.mark.parametrize("field", ["terminations", "truncations"])
def test_flags_of_the_wrong_length_are_refused(field):
    frames = np.random.default_rng(0).integers(0, 255, (T + 1, 8, 8, 3), dtype=np.uint8)
    flags = {"terminations": [False] * T, "truncations": [False] * (T - 1) + [True]}
    flags[field] = [True]
    w = _writer("embscale/t/flags-v0")
    try:
        with pytest.raises(ValueError, match=rf"episode 0 of 'embscale/t/flags-v0' has 6 "
                                             rf"observations and .*\b1 {field}\b"):
            w.add_episode(frames, np.arange(T) % 3, np.ones(T), flags["terminations"],
                          flags["truncations"])
    finally:
        w.abort()
