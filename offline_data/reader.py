"""Windowed reader over a Minari dataset: frames, action tokens, rewards, terminations.

Windows hold ``seq_len`` consecutive timesteps of one episode (never crossing an episode boundary).
Timestep ``t`` pairs frame ``o_t`` with the action ``a_t`` taken on it, its reward ``r_t`` and
termination flag; an episode of S steps therefore gives windows starting at ``0..S-seq_len``.
Episodes are split deterministically into train/val/test (``split_episodes``) and read from disk a
few at a time, so datasets larger than RAM stream.

Example:
    reader = WindowReader("embscale/breakout/scripted-v1", seq_len=10, split="train")
    for batch in reader.iter_batches(batch_size=32, seed=0):
        batch.frames  # uint8 (B, T, H, W, 3)
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np

from offline_data.datasets import (
    Episode,
    dataset_discretizer,
    episode_metadata,
    load_dataset,
    split_episodes,
)
from offline_data.discretize import ActionDiscretizer

logger = logging.getLogger(__name__)


class EmptySplitError(ValueError):
    """A split that the dataset's episodes leave empty (a command may name its own way out)."""


class FrameWindow(NamedTuple):
    """A batch of windows of ``T`` timesteps."""

    frames: np.ndarray  # uint8 (B, T, H, W, 3)
    actions: np.ndarray  # int64 (B, T, d_a) action token ids (local per dimension)
    rewards: np.ndarray  # float32 (B, T)
    terminations: np.ndarray  # bool (B, T)


def read_episode(dataset: Any, episode_id: int) -> Episode:
    """Read one episode's arrays from disk (frames uint8 (T+1, H, W, 3), raw actions, ...).

    Parquet/arrow datasets written without JPEG are read straight from their column buffers
    (no per-frame Python objects); any other Minari storage goes through ``minari``'s own reader.
    """
    storage = dataset.storage
    meta = storage.metadata
    if meta.get("data_format") in ("parquet", "arrow") and not meta.get("jpeg_encoding", True):
        part = _read_episode_table(storage.data_path / str(int(episode_id)), meta["data_format"])
        obs_col = _single_chunk(part.column("observations"))
        shape = tuple(dataset.observation_space.shape)
        frames = obs_col.flatten().to_numpy().reshape((len(obs_col),) + shape)
        act_col = _single_chunk(part.column("actions"))
        space_shape = tuple(dataset.action_space.shape or ())
        if hasattr(act_col, "flatten") and space_shape:
            actions = act_col.flatten().to_numpy().reshape((len(act_col),) + space_shape)[:-1]
        else:
            actions = act_col.to_numpy(zero_copy_only=False)[:-1]
        return Episode(frames, actions,
                       part.column("rewards").to_numpy()[:-1],
                       part.column("terminations").to_numpy(zero_copy_only=False)[:-1],
                       part.column("truncations").to_numpy(zero_copy_only=False)[:-1], {})
    ep = next(iter(dataset.iterate_episodes([int(episode_id)])))
    return Episode(np.asarray(ep.observations), np.asarray(ep.actions), np.asarray(ep.rewards),
                   np.asarray(ep.terminations), np.asarray(ep.truncations), {})


def _read_episode_table(directory: Any, data_format: str) -> Any:
    """The Arrow table of one episode directory (its IPC or parquet part files, in order)."""
    import pyarrow as pa

    if not directory.is_dir():
        raise FileNotFoundError(f"episode directory {directory} is missing; the dataset is "
                                "incomplete: collect or import it again")
    files = sorted(p for p in directory.iterdir()
                   if p.is_file() and p.name != "metadata.json" and p.name[0] not in "._")
    if not files:
        raise FileNotFoundError(f"episode directory {directory} holds no data files; the dataset "
                                "is incomplete: collect or import it again")
    try:
        if data_format == "arrow":
            import pyarrow.ipc as ipc

            tables = [ipc.open_file(pa.memory_map(str(f))).read_all() for f in files]
        else:
            import pyarrow.parquet as pq

            tables = [pq.read_table(f) for f in files]
    except (pa.ArrowException, OSError) as e:  # a truncated or overwritten episode file
        raise ValueError(f"episode {directory.name} of the dataset at {directory.parent.parent} "
                         f"is damaged ({str(e).strip()[:120]}); collect or import the dataset "
                         "again (`embscale data info` checks every episode)") from None
    return tables[0] if len(tables) == 1 else pa.concat_tables(tables)


def _single_chunk(column: Any) -> Any:
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()


class WindowReader:
    """Streams ``FrameWindow`` batches from one split of a dataset.

    Args:
        dataset: a dataset id or an opened ``minari.MinariDataset``.
        seq_len: timesteps per window (``T``); the paper uses 10.
        split: ``"train"``, ``"val"``, ``"test"`` or ``"all"``.
        fractions: train/val/test fractions of episodes.
        split_seed: seed of the episode split (fixed, so every model sees the same split).
        discretizer: action discretizer; default: the one in the dataset metadata.
    """

    def __init__(self, dataset: Any, seq_len: int, split: str = "train",
                 fractions: Sequence[float] = (0.8, 0.1, 0.1), split_seed: int = 0,
                 discretizer: ActionDiscretizer | None = None):
        if seq_len < 1:
            raise ValueError(f"seq_len={seq_len} must be >= 1")
        self.dataset = load_dataset(dataset) if isinstance(dataset, str) else dataset
        self.seq_len = seq_len
        self.discretizer = discretizer or dataset_discretizer(self.dataset)
        meta = episode_metadata(self.dataset)
        steps = {int(m["id"]): int(m["total_steps"]) for m in meta}
        if split == "all":
            ids = sorted(steps)
        else:
            splits = split_episodes(sorted(steps), fractions, split_seed)
            if split not in splits:
                raise ValueError(f"split={split!r} must be one of 'train', 'val', 'test', 'all'")
            ids = splits[split]
        short = [i for i in ids if steps[i] < seq_len]
        if short:
            logger.warning("%d episodes of %s are shorter than seq_len=%d and are skipped",
                           len(short), self.dataset.id, seq_len)
        self.episode_ids = [i for i in ids if steps[i] >= seq_len]
        self.episode_steps = {i: steps[i] for i in self.episode_ids}
        if not ids:
            raise EmptySplitError(f"split {split!r} of {self.dataset.id!r} has no episode: the "
                             f"dataset's {len(steps)} episode(s) split {tuple(fractions)} leave "
                             f"it empty; collect at least 3 episodes (one per split), or use "
                             f"only the splits that hold episodes")
        if not self.episode_ids:
            raise ValueError(f"split {split!r} of {self.dataset.id!r} has no episode of at least "
                             f"seq_len={seq_len} steps; use a shorter seq_len or more episodes")

    @property
    def num_steps(self) -> int:
        """Timesteps (frame-action pairs) in this split."""
        return sum(self.episode_steps.values())

    @property
    def num_windows(self) -> int:
        """Distinct windows (every start position) in this split."""
        return sum(s - self.seq_len + 1 for s in self.episode_steps.values())

    def episode(self, episode_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """One episode's (frames, action tokens, rewards, terminations).

        Shapes: frames uint8 (S, H, W, 3), tokens int64 (S, d_a), rewards float32 (S,),
        terminations bool (S,). The final observation (which has no action) is dropped.
        """
        ep = read_episode(self.dataset, episode_id)
        steps = len(ep.rewards)
        tokens = self.discretizer.encode(ep.actions.reshape((steps,) + ep.actions.shape[1:]))
        return (ep.observations[:steps], tokens, ep.rewards.astype(np.float32),
                ep.terminations.astype(bool))

    def iter_episodes(self) -> Iterator[tuple[int, tuple]]:
        """Yield ``(episode_id, episode(episode_id))`` in id order, one episode in memory."""
        for episode_id in self.episode_ids:
            yield episode_id, self.episode(episode_id)

    def iter_batches(self, batch_size: int, seed: int = 0, shuffle: bool = True,
                     stride: int | None = None, episodes_in_memory: int = 8,
                     drop_last: bool = False) -> Iterator[FrameWindow]:
        """One pass over the split as batches of windows.

        Args:
            batch_size: windows per batch (B).
            seed: shuffling seed (vary it per epoch).
            shuffle: shuffle episode order and windows within the in-memory pool.
            stride: distance between window starts in an episode (default ``seq_len``:
                non-overlapping windows at a random offset; 1 gives every window).
            episodes_in_memory: episodes held at once; windows are mixed across them.
            drop_last: drop a final batch smaller than ``batch_size``.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be >= 1")
        stride = stride or self.seq_len
        rng = np.random.default_rng(seed)
        order = list(self.episode_ids)
        if shuffle:
            rng.shuffle(order)
        carry: list[tuple] = []
        for lo in range(0, len(order), episodes_in_memory):
            pool = [self.episode(i) for i in order[lo:lo + episodes_in_memory]]
            windows = []
            for k, (_, _, rewards, _) in enumerate(pool):
                offset = int(rng.integers(stride)) if shuffle and stride > 1 else 0
                last = len(rewards) - self.seq_len
                windows += [(k, s) for s in range(min(offset, last), last + 1, stride)]
            if shuffle:
                rng.shuffle(windows)
            items = carry + [(pool, k, s) for k, s in windows]
            carry = []
            for b in range(0, len(items), batch_size):
                chunk = items[b:b + batch_size]
                if len(chunk) < batch_size:
                    carry = chunk
                    break
                yield self._stack(chunk)
        if carry and not drop_last:
            yield self._stack(carry)

    def _stack(self, chunk: list[tuple]) -> FrameWindow:
        T = self.seq_len
        parts = [tuple(a[s:s + T] for a in pool[k]) for pool, k, s in chunk]
        return FrameWindow(*(np.stack([p[j] for p in parts]) for j in range(4)))
