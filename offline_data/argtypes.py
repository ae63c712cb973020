"""Argument types for the ``embscale`` subcommands: bad numbers are refused while parsing.

``type=float`` accepts ``inf``, ``nan`` and ``1e39``; ``type=int`` accepts 0 and -3. These
types refuse them with a message argparse prints as ``argument --lr: ...``, so the error names
the option and the value before any work starts. (They live in the lowest package every
command module may import.)

>>> positive_int("3")
3
>>> learning_rate("3e-4")
0.0003
"""

from __future__ import annotations

import argparse
import math

MAX_LEARNING_RATE = 10.0
"""Learning rates above this are refused as absurd (AdamW diverges long before)."""


def _number(text: str, kind: type) -> float | int:
    try:
        return kind(text)
    except ValueError:
        name = "an integer" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"{text!r} is not {name}") from None


def finite_float(text: str) -> float:
    """A finite float (no ``inf``/``nan``)."""
    value = _number(text, float)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not finite; give a finite number")
    return value


def positive_float(text: str) -> float:
    """A finite float > 0."""
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be > 0")
    return value


def nonnegative_float(text: str) -> float:
    """A finite float >= 0."""
    value = finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 0")
    return value


def fraction(text: str) -> float:
    """A float in [0, 1)."""
    value = finite_float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be in [0, 1)")
    return value


def learning_rate(text: str) -> float:
    """A learning rate: finite, > 0 and at most ``MAX_LEARNING_RATE``."""
    value = finite_float(text)
    if not 0 < value <= MAX_LEARNING_RATE:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a usable learning rate: it must be > 0 and at most "
            f"{MAX_LEARNING_RATE:g} (typical AdamW values are 1e-4 to 1e-2)")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1."""
    value = _number(text, int)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be an integer >= 1")
    return value


def nonnegative_int(text: str) -> int:
    """An integer >= 0."""
    value = _number(text, int)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be an integer >= 0")
    return value
