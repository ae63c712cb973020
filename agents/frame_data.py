"""BC-CNN's data: frame windows of a Minari dataset (and its train-only supplements).

``FrameDataSource`` is the trainer's ``DataSource`` for BC-CNN; ``FrameWindowLoader`` gives seeded
random access to its windows, with the same contract as ``TokenWindowLoader``. A grown data name
(``base+supplement1+...``, :mod:`offline_data.growth`) reads the base dataset's splits and adds
every episode of each supplement to the training split.

Example:
    data = FrameDataSource("embscale/breakout/scripted-v2", seq_len=10)
    model = BCCNN(data.model_config(n_layer=2, n_head=2, n_embd=64))
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from agents.bc_cnn import BCCNN, BCCNNConfig, resize_frames
from agents.frame_cache import cached, data_stamp
from agents.frame_store import stored_split
from offline_data.datasets import dataset_path
from offline_data.fingerprint import directory_fingerprint
from offline_data.growth import combined_fingerprint, grown_from, split_data_ids
from offline_data.reader import WindowReader
from worldmodels.gpt import GPTConfig

logger = logging.getLogger(__name__)


# ----- data: frame windows from a Minari dataset -----


class FrameBatch(NamedTuple):
    """Windows of T timesteps for BC-CNN."""

    frames: torch.Tensor  # uint8 (B, T, H, W, 3), or float16 pixel values at the image size
    actions: torch.Tensor  # int64 (B, T, d_a) local action ids per dimension
    rewards: torch.Tensor  # float32 (B, T)
    terminations: torch.Tensor  # bool (B, T)


class _SplitFrames(NamedTuple):
    frames: np.ndarray  # uint8 (F, H, W, 3), or float16 (F, S, S, 3) resized to image_size S
    actions: np.ndarray  # int64 (F, d_a)
    rewards: np.ndarray  # float32 (F,)
    terminations: np.ndarray  # bool (F,)
    episode_starts: np.ndarray  # int64 (E + 1,)


class FrameWindowLoader:
    """Random access to seeded batches of frame windows (same contract as TokenWindowLoader).

    Every start position whose window fits in its episode is a window. Epoch ``e`` is a seeded
    permutation of all windows; rank ``r`` of ``w`` reads positions ``r, r + w, ...`` of it, so a
    DDP run sees the same windows per step as one process with the global batch.
    """

    def __init__(self, arrays: _SplitFrames, seq_len: int, batch_size: int, seed: int,
                 rank: int = 0, world_size: int = 1):
        self.arrays, self.seq_len, self.batch_size = arrays, seq_len, batch_size
        self.seed, self.rank, self.world_size = seed, rank, world_size
        starts = arrays.episode_starts
        per_episode = np.maximum(np.diff(starts) - seq_len + 1, 0)
        self._first = starts[:-1]
        self._cum = np.concatenate([[0], np.cumsum(per_episode)])
        self.num_windows = int(self._cum[-1])
        self.batches_per_epoch = self.num_windows // world_size // batch_size
        if self.batches_per_epoch == 0:
            raise ValueError(f"{self.num_windows} windows of seq_len={seq_len} are fewer than "
                             f"batch_size={batch_size} x world_size={world_size}; use a smaller "
                             "batch or seq_len, or more episodes")
        self._perm: tuple[int, np.ndarray] | None = None

    def _permutation(self, epoch: int) -> np.ndarray:
        if self._perm is None or self._perm[0] != epoch:
            rng = np.random.default_rng([self.seed, epoch])
            self._perm = (epoch, rng.permutation(self.num_windows))
        return self._perm[1]

    def get_batch(self, window_ids: np.ndarray) -> FrameBatch:
        """The batch of the given window ids."""
        episode = np.searchsorted(self._cum, window_ids, side="right") - 1
        first = self._first[episode] + (window_ids - self._cum[episode])
        idx = first[:, None] + np.arange(self.seq_len)  # B, T
        a = self.arrays
        return FrameBatch(torch.from_numpy(np.ascontiguousarray(a.frames[idx])),
                          torch.from_numpy(a.actions[idx]), torch.from_numpy(a.rewards[idx]),
                          torch.from_numpy(a.terminations[idx]))

    def batch_at(self, index: int) -> FrameBatch:
        """The ``index``-th batch of this rank's endless stream."""
        epoch, b = divmod(int(index), self.batches_per_epoch)
        positions = (np.arange(b * self.batch_size, (b + 1) * self.batch_size) * self.world_size
                     + self.rank)
        return self.get_batch(self._permutation(epoch)[positions])

    def epoch_batches(self, epoch: int = 0):
        """The batches of one epoch, in order."""
        for b in range(self.batches_per_epoch):
            yield self.batch_at(epoch * self.batches_per_epoch + b)


class FrameDataSource:
    """Frame windows of a Minari dataset as a trainer ``DataSource`` for BC-CNN.

    Episodes of each split are decoded once (``offline_data.reader``) into a file that every
    process maps read-only (``agents.frame_store``): 12 KiB per 64x64 frame, or, with
    ``image_size``, the frames resized once to the model's size (6 KiB per frame at 32x32,
    ``agents.bc_cnn_shapes.stored_frame_bytes``). The arrays are shared with later runs of the
    same process (``agents.frame_cache``). D counts one input per timestep.

    Args:
        dataset: Minari dataset id (or opened dataset), or a grown data name
            ``base+supplement1+...`` whose supplements' episodes all join the training split.
        seq_len: timesteps per window (T; the paper uses 10).
        image_size: the model's frame size, when it reads the frames smaller than stored (the
            batches then hold float16 pixel values at that size, ``agents.bc_cnn.resize_frames``).
    """

    def __init__(self, dataset, seq_len: int = 10, image_size: int | None = None):
        self.seq_len = int(seq_len)
        self._readers: dict = {}
        base, supplements = split_data_ids(dataset) if isinstance(dataset, str) else (dataset, [])
        reader = self._reader("train", base)
        self.dataset_id = reader.dataset.id
        self.action_vocab_sizes = tuple(int(v) for v in reader.discretizer.vocab_sizes)
        self.frame_shape = tuple(int(x) for x in reader.dataset.observation_space.shape)
        self.supplements = [WindowReader(s, self.seq_len, split="all") for s in supplements]
        for sup in self.supplements:
            if (sup.discretizer.to_spec() != reader.discretizer.to_spec()
                    or tuple(sup.dataset.observation_space.shape) != self.frame_shape):
                raise ValueError(
                    f"supplement {sup.dataset.id} has other frames or actions than "
                    f"{self.dataset_id} (frames {sup.dataset.observation_space.shape} against "
                    f"{self.frame_shape}); a supplement must be collected by the base's recipe")
        self._arrays: dict[str, _SplitFrames] = {}
        self._fps: list[str] | None = None
        size = None if image_size is None else int(image_size)
        if size is not None and size <= 0:
            raise ValueError(f"image_size={image_size}; pass a positive frame size in pixels")
        self.image_size = None if size is None or (size, size) == self.frame_shape[:2] else size

    items_per_window = property(lambda self: self.seq_len, doc="D per window: T.")

    @property
    def num_train_items(self) -> int:
        """Timesteps in the training split (supplements included)."""
        return self._readers["train"].num_steps + sum(s.num_steps for s in self.supplements)

    def _reader(self, split: str, dataset=None):
        """The split's ``WindowReader``, opened on first use (val and test only when read)."""
        if split not in self._readers:
            self._readers[split] = WindowReader(dataset or self._readers["train"].dataset,
                                                self.seq_len, split=split)
        return self._readers[split]

    def _split_readers(self, split: str) -> list[WindowReader]:
        return [self._reader(split), *(self.supplements if split == "train" else ())]

    def _split(self, split: str) -> _SplitFrames:
        if split not in self._arrays:
            readers = self._split_readers(split)
            key = ("bc-cnn frames", split, self.image_size,
                   json.dumps(readers[0].discretizer.to_spec(), sort_keys=True),
                   *((str(_path(r.dataset)), tuple(r.episode_ids), data_stamp(_path(r.dataset)))
                     for r in readers))
            self._arrays[split] = cached(key, lambda: self._load(split, key))
        return self._arrays[split]

    def _load(self, split: str, key: tuple) -> _SplitFrames:
        size = self.image_size
        readers = self._split_readers(split)
        shape = self.frame_shape if size is None else (size, size, self.frame_shape[2])
        dtype = np.uint8 if size is None else np.float16
        episodes = ((ep[0] if size is None else resize_frames(ep[0], size), *ep[1:])
                    for r in readers for _, ep in r.iter_episodes())
        frames, actions, rewards, terms, lengths = stored_split(
            key, sum(r.num_steps for r in readers), shape, dtype, episodes)
        arrays = _SplitFrames(
            frames, actions.astype(np.int64).reshape(len(frames), -1),
            rewards.astype(np.float32), terms.astype(bool),
            np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64))
        logger.info("loaded %d %s frames of %s (%d readers)", len(frames), split,
                    self.dataset_id, len(readers))
        return arrays

    def loader(self, split: str, batch_size: int, seed: int, rank: int = 0,
               world_size: int = 1) -> FrameWindowLoader:
        """A ``FrameWindowLoader`` over ``split``."""
        return FrameWindowLoader(self._split(split), self.seq_len, batch_size, seed, rank,
                                 world_size)

    def model_config(self, n_layer: int, n_head: int, n_embd: int, paper_cnn: bool = False,
                     **kwargs) -> BCCNNConfig:
        """A ``BCCNNConfig`` for this dataset.

        Args:
            n_layer: transformer blocks.
            n_head: attention heads.
            n_embd: transformer width.
            paper_cnn: use a CNN of the paper's size (16/32/32 channels, 1024-d embedding: about
                0.6M parameters with Impala blocks) instead of the small ladder's CNN that
                scales with the width; ``cnn_block`` (in kwargs) picks its blocks.
            **kwargs: further ``BCCNNConfig`` fields (image_size defaults to the frames').
        """
        kwargs.setdefault("image_size", self.image_size or self.frame_shape[0])
        if self.image_size is not None and kwargs["image_size"] != self.image_size:
            raise ValueError(f"image_size={kwargs['image_size']}, but this source holds frames "
                             f"resized to {self.image_size}; build it with that image_size")
        if paper_cnn:
            gpt = GPTConfig(n_layer=n_layer, n_head=n_head, n_embd=n_embd,
                            block_size=self.seq_len, vocab_size=0)
            return BCCNNConfig(gpt=gpt, action_vocab_sizes=self.action_vocab_sizes, **kwargs)
        return BCCNNConfig.for_width(n_layer, n_head, n_embd, self.seq_len,
                                     self.action_vocab_sizes, **kwargs)

    def check_model(self, model: BCCNN) -> None:
        """Raise ``ValueError`` if ``model`` cannot read these windows."""
        cfg = model.config
        if tuple(cfg.action_vocab_sizes) != self.action_vocab_sizes:
            raise ValueError(f"dataset {self.dataset_id} has action vocabularies "
                             f"{self.action_vocab_sizes} but the model's heads predict "
                             f"{tuple(cfg.action_vocab_sizes)}; build the model for this dataset")
        if self.image_size is not None and cfg.image_size != self.image_size:
            raise ValueError(f"the model reads {cfg.image_size}x{cfg.image_size} frames, but this "
                             f"source holds them resized to {self.image_size}; build the source "
                             f"with image_size={cfg.image_size}")
        if self.seq_len > cfg.gpt.block_size:
            raise ValueError(f"context of {self.seq_len} timesteps is longer than the model's "
                             f"block_size {cfg.gpt.block_size}; lower seq_len")

    def _data_path(self):
        return _path(self._readers["train"].dataset)

    def _fingerprints(self) -> list[str]:
        """Each part's fingerprint, hashed once (``fingerprint`` and ``grown_from`` read it)."""
        if self._fps is None:
            self._fps = [directory_fingerprint(_path(r.dataset))
                         for r in (self._readers["train"], *self.supplements)]
        return self._fps

    def fingerprint(self) -> str:
        """Fingerprint of the dataset's files (a resumed run refuses data that changed)."""
        return combined_fingerprint(self._fingerprints())

    def grown_from(self) -> list[str]:
        """Fingerprints of the data this grew from (the base, then each shorter prefix)."""
        return grown_from(self._fingerprints())

    def describe(self) -> dict:
        """JSON-able description for config.json."""
        return {"kind": "frames", "dataset_id": self.dataset_id, "seq_len": self.seq_len,
                "action_vocab_sizes": list(self.action_vocab_sizes),
                "frame_shape": list(self.frame_shape),
                **({"supplements": [r.dataset.id for r in self.supplements]}
                   if self.supplements else {})}


def _path(dataset) -> Path:
    """The directory of an opened dataset's data files."""
    path = getattr(getattr(dataset, "spec", None), "data_path", None)
    return Path(path) if path else dataset_path(dataset.id) / "data"
