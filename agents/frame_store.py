"""BC-CNN's decoded frames in a file on disk, mapped read-only by every process that trains on them.

A BC-CNN run reads its split's frames at random, so they are decoded once into one array. Held in
each process's memory, that array was copied into every sweep worker and built twice while it
was assembled, which capped how far a study could grow BC-CNN's data (two workers on the
default's grown 797k training frames ran out of 24 GiB). Here the frames are written once,
episode by episode, into an ``.npy`` file under the cache directory and mapped with
``np.load(mmap_mode="r")``: the processes of a sweep share one copy in the page cache, nothing is
held twice, and when memory runs short the kernel pages frames out instead of killing a worker.

Files are keyed by everything the frames are computed from (the caller's key: the data files'
names, sizes and modification times, the split's episodes, the image size), written under a
temporary name and renamed into place, so an interrupted write leaves no partial file; the
``MAX_FILES`` most recently used files are kept. They live in ``$EMBSCALE_FRAMES_DIR``, else in
the ``frames`` folder of the project's user cache (``offline_data.user_cache``).

Example:
    frames, actions, rewards, terminations, lengths = stored_split(
        key, total, (32, 32, 3), np.float16, decoded_episodes())
"""

from __future__ import annotations

import hashlib
import logging
import os
import uuid
from collections.abc import Hashable, Iterable
from pathlib import Path

import numpy as np

from offline_data.user_cache import user_cache_dir

logger = logging.getLogger(__name__)

FRAMES_ENV = "EMBSCALE_FRAMES_DIR"
"""Environment variable naming the folder of frame files (else the user cache's ``frames``)."""
MAX_FILES = 6
"""Frame files kept (most recently used first); older ones are deleted when a new one is written."""


def cache_dir() -> Path:
    """Where frame files live: ``$EMBSCALE_FRAMES_DIR``, else the user cache's ``frames``."""
    folder = os.environ.get(FRAMES_ENV)
    return Path(folder).expanduser() if folder else user_cache_dir() / "frames"


def frames_path(key: Hashable) -> Path:
    """The file that holds the frames of ``key`` (its ``repr`` hashed)."""
    digest = hashlib.sha256(repr(key).encode()).hexdigest()[:24]
    return cache_dir() / f"frames-{digest}.npy"


def _open(path: Path, shape: tuple[int, ...], dtype) -> tuple | None:
    """(frames, small arrays) stored at ``path`` when they hold ``shape`` and ``dtype``."""
    try:
        frames = np.load(path, mmap_mode="r")
        with np.load(path.with_suffix(".npz")) as z:
            small = tuple(z[k] for k in SMALL)
    except (OSError, ValueError, KeyError):
        return None
    if frames.shape != shape or frames.dtype != np.dtype(dtype):
        return None
    os.utime(path)  # most recently used
    return frames, *small


def _evict(directory: Path, keep: Path) -> None:
    """Delete all but the ``MAX_FILES`` most recently used frame files (never ``keep``)."""
    files = sorted(directory.glob("frames-*.npy"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in [p for p in files if p != keep][MAX_FILES - 1:]:
        old.unlink(missing_ok=True)  # a process that mapped it keeps reading it
        old.with_suffix(".npz").unlink(missing_ok=True)


SMALL = ("actions", "rewards", "terminations", "lengths")
"""The per-step arrays stored beside the frames (``.npz``), and the episodes' lengths."""


def stored_split(key: Hashable, total: int, frame_shape: tuple[int, ...], dtype,
                 episodes: Iterable[tuple]) -> tuple[np.ndarray, ...]:
    """A split's frames, memory-mapped read-only, and its per-step arrays, stored under ``key``.

    Args:
        key: what the split is computed from; the same key maps the same files.
        total: number of frames (timesteps) in the split.
        frame_shape: shape of one frame.
        dtype: stored dtype of the frames (uint8, or float16 resized pixel values).
        episodes: ``(frames, actions, rewards, terminations)`` per episode, in order; consumed
            only when the files must be written.

    Returns:
        ``(frames, actions, rewards, terminations, lengths)``: frames (total, *frame_shape)
        mapped from disk; the rest in memory, concatenated over episodes (``lengths``: each
        episode's timesteps).
    """
    shape = (int(total), *(int(x) for x in frame_shape))
    path = frames_path(key)
    stored = _open(path, shape, dtype)
    if stored is not None:
        return stored
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}-{uuid.uuid4().hex}.tmp.npy")
    tmp_small = tmp.with_suffix(".npz")
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
        parts: list[list[np.ndarray]] = [[], [], []]
        lengths, i = [], 0
        for frames, *per_step in episodes:
            n = len(frames)
            if i + n > shape[0]:
                raise ValueError(f"more than the {shape[0]:,} frames announced for {path.name}")
            out[i:i + n] = frames
            for part, values in zip(parts, per_step, strict=True):
                part.append(np.asarray(values))
            lengths.append(n)
            i += n
        if i != shape[0]:
            raise ValueError(f"{i:,} frames written, {shape[0]:,} announced for {path.name}")
        out.flush()
        del out
        small = [np.concatenate(p) if p else np.zeros(0) for p in parts]
        np.savez(tmp_small, **dict(zip(SMALL, [*small, np.asarray(lengths, np.int64)],
                                       strict=True)))
        os.replace(tmp_small, path.with_suffix(".npz"))  # the frames last: they mark it done
        os.replace(tmp, path)  # a concurrent writer of the same key writes the same bytes
    finally:
        tmp.unlink(missing_ok=True)
        tmp_small.unlink(missing_ok=True)
    _evict(path.parent, keep=path)
    logger.info("wrote %s frames of shape %s to %s", f"{shape[0]:,}", shape[1:], path)
    stored = _open(path, shape, dtype)
    if stored is None:
        raise OSError(f"{path} was written but cannot be read back; check the disk, or set "
                      f"{FRAMES_ENV} to a writable directory with room for the frames")
    return stored
