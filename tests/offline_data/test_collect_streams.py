"""Collecting one dataset from several env processes: the order, the caps, and failures."""

import numpy as np
import pytest

import envs
from offline_data.collect import collect, resolve_policy
from offline_data.collect_streams import can_pipeline, collect_streams, stream_seed
from offline_data.datasets import datasets_root, list_dataset_ids
from tests.helpers.pixel_envs import PIXEL_ID


def _episodes(ds):
    return [(e.observations, e.actions) for e in ds.iterate_episodes()]


def test_streams_interleave_single_stream_collections():
    """Episode i is episode i // K of stream i % K, which is ``collect`` with the stream's seed."""
    ds = collect_streams(PIXEL_ID, "random", 5, "embscale/pixel/streams-v0", streams=2, seed=3,
                         max_steps_per_episode=12, progress=False)
    assert ds.total_episodes == 5
    assert ds.storage.metadata["collection_streams"] == 2
    assert ds.storage.metadata["collection_seed"] == 3
    got = _episodes(ds)
    for k, count in ((0, 3), (1, 2)):
        env = envs.make(PIXEL_ID)
        seed = stream_seed(3, k)
        alone = collect(env, resolve_policy("random", env, seed=seed), count,
                        f"embscale/pixel/stream{k}-v0", seed=seed, max_steps_per_episode=12,
                        progress=False)
        for (obs_a, act_a), (obs_b, act_b) in zip(_episodes(alone), got[k::2], strict=True):
            np.testing.assert_array_equal(obs_a, obs_b)
            np.testing.assert_array_equal(act_a, act_b)


def test_streams_are_reproducible_and_distinct():
    a = collect_streams(PIXEL_ID, "random", 4, "embscale/pixel/again-v0", streams=2,
                        max_steps_per_episode=10, progress=False)
    b = collect_streams(PIXEL_ID, "random", 4, "embscale/pixel/again-v1", streams=2,
                        max_steps_per_episode=10, progress=False)
    for (obs_a, _), (obs_b, _) in zip(_episodes(a), _episodes(b), strict=True):
        np.testing.assert_array_equal(obs_a, obs_b)
    first, second = _episodes(a)[:2]  # the two streams play different episodes
    assert not np.array_equal(first[0][0], second[0][0])
    assert len({stream_seed(s, k) for s in range(5) for k in range(4)}) == 20


def test_max_total_steps_counts_in_dataset_order():
    full = collect_streams(PIXEL_ID, "random", 6, "embscale/pixel/full-v0", streams=3,
                           max_steps_per_episode=10, progress=False)
    steps = [len(a) for _, a in _episodes(full)]
    cap = sum(steps[:2]) + 1  # reached during the third episode
    capped = collect_streams(PIXEL_ID, "random", 6, "embscale/pixel/capped-v0", streams=3,
                             max_steps_per_episode=10, max_total_steps=cap, progress=False)
    assert capped.total_episodes == 3
    for (obs_a, _), (obs_b, _) in zip(_episodes(capped), _episodes(full)[:3], strict=True):
        np.testing.assert_array_equal(obs_a, obs_b)


def test_a_failing_stream_leaves_no_dataset():
    with pytest.raises(RuntimeError, match=r"collection stream .* failed(.|\n)*planned error"):
        collect_streams(PIXEL_ID, "tests.helpers.pixel_envs:FailingPolicy", 8,
                        "embscale/pixel/failing-v0", streams=2, max_steps_per_episode=10,
                        progress=False)
    assert "embscale/pixel/failing-v0" not in list_dataset_ids()
    staging = datasets_root() / ".embscale-staging"
    assert not staging.exists() or not any(staging.iterdir())


def test_streams_need_an_env_id_and_a_policy_spec():
    env = envs.make(PIXEL_ID)
    with pytest.raises(TypeError, match="policy spec string"):
        collect_streams(env, "random", 2, "embscale/pixel/bad-v0", progress=False)
    with pytest.raises(ValueError, match="streams=0"):
        collect_streams(PIXEL_ID, "random", 2, "embscale/pixel/bad-v0", streams=0)


def test_one_stream_is_pipelined_and_writes_what_collect_writes():
    """One stream plays in a child while this process makes the frames: the data are collect's."""
    import agents.demonstrators  # noqa: F401  (registers the scripted Breakout player)

    breakout = envs.BREAKOUT_ID
    env = envs.make(breakout)
    scripted = resolve_policy("scripted", env, seed=4, skill=(0.7, 1.0))
    assert can_pipeline(env, scripted)
    assert not can_pipeline(env, object())  # a policy that may read observations
    assert not can_pipeline(envs.make(PIXEL_ID), scripted)  # an env that cannot defer frames
    kw = dict(policy_kwargs={"skill": (0.7, 1.0)}, seed=4, max_steps_per_episode=150,
              progress=False)
    piped = collect_streams(breakout, "scripted", 3, "embscale/breakout/piped-v0", streams=1,
                            max_total_steps=320, **kw)
    alone = collect(env, scripted, 3, "embscale/breakout/alone-v0", seed=4,
                    max_steps_per_episode=150, max_total_steps=320, progress=False)
    assert piped.total_episodes == alone.total_episodes >= 2
    assert piped.storage.metadata["collection_seed"] == 4
    assert "collection_streams" not in piped.storage.metadata  # the same dataset as collect's
    for a, b in zip(piped.iterate_episodes(), alone.iterate_episodes(), strict=True):
        np.testing.assert_array_equal(a.observations, b.observations)
        np.testing.assert_array_equal(a.actions, b.actions)
        np.testing.assert_array_equal(a.rewards, b.rewards)
        np.testing.assert_array_equal(a.truncations, b.truncations)
        assert a.observations.any()
    staging = datasets_root() / ".embscale-staging"
    assert not staging.exists() or not any(staging.iterdir())  # the screens' file is gone


def test_a_failing_pipelined_stream_leaves_no_dataset():
    with pytest.raises(RuntimeError, match=r"collection stream .* failed(.|\n)*planned error"):
        collect_streams(envs.BREAKOUT_ID, "tests.helpers.pixel_envs:FailingRamPolicy", 3,
                        "embscale/breakout/failing-v0", streams=1, max_steps_per_episode=30,
                        progress=False)
    assert "embscale/breakout/failing-v0" not in list_dataset_ids()
    staging = datasets_root() / ".embscale-staging"
    assert not staging.exists() or not any(staging.iterdir())
