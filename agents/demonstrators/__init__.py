"""Scripted demonstrators with stable-baselines3's ``predict`` protocol.

Interface (both demonstrators)::

    policy = ScriptedBreakoutPolicy(skill=0.8, seed=0)  # skill=(0.0, 1.0): drawn per episode
    policy = ScriptedFetchPickAndPlacePolicy(skill=1.0, seed=0)
    policy.bind(env)  # a gymnasium Env, gymnasium VectorEnv or SB3 VecEnv; returns policy
    actions, state = policy.predict(observation, state=None, episode_start=None,
                                    deterministic=False)
    policy.skills             # float64 (B,): the skill of the episode each sub-env is playing
    policy.set_skill(0.3)     # skill (float or (low, high)) of the episodes that start next
    policy.reset(env=None)    # forget per-episode memory (optionally re-binding)

Why ``bind``: the demonstrators act on privileged state the image observation lacks (Breakout's
console RAM, Fetch's simulator state), so ``predict`` reads it from the bound env at call time:
Breakout through ``AtariImageEnv.get_ram()`` (or ``unwrapped.ale.getRAM()`` of any ale-py env),
Fetch through ``FetchPickAndPlaceImageEnv.get_state()``. Call ``predict`` right after the env
returned ``observation`` (before stepping it again). ``observation`` only fixes the batch size:
(H, W, 3) for a single env gives one action, (B, H, W, 3) for a vector env gives (B, ...) actions.
``episode_start`` (bool (B,), SB3's ``episode_starts``; ``True`` after ``reset``) starts a new
episode's memory and, with a skill range, draws a new skill; ``state`` is ignored and returned as
``None``. ``deterministic=True`` removes the random parts (random actions, noise) but keeps the
skill-dependent reaction delay or gain.

Without binding, the batched core ``policy.act(inputs, episode_start, deterministic)`` takes the
privileged inputs directly: ``info["ram"]`` (B, 128) for Breakout, ``info["state"]`` (the Fetch
Dict observation, arrays with a leading B axis) for Fetch.
"""

from agents.demonstrators.base import BoundEnvPolicy, SkillSpec
from agents.demonstrators.breakout import ScriptedBreakoutPolicy
from agents.demonstrators.fetch import ScriptedFetchPickAndPlacePolicy
from offline_data.collect import register_scripted_policy

# ``--policy scripted`` (offline_data.collect) builds these for their envs.
register_scripted_policy("embscale/Breakout-v0", ScriptedBreakoutPolicy)
register_scripted_policy("embscale/Breakout-v1", ScriptedBreakoutPolicy)
register_scripted_policy("embscale/FetchPickAndPlace-v0", ScriptedFetchPickAndPlacePolicy)

__all__ = [
    "BoundEnvPolicy",
    "ScriptedBreakoutPolicy",
    "ScriptedFetchPickAndPlacePolicy",
    "SkillSpec",
]
