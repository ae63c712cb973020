"""Gymnasium ids of the suite's real environments.

``register_envs()`` is called when ``envs`` is imported; it only records entry points (no env is
built, no optional dependency is imported) and is safe to call any number of times.
"""

from __future__ import annotations

import gymnasium

# The suite's Breakout: v1 crops the screen to the playfield, takes the maximum of the last two
# emulator frames of a step and of a 7x9 window of screen pixels before the resize, so that the
# ball survives a 16-token tokenizer at 64x64 (docs/tokenizer.md); v0 (the whole screen, the last
# frame, the "auto" window) stays for datasets recorded with it.
BREAKOUT_ID = "embscale/Breakout-v1"
BREAKOUT_V0_ID = "embscale/Breakout-v0"
FETCH_PICK_AND_PLACE_ID = "embscale/FetchPickAndPlace-v0"
# Breakout's playfield in screen pixels (top, bottom, left, right): below the top wall (rows
# 17-31) and the score band above it (rows 5-14), inside the side walls (columns 0-7 and
# 152-159), down to the bottom of the paddle (rows 189-192).
BREAKOUT_PLAYFIELD = (32, 196, 8, 152)


def register_envs() -> None:
    """Register ``embscale/Breakout-v1``, ``-v0`` and ``embscale/FetchPickAndPlace-v0``.

    Idempotent. The two Breakout versions differ only in their frames: ``-v1`` passes
    ``crop`` (the playfield), ``frame_max=True`` and ``dilate=(7, 9)`` to
    ``envs.atari.AtariImageEnv``.
    """
    breakout = {"game": "breakout", "size": 64, "frameskip": 4, "repeat_action_probability": 0.25}
    if BREAKOUT_V0_ID not in gymnasium.registry:
        gymnasium.register(id=BREAKOUT_V0_ID, entry_point="envs.atari:AtariImageEnv",
                           kwargs=dict(breakout), max_episode_steps=4500)
    if BREAKOUT_ID not in gymnasium.registry:
        gymnasium.register(id=BREAKOUT_ID, entry_point="envs.atari:AtariImageEnv",
                           kwargs={**breakout, "crop": list(BREAKOUT_PLAYFIELD), "frame_max": True,
                                   "dilate": [7, 9]},
                           max_episode_steps=4500)
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
        env_id: a registered id, e.g. ``"embscale/Breakout-v1"``.
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
