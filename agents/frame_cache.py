"""Decoded frame arrays kept in memory across the runs of one process.

A pooled sweep (``scaling.study.sweep_pool``) trains many runs in one worker process. BC-CNN reads
a split's arrays for every run (its frames mapped from the file ``agents.frame_store`` decoded
them into, the per-step arrays in memory); decoding the default study's 218k training frames
took 7-23 s a run on 2 cores, longer than many of the protocol's extensions train. The arrays of
the last ``MAX_ENTRIES`` splits read are kept, keyed by everything they are computed from (the
data files' names, sizes and modification times, the split's episodes, the action encoding), so
a dataset rewritten on disk is read again. Cached arrays are read-only: every reader shares them.

Example:
    arrays = cached(("train", data_stamp(path)), lambda: load_split("train"))
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

MAX_ENTRIES = 2
"""Splits kept (a training and a validation split of one dataset)."""

_CACHE: OrderedDict[Hashable, Any] = OrderedDict()
T = TypeVar("T")


def data_stamp(path: str | os.PathLike) -> tuple:
    """Names, sizes and modification times of the files under ``path`` (cheap: no reading)."""
    root = Path(path)
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    return tuple((str(p.relative_to(root)) if p != root else p.name, p.stat().st_size,
                  p.stat().st_mtime_ns) for p in files)


def cached(key: Hashable, load: Callable[[], T]) -> T:
    """``load()``'s result for ``key``, computed once while it stays among the last entries."""
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    value = load()
    for array in value if isinstance(value, tuple) else (value,):
        if isinstance(array, np.ndarray):
            array.flags.writeable = False
    _CACHE[key] = value
    while len(_CACHE) > MAX_ENTRIES:
        _CACHE.popitem(last=False)
    return value


def clear() -> None:
    """Drop every cached entry (tests; a process that needs the memory back)."""
    _CACHE.clear()
