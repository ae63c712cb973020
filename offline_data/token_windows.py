"""Training windows over token shards: ``TokenWindowLoader`` and its ``TokenBatch``.

Example:
    shards = TokenShards.open("tokens/breakout-k64")
    loader = TokenWindowLoader(shards, "train", seq_len=10, batch_size=32, seed=0)
    batch = next(iter(loader))  # TokenBatch, tokens (32, 10 * (K + A))
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from offline_data.tokens import TokenShards

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)


class TokenBatch(NamedTuple):
    """A batch of token windows for WM-Token / BC-Token training.

    ``L = T * (d_z + d_a)``. Masks are aligned with next-token prediction: ``wm_mask[b, i]`` is true
    when ``tokens[b, i + 1]`` is an image token, ``bc_mask[b, i]`` when it is an action token; the
    last column is false in both. So with logits ``(B, L, V)`` the world-model loss is the
    cross-entropy of ``logits[:, :-1]`` against ``tokens[:, 1:]`` over ``wm_mask[:, :-1]``.
    """

    tokens: torch.Tensor  # int64 (B, L) global ids (TokenLayout)
    rewards: torch.Tensor  # float32 (B, T)
    terminations: torch.Tensor  # bool (B, T)
    wm_mask: torch.Tensor  # bool (B, L)
    bc_mask: torch.Tensor  # bool (B, L)


class _Permutation:
    """A seeded pseudo-random bijection of ``[0, n)`` in O(1) memory (Feistel + cycle walking).

    Paper-scale splits hold billions of windows: a materialised ``rng.permutation`` would not fit.
    """

    def __init__(self, n: int, seed: tuple[int, ...], rounds: int = 4):
        self.n = int(n)
        bits = max(2, int(np.ceil(np.log2(max(self.n, 2)))))
        bits += bits % 2
        self.half = bits // 2
        self.mask = np.uint64((1 << self.half) - 1)
        rng = np.random.default_rng(np.random.SeedSequence(list(seed)))
        self.keys = rng.integers(0, 1 << 31, size=rounds, dtype=np.uint64)

    def _round(self, x: np.ndarray) -> np.ndarray:
        left, right = x >> np.uint64(self.half), x & self.mask
        for key in self.keys:
            f = ((right * np.uint64(0x9E3779B1) + key) ^ (right >> np.uint64(3))) & self.mask
            left, right = right, left ^ f
        return (left << np.uint64(self.half)) | right

    def __call__(self, index: np.ndarray) -> np.ndarray:
        x = self._round(np.asarray(index, dtype=np.uint64))
        out_of_range = x >= self.n
        while np.any(out_of_range):  # the domain is < 4n, so a few walks at most
            x[out_of_range] = self._round(x[out_of_range])
            out_of_range = x >= self.n
        return x.astype(np.int64)


class TokenWindowLoader:
    """Batches of ``seq_len``-step windows from one split; windows never cross an episode.

    Every start position whose window fits inside its episode is a window (stride 1). An epoch is
    a seeded permutation of all windows; rank ``r`` of ``world_size`` reads the windows at
    positions ``r, r + world_size, ...`` of it, so ranks read distinct windows and the same number
    of batches. Iterating is endless (epoch after epoch); :meth:`batches` starts at any batch index
    (resuming) and :meth:`epoch_batches` gives one finite epoch (validation).

    Args:
        shards: opened token shards.
        split: split name ("train", "val", "test").
        seq_len: timesteps per window (T; 10 in the paper).
        batch_size: windows per batch on this rank.
        seed: seed of the window order (same on all ranks).
        rank: this process's rank.
        world_size: number of data-parallel processes.
        shuffle: permute windows each epoch; otherwise in dataset order.
    """

    def __init__(self, shards: TokenShards, split: str, seq_len: int, batch_size: int, seed: int,
                 rank: int = 0, world_size: int = 1, shuffle: bool = True):
        if seq_len < 1:
            raise ValueError(f"seq_len must be >= 1, got {seq_len}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size), got rank={rank}, "
                             f"world_size={world_size}")
        self.shards, self.split_name = shards, split
        self.arrays = shards.split(split)
        self.layout = shards.layout
        self.seq_len, self.batch_size, self.seed = int(seq_len), int(batch_size), int(seed)
        self.rank, self.world_size, self.shuffle = int(rank), int(world_size), bool(shuffle)
        starts = np.asarray(self.arrays.episode_starts, dtype=np.int64)
        per_episode = np.maximum(np.diff(starts) - self.seq_len + 1, 0)
        self._episode_first = starts[:-1]
        self._cum = np.concatenate([[0], np.cumsum(per_episode)])  # (E + 1,)
        self.num_windows = int(self._cum[-1])
        short = int(np.sum(per_episode == 0))
        if short:
            logger.warning("%d of %d episodes in split %r are shorter than seq_len=%d; skipped",
                           short, len(per_episode), split, self.seq_len)
        self.windows_per_rank = self.num_windows // self.world_size
        self.batches_per_epoch = self.windows_per_rank // self.batch_size
        if self.batches_per_epoch == 0:
            raise ValueError(
                f"split {split!r} yields {self.num_windows} windows of seq_len={seq_len}, fewer "
                f"than batch_size={batch_size} x world_size={world_size}; use a smaller batch or "
                "seq_len, or more data"
            )
        wm, bc = self.layout.target_masks(self.seq_len)
        self._wm, self._bc = wm, bc
        self._steps = np.arange(self.seq_len)
        self._perm: tuple[int, _Permutation] | None = None

    def __len__(self) -> int:
        return self.batches_per_epoch

    def window_starts(self, window_ids: np.ndarray) -> np.ndarray:
        """Frame index of the first step of each window id in ``[0, num_windows)``."""
        w = np.asarray(window_ids, dtype=np.int64)
        episode = np.searchsorted(self._cum, w, side="right") - 1
        return self._episode_first[episode] + (w - self._cum[episode])

    def _window_ids(self, epoch: int, batch: int) -> np.ndarray:
        lo = batch * self.batch_size
        positions = (np.arange(lo, lo + self.batch_size) * self.world_size) + self.rank
        if not self.shuffle:
            return positions
        if self._perm is None or self._perm[0] != epoch:  # its keys are drawn once per epoch
            self._perm = (epoch, _Permutation(self.num_windows, seed=(self.seed, epoch)))
        return self._perm[1](positions)

    def get_batch(self, window_ids: np.ndarray) -> TokenBatch:
        """Assemble the batch of the given window ids."""
        import torch

        frames = self.window_starts(window_ids)[:, None] + self._steps  # (B, T)
        a = self.arrays
        z, act = a.frame_tokens[frames], a.action_tokens[frames]
        self._check_ids(z, act)
        tokens = self.layout.to_global(z, act)
        b = len(frames)
        return TokenBatch(
            tokens=torch.from_numpy(tokens),
            rewards=torch.from_numpy(np.asarray(a.rewards[frames], dtype=np.float32)),
            terminations=torch.from_numpy(np.asarray(a.terminations[frames], dtype=np.bool_)),
            wm_mask=torch.from_numpy(np.broadcast_to(self._wm, (b, len(self._wm))).copy()),
            bc_mask=torch.from_numpy(np.broadcast_to(self._bc, (b, len(self._bc))).copy()),
        )

    def _check_ids(self, frame_tokens: np.ndarray, action_tokens: np.ndarray) -> None:
        """Refuse ids outside the header's vocabularies (a damaged or hand-edited shard).

        One ``max`` per batch: cheap next to the forward pass, and an embedding lookup of an
        id past the vocabulary would fail deep in torch (or read another kind's row).
        """
        layout = self.layout
        bad = frame_tokens.size and int(frame_tokens.max()) >= layout.image_vocab
        if not bad and action_tokens.size:
            bad = bool(np.any(action_tokens.max(axis=tuple(range(action_tokens.ndim - 1)))
                              >= np.asarray(layout.action_vocab_sizes)))
        if bad:
            raise ValueError(
                f"token shard {self.shards.path / self.split_name} holds token ids at or above "
                f"its header's vocabularies (image {layout.image_vocab}, actions "
                f"{layout.action_vocab_sizes}): the shard is damaged or was edited; re-encode it "
                "with `embscale tokenizer encode`")

    def batch_at(self, index: int) -> TokenBatch:
        """The ``index``-th batch of this rank's endless stream (epoch = index // len(self))."""
        epoch, batch = divmod(int(index), self.batches_per_epoch)
        return self.get_batch(self._window_ids(epoch, batch))

    def batches(self, start: int = 0) -> Iterator[TokenBatch]:
        """Endless stream of batches starting at batch index ``start`` (for resuming)."""
        index = int(start)
        while True:
            yield self.batch_at(index)
            index += 1

    def epoch_batches(self, epoch: int = 0) -> Iterator[TokenBatch]:
        """The batches of one epoch, in order."""
        for batch in range(self.batches_per_epoch):
            yield self.get_batch(self._window_ids(epoch, batch))

    def __iter__(self) -> Iterator[TokenBatch]:
        return self.batches(0)
