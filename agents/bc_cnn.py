"""BC-CNN: a CNN per frame, a causal GPT core over frame embeddings, one head per action dimension.

A small CNN embeds each frame, the transformer reads one embedding per timestep, and independent
categorical heads predict every action dimension in one forward pass.

The CNN has Impala-style stages (conv, max-pool, two blocks per stage; Espeholt et al. 2018, as in
VPT), followed by average pooling to a small grid, a linear layer to ``cnn_embd`` and a linear map
to the transformer width. Its blocks are residual 3x3 conv pairs (``cnn_block="impala"``, the
default, VPT's) or ConvNeXt blocks (``cnn_block="convnext"``, the paper's Appendix A.1 choice);
see ``agents.bc_cnn_nets``. D counts one input per timestep and N includes the CNN (paper
Section 3.4).

Example:
    data = FrameDataSource("embscale/breakout/scripted-v1", seq_len=10)
    model = BCCNN(data.model_config(n_layer=2, n_head=2, n_embd=64))
    # train with worldmodels.trainer.Trainer(model, data, TrainConfig(...))
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from agents.bc_cnn_nets import FrameCNN
from agents.bc_cnn_shapes import CNN_BLOCKS, PAPER_CNN, CNNShape, bc_cnn_params, ladder_cnn
from agents.frame_cache import cached, data_stamp
from offline_data.atomic import atomic_file
from offline_data.datasets import dataset_path
from offline_data.fingerprint import directory_fingerprint
from offline_data.reader import WindowReader
from worldmodels.checkpoint import register_model_kind
from worldmodels.gpt import GPTConfig, LossOutput, TransformerCore, count_params, init_weights

logger = logging.getLogger(__name__)


@dataclass
class BCCNNConfig:
    """Shape of a BC-CNN model."""

    gpt: GPTConfig = field(default_factory=lambda: GPTConfig(vocab_size=0, block_size=10))
    """transformer core (vocab_size 0: it reads frame embeddings); block_size = max timesteps"""
    action_vocab_sizes: tuple[int, ...] = (4,)
    """classes of each action dimension (one head each)"""
    image_size: int = 64
    """frames are resized to image_size x image_size before the CNN (pixels)"""
    cnn_channels: tuple[int, ...] = PAPER_CNN.channels
    """channels of each CNN stage (each halves the resolution)"""
    cnn_pool: int = PAPER_CNN.pool
    """the last stage is average-pooled to cnn_pool x cnn_pool"""
    cnn_embd: int = PAPER_CNN.embd
    """CNN output embedding, then mapped linearly to the transformer width (paper: 1024)"""
    cnn_block: str = "impala"
    """blocks of each CNN stage: "impala" (residual 3x3 convs, VPT) or "convnext" (the paper's)"""

    def __post_init__(self) -> None:
        if isinstance(self.gpt, dict):
            self.gpt = GPTConfig.from_dict(self.gpt)
        self.action_vocab_sizes = tuple(int(v) for v in self.action_vocab_sizes)
        self.cnn_channels = tuple(int(c) for c in self.cnn_channels)
        if not self.action_vocab_sizes or min(self.action_vocab_sizes) < 1:
            raise ValueError("BCCNNConfig.action_vocab_sizes needs one size >= 1 per action "
                             f"dimension, got {self.action_vocab_sizes}")
        if self.cnn_block not in CNN_BLOCKS:
            raise ValueError(f"BCCNNConfig.cnn_block={self.cnn_block!r}; choose one of "
                             f"{', '.join(CNN_BLOCKS)}")
        if not self.cnn_channels or min(self.cnn_channels) < 1:
            raise ValueError(f"BCCNNConfig.cnn_channels must be positive, got {self.cnn_channels}")
        if self.image_size < 2 ** len(self.cnn_channels):
            raise ValueError(f"BCCNNConfig.image_size {self.image_size} is too small for "
                             f"{len(self.cnn_channels)} stages that each halve it")
        for name in ("cnn_pool", "cnn_embd"):
            if getattr(self, name) < 1:
                raise ValueError(f"BCCNNConfig.{name} must be >= 1, got {getattr(self, name)}")

    def num_params(self) -> int:
        """N of the ``BCCNN`` this config builds, counted from shapes (no module is built)."""
        return bc_cnn_params(self.gpt.n_layer, self.gpt.n_embd, self.gpt.block_size,
                             self.action_vocab_sizes,
                             CNNShape(self.cnn_channels, self.cnn_pool, self.cnn_embd),
                             self.cnn_block, bias=self.gpt.bias)

    def to_dict(self) -> dict:
        """JSON-able form."""
        d = asdict(self)
        d["action_vocab_sizes"] = list(self.action_vocab_sizes)
        d["cnn_channels"] = list(self.cnn_channels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> BCCNNConfig:
        """Inverse of ``to_dict``; unknown keys raise ``ValueError``."""
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown BCCNNConfig keys {sorted(unknown)}")
        return cls(**d)

    @classmethod
    def for_width(cls, n_layer: int, n_head: int, n_embd: int, seq_len: int,
                  action_vocab_sizes, image_size: int = 64, **kwargs) -> BCCNNConfig:
        """A config whose CNN scales with the transformer width (the small CPU ladder's rule)."""
        shape = ladder_cnn(n_embd)
        cnn = {"cnn_channels": shape.channels, "cnn_embd": shape.embd}
        cnn.update(kwargs)
        return cls(gpt=GPTConfig(n_layer=n_layer, n_head=n_head, n_embd=n_embd,
                                 block_size=seq_len, vocab_size=0),
                   action_vocab_sizes=tuple(action_vocab_sizes), image_size=image_size, **cnn)


class BCCNN(nn.Module):
    """Behaviour cloning from frames: CNN per frame -> GPT core -> one head per action dimension."""

    def __init__(self, config: BCCNNConfig):
        super().__init__()
        self.config = config
        self.cnn = FrameCNN(config.cnn_channels, config.cnn_pool, config.cnn_embd,
                            config.cnn_block)
        self.proj = nn.Linear(config.cnn_embd, config.gpt.n_embd)
        self.core = TransformerCore(config.gpt)
        self.heads = nn.Linear(config.gpt.n_embd, sum(config.action_vocab_sizes))
        init_weights(self.core, config.gpt.n_layer)

    def num_params(self) -> int:
        """N: every trainable parameter, the CNN included (paper Section 3.4)."""
        return count_params(self)

    def embed(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 frames (B, T, H, W, 3) -> transformer inputs (B, T, E)."""
        B, T = frames.shape[:2]
        x = frames.reshape(B * T, *frames.shape[2:]).permute(0, 3, 1, 2).float() / 255.0
        size = self.config.image_size
        if x.shape[-2:] != (size, size):
            x = F.interpolate(x, size=(size, size), mode="area")
        return self.proj(self.cnn(x)).view(B, T, -1)

    def forward(self, frames: torch.Tensor) -> list[torch.Tensor]:
        """Action logits per dimension, each (B, T, vocab_j), for uint8 frames (B, T, H, W, 3).

        Position t sees frames 0..t (causal) and predicts the action taken on frame t.
        """
        if frames.shape[1] > self.config.gpt.block_size:
            raise ValueError(f"{frames.shape[1]} timesteps exceed the model's context of "
                             f"{self.config.gpt.block_size}; pass at most that many frames")
        return self.logits_from_embeddings(self.embed(frames))

    def logits_from_embeddings(self, embeddings: torch.Tensor) -> list[torch.Tensor]:
        """Action logits per dimension for frame embeddings (B, T, E) from :meth:`embed`.

        The CNN sees each frame alone, so a policy can embed every frame once and keep the
        embeddings of its context instead of re-running the CNN over the whole window.
        """
        hidden = self.core(embeddings)
        return list(self.heads(hidden).split(list(self.config.action_vocab_sizes), dim=-1))

    def compute_loss(self, batch) -> LossOutput:
        """Mean over action dimensions of the cross-entropy of each head (FrameBatch input)."""
        logits = self(batch.frames)
        actions = batch.actions.long()  # B, T, d_a
        losses = [F.cross_entropy(lg.reshape(-1, lg.shape[-1]).float(),
                                  actions[..., j].reshape(-1)) for j, lg in enumerate(logits)]
        loss = torch.stack(losses).mean()
        return LossOutput(loss=loss, scaling_loss=loss.detach(), metrics={})

    @torch.no_grad()
    def predict_actions(self, frames: torch.Tensor, deterministic: bool = True,
                        generator: torch.Generator | None = None) -> torch.Tensor:
        """Action ids (B, d_a) for the last frame of each context (B, T, H, W, 3)."""
        out = []
        for lg in self(frames):
            last = lg[:, -1].float()
            if deterministic:
                out.append(last.argmax(-1))
            else:
                out.append(torch.multinomial(torch.softmax(last, -1), 1,
                                             generator=generator).squeeze(-1))
        return torch.stack(out, -1)


def save_bc_cnn(model: BCCNN, path: str | os.PathLike) -> None:
    """Write weights + config atomically (a trainer checkpoint loads the same way)."""
    with atomic_file(path) as tmp:
        torch.save({"model": model.state_dict(), "model_kind": "bc_cnn",
                    "model_config": model.config.to_dict()}, tmp)


register_model_kind("bc_cnn", lambda cfg: BCCNN(BCCNNConfig.from_dict(cfg)),
                    lambda cfg: ("BC-CNN policy", "policy"))


# ----- data: frame windows from a Minari dataset -----


class FrameBatch(NamedTuple):
    """Windows of T timesteps for BC-CNN."""

    frames: torch.Tensor  # uint8 (B, T, H, W, 3)
    actions: torch.Tensor  # int64 (B, T, d_a) local action ids per dimension
    rewards: torch.Tensor  # float32 (B, T)
    terminations: torch.Tensor  # bool (B, T)


class _SplitFrames(NamedTuple):
    frames: np.ndarray  # uint8 (F, H, W, 3)
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

    Episodes of each split are read once (``offline_data.reader``) into memory; fine for the
    embedded datasets (12 KB per 64x64 frame). The arrays are shared with later runs of the same
    process (``agents.frame_cache``). D counts one input per timestep.

    Args:
        dataset: Minari dataset id (or opened dataset).
        seq_len: timesteps per window (T; the paper uses 10).
    """

    def __init__(self, dataset, seq_len: int = 10):
        self.seq_len = int(seq_len)
        self._readers: dict = {}
        reader = self._reader("train", dataset)
        self.dataset_id = reader.dataset.id
        self.action_vocab_sizes = tuple(int(v) for v in reader.discretizer.vocab_sizes)
        self.frame_shape = tuple(int(x) for x in reader.dataset.observation_space.shape)
        self._arrays: dict[str, _SplitFrames] = {}

    items_per_window = property(lambda self: self.seq_len, doc="D per window: T.")

    @property
    def num_train_items(self) -> int:
        """Timesteps in the training split."""
        return self._readers["train"].num_steps

    def _reader(self, split: str, dataset=None):
        """The split's ``WindowReader``, opened on first use (val and test only when read)."""
        if split not in self._readers:
            self._readers[split] = WindowReader(dataset or self._readers["train"].dataset,
                                                self.seq_len, split=split)
        return self._readers[split]

    def _split(self, split: str) -> _SplitFrames:
        if split not in self._arrays:
            reader, path = self._reader(split), self._data_path()
            key = ("bc-cnn frames", str(path), split, tuple(reader.episode_ids),
                   json.dumps(reader.discretizer.to_spec(), sort_keys=True), data_stamp(path))
            self._arrays[split] = cached(key, lambda: self._load(split))
        return self._arrays[split]

    def _load(self, split: str) -> _SplitFrames:
        parts = list(zip(*(ep for _, ep in self._reader(split).iter_episodes()), strict=True))
        lengths = [len(r) for r in parts[2]]
        arrays = _SplitFrames(
            np.concatenate(parts[0]).astype(np.uint8),
            np.concatenate(parts[1]).astype(np.int64).reshape(sum(lengths), -1),
            np.concatenate(parts[2]).astype(np.float32),
            np.concatenate(parts[3]).astype(bool),
            np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64))
        logger.info("loaded %d %s frames of %s", sum(lengths), split, self.dataset_id)
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
        kwargs.setdefault("image_size", self.frame_shape[0])
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
        if self.seq_len > cfg.gpt.block_size:
            raise ValueError(f"context of {self.seq_len} timesteps is longer than the model's "
                             f"block_size {cfg.gpt.block_size}; lower seq_len")

    def _data_path(self):
        dataset = self._readers["train"].dataset
        path = getattr(getattr(dataset, "spec", None), "data_path", None)
        return Path(path) if path else dataset_path(self.dataset_id) / "data"

    def fingerprint(self) -> str:
        """Fingerprint of the dataset's files (a resumed run refuses data that changed)."""
        return directory_fingerprint(self._data_path())

    def describe(self) -> dict:
        """JSON-able description for config.json."""
        return {"kind": "frames", "dataset_id": self.dataset_id, "seq_len": self.seq_len,
                "action_vocab_sizes": list(self.action_vocab_sizes),
                "frame_shape": list(self.frame_shape)}
