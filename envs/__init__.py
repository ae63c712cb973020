"""Real environments with image observations, wrappers, and the world-model environment.

Importing this package registers the suite's gymnasium ids (cheap: no env is built):
``embscale/Breakout-v1`` (and ``-v0``, its earlier frames) and ``embscale/FetchPickAndPlace-v0``.
"""

from envs.registration import (
    BREAKOUT_ID,
    BREAKOUT_V0_ID,
    FETCH_PICK_AND_PLACE_ID,
    make,
    register_envs,
)

register_envs()

__all__ = ["BREAKOUT_ID", "BREAKOUT_V0_ID", "FETCH_PICK_AND_PLACE_ID", "make", "register_envs"]
