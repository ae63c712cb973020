"""The env action space an action discretizer decodes into, and the check that an env matches it.

Policies and world models trained on a dataset act through its discretizer; these helpers give
them the env's own action space and refuse an env whose space is another.
"""

from __future__ import annotations

import numpy as np
from gymnasium import spaces

from offline_data.discretize import ActionDiscretizer


def space_for_discretizer(discretizer: ActionDiscretizer) -> spaces.Space:
    """The env action space a discretizer decodes into (the real env's, for our datasets)."""
    spec = discretizer.to_spec()
    if spec["type"] == "categorical":
        if spec["kind"] == "discrete":
            return spaces.Discrete(spec["nvec"][0], start=spec["start"][0])
        if spec["kind"] == "multi_binary":
            shape = tuple(spec["shape"])  # MultiBinary(n), not MultiBinary((n,)), as SB3 needs
            return spaces.MultiBinary(shape[0] if len(shape) == 1 else shape)
        nvec = np.asarray(spec["nvec"]).reshape(spec["shape"])
        return spaces.MultiDiscrete(nvec, start=np.asarray(spec["start"]).reshape(spec["shape"]))
    shape = tuple(spec["shape"])
    return spaces.Box(np.asarray(spec["low"]).reshape(shape).astype(spec["dtype"]),
                      np.asarray(spec["high"]).reshape(shape).astype(spec["dtype"]),
                      shape, np.dtype(spec["dtype"]))


def check_action_space(discretizer: ActionDiscretizer, space: spaces.Space, what: str) -> None:
    """Raise ``ValueError`` unless ``space`` is the action space ``discretizer`` was made for."""
    expected = space_for_discretizer(discretizer)
    same = type(expected) is type(space) and expected.shape == space.shape
    if same and isinstance(space, spaces.Discrete):
        same = int(space.n) == int(expected.n) and int(space.start) == int(expected.start)
    elif same and isinstance(space, spaces.MultiDiscrete):
        same = np.array_equal(space.nvec, expected.nvec)
    elif same and isinstance(space, spaces.Box):
        same = np.allclose(space.low, expected.low) and np.allclose(space.high, expected.high)
    if not same:
        raise ValueError(
            f"the env's action space {space} does not match the {what}'s action space {expected} "
            f"(from its discretizer); use the env the {what} was trained on"
        )
