"""Tokenize a Minari dataset into token shards (format: :mod:`offline_data.tokens`).

Episodes are read one at a time, encoded in batches of frames on the CPU or a GPU and streamed to
disk, so the dataset is never in memory as a whole. Work splits across processes: with
``world_size > 1`` (``torchrun`` sets ``RANK``/``WORLD_SIZE``, or ``num_workers`` spawns local
processes) each rank encodes a contiguous block of every split's episodes into its own part
directory and rank 0 merges the parts, in episode order, into the final shard directory.

Example:
    embscale tokenizer encode --tokenizer runs/tokenizer/breakout-scripted-k64
        --dataset embscale/breakout/scripted-v1 --out tokens/breakout-k64  (one line)
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from offline_data.atomic import check_parent, check_replaceable, remove_stale_temps
from offline_data.processes import die_with_parent_quietly
from offline_data.run_lock import DirLock
from offline_data.token_writer import (
    merge_token_shards,
    replaceable_shards,
    write_token_shards,
)
from offline_data.tokens import EpisodeTokens, TokenHeader, TokenShards
from worldmodels import encode_parts as parts
from worldmodels.tokenizer import VQVAE, load_tokenizer
from worldmodels.tokenizer_data import frame_shape, open_split
from worldmodels.train_utils import resolve_device

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


def check_frame_size(model: VQVAE, shape: Sequence[int], dataset_id: str) -> None:
    """Raise ValueError when a dataset's frames do not match the tokenizer's input size."""
    h, w = model.config.image_height, model.config.image_width
    if tuple(shape) != (h, w, 3):
        raise ValueError(
            f"dataset {dataset_id!r} has frames of shape {tuple(shape)} but the tokenizer was "
            f"trained on ({h}, {w}, 3); train a tokenizer on this dataset (`embscale tokenizer "
            f"train --dataset {dataset_id}`) or collect the data at {h}x{w}")


def encode_frames(model: VQVAE, frames: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """uint8 (N, H, W, 3) -> int64 (N, K) token ids, in batches."""
    out = [model.encode(frames[i:i + batch_size]).cpu().numpy()
           for i in range(0, len(frames), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, model.config.tokens_per_frame), np.int64)


def _rank_block(ids: Sequence[int], rank: int, world_size: int) -> list[int]:
    n = len(ids)
    return list(ids[rank * n // world_size:(rank + 1) * n // world_size])


def encode_episodes(reader, ids: list[int], model: VQVAE, batch_size: int,
                    bar) -> Iterator[EpisodeTokens]:
    """The episodes ``ids`` of ``reader`` with their frames encoded, one at a time (``bar``)."""
    for episode_id in ids:
        frames, actions, rewards, terminations = reader.episode(episode_id)
        yield EpisodeTokens(encode_frames(model, frames, batch_size), actions, rewards,
                            terminations)
        bar.update(len(frames))


def _encode_rank(tokenizer: str, dataset_id: str, out: str, splits: Sequence[str], rank: int,
                 world_size: int, batch_size: int, device: str, split_seed: int,
                 progress: bool, dataset: Any = None) -> str:
    """Encode this rank's block of episodes into ``out``; returns ``out``."""
    from tqdm.auto import tqdm

    dev = resolve_device(device)
    model = load_tokenizer(tokenizer, map_location=dev)
    readers = {s: open_split(dataset or dataset_id, s, split_seed) for s in splits}
    first = next(iter(readers.values()))
    check_frame_size(model, frame_shape(first), dataset_id)
    discretizer = first.discretizer
    blocks = {s: _rank_block(r.episode_ids, rank, world_size) for s, r in readers.items()}
    header = TokenHeader(
        tokens_per_frame=model.config.tokens_per_frame, image_vocab=model.config.codebook_size,
        action_vocab_sizes=tuple(discretizer.vocab_sizes), tokenizer_id=model.tokenizer_id(),
        tokenizer_sha256=model.sha256(), dataset_id=dataset_id,
        splits={s: {"episode_ids": [int(i) for i in ids]} for s, ids in blocks.items()},
        action_discretizer=discretizer.to_spec())
    total = sum(readers[s].episode_steps[i] for s, ids in blocks.items() for i in ids)
    bar = tqdm(total=total, disable=not progress, desc=f"encode rank {rank}", unit="frame")
    start = time.time()
    write_token_shards(out, header, {s: encode_episodes(readers[s], ids, model, batch_size, bar)
                                     for s, ids in blocks.items()}, overwrite=True)
    bar.close()
    logger.info("rank %d/%d: %d frames in %.1f s (%.0f frames/s)", rank, world_size, total,
                time.time() - start, total / max(time.time() - start, 1e-9))
    return out


def _env_rank() -> tuple[int, int]:
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def encode_dataset(tokenizer: str | os.PathLike, dataset_id: str, out: str | os.PathLike, *,
                   splits: Sequence[str] = SPLITS, batch_size: int = 256, device: str = "auto",
                   rank: int | None = None, world_size: int | None = None, num_workers: int = 1,
                   split_seed: int = 0, overwrite: bool = False, progress: bool = True,
                   wait_timeout_s: float = 24 * 3600.0, dataset: Any = None
                   ) -> TokenShards | None:
    """Tokenize ``dataset_id`` with the tokenizer at ``tokenizer`` into shards at ``out``.

    Args:
        tokenizer: a ``tokenizer.pt`` or a tokenizer run directory.
        dataset_id: Minari dataset id.
        out: shard directory to create.
        splits: episode splits to encode (the suite-wide deterministic split).
        batch_size: frames per encoder call.
        device: "cpu", "cuda", or "auto".
        rank: this process's rank; default ``RANK`` (set by torchrun) or 0.
        world_size: number of ranks; default ``WORLD_SIZE`` or 1.
        num_workers: with ``world_size`` 1, spawn this many local processes instead.
        split_seed: seed of the train/val/test episode split.
        overwrite: replace an existing ``out``.
        progress: show a progress bar.
        wait_timeout_s: how long rank 0 waits for the other ranks' parts.
        dataset: an opened dataset (tests); default: load ``dataset_id``.

    Returns:
        The opened shards on rank 0 (``None`` on other ranks).
    """
    out = Path(out)
    env_rank, env_world = _env_rank()
    rank = env_rank if rank is None else rank
    world_size = env_world if world_size is None else world_size
    if batch_size < 1 or num_workers < 1 or world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need batch_size >= 1, num_workers >= 1, 0 <= rank < world_size; got "
                         f"{batch_size}, {num_workers}, rank={rank}, world_size={world_size}")
    bad = [s for s in splits if s not in SPLITS]
    if bad:
        raise ValueError(f"unknown splits {bad}; choose among {list(SPLITS)}")
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; pass --overwrite to replace it")
    if out.exists():  # refuse a directory that is not ours before encoding anything
        check_replaceable(out, **replaceable_shards(splits))
    check_parent(out)
    args = dict(tokenizer=str(tokenizer), dataset_id=dataset_id, splits=tuple(splits),
                batch_size=batch_size, device=device, split_seed=split_seed)
    lock = (DirLock(out, "token shard directory", lock_path=out.with_name(f".{out.name}.lock"))
            if rank == 0 else contextlib.nullcontext())
    with lock:
        if rank == 0:
            remove_stale_temps(out)  # ours to remove: we hold the lock
        if world_size == 1 and num_workers == 1:
            _encode_rank(out=str(out), rank=0, world_size=1, progress=progress, dataset=dataset,
                         **args)
            return TokenShards.open(out)
        return _encode_parts(out, rank, world_size, num_workers, progress, dataset,
                             wait_timeout_s, overwrite, args)


def _encode_part(nonce: str, **kwargs: Any) -> str:
    """One rank's part, tagged with the dataset and this run's nonce once it is complete."""
    parts.clear_part(kwargs["out"])
    out = _encode_rank(**kwargs)
    parts.write_tag(out, kwargs["dataset_id"], nonce)
    return out


def _encode_parts(out: Path, rank: int, world_size: int, num_workers: int, progress: bool,
                  dataset: Any, wait_timeout_s: float, overwrite: bool, args: dict
                  ) -> TokenShards | None:
    """Encode with several ranks (local workers or torchrun) and merge on rank 0."""
    parts_dir = out.with_name(f".{out.name}.parts")
    local = world_size == 1
    nonce = parts.run_nonce(local_workers=local)
    if local:
        from concurrent.futures import ProcessPoolExecutor
        from multiprocessing import get_context

        shutil.rmtree(parts_dir, ignore_errors=True)  # a killed run's parts; we hold the lock
        with ProcessPoolExecutor(num_workers, mp_context=get_context("spawn"),
                                 initializer=die_with_parent_quietly,
                                 initargs=(os.getpid(),)) as pool:
            futures = [pool.submit(_encode_part, nonce, out=str(parts_dir / f"rank-{r}"), rank=r,
                                   world_size=num_workers, progress=False, **args)
                       for r in range(num_workers)]
            names = [f.result() for f in futures]
    else:
        _encode_part(nonce, out=str(parts_dir / f"rank-{rank}"), rank=rank,
                     world_size=world_size, progress=progress and rank == 0, dataset=dataset,
                     **args)
        if rank != 0:
            return None
        names = [str(parts_dir / f"rank-{r}") for r in range(world_size)]
        deadline = time.time() + wait_timeout_s
        while not all(parts.part_ready(p, args["dataset_id"], nonce) for p in names):
            if time.time() > deadline:
                raise TimeoutError(f"ranks did not finish their parts under {parts_dir} within "
                                   f"{wait_timeout_s:.0f} s")
            time.sleep(1.0)
    shards = merge_token_shards(names, out, overwrite=overwrite, remove_parts=True)
    shutil.rmtree(parts_dir, ignore_errors=True)
    return shards


def decode_episode(shards: TokenShards, split: str, episode: int, model: VQVAE,
                   batch_size: int = 256) -> np.ndarray:
    """Frames of one tokenized episode, decoded: uint8 (T, H, W, 3).

    Raises:
        ValueError: the shards were written by a different tokenizer than ``model``.
    """
    shards.check_tokenizer(model.sha256())
    arrays = shards.split(split)
    if not 0 <= episode < arrays.num_episodes:
        raise ValueError(f"episode {episode} out of range: split {split!r} has "
                         f"{arrays.num_episodes} episodes")
    lo, hi = (int(x) for x in arrays.episode_starts[episode:episode + 2])
    tokens = np.asarray(arrays.frame_tokens[lo:hi], dtype=np.int64)
    frames = [model.decode(torch.from_numpy(tokens[i:i + batch_size])).cpu().numpy()
              for i in range(0, len(tokens), batch_size)]
    return np.concatenate(frames)
