"""A person plays an env at the keyboard (pygame); the episodes are saved as a Minari dataset.

Keys: arrows and space map onto the env's action meanings (Atari: ``LEFT``, ``RIGHT``, ``UP``,
``DOWN``, ``FIRE`` and their combinations); envs without meanings use the digit keys to choose a
discrete action. For a continuous ``Box`` action, arrows drive dimensions 0 (left/right) and 1
(up/down), W/S dimension 2 and space sets dimension 3 to its low end (e.g. close a gripper).
Escape or closing the window ends the session; the episode in progress is kept (truncated).
The dataset is written atomically: Ctrl-C leaves nothing.

Example:
    embscale data record --env embscale/Breakout-v1 --episodes 3 \
        --dataset-id embscale/breakout/human-v1
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from offline_data import argtypes as A
from offline_data.datasets import check_image_space
from offline_data.discretize import discretizer_for_space
from offline_data.frame_size import env_size
from offline_data.minari_writer import MinariWriter

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecordConfig:
    """A keyboard recording session."""

    env_id: str = "embscale/Breakout-v1"
    """Gymnasium id of the env to play."""
    dataset_id: str = "embscale/breakout/human-v1"
    """Minari id written."""
    episodes: int = 1
    """Episodes to play."""
    fps: float = 15.0
    """Env steps per second (0: as fast as the machine goes, for tests)."""
    scale: int = 6
    """Window pixels per frame pixel."""
    max_steps: int | None = None
    """Per-episode cap (truncation)."""
    buckets: int = 11
    """Buckets per continuous action dimension for the discretizer spec."""
    seed: int = 0
    """Seed of the first reset."""
    overwrite: bool = False
    """Replace an existing dataset id."""
    size: int | tuple[int, int] | None = None
    """Frame size passed to the env as ``size`` (one side or (height, width)); None: its default."""

    def __post_init__(self):
        if self.episodes < 1:
            raise ValueError(f"episodes={self.episodes} must be >= 1")
        if self.fps < 0 or self.scale < 1:
            raise ValueError(f"fps={self.fps} must be >= 0 and scale={self.scale} >= 1")


class KeyboardActions:
    """Maps the set of held keys to an env action."""

    def __init__(self, env: Any):
        import pygame
        from gymnasium import spaces

        self.space = env.action_space
        self.meanings: list[str] | None = None
        try:
            self.meanings = list(env.get_wrapper_attr("get_action_meanings")())
        except AttributeError:
            pass
        self.named = {pygame.K_LEFT: "LEFT", pygame.K_RIGHT: "RIGHT", pygame.K_UP: "UP",
                      pygame.K_DOWN: "DOWN", pygame.K_SPACE: "FIRE"}
        self.digits = {getattr(pygame, f"K_{i}"): i for i in range(10)}
        self.k = pygame
        if not isinstance(self.space, (spaces.Discrete, spaces.Box)):
            raise ValueError(f"keyboard play supports Discrete and Box actions, not {self.space}")

    def action(self, held: set[int]) -> Any:
        """The action for the currently held keys."""
        from gymnasium import spaces

        if isinstance(self.space, spaces.Discrete):
            if self.meanings:
                words = {self.named[k] for k in held if k in self.named}
                for i, meaning in enumerate(self.meanings):
                    if _meaning_words(meaning) == words:
                        return i
                return 0  # NOOP when the combination has no action
            for k in sorted(held):
                if k in self.digits and self.digits[k] < self.space.n:
                    return self.digits[k]
            return 0
        k = self.k
        a = np.zeros(self.space.shape, dtype=self.space.dtype).reshape(-1)
        axes = [(k.K_RIGHT, k.K_LEFT), (k.K_UP, k.K_DOWN), (k.K_w, k.K_s)]
        for dim, (plus, minus) in enumerate(axes[:a.size]):
            a[dim] = float(plus in held) - float(minus in held)
        if a.size > 3:
            a[3] = -1.0 if k.K_SPACE in held else 1.0
        low, high = self.space.low.reshape(-1), self.space.high.reshape(-1)
        return np.clip(a, low, high).reshape(self.space.shape)


def _meaning_words(meaning: str) -> set[str]:
    """``"UPRIGHTFIRE"`` -> {"UP", "RIGHT", "FIRE"}; ``"NOOP"`` -> set()."""
    words, rest = set(), meaning
    for word in ("UP", "DOWN", "LEFT", "RIGHT", "FIRE"):
        if word in rest:
            words.add(word)
            rest = rest.replace(word, "")
    return words


def record(config: RecordConfig, before_step: Callable[[int], None] | None = None):
    """Open a window, let a person play ``config.episodes`` episodes, save them atomically.

    Args:
        config: the session.
        before_step: called with the global step index before the events of each step are
            read (tests post synthetic key events here with ``pygame.event.post``).

    Returns:
        The written ``minari.MinariDataset``.
    """
    import pygame

    import envs  # gymnasium

    env = envs.make(config.env_id, **({"size": config.size} if config.size else {}))
    check_image_space(env.observation_space, what=f"env {config.env_id!r}")
    discretizer = discretizer_for_space(env.action_space, buckets=config.buckets)
    keys = KeyboardActions(env)
    pygame.init()
    h, w = env.observation_space.shape[:2]
    screen = pygame.display.set_mode((w * config.scale, h * config.scale))
    pygame.display.set_caption(f"embscale record: {config.env_id} (Esc to stop)")
    clock = pygame.time.Clock()
    held: set[int] = set()
    step = 0
    try:
        with MinariWriter(config.dataset_id, env=env, discretizer=discretizer,
                          algorithm_name="human-keyboard", overwrite=config.overwrite,
                          description=f"{config.env_id} played at the keyboard") as writer:
            quit_requested = False
            for episode in range(config.episodes):
                obs, _ = env.reset(seed=config.seed if episode == 0 else None)
                frames, actions, rewards, terms, truncs = [obs], [], [], [], []
                while True:
                    if before_step is not None:
                        before_step(step)
                    for event in pygame.event.get():
                        if event.type == pygame.QUIT or (event.type == pygame.KEYDOWN
                                                         and event.key == pygame.K_ESCAPE):
                            quit_requested = True
                        elif event.type == pygame.KEYDOWN:
                            held.add(event.key)
                        elif event.type == pygame.KEYUP:
                            held.discard(event.key)
                    if quit_requested:
                        if truncs:
                            truncs[-1] = True  # keep the partial episode
                        break
                    action = keys.action(held)
                    obs, reward, terminated, truncated, _ = env.step(action)
                    step += 1
                    truncated = truncated or bool(config.max_steps and
                                                  len(actions) + 1 >= config.max_steps)
                    frames.append(obs)
                    actions.append(action)
                    rewards.append(reward)
                    terms.append(terminated)
                    truncs.append(truncated)
                    _show(screen, obs, config.scale)
                    if config.fps:
                        clock.tick(config.fps)
                    if terminated or truncated:
                        break
                if actions:
                    writer.add_episode(np.stack(frames), np.asarray(actions), rewards, terms,
                                       truncs, {"player": "keyboard"})
                    logger.info("episode %d: %d steps, return %.1f", episode, len(actions),
                                sum(rewards))
                if quit_requested:
                    break
            return writer.commit()
    finally:
        pygame.display.quit()
        pygame.quit()
        env.close()


def _show(screen: Any, frame: np.ndarray, scale: int) -> None:
    import pygame

    surface = pygame.surfarray.make_surface(np.ascontiguousarray(frame.transpose(1, 0, 2)))
    screen.blit(pygame.transform.scale(surface, screen.get_size()), (0, 0))
    pygame.display.flip()


def register_record(sub: Any) -> None:
    """Add ``record`` under ``embscale data``."""
    p = sub.add_parser("record", help="play an env at the keyboard and save a dataset",
                       description="Play with arrows/space (Esc stops); saved atomically.")
    p.add_argument("--env", default=RecordConfig.env_id, help="gymnasium id")
    p.add_argument("--dataset-id", default=RecordConfig.dataset_id, help="Minari id")
    p.add_argument("--episodes", type=A.positive_int, default=1, help="episodes to play")
    p.add_argument("--fps", type=A.positive_float, default=15.0, help="env steps per second")
    p.add_argument("--scale", type=A.positive_int, default=6, help="window pixels per frame pixel")
    p.add_argument("--max-steps", type=A.positive_int, default=None, help="cap per episode")
    p.add_argument("--size", default=None,
                   help="frame size: one side of a square (64) or HEIGHTxWIDTH (72x120)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset id")
    p.set_defaults(func=_record)


def _record(args: argparse.Namespace) -> int:
    cfg = RecordConfig(env_id=args.env, dataset_id=args.dataset_id, episodes=args.episodes,
                       fps=args.fps, scale=args.scale, max_steps=args.max_steps,
                       overwrite=args.overwrite, size=env_size(args.size) if args.size else None)
    ds = record(cfg)
    print(f"wrote {ds.id}: {ds.total_episodes} episodes, {ds.total_steps} steps")
    return 0
