"""Action discretizers: env actions <-> per-dimension token ids, with a JSON spec.

Categorical spaces (``Discrete``, ``MultiDiscrete``, ``MultiBinary`` buttons) map one-to-one onto
token ids. Continuous ``Box`` dimensions are cut into uniform buckets over ``[low, high]`` (11 per
joystick axis as in the paper's Bleeding Edge setup, 500 per dimension for RT-1 style arms);
decoding returns the bucket centre, so the decoding error is at most half a bucket.

Example:
    >>> import numpy as np
    >>> from gymnasium import spaces
    >>> d = discretizer_for_space(spaces.Box(-1.0, 1.0, (2,)), buckets=11)
    >>> d.encode(np.array([[-1.0, 1.0]])).tolist()
    [[0, 10]]
    >>> discretizer_from_spec(d.to_spec()).vocab_sizes
    (11, 11)
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np

SPEC_VERSION = 1


class ActionDiscretizer(ABC):
    """Maps batches of env actions to int64 token ids of shape (B, num_dims) and back."""

    @property
    @abstractmethod
    def vocab_sizes(self) -> tuple[int, ...]:
        """Number of token ids per action dimension (local ids ``0..vocab_j-1``)."""

    @property
    def num_dims(self) -> int:
        """Number of action dimensions d_a (tokens per timestep)."""
        return len(self.vocab_sizes)

    @abstractmethod
    def encode(self, actions: Any) -> np.ndarray:
        """Env actions (B, ...) -> token ids int64 (B, num_dims)."""

    @abstractmethod
    def decode(self, tokens: Any) -> np.ndarray:
        """Token ids (B, num_dims) -> env actions (B, ...) in the env's dtype."""

    @abstractmethod
    def to_spec(self) -> dict:
        """JSON-serialisable description; ``discretizer_from_spec`` rebuilds the object."""

    def to_json(self) -> str:
        """The spec as a JSON string (what dataset metadata stores)."""
        return json.dumps(self.to_spec(), sort_keys=True)

    def _check_tokens(self, tokens: Any) -> np.ndarray:
        tokens = np.asarray(tokens)
        if tokens.ndim == 1 and self.num_dims == 1:
            tokens = tokens[:, None]
        if tokens.ndim != 2 or tokens.shape[1] != self.num_dims:
            raise ValueError(
                f"tokens must have shape (B, {self.num_dims}), got {tokens.shape}; "
                "pass one row of per-dimension token ids per action"
            )
        vocab = np.asarray(self.vocab_sizes)
        if np.any(tokens < 0) or np.any(tokens >= vocab):
            raise ValueError(
                f"token ids out of range for vocab sizes {self.vocab_sizes}; use local ids "
                "0..vocab_j-1 per dimension (subtract the global action offsets first)"
            )
        return tokens.astype(np.int64)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.to_json()})"


class CategoricalDiscretizer(ActionDiscretizer):
    """Discrete, MultiDiscrete or MultiBinary actions: each dimension is already a token.

    Args:
        kind: ``"discrete"``, ``"multi_discrete"`` or ``"multi_binary"``.
        nvec: number of choices per dimension (flattened).
        start: smallest value per dimension (gymnasium's ``start``; 0 for buttons).
        shape: the env action's shape (``()`` for Discrete).
        dtype: the env action's numpy dtype name.
    """

    KINDS = ("discrete", "multi_discrete", "multi_binary")

    def __init__(self, kind: str, nvec: Sequence[int], start: Sequence[int] | None = None,
                 shape: Sequence[int] = (), dtype: str = "int64"):
        if kind not in self.KINDS:
            raise ValueError(f"kind={kind!r} is not one of {self.KINDS}")
        self.kind = kind
        self.nvec = np.asarray(nvec, dtype=np.int64).reshape(-1)
        if self.nvec.size == 0 or np.any(self.nvec < 1):
            raise ValueError(f"nvec={self.nvec.tolist()} must be non-empty with every entry >= 1")
        self.start = (np.zeros_like(self.nvec) if start is None
                      else np.asarray(start, dtype=np.int64).reshape(-1))
        if self.start.shape != self.nvec.shape:
            raise ValueError(f"start has {self.start.size} entries but nvec has {self.nvec.size}")
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)

    @property
    def vocab_sizes(self) -> tuple[int, ...]:
        """Choices per dimension."""
        return tuple(int(n) for n in self.nvec)

    def encode(self, actions: Any) -> np.ndarray:
        """Actions (B, *shape) -> token ids int64 (B, d_a): the value minus ``start``."""
        actions = np.asarray(actions)
        flat = actions.reshape(actions.shape[0] if actions.ndim else 1, -1).astype(np.int64)
        if flat.shape[1] != self.num_dims:
            raise ValueError(f"actions of shape {actions.shape} do not match the action space "
                             f"(expected (B, *{self.shape}))")
        tokens = flat - self.start
        if np.any(tokens < 0) or np.any(tokens >= self.nvec):
            raise ValueError(f"actions outside the {self.kind} space (start={self.start.tolist()}, "
                             f"nvec={self.nvec.tolist()}); check the env's action space")
        return tokens

    def decode(self, tokens: Any) -> np.ndarray:
        """Token ids (B, d_a) -> actions (B, *shape) in the space's dtype."""
        tokens = self._check_tokens(tokens)
        actions = (tokens + self.start).astype(self.dtype)
        return actions.reshape((tokens.shape[0],) + self.shape)

    def to_spec(self) -> dict:
        """JSON-able spec (type ``categorical``)."""
        return {"type": "categorical", "version": SPEC_VERSION, "kind": self.kind,
                "nvec": self.nvec.tolist(), "start": self.start.tolist(),
                "shape": list(self.shape), "dtype": self.dtype.name}


class UniformDiscretizer(ActionDiscretizer):
    """Uniform buckets per continuous dimension over ``[low, high]``.

    Bucket ``k`` of a dimension covers ``[low + k w, low + (k+1) w)`` with ``w = (high-low)/n``;
    decoding gives its centre, so ``|decode(encode(a)) - a| <= w/2`` for ``a`` in range. Values
    outside ``[low, high]`` are clipped to the first or last bucket. Dimensions listed in
    ``button_dims`` are on/off buttons stored in a Box (e.g. a gamepad log): two tokens, encoded
    by thresholding at the midpoint and decoded exactly to ``low`` or ``high``.

    Args:
        low: lower bound per dimension (flattened action).
        high: upper bound per dimension.
        buckets: buckets per dimension (one int for all, or one per dimension).
        shape: the env action's shape.
        dtype: the env action's numpy dtype name.
        button_dims: flattened indices of button dimensions.
    """

    def __init__(self, low: Sequence[float], high: Sequence[float], buckets: int | Sequence[int],
                 shape: Sequence[int] | None = None, dtype: str = "float32",
                 button_dims: Sequence[int] = ()):
        self.low = np.asarray(low, dtype=np.float64).reshape(-1)
        self.high = np.asarray(high, dtype=np.float64).reshape(-1)
        if self.low.shape != self.high.shape or self.low.size == 0:
            raise ValueError(f"low {self.low.shape} and high {self.high.shape} must be non-empty "
                             "and of the same size")
        if not (np.all(np.isfinite(self.low)) and np.all(np.isfinite(self.high))):
            raise ValueError(
                f"uniform buckets need finite bounds, got low={self.low.tolist()} "
                f"high={self.high.tolist()}; clip the action space (e.g. gymnasium's ClipAction "
                "or RescaleAction) or give explicit low/high in the discretizer spec")
        if np.any(self.high <= self.low):
            raise ValueError(f"high must exceed low in every dimension, got low={self.low.tolist()}"
                             f" high={self.high.tolist()}")
        b = np.asarray(buckets, dtype=np.int64).reshape(-1)
        if b.size == 1:
            b = np.full(self.low.shape, b[0])
        elif b.size != self.low.size:
            raise ValueError(f"buckets={b.tolist()} must be one int or one per dimension "
                             f"({self.low.size})")
        if np.any(b < 2):
            raise ValueError(f"buckets={np.asarray(buckets).tolist()} must be >= 2 per dimension")
        self.buckets = np.array(b, dtype=np.int64)
        self.button_dims = sorted(int(i) for i in button_dims)
        if any(i < 0 or i >= self.low.size for i in self.button_dims):
            raise ValueError(f"button_dims={self.button_dims} must index 0..{self.low.size - 1}")
        self.buckets[self.button_dims] = 2
        self._is_button = np.zeros(self.low.size, dtype=bool)
        self._is_button[self.button_dims] = True
        self.shape = tuple(int(s) for s in (shape if shape is not None else (self.low.size,)))
        if int(np.prod(self.shape)) != self.low.size:
            raise ValueError(f"shape={self.shape} does not hold {self.low.size} dimensions")
        self.dtype = np.dtype(dtype)

    @property
    def vocab_sizes(self) -> tuple[int, ...]:
        """Buckets per dimension."""
        return tuple(int(n) for n in self.buckets)

    @property
    def bucket_width(self) -> np.ndarray:
        """Width of one bucket per dimension, in action units."""
        return (self.high - self.low) / self.buckets

    def encode(self, actions: Any) -> np.ndarray:
        """Actions (B, *shape) -> bucket ids int64 (B, d_a); out-of-range values are clipped."""
        actions = np.asarray(actions, dtype=np.float64)
        flat = actions.reshape(actions.shape[0] if actions.ndim > 1 else 1, -1)
        if flat.shape[1] != self.num_dims:
            raise ValueError(f"actions of shape {actions.shape} do not match the action space "
                             f"(expected (B, *{self.shape}))")
        if not np.all(np.isfinite(flat)):
            raise ValueError("actions contain NaN or inf; check the policy's output")
        idx = np.floor((flat - self.low) / self.bucket_width).astype(np.int64)
        idx = np.clip(idx, 0, self.buckets - 1)
        if self.button_dims:
            pressed = flat > (self.low + self.high) / 2
            idx = np.where(self._is_button, pressed.astype(np.int64), idx)
        return idx

    def decode(self, tokens: Any) -> np.ndarray:
        """Bucket ids (B, d_a) -> bucket centres (B, *shape) in the space's dtype."""
        tokens = self._check_tokens(tokens)
        centres = self.low + (tokens + 0.5) * self.bucket_width
        if self.button_dims:
            centres = np.where(self._is_button, np.where(tokens > 0, self.high, self.low), centres)
        return centres.astype(self.dtype).reshape((tokens.shape[0],) + self.shape)

    def to_spec(self) -> dict:
        """JSON-able spec (type ``uniform``)."""
        return {"type": "uniform", "version": SPEC_VERSION, "low": self.low.tolist(),
                "high": self.high.tolist(), "buckets": self.buckets.tolist(),
                "shape": list(self.shape), "dtype": self.dtype.name,
                "button_dims": list(self.button_dims)}


def discretizer_from_spec(spec: dict | str) -> ActionDiscretizer:
    """Rebuild a discretizer from ``to_spec()`` output (a dict or its JSON string)."""
    if isinstance(spec, str):
        try:
            spec = json.loads(spec)
        except json.JSONDecodeError as e:
            raise ValueError(f"discretizer spec is not valid JSON ({e}); pass the output of "
                             "ActionDiscretizer.to_json()") from e
    if not isinstance(spec, dict) or "type" not in spec:
        raise ValueError(f"discretizer spec {spec!r} has no 'type'; expected 'categorical' or "
                         "'uniform' as written by ActionDiscretizer.to_spec()")
    kind = spec["type"]
    if kind == "categorical":
        return CategoricalDiscretizer(spec["kind"], spec["nvec"], spec.get("start"),
                                      spec.get("shape", ()), spec.get("dtype", "int64"))
    if kind == "uniform":
        return UniformDiscretizer(spec["low"], spec["high"], spec["buckets"], spec.get("shape"),
                                  spec.get("dtype", "float32"), spec.get("button_dims", ()))
    raise ValueError(f"unknown discretizer type {kind!r}; expected 'categorical' or 'uniform'")


def discretizer_for_space(space: Any,
                          buckets: int | Sequence[int] | None = 11) -> ActionDiscretizer:
    """Default discretizer for a gymnasium action space.

    Args:
        space: ``Discrete``, ``MultiDiscrete``, ``MultiBinary`` or bounded ``Box``.
        buckets: uniform buckets per ``Box`` dimension (11 joystick, 500 RT-1 arm). ``None``
            refuses continuous spaces, for callers that insist on an explicit choice.

    Raises:
        ValueError: for a ``Box`` with ``buckets=None`` or unbounded dimensions.
        TypeError: for other space types.
    """
    from gymnasium import spaces

    if isinstance(space, spaces.Discrete):
        return CategoricalDiscretizer("discrete", [int(space.n)], [int(space.start)], (),
                                      space.dtype.name)
    if isinstance(space, spaces.MultiDiscrete):
        return CategoricalDiscretizer("multi_discrete", space.nvec.reshape(-1),
                                      np.asarray(space.start).reshape(-1), space.shape,
                                      space.dtype.name)
    if isinstance(space, spaces.MultiBinary):
        n = int(np.prod(space.shape))
        return CategoricalDiscretizer("multi_binary", [2] * n, [0] * n, space.shape,
                                      space.dtype.name)
    if isinstance(space, spaces.Box):
        if buckets is None:
            raise ValueError(
                f"continuous action space {space} needs a discretizer spec: choose buckets per "
                "dimension (e.g. buckets=11 for joysticks, 500 for RT-1 style arms; CLI "
                "--buckets N) or pass a spec from ActionDiscretizer.to_spec()")
        return UniformDiscretizer(space.low.reshape(-1), space.high.reshape(-1), buckets,
                                  space.shape, space.dtype.name)
    raise TypeError(f"no discretizer for action space {space!r}; supported: Discrete, "
                    "MultiDiscrete, MultiBinary, Box")
