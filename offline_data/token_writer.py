"""Writing token shards (format in :mod:`offline_data.tokens`): streaming, atomic, mergeable."""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from offline_data.atomic import atomic_dir
from offline_data.tokens import ARRAYS, HEADER_NAME, EpisodeTokens, TokenHeader, TokenShards


class _RawWriter:
    """Appends rows to a raw binary file; ``finish`` turns it into an ``.npy`` file."""

    def __init__(self, path: Path, dtype, row_shape: tuple[int, ...]):
        self.path, self.dtype, self.row_shape = path, np.dtype(dtype), row_shape
        self.raw = path.with_suffix(".bin")
        self.file = open(self.raw, "wb")  # noqa: SIM115 - closed in finish()
        self.rows = 0

    def append(self, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows, dtype=self.dtype)
        if rows.shape[1:] != self.row_shape:
            raise ValueError(f"{self.path.name}: rows of shape {rows.shape[1:]}, expected "
                             f"{self.row_shape}")
        self.file.write(rows.tobytes())
        self.rows += len(rows)

    def finish(self, chunk_rows: int = 1 << 16) -> None:
        self.file.close()
        out = np.lib.format.open_memmap(self.path, mode="w+", dtype=self.dtype,
                                        shape=(self.rows, *self.row_shape))
        src = np.memmap(self.raw, dtype=self.dtype, mode="r",
                        shape=(self.rows, *self.row_shape)) if self.rows else None
        for i in range(0, self.rows, chunk_rows):
            out[i:i + chunk_rows] = src[i:i + chunk_rows]
        out.flush()
        del out, src
        self.raw.unlink()


def _write_split(directory: Path, header: TokenHeader, episodes: Iterable[EpisodeTokens]) -> dict:
    """Stream episodes of one split into ``directory``; return its counts."""
    directory.mkdir(parents=True)
    k, a = header.tokens_per_frame, len(header.action_vocab_sizes)
    rows = {"frame_tokens": (k,), "action_tokens": (a,), "rewards": (), "terminations": ()}
    writers = {name: _RawWriter(directory / f"{name}.npy", ARRAYS[name], shape)
               for name, shape in rows.items()}
    vocab = np.asarray(header.action_vocab_sizes, dtype=np.int64)
    starts = [0]
    try:
        for ep in episodes:
            z = np.asarray(ep.frame_tokens)
            act = np.asarray(ep.action_tokens).reshape(len(z), a)
            n = len(z)
            if z.ndim != 2 or z.shape[1] != k:
                raise ValueError(f"episode frame_tokens has shape {z.shape}, expected (T, {k})")
            if len(act) != n or len(ep.rewards) != n or len(ep.terminations) != n:
                raise ValueError("episode arrays must all have one row per frame")
            if n and (z.min() < 0 or z.max() >= header.image_vocab):
                raise ValueError(f"frame tokens outside [0, {header.image_vocab})")
            if n and a and (np.any(act < 0) or np.any(act >= vocab)):
                raise ValueError(
                    f"action tokens outside their vocabularies {header.action_vocab_sizes}")
            writers["frame_tokens"].append(z)
            writers["action_tokens"].append(act)
            writers["rewards"].append(np.asarray(ep.rewards).reshape(n))
            writers["terminations"].append(np.asarray(ep.terminations).reshape(n))
            starts.append(starts[-1] + n)
    except BaseException:  # a bad episode (or Ctrl-C): close the files before the staging
        for w in writers.values():  # directory is removed
            w.file.close()
        raise
    for w in writers.values():
        w.finish()
    np.save(directory / "episode_starts.npy", np.asarray(starts, dtype=ARRAYS["episode_starts"]))
    return {"num_frames": starts[-1], "num_episodes": len(starts) - 1}


def replaceable_shards(splits: Iterable[str] = ()) -> dict:
    """``atomic_dir``'s rule for replacing a shard directory: ``header.json`` and split folders.

    ``--overwrite`` replaces only a directory that holds a header and nothing but split folders
    (and the encoder's lock): never a directory of other files (see ``check_replaceable``).
    """
    return {"marker": HEADER_NAME, "allowed": ("train", "val", "test", ".lock", *splits),
            "what": "token shard directory"}


def write_token_shards(
    path: str | os.PathLike,
    header: TokenHeader,
    splits: dict[str, Iterable[EpisodeTokens]],
    overwrite: bool = False,
) -> TokenShards:
    """Write a token shard directory atomically, streaming episodes split by split.

    Args:
        path: the shard directory to create.
        header: header without counts; ``splits`` counts are filled in (other per-split keys
            already in ``header.splits``, such as episode ids, are kept).
        splits: split name -> iterable of :class:`EpisodeTokens`, consumed once, in order.
        overwrite: replace an existing directory.
    """
    counts = {}
    with atomic_dir(path, overwrite=overwrite, **replaceable_shards(splits)) as tmp:
        for name, episodes in splits.items():
            written = _write_split(tmp / name, header, episodes)
            counts[name] = {**header.splits.get(name, {}), **written}
        final = dataclasses.replace(header, splits=counts)
        (tmp / HEADER_NAME).write_text(final.to_json())
    return TokenShards.open(path)


def merge_token_shards(parts: list[str | os.PathLike], path: str | os.PathLike,
                       overwrite: bool = False, remove_parts: bool = False,
                       **header_fields) -> TokenShards:
    """Concatenate shard directories (e.g. one per encoding rank) episode by episode, in order.

    ``header_fields`` replace fields of the first part's header (e.g. ``supplements``).
    """
    opened = [TokenShards.open(p) for p in parts]
    if not opened:
        raise ValueError("merge_token_shards needs at least one part")
    first = opened[0].header
    for s in opened[1:]:
        h = s.header
        if (h.tokens_per_frame, h.image_vocab, h.action_vocab_sizes, h.tokenizer_sha256) != (
                first.tokens_per_frame, first.image_vocab, first.action_vocab_sizes,
                first.tokenizer_sha256):
            raise ValueError(f"token shard parts {parts[0]} and {s.path} disagree on layout or "
                             "tokenizer; encode them with the same tokenizer")
    names = sorted({n for s in opened for n in s.header.splits})

    def episodes(name: str) -> Iterator[EpisodeTokens]:
        for s in opened:
            if name not in s.header.splits:
                continue
            arr = s.split(name)
            st = np.asarray(arr.episode_starts)
            for lo, hi in zip(st[:-1], st[1:], strict=True):
                yield EpisodeTokens(arr.frame_tokens[lo:hi], arr.action_tokens[lo:hi],
                                    arr.rewards[lo:hi], arr.terminations[lo:hi])

    info = {n: {"episode_ids": [i for s in opened
                                for i in s.header.splits.get(n, {}).get("episode_ids", [])]}
            for n in names}
    header = dataclasses.replace(first, splits=info, **header_fields)
    out = write_token_shards(path, header, {n: episodes(n) for n in names}, overwrite=overwrite)
    if remove_parts:
        for p in parts:
            shutil.rmtree(p, ignore_errors=True)
    return out
