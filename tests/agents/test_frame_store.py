"""BC-CNN's decoded frames live in one file per split that every process maps read-only."""

from __future__ import annotations

import numpy as np
import pytest

from agents import frame_cache
from agents.frame_store import MAX_FILES, cache_dir, frames_path, stored_split


def _episodes(lengths, shape=(4, 4, 3), seed=0):
    rng = np.random.default_rng(seed)
    for n in lengths:
        yield (rng.integers(0, 256, (n, *shape), dtype=np.uint8), rng.integers(0, 4, (n, 1)),
               rng.random(n).astype(np.float32), np.zeros(n, bool))


def _never():
    raise AssertionError("the episodes were decoded again")
    yield  # pragma: no cover


def test_a_split_is_written_once_then_mapped():
    frames, actions, rewards, terms, lengths = stored_split(
        ("k", 1), 12, (4, 4, 3), np.uint8, _episodes([5, 7]))
    expected = np.concatenate([ep[0] for ep in _episodes([5, 7])])
    assert isinstance(frames, np.memmap) and np.array_equal(frames, expected)
    assert lengths.tolist() == [5, 7] and actions.shape == (12, 1) and rewards.shape == (12,)
    assert not frames.flags.writeable
    with pytest.raises(ValueError):
        frames[0, 0, 0, 0] = 1
    again = stored_split(("k", 1), 12, (4, 4, 3), np.uint8, _never())
    assert np.array_equal(again[0], expected) and np.array_equal(again[1], actions)


def test_an_interrupted_or_wrong_write_leaves_no_file():
    def broken():
        yield from _episodes([5])
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        stored_split(("k", 2), 12, (4, 4, 3), np.uint8, broken())
    with pytest.raises(ValueError, match="5 frames written, 12 announced"):
        stored_split(("k", 2), 12, (4, 4, 3), np.uint8, _episodes([5]))
    with pytest.raises(ValueError, match="more than the 4 frames announced"):
        stored_split(("k", 2), 4, (4, 4, 3), np.uint8, _episodes([5]))
    assert not frames_path(("k", 2)).exists()
    assert list(cache_dir().iterdir()) == []  # no temporary file left behind
    # a shape that does not match what is stored is written anew, not misread
    stored_split(("k", 3), 5, (4, 4, 3), np.uint8, _episodes([5]))
    assert stored_split(("k", 3), 5, (2, 2, 3), np.uint8, _episodes([5], (2, 2, 3)))[0].shape == (
        5, 2, 2, 3)


def test_only_the_most_recently_used_files_are_kept():
    for k in range(MAX_FILES + 2):
        stored_split(("evict", k), 3, (2, 2, 3), np.uint8, _episodes([3], (2, 2, 3)))
    kept = sorted(cache_dir().glob("frames-*.npy"))
    assert len(kept) == MAX_FILES and len(sorted(cache_dir().glob("frames-*.npz"))) == MAX_FILES
    assert frames_path(("evict", MAX_FILES + 1)) in kept and frames_path(("evict", 0)) not in kept


def test_frame_data_reads_its_windows_from_the_file(monkeypatch):
    """A second process (here: an emptied in-process cache) maps the file instead of decoding
    the episodes again, and sees the same batches."""
    from agents.frame_data import FrameDataSource
    from offline_data.reader import WindowReader
    from tests.helpers.tokenizers import make_dataset

    make_dataset("embscale/synthetic/store-v0", num_episodes=6, steps=14, size=16)
    first = FrameDataSource("embscale/synthetic/store-v0", seq_len=4, image_size=8)
    batch = first.loader("train", batch_size=3, seed=1).batch_at(2)
    assert batch.frames.dtype.is_floating_point and len(list(cache_dir().glob("*.npy"))) == 1
    frame_cache.clear()
    monkeypatch.setattr(WindowReader, "iter_episodes", lambda self: _never())
    second = FrameDataSource("embscale/synthetic/store-v0", seq_len=4, image_size=8)
    again = second.loader("train", batch_size=3, seed=1).batch_at(2)
    for a, b in zip(batch, again, strict=True):
        assert a.dtype == b.dtype and bool((a == b).all())
