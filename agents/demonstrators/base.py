"""What the scripted demonstrators share: skill parsing and the bound-env ``predict`` protocol."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class SkillSpec:
    """A skill in [0, 1]: fixed (``low == high``) or drawn per episode from U[low, high]."""

    low: float = 1.0
    """Lowest skill (0 = random play, 1 = the best the script can do)."""
    high: float = 1.0
    """Highest skill."""

    def __post_init__(self):
        if not (0.0 <= self.low <= self.high <= 1.0):
            raise ValueError(
                f"skill must lie in [0, 1] with low <= high, got low={self.low}, high={self.high}; "
                "pass a float such as 0.8 or a range such as (0.2, 1.0)"
            )

    @classmethod
    def parse(cls, skill: float | Sequence[float] | SkillSpec) -> SkillSpec:
        """Build from a float, a ``(low, high)`` pair or another ``SkillSpec``.

        >>> SkillSpec.parse(0.5)
        SkillSpec(low=0.5, high=0.5)
        >>> SkillSpec.parse((0.0, 1.0)).high
        1.0
        """
        if isinstance(skill, SkillSpec):
            return skill
        if isinstance(skill, (int, float, np.floating, np.integer)) and not isinstance(skill, bool):
            return cls(float(skill), float(skill))
        if isinstance(skill, (tuple, list)) and len(skill) == 2:
            return cls(float(skill[0]), float(skill[1]))
        raise TypeError(f"skill must be a float in [0, 1] or a (low, high) pair, got {skill!r}")

    def sample(self, rng: np.random.Generator) -> float:
        """Draw one episode's skill."""
        if self.low == self.high:
            return self.low
        return float(rng.uniform(self.low, self.high))


def is_vector_env(env: Any) -> bool:
    """True for a gymnasium ``VectorEnv`` or a stable-baselines3 ``VecEnv`` (duck-typed)."""
    import gymnasium

    if isinstance(env, gymnasium.vector.VectorEnv):
        return True
    return hasattr(env, "env_method") and hasattr(env, "num_envs")


class BoundEnvPolicy:
    """Base of demonstrators that read privileged env state (RAM, simulator state) to act.

    stable-baselines3's ``predict`` only receives observations (images here), so a demonstrator is
    *bound* to the env it plays: ``predict`` reads the privileged inputs of every sub-env through
    ``read_inputs(env)`` and hands them to the batched ``act(inputs, episode_start,
    deterministic)``. Subclasses implement ``act`` and ``read_inputs``.
    """

    getter_name: str = ""
    """Name of the env method returning one sub-env's privileged input (e.g. ``get_ram``)."""

    reads_observations = False
    """``predict`` uses only the observation's batch size, never its pixels (collectors may hand
    it blank frames and make the real ones elsewhere: ``offline_data.collect_streams``)."""

    def __init__(self, skill_spec: SkillSpec, seed: int | None = None):
        self.skill_spec = skill_spec
        self.rng = np.random.default_rng(seed)
        self._env: Any = None
        self._vector = False
        self._read: Callable[[], list[Any]] | None = None
        self._players: list[Any] = []

    def bind(self, env: Any) -> BoundEnvPolicy:
        """Play ``env`` (a gymnasium Env, gymnasium VectorEnv or SB3 VecEnv); returns ``self``."""
        self._env = env
        self._vector = is_vector_env(env)
        self._read = None
        if not self._vector:
            # Resolve the getter through the wrappers once: predict runs every env step.
            try:
                getter = env.get_wrapper_attr(self.getter_name)
            except AttributeError:
                getter = None
            if getter is not None:
                self._read = lambda: [getter()]
        if self._read is None:
            self._read = lambda: self._call_each(env, self.getter_name, self._fallback)
        self.reset()
        return self

    def set_skill(self, skill: float | Sequence[float] | SkillSpec) -> None:
        """Use ``skill`` (a float or a ``(low, high)`` range) for the episodes that start next."""
        self.skill_spec = SkillSpec.parse(skill)

    def reset(self, env: Any = None) -> None:
        """Forget all per-episode memory (optionally binding ``env`` first)."""
        if env is not None:
            self.bind(env)
        self._players = []

    @property
    def skills(self) -> np.ndarray:
        """float64 (B,): the skill of each env's current episode (empty before the first act)."""
        return np.array([p.skill for p in self._players], dtype=np.float64)

    def act(
        self, inputs: Any, episode_start: Any = None, deterministic: bool = False
    ) -> np.ndarray:
        """Batched actions from privileged inputs (implemented by subclasses)."""
        raise NotImplementedError

    def _new_player(self) -> Any:
        """Fresh per-episode memory with a ``skill`` attribute (implemented by subclasses)."""
        raise NotImplementedError

    def _start_episodes(self, episode_start: Any, batch: int) -> None:
        """Renew the per-env memory where an episode starts (all of it when B changes)."""
        if len(self._players) != batch:
            self._players = [self._new_player() for _ in range(batch)]
            return
        if episode_start is None:
            return
        starts = np.asarray(episode_start, dtype=bool).reshape(-1)
        if starts.size == 1 and batch > 1:
            starts = np.repeat(starts, batch)
        if starts.size != batch:
            raise ValueError(
                f"episode_start has {starts.size} entries for {batch} envs; pass one bool per env"
            )
        if starts.any():
            for i in np.flatnonzero(starts):
                self._players[i] = self._new_player()

    def read_inputs(self, env: Any) -> Any:
        """Privileged inputs of every sub-env of ``env`` (an Env, VectorEnv or SB3 VecEnv)."""
        return self._stack(self._call_each(env, self.getter_name, self._fallback))

    def _stack(self, inputs: list[Any]) -> Any:
        """Batch the per-env inputs (implemented by subclasses)."""
        raise NotImplementedError

    def _fallback(self, env: Any) -> Any:
        """Privileged input of a single env lacking ``getter_name`` (implemented by subclasses)."""
        raise NotImplementedError

    def predict(
        self,
        observation: np.ndarray | dict[str, np.ndarray],
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """stable-baselines3's policy protocol, acting on the bound env's current state.

        Args:
            observation: the observation(s) the env just returned: (H, W, 3) for a single env or
                (B, H, W, 3) for a vector env. Only its batch size is used; the action comes from
                the bound env's privileged state, which must be the state after that observation.
            state: ignored (the per-episode memory lives in the policy); returned as ``None``.
            episode_start: bool (B,) true for envs whose episode just began (SB3's
                ``episode_starts``); a bool for a single env. Starts a new episode's memory and
                skill draw. ``None`` never starts one after the first call: then call ``reset()``.
            deterministic: drop the demonstrator's random parts (see ``act``).

        Returns:
            ``(actions, None)``: actions (B, ...) for a vector env (or a single env's observation
            with a leading axis of 1), one action for a single env.
        """
        if self._read is None:
            raise RuntimeError(
                f"{type(self).__name__} reads privileged env state to act: call "
                "policy.bind(env) with the env (or vector env) it plays before predict()"
            )
        del state
        raw = self._read()
        batch = len(raw)
        inputs = self._stack(raw)
        vector = self._vector
        obs = observation["observation"] if isinstance(observation, dict) else observation
        # A single env's observation given with a leading batch axis of 1 (as SB3 allows) gets
        # actions with that axis back, like SB3's own predict.
        space_shape = getattr(getattr(self._env, "observation_space", None), "shape", None)
        batched = vector or (space_shape is not None and np.ndim(obs) == len(space_shape) + 1)
        obs_batch = np.shape(obs)[0] if batched else 1
        if obs_batch != batch:
            raise ValueError(
                f"observation holds {obs_batch} envs but the bound env has {batch}: bind the "
                "policy to the env that produced the observation"
            )
        if episode_start is not None and not vector:
            episode_start = np.asarray([bool(np.asarray(episode_start).reshape(-1)[0])])
        actions = self.act(inputs, episode_start, deterministic)
        return (actions if batched else actions[0]), None

    @staticmethod
    def _call_each(env: Any, method: str, fallback: Callable[[Any], Any]) -> list[Any]:
        """Call ``method()`` on every sub-env, or ``fallback(sub_env)`` where it does not exist."""
        if hasattr(env, "env_method") and hasattr(env, "num_envs"):  # stable-baselines3 VecEnv
            try:
                return list(env.env_method(method))
            except AttributeError:
                return [fallback(e) for e in _sub_envs(env)]
        import gymnasium

        if isinstance(env, gymnasium.vector.VectorEnv):
            try:
                return list(env.call(method))
            except AttributeError:
                return [fallback(e) for e in _sub_envs(env)]
        try:
            getter = env.get_wrapper_attr(method)
        except AttributeError:
            return [fallback(env)]
        return [getter()]


def _sub_envs(env: Any) -> list[Any]:
    while not hasattr(env, "envs") and hasattr(env, "venv"):  # unwrap SB3 VecEnvWrappers
        env = env.venv
    while not hasattr(env, "envs") and hasattr(env, "env"):  # unwrap gymnasium vector wrappers
        env = env.env
    if not hasattr(env, "envs"):
        raise TypeError(
            f"cannot reach the sub-envs of {env!r}: use a synchronous vector env (gymnasium "
            "SyncVectorEnv or SB3 DummyVecEnv) or envs that define the needed getter"
        )
    return list(env.envs)
