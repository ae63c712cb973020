"""Environments whose steps are imagined by a learned simulator (a world model).

A batched core (:class:`WorldModelCore`) owns episode bookkeeping around a
:class:`~envs.simulator.Simulator`; three thin facades expose it:

* :class:`WorldModelEnv`, a ``gymnasium.Env`` (one row);
* :class:`WorldModelVectorEnv`, a ``gymnasium.vector.VectorEnv``;
* :class:`WorldModelVecEnv`, a stable-baselines3 ``VecEnv`` (SB3 does not take gymnasium's).

Spaces: observations are uint8 RGB frames ``Box(0, 255, (H, W, 3))``; actions are the real env's
action space. Reward and termination come from the world model's heads. Truncation: an episode is
truncated after ``max_episode_steps`` imagined steps (the horizon).

Example:
    >>> env = WorldModelEnv(simulator, max_episode_steps=50)  # doctest: +SKIP
    >>> obs, info = env.reset(seed=0)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space
from stable_baselines3.common.vec_env import VecEnv

from envs.simulator import Simulator


class WorldModelCore:
    """Batched episode bookkeeping around a simulator: validation, step counts, truncation.

    Args:
        simulator: the learned simulator (see :class:`~envs.simulator.Simulator`).
        max_episode_steps: horizon in imagined steps after which an episode is truncated;
            ``None`` for no horizon.
    """

    def __init__(self, simulator: Simulator, max_episode_steps: int | None = 100):
        if not isinstance(simulator, Simulator):
            raise TypeError(
                f"simulator must follow envs.simulator.Simulator (num_envs, observation_shape, "
                f"action_space, seed, reset, step); got {type(simulator).__name__}. Build one with "
                "worldmodels.simulator.TokenWorldModelSimulator."
            )
        if max_episode_steps is not None and max_episode_steps < 1:
            raise ValueError(f"max_episode_steps must be >= 1 or None, got {max_episode_steps}")
        shape = tuple(int(s) for s in simulator.observation_shape)
        if len(shape) != 3 or shape[-1] != 3:
            raise ValueError(f"simulator.observation_shape must be (H, W, 3), got {shape}")
        self.simulator = simulator
        self.num_envs = int(simulator.num_envs)
        self.max_episode_steps = max_episode_steps
        self.observation_space = spaces.Box(0, 255, shape, np.uint8)
        self.action_space = simulator.action_space
        self.elapsed_steps = np.zeros(self.num_envs, np.int64)
        self.observations = np.zeros((self.num_envs, *shape), np.uint8)
        self.started = False

    def seed(self, seed: int | None) -> None:
        """Reseed the simulator (and so the start states it picks)."""
        self.simulator.seed(seed)
        self.action_space.seed(seed)

    def check_observations(self, observations: Any, count: int) -> np.ndarray:
        """Validate start observations for ``count`` rows; return uint8 (count, H, W, 3)."""
        obs = np.asarray(observations)
        shape = self.observation_space.shape
        if obs.shape == shape and count == 1:
            obs = obs[None]
        if obs.shape != (count, *shape):
            raise ValueError(
                f"start observation has shape {obs.shape}, expected {(count, *shape)} (or {shape} "
                f"for a single env): pass uint8 RGB frames of the size the world model was "
                f"trained on"
            )
        if obs.dtype != np.uint8:
            if not np.issubdtype(obs.dtype, np.number) or obs.min() < 0 or obs.max() > 255:
                raise ValueError(
                    f"start observation must be uint8 RGB in [0, 255], got dtype {obs.dtype}"
                )
            obs = obs.astype(np.uint8)
        return obs

    def check_actions(self, actions: Any) -> np.ndarray:
        """Validate a batch of actions, one per row, against the real env's action space."""
        space = self.action_space
        acts = np.asarray(actions)
        if acts.shape[:1] != (self.num_envs,) or acts.shape[1:] != (space.shape or ()):
            raise ValueError(
                f"actions have shape {acts.shape}, expected {(self.num_envs, *(space.shape or ()))}"
                f" (one element of {space} per env)"
            )
        for i, a in enumerate(acts):
            if isinstance(space, spaces.Discrete):
                ok = np.issubdtype(a.dtype, np.integer) and space.contains(int(a))
            else:
                ok = space.contains(a.astype(space.dtype))
            if not ok:
                raise ValueError(
                    f"action {a.tolist()!r} of env {i} is outside the action space {space}; "
                    "pass elements of env.action_space (e.g. env.action_space.sample())"
                )
        if isinstance(space, spaces.Discrete):
            return acts.astype(np.int64)
        return acts.astype(space.dtype)

    def reset(self, env_indices: Any = None, observations: Any = None) -> np.ndarray:
        """Reset rows (all by default), optionally from given start observations."""
        idx = np.arange(self.num_envs) if env_indices is None else np.asarray(env_indices, np.int64)
        if observations is not None:
            observations = self.check_observations(observations, len(idx))
        if len(idx):
            self.observations[idx] = self.simulator.reset(idx, observations)
            self.elapsed_steps[idx] = 0
        self.started = True
        return self.observations.copy()

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Step every row; returns observations, rewards, terminations, truncations (no reset)."""
        if not self.started:
            raise RuntimeError("call reset() before step()")
        acts = self.check_actions(actions)
        out = self.simulator.step(acts)
        self.observations[:] = out.observations
        self.elapsed_steps += 1
        terminated = np.asarray(out.terminations, bool).copy()
        if self.max_episode_steps is None:
            truncated = np.zeros(self.num_envs, bool)
        else:
            truncated = (self.elapsed_steps >= self.max_episode_steps) & ~terminated
        rewards = np.asarray(out.rewards, np.float32).copy()
        return self.observations.copy(), rewards, terminated, truncated


class WorldModelEnv(gym.Env):
    """A ``gymnasium.Env`` imagined by a one-row simulator.

    Observation: uint8 ``Box(0, 255, (H, W, 3))``. Action: the real env's action space.
    Reward and termination: the world model's heads. Truncation: after ``max_episode_steps``.
    ``reset(options={"observation": frame})`` starts from a given uint8 (H, W, 3) frame; without
    it the simulator picks its start (a burn-in from held-out real frames).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 15}

    def __init__(self, simulator: Simulator, max_episode_steps: int | None = 100,
                 render_mode: str | None = None):
        self.core = WorldModelCore(simulator, max_episode_steps)
        if self.core.num_envs != 1:
            raise ValueError(
                f"WorldModelEnv needs a simulator with num_envs=1, got {self.core.num_envs}; "
                "use WorldModelVectorEnv or WorldModelVecEnv for batches"
            )
        self.render_mode = _render_mode(render_mode)
        self.observation_space = self.core.observation_space
        self.action_space = self.core.action_space

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Start a new imagined episode; returns ``(observation, info)``."""
        super().reset(seed=seed)
        if seed is not None:
            self.core.seed(seed)
        start = (options or {}).get("observation")
        obs = self.core.reset(observations=start)
        return obs[0], {}

    def step(self, action):
        """Imagine one step; returns ``(observation, reward, terminated, truncated, info)``."""
        obs, rew, term, trunc = self.core.step(np.asarray(action)[None])
        return obs[0], float(rew[0]), bool(term[0]), bool(trunc[0]), {}

    def render(self) -> np.ndarray | None:
        """The current imagined frame (``rgb_array``), uint8 (H, W, 3)."""
        return self.core.observations[0].copy() if self.render_mode == "rgb_array" else None


class WorldModelVectorEnv(VectorEnv):
    """A ``gymnasium.vector.VectorEnv`` over a batched simulator (one row per sub-env).

    Autoreset follows ``autoreset_mode`` (gymnasium's default next-step, or same-step with
    ``infos["final_obs"]``). ``reset(options={"observation": frames})`` starts every row from
    given uint8 (num_envs, H, W, 3) frames.
    """

    def __init__(self, simulator: Simulator, max_episode_steps: int | None = 100,
                 autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
                 render_mode: str | None = None):
        self.core = WorldModelCore(simulator, max_episode_steps)
        mode = AutoresetMode(autoreset_mode)
        if mode == AutoresetMode.DISABLED:
            raise ValueError("autoreset_mode must be NEXT_STEP or SAME_STEP, got DISABLED")
        self.metadata = {"autoreset_mode": mode, "render_modes": ["rgb_array"], "render_fps": 15}
        self.render_mode = _render_mode(render_mode)
        self.num_envs = self.core.num_envs
        self.single_observation_space = self.core.observation_space
        self.single_action_space = self.core.action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._ended = np.zeros(self.num_envs, bool)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Reset every sub-env; returns ``(observations, infos)``."""
        super().reset(seed=seed)
        if seed is not None:
            self.core.seed(seed)
        obs = self.core.reset(observations=(options or {}).get("observation"))
        self._ended[:] = False
        return obs, {}

    def step(self, actions):
        """Step every sub-env; ended sub-envs reset per the autoreset mode."""
        obs, rew, term, trunc = self.core.step(actions)
        infos: dict[str, Any] = {}
        if self.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP:
            ended = np.flatnonzero(self._ended)
            if len(ended):
                # Sub-envs that ended last step ignore this action and start anew.
                obs = self.core.reset(ended)
                rew[ended], term[ended], trunc[ended] = 0.0, False, False
            self._ended = term | trunc
        else:
            done = np.flatnonzero(term | trunc)
            if len(done):
                final = np.empty(self.num_envs, dtype=object)
                final[done] = list(obs[done])
                # as gymnasium's vector envs: the sub-envs' final infos (empty) and their mask
                infos = {"final_obs": final, "_final_obs": term | trunc,
                         "final_info": {}, "_final_info": term | trunc}
                obs = self.core.reset(done)
        return obs, rew, term, trunc, infos

    def render(self) -> tuple[np.ndarray, ...] | None:
        """The current imagined frames, one uint8 (H, W, 3) per sub-env."""
        if self.render_mode != "rgb_array":
            return None
        return tuple(self.core.observations.copy())


def _render_mode(render_mode: str | None) -> str | None:
    """The render mode, refused unless it is one a world model can render (no window)."""
    if render_mode not in (None, "rgb_array"):
        raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}: a world "
                         f"model renders imagined frames as arrays (show them with `embscale "
                         f"play` or save them with `embscale dream`)")
    return render_mode


class WorldModelVecEnv(VecEnv):
    """A stable-baselines3 ``VecEnv`` over a batched simulator, for SB3 algorithms (dyna).

    Follows SB3's conventions: same-step autoreset, ``infos[i]["terminal_observation"]`` and
    ``infos[i]["TimeLimit.truncated"]``; ``done`` is ``terminated or truncated``.
    """

    def __init__(self, simulator: Simulator, max_episode_steps: int | None = 100,
                 render_mode: str | None = None):
        self.core = WorldModelCore(simulator, max_episode_steps)
        self.render_mode = _render_mode(render_mode)
        self._actions: np.ndarray | None = None
        super().__init__(self.core.num_envs, self.core.observation_space, self.core.action_space)

    def reset(self) -> np.ndarray:
        """Reset every row (using seeds/options set with ``seed``/``set_options``)."""
        seeds = [s for s in self._seeds if s is not None]
        if seeds:
            self.core.seed(seeds[0])
        starts = [o.get("observation") for o in self._options]
        if any(s is not None for s in starts) and not all(s is not None for s in starts):
            raise ValueError("set a start 'observation' option for every env or for none")
        obs = self.core.reset(observations=np.stack(starts) if starts[0] is not None else None)
        self._reset_seeds()
        self._reset_options()
        self.reset_infos = [{} for _ in range(self.num_envs)]
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        """Store the actions for :meth:`step_wait`."""
        self._actions = actions

    def step_wait(self):
        """Step every row; rows that end are reset in the same call (SB3 convention)."""
        if self._actions is None:
            raise RuntimeError("call step_async() before step_wait()")
        actions, self._actions = self._actions, None
        obs, rew, term, trunc = self.core.step(actions)
        dones = term | trunc
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        done = np.flatnonzero(dones)
        for i in done:
            infos[i]["terminal_observation"] = obs[i]
            infos[i]["TimeLimit.truncated"] = bool(trunc[i] and not term[i])
        if len(done):
            obs = self.core.reset(done)
        return obs, rew, dones, infos

    def close(self) -> None:
        """Nothing to release: the simulator lives in this process."""

    def get_images(self) -> list[np.ndarray]:
        """The current imagined frames, one uint8 (H, W, 3) per row."""
        return list(self.core.observations.copy())

    def get_attr(self, attr_name: str, indices=None) -> list[Any]:
        """An attribute of the (shared) env, repeated for each index."""
        return [getattr(self, attr_name) for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices=None) -> None:
        """Set an attribute of the (shared) env."""
        setattr(self, attr_name, value)

    def env_method(self, method_name: str, *method_args, indices=None, **method_kwargs):
        """Call a method of the (shared) env once per index (``render``: each row's frame)."""
        if method_name == "render":  # not VecEnv.render, which would call back here
            frames = self.get_images()
            return [frames[i] for i in self._get_indices(indices)]
        method = getattr(self, method_name)
        return [method(*method_args, **method_kwargs) for _ in self._get_indices(indices)]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices=None) -> list[bool]:
        """Rows are not gymnasium envs, so none is wrapped."""
        return [False for _ in self._get_indices(indices)]
