"""Frames for tokenizer training and evaluation, read from a Minari dataset's episode splits.

Training frames are kept in RAM as uint8 up to a cap (``max_cached_frames``; 64x64 RGB frames take
12 KiB each, so the default 100,000 is about 1.2 GiB). A split that fits is loaded once; a larger
one streams through a ring buffer that takes in one new episode every few steps, so the dataset is
never held in memory as a whole.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from offline_data.reader import WindowReader

logger = logging.getLogger(__name__)


def open_split(dataset: Any, split: str, split_seed: int = 0) -> WindowReader:
    """A reader over one episode split (``train``/``val``/``test``) of a dataset."""
    return WindowReader(dataset, seq_len=1, split=split, split_seed=split_seed)


def frame_shape(reader: WindowReader) -> tuple[int, int, int]:
    """(H, W, 3) of the dataset's frames."""
    shape = tuple(int(s) for s in reader.dataset.observation_space.shape)
    if len(shape) != 3 or shape[2] != 3:
        raise ValueError(f"dataset {reader.dataset.id!r} has observations of shape {shape}; the "
                         "tokenizer needs uint8 RGB frames (H, W, 3)")
    return shape  # type: ignore[return-value]


class FrameCache:
    """Uniformly sampled training frames from a split (see module docstring).

    Args:
        reader: the split to read.
        capacity: most frames held in RAM.
        seed: seed of the episode order when streaming.
    """

    def __init__(self, reader: WindowReader, capacity: int, seed: int = 0):
        if capacity < 1:
            raise ValueError(f"max_cached_frames must be >= 1, got {capacity}")
        self.reader = reader
        total = reader.num_steps
        self.capacity = min(int(capacity), total)
        self.streaming = total > capacity
        self.frames = np.empty((self.capacity, *frame_shape(reader)), dtype=np.uint8)
        self._order = list(reader.episode_ids)
        if self.streaming:
            np.random.default_rng(seed).shuffle(self._order)
            logger.info("train split has %d frames > cache of %d: streaming episodes", total,
                        capacity)
        self._next_episode = 0
        self._pos = 0
        self.size = 0
        while self.size < self.capacity:
            self._load_next_episode()

    def _load_next_episode(self) -> None:
        episode_id = self._order[self._next_episode % len(self._order)]
        self._next_episode += 1
        frames = self.reader.episode(episode_id)[0]
        if len(frames) > self.capacity:
            frames = frames[: self.capacity]
        n = len(frames)
        idx = (self._pos + np.arange(n)) % self.capacity
        self.frames[idx] = frames
        self._pos = int((self._pos + n) % self.capacity)
        self.size = min(self.size + n, self.capacity)

    def refresh(self) -> None:
        """Stream one more episode in (overwriting the oldest frames); no-op when all fit."""
        if self.streaming:
            self._load_next_episode()

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """uint8 (n, H, W, 3) frames drawn uniformly with replacement."""
        idx = torch.randint(0, self.size, (n,), generator=generator)
        return torch.from_numpy(self.frames[idx.numpy()])


def held_out_frames(reader: WindowReader, num_frames: int) -> np.ndarray:
    """Up to ``num_frames`` frames spread evenly over a held-out split, uint8 (N, H, W, 3)."""
    total = reader.num_steps
    stride = max(1, total // max(num_frames, 1))
    kept, seen = [], 0
    for _, (frames, *_rest) in reader.iter_episodes():
        idx = np.arange(len(frames))
        take = idx[(seen + idx) % stride == 0]
        kept.append(frames[take])
        seen += len(frames)
        if sum(len(k) for k in kept) >= num_frames:
            break
    out = np.concatenate(kept)[:num_frames]
    return np.ascontiguousarray(out)
