import gymnasium as gym
import minari
import numpy as np
import pytest
from gymnasium import spaces

from offline_data.collect import RandomPolicy, collect
from offline_data.datasets import (
    dataset_discretizer,
    episode_metadata,
    list_dataset_ids,
    load_dataset,
    split_episodes,
)
from offline_data.discretize import discretizer_for_space
from offline_data.minari_writer import MinariWriter, create_minari_dataset
from offline_data.reader import EmptySplitError, WindowReader, read_episode
from tests.helpers.pixel_envs import PIXEL_ARM_ID, PIXEL_ID, STATE_ID


class RecordingPolicy:
    """Random policy that keeps every observation it was shown (to check frames bit for bit)."""

    def __init__(self, space):
        self.inner = RandomPolicy(space, seed=1)
        self.seen = []
        self.skill = None
        self.bound = None

    def bind(self, env):
        self.bound = env

    def set_skill(self, skill):
        self.skill = skill

    def predict(self, observation, state=None, episode_start=None, deterministic=False):
        if episode_start is not None and episode_start[0]:
            self.seen.append([])
        self.seen[-1].append(observation.copy())
        return self.inner.predict(observation, state, episode_start, deterministic)


def test_collect_frames_bit_identical_and_metadata():
    env = gym.make(PIXEL_ID)
    policy = RecordingPolicy(env.action_space)
    ds = collect(env, policy, 3, "embscale/pixel/random-v0", skills=[0.1, 0.9],
                 description="tiny", progress=False)
    assert policy.bound is env
    assert ds.total_episodes == 3
    reloaded = minari.load_dataset("embscale/pixel/random-v0")
    metas = episode_metadata(reloaded)
    assert [m["skill"] for m in metas] == [0.1, 0.9, 0.1]
    for i, ep in enumerate(reloaded.iterate_episodes()):
        seen = np.stack(policy.seen[i])
        steps = len(ep.actions)
        assert ep.observations.dtype == np.uint8
        # Every frame the policy saw is stored bit for bit (lossless, no JPEG).
        np.testing.assert_array_equal(ep.observations[:steps], seen)
        assert metas[i]["return"] == pytest.approx(float(ep.rewards.sum()))
        assert ep.terminations[-1] or ep.truncations[-1]
        fast = read_episode(reloaded, i)
        np.testing.assert_array_equal(fast.observations, ep.observations)
        np.testing.assert_array_equal(fast.actions, ep.actions)
        np.testing.assert_array_equal(fast.rewards, ep.rewards)
    meta = reloaded.storage.metadata
    assert meta["description"] == "tiny"
    assert meta["data_format"] == "arrow" and meta["jpeg_encoding"] is False
    assert dataset_discretizer(reloaded).vocab_sizes == (3,)
    recovered = reloaded.recover_environment()
    assert recovered.spec.id == PIXEL_ID
    assert "embscale/pixel/random-v0" in list_dataset_ids()


def test_continuous_actions_need_a_discretizer_spec():
    env = gym.make(PIXEL_ARM_ID)
    with pytest.raises(ValueError, match="needs a discretizer spec"):
        collect(env, RandomPolicy(env.action_space), 1, "embscale/arm/random-v0", progress=False)
    ds = collect(env, RandomPolicy(env.action_space), 2, "embscale/arm/random-v0", buckets=500,
                 max_steps_per_episode=5, progress=False)
    d = dataset_discretizer(ds)
    assert d.vocab_sizes == (500, 500)
    ep = read_episode(ds, 0)
    assert ep.actions.shape == (5, 2) and ep.actions.dtype == np.float32
    assert ds[0].truncations[-1]
    with pytest.raises(ValueError, match="no episodes"):
        create_minari_dataset("embscale/arm/empty-v0", [], env=env,
                              discretizer=discretizer_for_space(env.action_space, 11))
    # A dataset whose metadata lacks the spec (e.g. from another tool): the reader refuses it.
    ds.storage.update_metadata({"action_discretizer": ""})
    with pytest.raises(ValueError, match="continuous actions but no"):
        dataset_discretizer(ds)


def test_non_image_observations_are_refused():
    env = gym.make(STATE_ID)
    with pytest.raises(ValueError, match="non-image observations"):
        collect(env, RandomPolicy(env.action_space), 1, "embscale/state/random-v0", progress=False)
    with pytest.raises(ValueError, match="non-image observations"):
        MinariWriter("embscale/state/x-v0", observation_space=spaces.Box(0, 1, (4,)),
                     action_space=spaces.Discrete(2))


def test_existing_id_refused_unless_overwrite():
    env = gym.make(PIXEL_ID)
    collect(env, RandomPolicy(env.action_space), 1, "embscale/pixel/x-v0", progress=False)
    with pytest.raises(FileExistsError, match="--overwrite"):
        collect(env, RandomPolicy(env.action_space), 2, "embscale/pixel/x-v0", progress=False)
    assert load_dataset("embscale/pixel/x-v0").total_episodes == 1
    ds = collect(env, RandomPolicy(env.action_space), 2, "embscale/pixel/x-v0", overwrite=True,
                 progress=False)
    assert ds.total_episodes == 2
    assert list_dataset_ids() == ["embscale/pixel/x-v0"]


def test_unknown_id_lists_what_exists():
    env = gym.make(PIXEL_ID)
    collect(env, RandomPolicy(env.action_space), 1, "embscale/pixel/known-v0", progress=False)
    with pytest.raises(FileNotFoundError, match=r"embscale/pixel/known-v0"):
        load_dataset("embscale/pixel/unknown-v0")
    with pytest.raises(ValueError, match="malformed"):
        MinariWriter("no version here!", env=env)


def test_failed_write_leaves_nothing(minari_datasets_path):
    env = gym.make(PIXEL_ID)

    class Boom(RandomPolicy):
        calls = 0

        def predict(self, *args, **kwargs):
            Boom.calls += 1
            if Boom.calls > 30:
                raise KeyboardInterrupt
            return super().predict(*args, **kwargs)

    with pytest.raises(KeyboardInterrupt):
        collect(env, Boom(env.action_space), 50, "embscale/pixel/boom-v0", progress=False)
    assert list_dataset_ids() == []
    assert not (minari_datasets_path / "embscale/pixel/boom-v0").exists()
    staging = minari_datasets_path / ".embscale-staging"
    assert not staging.exists() or not any(staging.iterdir())


def test_split_episodes_deterministic_and_disjoint():
    ids = list(range(50))
    a, b = split_episodes(ids, seed=3), split_episodes(ids, seed=3)
    assert a == b
    assert (len(a["train"]), len(a["val"]), len(a["test"])) == (40, 5, 5)
    assert sorted(a["train"] + a["val"] + a["test"]) == ids
    assert split_episodes(ids, seed=4) != a
    small = split_episodes(range(3))
    assert all(len(v) == 1 for v in small.values())
    with pytest.raises(ValueError, match="fractions"):
        split_episodes(ids, (0.5, 0.5, 0.5))


def test_window_reader_never_crosses_episodes():
    env = gym.make(PIXEL_ID)
    ds = collect(env, RandomPolicy(env.action_space), 12, "embscale/pixel/win-v0",
                 max_steps_per_episode=25, progress=False)
    reader = WindowReader(ds, seq_len=4, split="all")
    # Tag each frame with (episode, step) via a lookup of its bytes.
    where = {}
    for ep_id, (frames, tokens, rewards, _) in reader.iter_episodes():
        assert tokens.shape == (len(rewards), 1)
        for t, f in enumerate(frames):
            where.setdefault(f.tobytes(), (ep_id, t))
    count = 0
    for batch in reader.iter_batches(batch_size=5, seed=0, stride=1):
        assert batch.frames.shape[1:] == (4, 16, 16, 3) and batch.frames.dtype == np.uint8
        assert batch.actions.shape[1:] == (4, 1) and batch.actions.dtype == np.int64
        assert batch.rewards.dtype == np.float32 and batch.terminations.dtype == bool
        for w in batch.frames:
            tags = [where[f.tobytes()] for f in w]
            assert len({e for e, _ in tags}) == 1  # one episode per window
            assert [t for _, t in tags] == list(range(tags[0][1], tags[0][1] + 4))
        # Terminations may only be set on the last step of a window.
        assert not batch.terminations[:, :-1].any()
        count += len(batch.frames)
    assert count == reader.num_windows
    train = WindowReader(ds, seq_len=4, split="train")
    test = WindowReader(ds, seq_len=4, split="test")
    assert not set(train.episode_ids) & set(test.episode_ids)
    first = [b.frames for b in train.iter_batches(4, seed=1)]
    again = [b.frames for b in train.iter_batches(4, seed=1)]
    assert all(np.array_equal(x, y) for x, y in zip(first, again, strict=True))
    with pytest.raises(ValueError, match="seq_len"):
        WindowReader(ds, seq_len=1000, split="all")


def test_black_frames_are_refused():
    from tests.helpers import pixel_envs

    class Black(pixel_envs.PixelEnv):
        def _obs(self):
            return np.zeros((self.size, self.size, 3), np.uint8)

    env = gym.wrappers.TimeLimit(Black(), 5)
    with pytest.raises(RuntimeError, match="black frames"):
        collect(env, RandomPolicy(env.action_space), 2, "embscale/pixel/black-v0", progress=False)
    assert list_dataset_ids() == []


def test_a_dataset_with_jpeg_frames_is_warned_about_and_keeps_its_env(recwarn):
    """minari.combine_datasets writes JPEG frames and drops our metadata: reading it says so."""
    from offline_data.info import dataset_info

    for i in (1, 2):
        env = gym.make(PIXEL_ID)
        collect(env, RandomPolicy(env.action_space, seed=i), 1, f"embscale/pixel/part{i}-v0",
                progress=False)
    load_dataset("embscale/pixel/part1-v0")
    assert not [w for w in recwarn if "JPEG" in str(w.message)]  # ours are lossless
    minari.combine_datasets([minari.load_dataset(f"embscale/pixel/part{i}-v0") for i in (1, 2)],
                            "embscale/pixel/combined-v0")
    with pytest.warns(UserWarning, match="lossy JPEG.*jpeg_encoding=False"):
        load_dataset("embscale/pixel/combined-v0")
    assert dataset_info("embscale/pixel/combined-v0").env_id == PIXEL_ID


def test_a_split_left_without_episodes_says_so():
    env = gym.make(PIXEL_ID)
    collect(env, RandomPolicy(env.action_space, seed=0), 1, "embscale/pixel/one-v0",
            progress=False)
    assert WindowReader("embscale/pixel/one-v0", 1, split="train").episode_ids  # the one episode
    with pytest.raises(ValueError, match="split 'val'.*has no episode: the dataset's 1 "
                                         "episode.*at least 3 episodes.*hold episodes"):
        WindowReader("embscale/pixel/one-v0", 1, split="val")
    with pytest.raises(EmptySplitError):  # typed, so a command can name its own option
        WindowReader("embscale/pixel/one-v0", 1, split="test")


def test_encode_names_its_splits_option_for_an_empty_split(monkeypatch):
    import argparse

    import worldmodels.tokenize_dataset
    from worldmodels.tokenizer_cli import _encode

    def empty(*args, **kwargs):
        raise EmptySplitError("split 'val' of 'x/y-v0' has no episode: ...")

    monkeypatch.setattr(worldmodels.tokenize_dataset, "encode_dataset", empty)
    args = argparse.Namespace(threads=1, workers=1, tokenizer="t.pt", dataset="x/y-v0",
                              out="o", splits="train,val", batch_size=8, device="cpu",
                              overwrite=False, no_progress=True)
    with pytest.raises(ValueError, match=r"has no episode: \.\.\. \(here: --splits train\)"):
        _encode(args)


def test_a_file_that_is_no_video_is_refused_in_one_line(tmp_path):
    from offline_data.importers.gameplay import _video_meta

    bad = tmp_path / "clip.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(ValueError, match=r"clip\.mp4 is not a readable video \(ffmpeg: ") as e:
        _video_meta(bad)
    assert len(str(e.value)) < 400 and "\n" not in str(e.value)  # no ffmpeg banner
