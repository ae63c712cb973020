"""Image helpers shared by the suite's envs: frame resizing and size validation."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np


def resize_frame(frame: np.ndarray, size: int | tuple[int, int],
                 dilate: tuple[int, int] = (1, 1)) -> np.ndarray:
    """Resize an HxWx3 uint8 frame to (size, size, 3), or (*size, 3) for a (height, width) pair.

    The resize uses area interpolation.

    Area interpolation averages the source pixels under each target pixel, so an object smaller
    than a target pixel survives only as a dim smear (the Breakout ball, 2x4 screen pixels, keeps
    about half its colour in one pixel at 64x64). ``dilate=(w, h)`` first takes the maximum over
    a w x h window of screen pixels (a greyscale dilation per channel), which thickens every
    bright object by w - 1 columns and h - 1 rows on a dark background, so that each keeps at
    least one target pixel at full colour. ``(1, 1)`` is the plain area resize.

    >>> resize_frame(np.zeros((210, 160, 3), np.uint8), 64).shape
    (64, 64, 3)
    >>> resize_frame(np.zeros((210, 160, 3), np.uint8), (72, 120)).shape
    (72, 120, 3)
    """
    w, h = (int(v) for v in dilate)
    if w > 1 or h > 1:
        frame = cv2.dilate(frame, np.ones((h, w), np.uint8))
    height, width = (size, size) if np.isscalar(size) else size
    out = cv2.resize(frame, (int(width), int(height)), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(out, dtype=np.uint8)


def sprite_dilation(screen_hw: tuple[int, int], size: int | tuple[int, int]) -> tuple[int, int]:
    """The ``dilate`` window (w, h) that keeps 1-pixel sprites at full colour at ``size``.

    One window per downscale factor, rounded up: ``(ceil(W / width), ceil(H / height))`` for a
    (height, width) ``size`` (one int: a square); (1, 1) when the frame is not made smaller.

    >>> sprite_dilation((210, 160), 64)
    (3, 4)
    >>> sprite_dilation((210, 160), 256)
    (1, 1)
    """
    height, width = screen_hw
    out_h, out_w = (size, size) if np.isscalar(size) else size
    return max(1, -(-width // int(out_w))), max(1, -(-height // int(out_h)))


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


def check_frame_size(size: Any) -> int | tuple[int, int]:
    """Validate an observation size: one side (a square) or a (height, width) pair.

    Returns an int for a square given as one number, else a (height, width) tuple (a list from
    a JSON env spec becomes a tuple).

    >>> check_frame_size(64), check_frame_size([72, 120])
    (64, (72, 120))
    """
    if isinstance(size, (tuple, list)):
        if len(size) != 2:
            raise ValueError(f"size must be one int or a (height, width) pair, got {size!r}")
        return check_size(size[0]), check_size(size[1])
    return check_size(size)


def check_size(size: Any) -> int:
    """Validate an observation side length in pixels and return it as an int."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise TypeError(f"size must be an int number of pixels (e.g. 64 or 128), got {size!r}")
    if not 8 <= int(size) <= 1024:
        raise ValueError(f"size must be between 8 and 1024 pixels (e.g. 64 or 128), got {size}")
    return int(size)
