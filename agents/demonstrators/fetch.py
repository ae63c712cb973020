"""A scripted FetchPickAndPlace controller that reads the simulator state, with a skill knob.

The controller runs four phases per episode: move the open gripper above the block, descend onto
it, close the fingers, carry the block to the target. Each phase is a proportional controller on
the gripper position from ``info["state"]`` (FetchPickAndPlace's Dict observation). Skill in
[0, 1] degrades it:

* action noise: Gaussian noise of standard deviation ``(1 - skill) * max_action_noise`` on every
  action (the shaky hand of an unpractised operator);
* random actions: with probability ``(1 - skill)**2 * max_random_prob`` a uniformly random action;
* gain: the proportional gain falls from ``gain`` at skill 1 to ``gain / 3`` at skill 0, so weak
  operators move hesitantly and often run out of time.

Example::

    import envs
    from agents.demonstrators import ScriptedFetchPickAndPlacePolicy

    env = envs.make("embscale/FetchPickAndPlace-v0")
    policy = ScriptedFetchPickAndPlacePolicy(skill=1.0, seed=0).bind(env)
    obs, info = env.reset(seed=0)
    action, _ = policy.predict(obs, episode_start=True)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from agents.demonstrators.base import BoundEnvPolicy, SkillSpec

# Layout of FetchPickAndPlace's state["observation"] (25,): gripper position (0:3), block
# position (3:6), block minus gripper (6:9), the two finger joint positions (9:11), ...
GRIP_POS = slice(0, 3)
OBJECT_POS = slice(3, 6)
FINGERS = slice(9, 11)
APPROACH, DESCEND, GRASP, CARRY = 0, 1, 2, 3
HOVER = 0.04  # metres above the block before descending
XY_TOLERANCE = 0.008  # metres: close enough above the block to descend
Z_TOLERANCE = 0.008  # metres: close enough to the block's centre to grasp
GRASP_STEPS = 3  # steps with the fingers closing before lifting
SLIP_DISTANCE = 0.04  # metres between gripper and block that means the block was dropped


class _OperatorState:
    """Per-env memory of one episode: the phase and the skill."""

    def __init__(self, skill: float):
        self.skill = skill
        self.phase = APPROACH
        self.grasp_steps = 0


class ScriptedFetchPickAndPlacePolicy(BoundEnvPolicy):
    """State-reading pick-and-place controller with stable-baselines3's ``predict`` protocol.

    Args:
        skill: a float in [0, 1], or a ``(low, high)`` range drawn from per episode.
        seed: seed of the controller's own random generator.
        gain: proportional gain at skill 1, in action units per metre of position error (the
            env moves the gripper 0.05 m per unit action per step).
        max_action_noise: standard deviation of the action noise at skill 0 (action units).
        max_random_prob: probability of a random action at skill 0.
    """

    def __init__(
        self,
        skill: float | tuple[float, float] = 1.0,
        seed: int | None = None,
        gain: float = 12.0,
        max_action_noise: float = 0.8,
        max_random_prob: float = 0.5,
    ):
        super().__init__(SkillSpec.parse(skill), seed)
        if gain <= 0:
            raise ValueError(f"gain must be > 0 action units per metre, got {gain}")
        if max_action_noise < 0:
            raise ValueError(f"max_action_noise must be >= 0, got {max_action_noise}")
        if not 0.0 <= max_random_prob <= 1.0:
            raise ValueError(f"max_random_prob must lie in [0, 1], got {max_random_prob}")
        self.gain = float(gain)
        self.max_action_noise = float(max_action_noise)
        self.max_random_prob = float(max_random_prob)

    def act(
        self,
        states: dict[str, np.ndarray],
        episode_start: np.ndarray | bool | None = None,
        deterministic: bool = False,
    ) -> np.ndarray:
        """Choose actions from Fetch state observations.

        Args:
            states: FetchPickAndPlace's Dict observation with a leading batch axis:
                ``observation`` (B, 25) and ``desired_goal`` (B, 3) (``info["state"]`` of
                ``embscale/FetchPickAndPlace-v0``; unbatched arrays are taken as B = 1).
            episode_start: bool (B,) true where an episode has just begun.
            deterministic: drop the noise and random actions (the skill's gain stays).

        Returns:
            float32 actions (B, 4) in [-1, 1]: gripper dx, dy, dz and finger opening.
        """
        if not isinstance(states, dict) or not {"observation", "desired_goal"} <= states.keys():
            raise ValueError(
                "states must be FetchPickAndPlace's Dict observation with 'observation' and "
                "'desired_goal' (info['state'] of embscale/FetchPickAndPlace-v0), got "
                f"{type(states).__name__}"
            )
        obs = np.atleast_2d(np.asarray(states["observation"], dtype=np.float64))
        goal = np.atleast_2d(np.asarray(states["desired_goal"], dtype=np.float64))
        if obs.shape[1] != 25 or goal.shape != (len(obs), 3):
            raise ValueError(
                "expected state['observation'] of shape (B, 25) and state['desired_goal'] of "
                f"shape (B, 3), got {obs.shape} and {goal.shape}"
            )
        self._start_episodes(episode_start, len(obs))
        actions = np.empty((len(obs), 4), dtype=np.float32)
        for i in range(len(obs)):
            actions[i] = self._act_one(self._players[i], obs[i], goal[i], deterministic)
        return actions

    getter_name = "get_state"

    def _stack(self, states: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        return {k: np.stack([s[k] for s in states]) for k in states[0]}

    def _fallback(self, env: Any) -> dict[str, np.ndarray]:
        return _missing_state(env)

    def _new_player(self) -> _OperatorState:
        return _OperatorState(self.skill_spec.sample(self.rng))

    def _act_one(
        self, p: _OperatorState, obs: np.ndarray, goal: np.ndarray, deterministic: bool
    ) -> np.ndarray:
        grip, block = obs[GRIP_POS], obs[OBJECT_POS]
        finger_gap = float(obs[FINGERS].sum())
        rel = block - grip
        if p.phase == CARRY and np.linalg.norm(rel) > SLIP_DISTANCE:
            p.phase = APPROACH  # dropped it: start over
        if p.phase == APPROACH and np.linalg.norm(rel[:2]) < XY_TOLERANCE:
            p.phase = DESCEND
        if p.phase == DESCEND:
            if np.linalg.norm(rel[:2]) > 2 * XY_TOLERANCE:
                p.phase = APPROACH
            elif abs(rel[2]) < Z_TOLERANCE:
                p.phase, p.grasp_steps = GRASP, 0
        if p.phase == GRASP:
            p.grasp_steps += 1
            if p.grasp_steps > GRASP_STEPS and finger_gap < 0.06:
                p.phase = CARRY

        if p.phase == APPROACH:
            target, fingers = block + np.array([0.0, 0.0, HOVER]), 1.0
        elif p.phase == DESCEND:
            target, fingers = block, 1.0
        elif p.phase == GRASP:
            target, fingers = grip, -1.0
        else:
            target, fingers = goal, -1.0
        gain = self.gain * (1.0 + 2.0 * p.skill) / 3.0
        action = np.append(gain * (target - grip), fingers)
        if not deterministic:
            if self.rng.random() < (1.0 - p.skill) ** 2 * self.max_random_prob:
                action = self.rng.uniform(-1.0, 1.0, size=4)
            else:
                action = action + self.rng.normal(0.0, (1.0 - p.skill) * self.max_action_noise, 4)
        return np.clip(action, -1.0, 1.0).astype(np.float32)


def _missing_state(env: Any) -> dict[str, np.ndarray]:
    raise TypeError(
        f"cannot read the Fetch state from {env!r}: bind the controller to "
        "embscale/FetchPickAndPlace-v0 (it defines get_state())"
    )
