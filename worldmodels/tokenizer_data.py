"""Frames for tokenizer training and evaluation, read from a Minari dataset's episode splits.

Training frames are kept in RAM as uint8 up to a cap (``max_cached_frames``; 64x64 RGB frames take
12 KiB each, so the default 100,000 is about 1.2 GiB). A split that fits is loaded once; a larger
one streams through a ring buffer that takes in one new episode every few steps, so the dataset is
never held in memory as a whole. The ring's position (:meth:`FrameCache.state_dict`) is saved in
checkpoints, and a resumed run rebuilds the ring exactly as it was by reloading the episodes that it
held.
"""

from __future__ import annotations

import logging
import warnings
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
        state: a :meth:`state_dict` of a cache over the same split, capacity and seed: the ring
            is rebuilt to hold the same frames at the same positions (when it is from another
            cache, a warning, and the ring starts afresh).
    """

    def __init__(self, reader: WindowReader, capacity: int, seed: int = 0,
                 state: dict[str, Any] | None = None):
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
        if state is not None and self.streaming:
            self._restore(state)
        while self.size < self.capacity:
            self._load_next_episode()

    def state_dict(self) -> dict[str, Any]:
        """What determines the ring's contents: episode order, episodes loaded, write position."""
        return {"order": [int(i) for i in self._order], "capacity": self.capacity,
                "next_episode": self._next_episode, "pos": self._pos, "size": self.size}

    def _restore(self, state: dict[str, Any]) -> None:
        """Reload the episodes whose frames the ring of ``state`` still holds, oldest first."""
        if (list(state.get("order", ())) != self._order
                or state.get("capacity") != self.capacity):
            msg = ("the saved frame cache is of another split, capacity or seed; the ring of "
                   "streamed frames starts afresh (training is not bit-exact)")
            warnings.warn(msg, stacklevel=3)
            logger.warning(msg)
            return
        end = int(state["next_episode"])
        lengths = [min(self.reader.episode_steps[self._order[k % len(self._order)]],
                       self.capacity) for k in range(end)]
        first, covered = end, 0
        while first > 0 and covered < self.capacity:  # the newest loads fill the ring
            first -= 1
            covered += lengths[first]
        if first > 0:  # older loads are wholly overwritten: start where `first` was written
            self._pos = (int(state["pos"]) - covered) % self.capacity
        self._next_episode = first
        while self._next_episode < end:
            self._load_next_episode()
        if (self._pos, self.size) != (state["pos"], state["size"]):
            msg = (f"rebuilt frame cache ends at position {self._pos} (size {self.size}), not "
                   f"{state['pos']} ({state['size']}): the dataset's episodes changed")
            warnings.warn(msg, stacklevel=3)
            logger.warning(msg)

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
