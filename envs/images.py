"""Image helpers shared by the suite's envs: frame resizing and size validation."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np


def resize_frame(frame: np.ndarray, size: int) -> np.ndarray:
    """Resize an HxWx3 uint8 frame to (size, size, 3) with area interpolation.

    Area interpolation averages the source pixels under each target pixel, which keeps thin
    objects (the Breakout ball is 2x4 pixels) visible at 64x64 instead of aliasing them away.

    >>> resize_frame(np.zeros((210, 160, 3), np.uint8), 64).shape
    (64, 64, 3)
    """
    out = cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(out, dtype=np.uint8)


def check_size(size: Any) -> int:
    """Validate an observation side length in pixels and return it as an int."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise TypeError(f"size must be an int number of pixels (e.g. 64 or 128), got {size!r}")
    if not 8 <= int(size) <= 1024:
        raise ValueError(f"size must be between 8 and 1024 pixels (e.g. 64 or 128), got {size}")
    return int(size)
