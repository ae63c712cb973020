"""Frame sizes ``H x W``: parsing ``--size`` values and resizing frames to them.

Every importer and collector takes a frame size as one number (a square, ``64``) or as height by
width (``"72x120"``, ``(72, 120)``): the paper's 540-token layout tiles 3:5 frames such as
144x240 (an 18x30 token grid).

Example:
    >>> parse_frame_size("72x120"), parse_frame_size(64), parse_frame_size((144, 240))
    ((72, 120), (64, 64), (144, 240))
"""

from __future__ import annotations

from typing import Any

import numpy as np

MIN_SIDE, MAX_SIDE = 8, 4096


def parse_frame_size(value: Any, name: str = "size") -> tuple[int, int]:
    """``(height, width)`` from ``64``, ``"64"``, ``"72x120"`` or ``(72, 120)``.

    Raises:
        ValueError: the value is not a size, or a side lies outside [8, 4096] pixels.
    """
    hw: tuple[Any, ...]
    if isinstance(value, bool):
        hw = ()
    elif isinstance(value, (int, np.integer)):
        hw = (int(value), int(value))
    elif isinstance(value, str):
        parts = value.lower().replace("*", "x").split("x")
        try:
            nums = tuple(int(p) for p in parts)
        except ValueError:
            nums = ()
        hw = nums * 2 if len(nums) == 1 else nums
    elif isinstance(value, (tuple, list)):
        hw = tuple(value)
    else:
        hw = ()
    if (len(hw) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                                for v in hw)):
        raise ValueError(f"{name}={value!r} is not a frame size; give one number for a square "
                         "(64) or HEIGHTxWIDTH (72x120)")
    h, w = int(hw[0]), int(hw[1])
    if not (MIN_SIDE <= h <= MAX_SIDE and MIN_SIDE <= w <= MAX_SIDE):
        raise ValueError(f"{name}={value!r} gives {h}x{w}; each side must be between "
                         f"{MIN_SIDE} and {MAX_SIDE} pixels")
    return h, w


def env_size(text: str) -> int | tuple[int, int]:
    """``--size`` as an env's ``size`` kwarg: ``"64"`` -> 64, ``"72x120"`` -> (72, 120).

    >>> env_size("64"), env_size("72x120")
    (64, (72, 120))
    """
    h, w = parse_frame_size(text, name="--size")
    return h if h == w and "x" not in str(text).lower() else (h, w)


def resize_rgb(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A uint8 (h, w, 3) frame resized to ``size`` = (H, W) with bilinear filtering (PIL).

    >>> resize_rgb(np.zeros((30, 50, 3), np.uint8), (72, 120)).shape
    (72, 120, 3)
    """
    if frame.shape[:2] == tuple(size):
        return frame
    from PIL import Image

    return np.asarray(Image.fromarray(frame).resize((size[1], size[0]), Image.BILINEAR))
