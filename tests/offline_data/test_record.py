import os

import numpy as np
import pytest

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
pygame = pytest.importorskip("pygame")

from offline_data.datasets import episode_metadata  # noqa: E402
from offline_data.reader import read_episode  # noqa: E402
from offline_data.record import KeyboardActions, RecordConfig, record  # noqa: E402
from tests.helpers.pixel_envs import PIXEL_ARM_ID, PIXEL_ID  # noqa: E402


def _key(kind, key):
    pygame.event.post(pygame.event.Event(kind, key=key))


def test_record_with_injected_keys(monkeypatch):
    import offline_data.record as rec

    script = {0: [(pygame.KEYDOWN, pygame.K_2)],  # hold "2" = move right
              5: [(pygame.KEYUP, pygame.K_2), (pygame.KEYDOWN, pygame.K_0)],  # "0" = move left
              8: [(pygame.KEYUP, pygame.K_0), (pygame.KEYDOWN, pygame.K_2)]}
    first_episode_steps = []
    original = rec.MinariWriter.add_episode

    def add_episode(self, observations, actions, *args, **kwargs):
        first_episode_steps.append(len(actions))
        return original(self, observations, actions, *args, **kwargs)

    monkeypatch.setattr(rec.MinariWriter, "add_episode", add_episode)

    def before_step(step):
        for kind, key in script.get(step, []):
            _key(kind, key)
        if first_episode_steps and step == first_episode_steps[0] + 3:
            _key(pygame.KEYDOWN, pygame.K_ESCAPE)  # stop 3 steps into the second episode

    cfg = RecordConfig(env_id=PIXEL_ID, dataset_id="embscale/pixel/human-v0", episodes=2, fps=0,
                       scale=2)
    ds = record(cfg, before_step=before_step)
    assert ds.total_episodes == 2
    ep0 = read_episode(ds, 0)
    n = len(ep0.actions)
    expected = [2] * 5 + [0] * 3 + [2] * (n - 8)
    assert ep0.actions.tolist() == expected
    assert ep0.terminations[-1]  # reached the edge
    ep1 = read_episode(ds, 1)
    assert ep1.actions.tolist() == [2, 2, 2]  # "2" still held; Esc after 3 steps
    assert ep1.truncations[-1] and not ep1.terminations.any()
    assert [m["player"] for m in episode_metadata(ds)] == ["keyboard", "keyboard"]
    assert ds.storage.metadata["algorithm_name"] == "human-keyboard"


def test_keyboard_maps_atari_meanings_and_box_axes():
    import gymnasium as gym

    class Meanings(gym.Wrapper):
        def get_action_meanings(self):
            return ["NOOP", "FIRE", "RIGHT", "LEFT", "UPRIGHT"]

    env = Meanings(gym.make(PIXEL_ID))
    env.action_space = gym.spaces.Discrete(5)
    keys = KeyboardActions(env)
    assert keys.action(set()) == 0
    assert keys.action({pygame.K_SPACE}) == 1
    assert keys.action({pygame.K_LEFT}) == 3
    assert keys.action({pygame.K_UP, pygame.K_RIGHT}) == 4
    assert keys.action({pygame.K_LEFT, pygame.K_RIGHT}) == 0  # no such combination: NOOP
    arm = KeyboardActions(gym.make(PIXEL_ARM_ID))
    np.testing.assert_array_equal(arm.action({pygame.K_RIGHT, pygame.K_DOWN}), [1.0, -1.0])


def test_record_refuses_bad_config():
    with pytest.raises(ValueError, match="episodes"):
        RecordConfig(episodes=0)


def test_record_breakout_at_a_non_square_size():
    def before_step(step):
        if step == 3:
            _key(pygame.KEYDOWN, pygame.K_ESCAPE)

    cfg = RecordConfig(env_id="embscale/Breakout-v0", dataset_id="embscale/breakout/wide-v0",
                       fps=0, scale=1, size=(36, 60))
    ds = record(cfg, before_step=before_step)
    assert read_episode(ds, 0).observations.shape == (4, 36, 60, 3)
