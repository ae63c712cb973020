import pickle

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import envs
from envs.atari import AtariImageEnv
from envs.images import check_crop, resize_frame, sprite_dilation
from envs.registration import BREAKOUT_PLAYFIELD


def test_ids_registered_on_import_and_idempotent():
    envs.register_envs()
    envs.register_envs()
    assert "embscale/Breakout-v0" in gymnasium.registry
    assert "embscale/FetchPickAndPlace-v0" in gymnasium.registry
    spec = gymnasium.spec("embscale/Breakout-v0")
    assert spec.max_episode_steps == 4500
    assert spec.kwargs["size"] == 64 and spec.kwargs["frameskip"] == 4


def test_breakout_passes_gymnasium_and_sb3_checkers():
    env = envs.make("embscale/Breakout-v0")
    check_env(env.unwrapped, skip_render_check=False)
    sb3_check_env(env.unwrapped, warn=True)
    env.close()

def test_breakout_refuses_actions_outside_its_space():
    env = envs.make("embscale/Breakout-v1", size=32).unwrapped
    env.reset(seed=0)
    for bad in (7, -1, 1.5, np.array([1])):  # an index of -1 would play the last action
        with pytest.raises(ValueError, match="outside the action space Discrete\\(4\\)"):
            env.step(bad)
    assert env.step(np.int64(1))[0].shape == (32, 32, 3)



@pytest.mark.parametrize("size", [64, 128])
def test_breakout_observations_are_square_uint8_rgb(size):
    env = envs.make("embscale/Breakout-v0", size=size)
    assert env.observation_space == gymnasium.spaces.Box(0, 255, (size, size, 3), np.uint8)
    assert env.action_space == gymnasium.spaces.Discrete(4)
    obs, info = env.reset(seed=0)
    assert obs.shape == (size, size, 3) and obs.dtype == np.uint8
    assert info["ram"].shape == (128,) and info["ram"].dtype == np.uint8
    obs, reward, terminated, truncated, info = env.step(1)
    assert obs.shape == (size, size, 3) and obs.std() > 0  # a real picture, not a blank
    env.close()


def test_breakout_is_recreated_from_its_spec_alone():
    # What Minari's recover_environment does: rebuild from the JSON spec (id + kwargs).
    env = envs.make("embscale/Breakout-v0", size=32)
    spec = gymnasium.envs.registration.EnvSpec.from_json(env.spec.to_json())
    again = gymnasium.make(spec)
    assert again.observation_space.shape == (32, 32, 3)
    a, _ = env.reset(seed=3)
    b, _ = again.reset(seed=3)
    for action in [1, 2, 2, 3, 0]:
        a = env.step(action)[0]
        b = again.step(action)[0]
    np.testing.assert_array_equal(a, b)
    assert isinstance(pickle.loads(pickle.dumps(env.unwrapped)), AtariImageEnv)
    env.close()
    again.close()


def test_resize_keeps_the_ball_visible():
    frame = np.zeros((210, 160, 3), np.uint8)
    frame[120:124, 71:73] = (200, 72, 72)  # a 2x4-pixel ball
    plain = resize_frame(frame, 64)
    assert plain.shape == (64, 64, 3) and 0 < plain[..., 0].max() < 200  # a dim smear
    window = sprite_dilation(frame.shape[:2], 64)
    assert window == (3, 4)
    thick = resize_frame(frame, 64, window)
    # The dilated ball keeps its full colour in at least one pixel and stays where it was.
    assert (thick == (200, 72, 72)).all(-1).any()
    ys, xs = np.nonzero(thick[..., 0])
    assert abs(ys.mean() - 122 * 64 / 210) < 1.5 and abs(xs.mean() - 72 * 64 / 160) < 1.5


def test_breakout_dilates_by_default_and_can_be_told_not_to():
    assert envs.make("embscale/Breakout-v0").unwrapped.dilate == (3, 4)
    assert envs.make("embscale/Breakout-v0", size=128).unwrapped.dilate == (2, 2)
    assert envs.make("embscale/Breakout-v0", dilate="none").unwrapped.dilate == (1, 1)
    assert envs.make("embscale/Breakout-v0", dilate=(5, 7)).unwrapped.dilate == (5, 7)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"size": 0}, ValueError),
        ({"size": 64.0}, TypeError),
        ({"frameskip": 0}, ValueError),
        ({"repeat_action_probability": 1.5}, ValueError),
        ({"dilate": "max"}, ValueError),
        ({"dilate": (0, 3)}, ValueError),
        ({"dilate": 3}, TypeError),
        ({"crop": (0, 300, 0, 160)}, ValueError),
        ({"crop": (10, 5, 0, 160)}, ValueError),
        ({"crop": 32}, TypeError),
        ({"frame_max": "yes"}, TypeError),
    ],
)
def test_bad_breakout_kwargs_are_named(kwargs, error):
    with pytest.raises(error, match=next(iter(kwargs))):
        envs.make("embscale/Breakout-v0", **kwargs)


def test_unknown_suite_id_lists_the_known_ones():
    with pytest.raises(ValueError, match="embscale/Breakout-v0"):
        envs.make("embscale/Pong-v0")


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("env_id", ["embscale/Breakout-v0", "embscale/Breakout-v1"])
def test_minari_recovers_breakout_from_a_dataset(env_id):
    minari = pytest.importorskip("minari")
    from minari.data_collector import EpisodeBuffer

    env = envs.make(env_id, size=32)
    obs, _ = env.reset(seed=0)
    frames, rewards, terms, truncs = [obs], [], [], []
    for t in range(4):
        obs, reward, terminated, truncated, _ = env.step(1)
        frames.append(obs)
        rewards.append(reward)
        terms.append(terminated)
        truncs.append(truncated or t == 3)
    episode = EpisodeBuffer(
        observations=np.stack(frames),
        actions=np.ones(4, np.int64),
        rewards=rewards,
        terminations=terms,
        truncations=truncs,
    )
    dataset = minari.create_dataset_from_buffers(
        f"embscale/test/{env_id[9:].lower()}", [episode], env=env, algorithm_name="test",
        data_format="arrow"
    )
    env.close()
    recovered = dataset.recover_environment()
    assert recovered.spec.id == env_id
    # The frames' preprocessing travels with the dataset's env spec.
    assert recovered.unwrapped.crop == env.unwrapped.crop
    assert recovered.unwrapped.frame_max == env.unwrapped.frame_max
    assert recovered.observation_space.shape == (32, 32, 3)
    assert recovered.reset(seed=0)[0].shape == (32, 32, 3)
    recovered.close()


def test_breakout_v1_crops_the_playfield_and_maxes_two_frames_v0_does_not():
    v1, v0 = envs.make(envs.BREAKOUT_ID).unwrapped, envs.make("embscale/Breakout-v0").unwrapped
    assert envs.BREAKOUT_ID == "embscale/Breakout-v1"
    assert v1.crop == BREAKOUT_PLAYFIELD and v1.frame_max is True
    assert v1.dilate == (7, 9)  # a ball of about 4x5 pixels at 64x64 instead of 1x2
    assert v0.crop is None and v0.frame_max is False and v0.dilate == (3, 4)


def test_crop_keeps_only_the_given_screen_box():
    frame = np.zeros((210, 160, 3), np.uint8)
    frame[:32] = 142  # score band and top wall, cropped away
    frame[100:104, 70:72] = (200, 72, 72)
    out = resize_frame(frame, 64, crop=BREAKOUT_PLAYFIELD)
    np.testing.assert_array_equal(out, resize_frame(frame[32:196, 8:152], 64))
    assert 0 < out[..., 1].max() <= 72  # no grey: the wall is gone, the ball is kept
    assert check_crop(None, (210, 160)) is None


def test_frame_max_shows_both_last_frames_and_leaves_the_game_unchanged():
    # Same seed and actions: the same game (RAM, rewards), frames at least as bright.
    plain = AtariImageEnv(dilate="none")
    maxed = AtariImageEnv(dilate="none", frame_max=True)
    a, _ = plain.reset(seed=1)
    b, _ = maxed.reset(seed=1)
    np.testing.assert_array_equal(a, b)  # the first frame of an episode is a single frame
    brighter = 0
    for action in [1] * 5 + [2, 2, 3, 3, 0] * 6:
        a, ra, *_, ia = plain.step(action)
        b, rb, *_, ib = maxed.step(action)
        np.testing.assert_array_equal(ia["ram"], ib["ram"])
        assert ra == rb and (b >= a).all()
        brighter += int((b > a).any())
    assert brighter > 10  # the moving ball and paddle leave their previous position in view


@pytest.mark.parametrize("env_id", ["embscale/Breakout-v0", "embscale/Breakout-v1"])
def test_deferred_frames_are_the_observations_made_later(env_id):
    """``frame_maker()`` of the raw screens a deferred env hands out gives its observations."""
    plain, deferred = envs.make(env_id), envs.make(env_id)
    screens = []
    deferred.unwrapped.defer_frames(screens.append)
    make = deferred.unwrapped.frame_maker()
    rng = np.random.default_rng(0)
    observed = [plain.reset(seed=5)[0]]
    blank = deferred.reset(seed=5)[0]
    assert blank.shape == observed[0].shape and not blank.any()
    for action in rng.integers(0, 4, 60):
        observed.append(plain.step(int(action))[0])
        assert not deferred.step(int(action))[0].any()
    assert len(screens) == len(observed) == 61
    if env_id.endswith("v1"):  # the playfield, cropped before it travels
        assert screens[0].shape == (164, 144, 3)
    for screen, obs in zip(screens, observed, strict=True):
        np.testing.assert_array_equal(make(screen), obs)
    deferred.unwrapped.defer_frames(None)
    assert deferred.step(1)[0].any()
