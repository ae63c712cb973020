"""Image helpers shared by the suite's envs: frame resizing and size validation."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np


def resize_frame(frame: np.ndarray, size: int, dilate: tuple[int, int] = (1, 1)) -> np.ndarray:
    """Resize an HxWx3 uint8 frame to (size, size, 3) with area interpolation.

    Area interpolation averages the source pixels under each target pixel, so an object smaller
    than a target pixel survives only as a dim smear (the Breakout ball, 2x4 screen pixels, keeps
    about half its colour in one pixel at 64x64). ``dilate=(w, h)`` first takes the maximum over
    a w x h window of screen pixels (a greyscale dilation per channel), which thickens every
    bright object by w - 1 columns and h - 1 rows on a dark background, so that each keeps at
    least one target pixel at full colour. ``(1, 1)`` is the plain area resize.

    >>> resize_frame(np.zeros((210, 160, 3), np.uint8), 64).shape
    (64, 64, 3)
    """
    w, h = (int(v) for v in dilate)
    if w > 1 or h > 1:
        frame = cv2.dilate(frame, np.ones((h, w), np.uint8))
    out = cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(out, dtype=np.uint8)


def sprite_dilation(screen_hw: tuple[int, int], size: int) -> tuple[int, int]:
    """The ``dilate`` window (w, h) that keeps 1-pixel sprites at full colour at ``size``.

    One window per downscale factor, rounded up: ``(ceil(W / size), ceil(H / size))``;
    (1, 1) (no dilation) when the frame is not made smaller.

    >>> sprite_dilation((210, 160), 64)
    (3, 4)
    >>> sprite_dilation((210, 160), 256)
    (1, 1)
    """
    height, width = screen_hw
    return max(1, -(-width // size)), max(1, -(-height // size))


def check_dilate(dilate: Any) -> tuple[int, int] | str:
    """Validate a ``dilate`` option: ``"auto"``, ``"none"`` or a (w, h) pair of ints >= 1."""
    if isinstance(dilate, str):
        if dilate not in ("auto", "none"):
            raise ValueError(f"dilate must be 'auto', 'none' or a (width, height) pair of ints "
                             f">= 1, got {dilate!r}")
        return dilate
    try:
        w, h = dilate
    except (TypeError, ValueError):
        raise TypeError(f"dilate must be 'auto', 'none' or a (width, height) pair of ints >= 1, "
                        f"got {dilate!r}") from None
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1
               for v in (w, h)):
        raise ValueError(f"dilate must be 'auto', 'none' or a (width, height) pair of ints >= 1, "
                         f"got {dilate!r}")
    return int(w), int(h)


def check_size(size: Any) -> int:
    """Validate an observation side length in pixels and return it as an int."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise TypeError(f"size must be an int number of pixels (e.g. 64 or 128), got {size!r}")
    if not 8 <= int(size) <= 1024:
        raise ValueError(f"size must be between 8 and 1024 pixels (e.g. 64 or 128), got {size}")
    return int(size)
