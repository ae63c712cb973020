"""Roll out any policy with stable-baselines3's ``predict`` in an env and write a Minari dataset.

Example:
    embscale data collect --env embscale/Breakout-v0 --policy scripted --episodes 20 \
        --dataset-id embscale/breakout/scripted-v1

A policy is any object with ``predict(observation, state, episode_start, deterministic) ->
(action, state)`` (scripted demonstrators, SB3 models, ``RandomPolicy``). Optional hooks, used
when present: ``bind(env)`` once before the first episode (demonstrators that read the RAM or the
simulator state), ``set_skill(skill)`` before each episode when per-episode skills are given, and
the attribute ``skill``, stored per episode in the dataset.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from offline_data.datasets import check_image_space
from offline_data.discretize import ActionDiscretizer, discretizer_for_space
from offline_data.minari_writer import MinariWriter
from offline_data.sb3_policy import load_sb3

logger = logging.getLogger(__name__)

# ``--policy scripted``: env id -> the factory of that env's scripted demonstrator. offline_data
# may not import agents (DESIGN.md's import table), so ``agents.demonstrators`` fills this table
# with :func:`register_scripted_policy` when it is imported (the ``embscale`` command does).
SCRIPTED_POLICIES: dict[str, Callable[..., Any]] = {}


def register_scripted_policy(env_id: str, factory: Callable[..., Any]) -> None:
    """Make ``factory`` the demonstrator that ``--policy scripted`` builds for ``env_id``."""
    if not callable(factory):
        raise TypeError(f"factory for {env_id!r} must be callable, got {factory!r}")
    SCRIPTED_POLICIES[env_id] = factory


class RandomPolicy:
    """Uniformly random actions, with stable-baselines3's ``predict`` signature."""

    reads_observations = False
    """The actions ignore the observations (see ``BoundEnvPolicy.reads_observations``)."""

    def __init__(self, action_space: Any, seed: int | None = 0):
        self.action_space = action_space
        self.action_space.seed(seed)
        self.skill = 0.0

    def predict(self, observation: Any, state: Any = None, episode_start: Any = None,
                deterministic: bool = False) -> tuple[Any, Any]:
        """Return a random action and the unchanged state."""
        return self.action_space.sample(), state


def resolve_policy(spec: str, env: Any, seed: int = 0, **factory_kwargs: Any) -> Any:
    """Build a policy from a command-line string.

    Args:
        spec: ``random``; ``scripted`` (the demonstrator registered for the env id);
            ``sb3:ALGO:PATH`` or ``sb3:PATH`` (a saved stable-baselines3 model, unpickled: it
            runs code stored in the zip, so trusted files only); ``sb3-weights:ALGO:PATH`` (its
            weights only, nothing unpickled: safe for any file; see
            :mod:`offline_data.sb3_policy`); or ``module:factory`` (imports that module and
            calls a callable or class returning a policy -- it runs that module's code, so
            trusted code only; it gets whichever of ``env``, ``seed`` and ``factory_kwargs``
            (e.g. ``skill=(0.0, 1.0)``) it accepts).
        env: the env the policy will act in.
        seed: seed for random policies.
        **factory_kwargs: passed on to a ``module:factory`` callable.
    """
    if spec == "random":
        return RandomPolicy(env.action_space, seed=seed)
    if spec == "scripted":
        env_id = getattr(env.spec, "id", None)
        if env_id not in SCRIPTED_POLICIES:
            raise ValueError(f"no scripted demonstrator registered for env {env_id!r} (known: "
                             f"{sorted(SCRIPTED_POLICIES)}); import agents.demonstrators, "
                             "which registers the embedded ones, or pass --policy "
                             "module:factory")
        return _call_factory(SCRIPTED_POLICIES[env_id], env=env, seed=seed, **factory_kwargs)
    if spec.startswith(("sb3:", "sb3-weights:")):
        weights_only = spec.startswith("sb3-weights:")
        return load_sb3(spec.partition(":")[2], env, weights_only=weights_only)
    if ":" not in spec:
        raise ValueError(f"unknown policy {spec!r}; use 'random', 'scripted', 'sb3:ALGO:PATH', "
                         "'sb3-weights:ALGO:PATH' or "
                         "'module:factory' (e.g. agents.demonstrators:breakout_player)")
    module_name, _, attr = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"cannot load policy factory {spec!r} ({e}); check the module path and "
                         "that the package is installed") from e
    if hasattr(factory, "predict") and not isinstance(factory, type):
        return factory
    return _call_factory(factory, env=env, seed=seed, **factory_kwargs)


def _call_factory(factory: Callable, **kwargs: Any) -> Any:
    import inspect

    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        params = {}
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        accepted = kwargs
    else:
        accepted = {k: v for k, v in kwargs.items() if k in params}
    policy = factory(**accepted)
    if not hasattr(policy, "predict"):
        raise TypeError(f"{factory!r} returned {type(policy).__name__}, which has no predict(); "
                        "a policy needs stable-baselines3's predict(observation, state, "
                        "episode_start, deterministic)")
    return policy


def _to_env_action(action: Any, space: Any) -> Any:
    """Undo SB3's batch dimension and dtype drift so the env gets a valid action."""
    from gymnasium import spaces

    if isinstance(space, spaces.Discrete):
        return int(np.asarray(action).reshape(-1)[0])
    action = np.asarray(action, dtype=space.dtype)
    if action.shape != space.shape:
        action = action.reshape(space.shape)
    return action


def collect(env_id: str | Any, policy: Any, num_episodes: int, dataset_id: str, *,
            skills: Sequence[float] | None = None, env_kwargs: dict | None = None, seed: int = 0,
            max_steps_per_episode: int | None = None, max_total_steps: int | None = None,
            buckets: int | Sequence[int] | None = None,
            discretizer: ActionDiscretizer | None = None, deterministic: bool = False,
            description: str = "", overwrite: bool = False, progress: bool = True):
    """Roll out ``policy`` for ``num_episodes`` and write them as a Minari dataset, atomically.

    Args:
        env_id: a registered gymnasium id (``embscale/Breakout-v0``) or an env instance.
        policy: object with SB3's ``predict``; may define ``bind(env)``, ``set_skill``, ``skill``.
        num_episodes: episodes to collect (fewer if ``max_total_steps`` is reached first).
        dataset_id: ``embscale/<env>/<source>-vN``.
        skills: per-episode skill values handed to ``policy.set_skill`` (cycled if shorter).
        env_kwargs: kwargs for ``gymnasium.make`` (e.g. ``size=128``).
        seed: seed of the first ``reset`` (the episodes follow deterministically).
        max_steps_per_episode: cap per episode (the last step is marked truncated).
        max_total_steps: stop after the episode that reaches this many steps in total.
        buckets: buckets per continuous action dimension for the discretizer spec.
        discretizer: explicit discretizer (overrides ``buckets``).
        deterministic: passed to ``predict``.
        description: stored in the dataset metadata.
        overwrite: replace an existing dataset with this id.
        progress: show a tqdm progress bar.

    Returns:
        The written ``minari.MinariDataset``.
    """
    if num_episodes < 1:
        raise ValueError(f"num_episodes={num_episodes} must be >= 1")
    if not hasattr(policy, "predict"):
        raise TypeError(f"policy {type(policy).__name__} has no predict(); give an object with "
                        "stable-baselines3's predict(observation, state, episode_start, "
                        "deterministic)")
    owns_env = isinstance(env_id, str)
    if owns_env:
        import envs  # gymnasium

        env = envs.make(env_id, **(env_kwargs or {}))
    else:
        env = env_id
    try:
        check_image_space(env.observation_space, what=f"env {getattr(env.spec, 'id', env)!r}")
        if discretizer is None:
            discretizer = discretizer_for_space(env.action_space, buckets=buckets)
        if hasattr(policy, "bind"):
            policy.bind(env)
        with MinariWriter(dataset_id, env=env, discretizer=discretizer, description=description,
                          algorithm_name=_policy_name(policy), overwrite=overwrite,
                          metadata={"collection_seed": seed}) as writer:
            _rollouts(env, policy, writer, num_episodes, skills, seed, max_steps_per_episode,
                      max_total_steps, deterministic, progress)
            return writer.commit()
    finally:
        if owns_env:
            env.close()


def _rollouts(env, policy, writer, num_episodes, skills, seed, max_steps_per_episode,
              max_total_steps, deterministic, progress) -> None:
    def episodes():
        frames = episode_buffer(env, max_steps_per_episode)
        for i in range(num_episodes):
            episode, frames = play_episode(env, policy, frames, i, skills, seed if i == 0 else None,
                                           max_steps_per_episode, deterministic)
            yield episode

    write_episodes(writer, episodes(), num_episodes, max_total_steps, progress, writer.dataset_id)


def write_episodes(writer, episodes, num_episodes: int, max_total_steps: int | None,
                   progress: bool, desc: str) -> None:
    """Add ``episodes`` (``add_episode`` argument tuples, in dataset order) to ``writer``.

    Stops after the episode that brings the total to ``max_total_steps``; the iterator is not
    advanced past it. Shows a progress bar of episodes, steps and the last return.
    """
    from tqdm.auto import tqdm

    total = 0
    bar = tqdm(total=num_episodes, unit="ep", disable=not progress, desc=desc)
    try:
        for episode in episodes:
            writer.add_episode(*episode)
            total += len(episode[1])
            bar.update(1)
            bar.set_postfix(steps=total, ret=f"{float(np.sum(episode[2])):.1f}")
            if max_total_steps and total >= max_total_steps:
                break
    finally:
        bar.close()


def episode_buffer(env, max_steps_per_episode: int | None) -> np.ndarray:
    """A frame buffer for one episode of ``env`` (grown by :func:`play_episode` when short)."""
    cap = max_steps_per_episode or getattr(env.spec, "max_episode_steps", None) or 1000
    return np.empty((cap + 1,) + env.observation_space.shape, dtype=np.uint8)


def play_episode(env, policy, frames: np.ndarray, index: int, skills, reset_seed: int | None,
                 max_steps_per_episode: int | None, deterministic: bool,
                 check_frames: bool = True):
    """Play episode ``index`` of a collection; returns ``(episode, frames)``.

    ``episode`` is ``MinariWriter.add_episode``'s arguments (observations, actions, rewards,
    terminations, truncations, metadata); the observations are a view of ``frames``, the buffer
    (returned because it grows when an episode outlasts it). ``reset_seed`` seeds this reset: give
    it for the first episode only, later resets continue the seeded RNG streams (reseeding makes
    ALE reload the ROM, about 150 ms per episode). ``check_frames=False`` skips
    :func:`check_rendered` (for an env whose frames are made elsewhere, see
    ``AtariImageEnv.defer_frames``).
    """
    if skills is not None and len(skills):
        skill = float(skills[index % len(skills)])
        if hasattr(policy, "set_skill"):
            policy.set_skill(skill)
        elif hasattr(policy, "skill"):
            policy.skill = skill
    obs, info = env.reset(seed=reset_seed)
    frames[0] = obs
    actions, rewards, terms, truncs = [], [], [], []
    state, start = None, True
    t = 0
    while True:
        action, state = policy.predict(obs, state=state, episode_start=np.array([start]),
                                       deterministic=deterministic)
        action = _to_env_action(action, env.action_space)
        obs, reward, terminated, truncated, info = env.step(action)
        start = False
        t += 1
        if t >= len(frames):  # unknown episode cap: grow the buffer
            frames = np.concatenate([frames, np.empty_like(frames)])
        frames[t] = obs
        actions.append(action)
        rewards.append(reward)
        terms.append(terminated)
        if max_steps_per_episode and t >= max_steps_per_episode:
            truncated = True
        truncs.append(truncated)
        if terminated or truncated:
            break
    meta = {}
    skill = _episode_skill(policy)
    if skill is not None:
        meta["skill"] = skill
    if "is_success" in info:  # goal envs: success at the end of the episode
        meta["success"] = bool(info["is_success"])
    if check_frames:
        check_rendered(frames[:t + 1], index, getattr(env.spec, "id", env))
    return (frames[:t + 1], np.asarray(actions), rewards, terms, truncs, meta), frames


def check_rendered(frames: np.ndarray, index: int, env_name: Any) -> None:
    """Raise when episode ``index``'s frames are all black (a renderer that drew nothing)."""
    if not frames.any():
        raise RuntimeError(
            f"episode {index} of {env_name} rendered only black frames: "
            "with MuJoCo set MUJOCO_GL=egl or osmesa and keep one rendering env per "
            "process (close others first); nothing was saved")


def _episode_skill(policy: Any) -> float | None:
    """The skill of the episode just played: ``policy.skills[0]`` or ``policy.skill``."""
    skills = getattr(policy, "skills", None)
    if skills is not None and np.size(skills):
        return float(np.asarray(skills).reshape(-1)[0])
    skill = getattr(policy, "skill", None)
    return None if skill is None else float(skill)


def _policy_name(policy: Any) -> str:
    return getattr(policy, "name", None) or type(policy).__name__
