"""A scripted Breakout player that reads the console RAM, with a skill knob.

The player finds the ball and the paddle in the Atari's 128-byte RAM, predicts where the ball will
cross the paddle's row (unfolding bounces off the side walls) and moves the paddle there. Skill in
[0, 1] degrades it the way people differ:

* reaction delay: the player sees the ball as it was ``round((1 - skill) * max_delay)`` steps ago;
* anticipation: the target blends the predicted landing point (weight ``skill``) with the ball's
  current column, so weak players chase the ball instead of reading its path;
* aim noise: a misjudgement of the landing point, drawn from N(0, ((1 - skill) * max_aim_noise)^2)
  RAM units once per downward pass of the ball and held until the next one;
* random actions: with probability ``(1 - skill)**2 * max_random_prob`` a uniformly random
  action (squared so that returns grow steadily with skill instead of only near skill 1).

At skill 0 every action is random (Breakout's random baseline, about 1-2 points per episode).

Example::

    import envs
    from agents.demonstrators import ScriptedBreakoutPolicy

    env = envs.make("embscale/Breakout-v1")
    policy = ScriptedBreakoutPolicy(skill=0.9, seed=0).bind(env)
    obs, info = env.reset(seed=0)
    action, _ = policy.predict(obs, episode_start=True)
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

import numpy as np

from agents.demonstrators.base import BoundEnvPolicy, SkillSpec

logger = logging.getLogger(__name__)

# RAM addresses, checked against the screen (ball pixel column = RAM[99] - 49, ball pixel row =
# RAM[101] + 9, paddle left pixel column = RAM[72] - 47, paddle 16 pixels wide until it shrinks).
RAM_PADDLE_X = 72
RAM_BALL_X = 99
RAM_BALL_Y = 101
# Paddle RAM value that centres the paddle under a ball at RAM x: (x - 48) = (paddle - 47) + 8.
PADDLE_OFFSET = -9
# Ball RAM x between the side walls (screen columns 8..151) and the RAM row of the paddle's top.
BALL_X_MIN, BALL_X_MAX = 57.0, 198.0
PADDLE_ROW = 180.0
PADDLE_X_MIN, PADDLE_X_MAX = 55.0, 191.0
# The paddle moves about 23 RAM units per step at frameskip 4: a dead zone narrower than half of
# that makes it oscillate around the target.
DEAD_ZONE = 8.0

NOOP, FIRE, RIGHT, LEFT = 0, 1, 2, 3


def fold_into(x: float, low: float, high: float) -> float:
    """Fold a coordinate back into [low, high] as a ball bouncing off both walls would.

    >>> fold_into(110.0, 0.0, 100.0)
    90.0
    >>> fold_into(-30.0, 0.0, 100.0)
    30.0
    """
    width = high - low
    y = (x - low) % (2.0 * width)
    return low + (y if y <= width else 2.0 * width - y)


class _PlayerState:
    """Per-env memory of one episode: delayed RAM readings and the current misjudgement."""

    def __init__(self, skill: float, delay: int):
        self.skill = skill
        self.delay = delay
        self.history: deque[tuple[float, float]] = deque(maxlen=delay + 2)
        self.aim_offset = 0.0
        self.ball_descending = False


class ScriptedBreakoutPolicy(BoundEnvPolicy):
    """RAM-reading Breakout player with stable-baselines3's ``predict`` protocol.

    Args:
        skill: a float in [0, 1] for one fixed skill, or a ``(low, high)`` range from which a
            skill is drawn uniformly at the start of every episode (a population of players).
        seed: seed of the player's own random generator (skill draws, noise, random actions).
        max_delay: reaction delay in env steps at skill 0.
        max_aim_noise: standard deviation of the landing misjudgement at skill 0, in RAM x units
            (about one screen pixel each; the paddle is 16 wide).
        max_random_prob: probability of a random action at skill 0.
    """

    def __init__(
        self,
        skill: float | tuple[float, float] = 1.0,
        seed: int | None = None,
        max_delay: int = 6,
        max_aim_noise: float = 24.0,
        max_random_prob: float = 1.0,
    ):
        super().__init__(SkillSpec.parse(skill), seed)
        if max_delay < 0:
            raise ValueError(f"max_delay must be >= 0 env steps, got {max_delay}")
        if max_aim_noise < 0:
            raise ValueError(f"max_aim_noise must be >= 0 RAM units, got {max_aim_noise}")
        if not 0.0 <= max_random_prob <= 1.0:
            raise ValueError(f"max_random_prob must lie in [0, 1], got {max_random_prob}")
        self.max_delay = int(max_delay)
        self.max_aim_noise = float(max_aim_noise)
        self.max_random_prob = float(max_random_prob)

    # -- the batched core -------------------------------------------------------------------

    def act(
        self,
        rams: np.ndarray,
        episode_start: np.ndarray | bool | None = None,
        deterministic: bool = False,
    ) -> np.ndarray:
        """Choose actions from console RAM snapshots.

        Args:
            rams: uint8 array (B, 128) (or (128,) for one env), e.g. ``info["ram"]`` of the
                suite's Atari env, or ``env.unwrapped.ale.getRAM()``.
            episode_start: bool (B,) true where an episode has just begun (after ``reset``);
                ``None`` starts new episodes only on the first call or a change of B.
            deterministic: drop the random parts (random actions and aim noise); the reaction
                delay and the blend of anticipation stay, as they are the player's skill.

        Returns:
            int64 actions (B,) in Breakout's minimal action set (0 NOOP, 1 FIRE, 2 RIGHT, 3 LEFT).
        """
        rams = np.asarray(rams)
        if rams.ndim == 1:
            rams = rams[None]
        if rams.ndim != 2 or rams.shape[1] < 128:
            raise ValueError(
                f"rams must have shape (num_envs, 128) (the Atari RAM), got {rams.shape}; read it "
                "with env.unwrapped.ale.getRAM() or info['ram'] of embscale/Breakout-v1"
            )
        self._start_episodes(episode_start, len(rams))
        actions = np.empty(len(rams), dtype=np.int64)
        for i, ram in enumerate(rams):
            actions[i] = self._act_one(self._players[i], ram, deterministic)
        return actions

    getter_name = "get_ram"

    def _stack(self, rams: list[np.ndarray]) -> np.ndarray:
        return np.stack(rams)

    def _fallback(self, env: Any) -> np.ndarray:
        return _ale_ram(env)

    # -- internals --------------------------------------------------------------------------

    def _new_player(self) -> _PlayerState:
        skill = self.skill_spec.sample(self.rng)
        delay = int(round((1.0 - skill) * self.max_delay))
        return _PlayerState(skill, delay)

    def _act_one(self, p: _PlayerState, ram: np.ndarray, deterministic: bool) -> int:
        ball_x, ball_y = float(ram[RAM_BALL_X]), float(ram[RAM_BALL_Y])
        paddle = float(ram[RAM_PADDLE_X])
        p.history.append((ball_x, ball_y))
        if not deterministic and self.rng.random() < (1.0 - p.skill) ** 2 * self.max_random_prob:
            return int(self.rng.integers(4))
        if ball_y == 0.0:
            # No ball in play (start of the game or after a lost life): serve it.
            p.history.clear()
            return FIRE
        # The player acts on what it saw `delay` steps ago (or the oldest reading it has).
        k = min(p.delay, len(p.history) - 1)
        x, y = p.history[-1 - k]
        before = p.history[-2 - k] if len(p.history) >= k + 2 else None
        target = x
        if before is not None and before[1] != 0.0:
            dx, dy = x - before[0], y - before[1]
            descending = dy > 0
            if descending and not p.ball_descending and not deterministic:
                p.aim_offset = self.rng.normal(0.0, (1.0 - p.skill) * self.max_aim_noise)
            p.ball_descending = descending
            if descending:
                steps = max(PADDLE_ROW - y, 0.0) / dy
                landing = fold_into(x + dx * steps, BALL_X_MIN, BALL_X_MAX)
                target = p.skill * landing + (1.0 - p.skill) * x
        if not deterministic:
            target += p.aim_offset
        goal = min(max(target + PADDLE_OFFSET, PADDLE_X_MIN), PADDLE_X_MAX)
        if paddle < goal - DEAD_ZONE:
            return RIGHT
        if paddle > goal + DEAD_ZONE:
            return LEFT
        return NOOP


def _ale_ram(env: Any) -> np.ndarray:
    """RAM of a single ALE env that lacks ``get_ram`` (e.g. ``ALE/Breakout-v5``)."""
    ale = getattr(env.unwrapped, "ale", None)
    if ale is None:
        raise TypeError(
            f"cannot read Atari RAM from {env!r}: bind the player to embscale/Breakout-v1 or an "
            "ale-py env (one exposing .unwrapped.ale)"
        )
    return ale.getRAM()
