"""Gymnasium ids of the suite's real environments.

``register_envs()`` is called when ``envs`` is imported; it only records entry points (no env is
built, no optional dependency is imported) and is safe to call any number of times.
"""

from __future__ import annotations

import gymnasium

BREAKOUT_ID = "embscale/Breakout-v0"
FETCH_PICK_AND_PLACE_ID = "embscale/FetchPickAndPlace-v0"


def register_envs() -> None:
    """Register ``embscale/Breakout-v0`` and ``embscale/FetchPickAndPlace-v0`` (idempotent)."""
    if BREAKOUT_ID not in gymnasium.registry:
        gymnasium.register(
            id=BREAKOUT_ID,
            entry_point="envs.atari:AtariImageEnv",
            kwargs={
                "game": "breakout",
                "size": 64,
                "frameskip": 4,
                "repeat_action_probability": 0.25,
            },
            max_episode_steps=4500,
        )
    if FETCH_PICK_AND_PLACE_ID not in gymnasium.registry:
        gymnasium.register(
            id=FETCH_PICK_AND_PLACE_ID,
            entry_point="envs.fetch:FetchPickAndPlaceImageEnv",
            kwargs={"size": 64},
            max_episode_steps=50,
        )


def make(env_id: str, **kwargs) -> gymnasium.Env:
    """``gymnasium.make`` after making sure the suite's ids are registered.

    Args:
        env_id: a registered id, e.g. ``"embscale/Breakout-v0"``.
        **kwargs: passed to ``gymnasium.make`` (env kwargs such as ``size=128``, or
            ``max_episode_steps``, ``render_mode``).

    Returns:
        The env, wrapped by gymnasium as usual (``TimeLimit``, ``OrderEnforcing``, checker).
    """
    register_envs()
    if not isinstance(env_id, str):
        raise TypeError(
            f"env_id must be a gymnasium id string such as {BREAKOUT_ID!r}, got {env_id!r}"
        )
    if env_id.startswith("embscale/") and env_id not in gymnasium.registry:
        known = sorted(k for k in gymnasium.registry if k.startswith("embscale/"))
        raise ValueError(f"unknown env id {env_id!r}; the suite registers {known}")
    try:
        return gymnasium.make(env_id, **kwargs)
    except gymnasium.error.UnregisteredEnv as e:  # NameNotFound, VersionNotFound, ...
        raise ValueError(f"unknown env id {env_id!r} ({e}); use a registered gymnasium id such "
                         f"as {BREAKOUT_ID!r}") from e
