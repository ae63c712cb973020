"""The embedded default datasets: scripted Breakout players and a scripted Fetch arm, toy scale.

Example:
    embscale data defaults            # builds both (reuses ones that exist)
    embscale data defaults --only breakout --overwrite
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from offline_data.collect_streams import collect_streams
from offline_data.datasets import BREAKOUT_DATASET_ID, FETCH_DATASET_ID, dataset_path, load_dataset

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DefaultDataset:
    """How one embedded default dataset is collected."""

    env_id: str
    """Gymnasium id of the env."""
    dataset_id: str
    """Minari id written."""
    policy: str = "scripted"
    """Policy spec for ``resolve_policy`` (the env's scripted demonstrator)."""
    skill: tuple[float, float] = (0.0, 1.0)
    """Skill range in [0, 1] drawn per episode: a population of players of varying skill."""
    num_episodes: int = 100
    """Upper bound on episodes."""
    max_total_steps: int | None = None
    """Stop after the episode that reaches this many steps (frames) in total."""
    max_steps_per_episode: int | None = None
    """Per-episode cap (last step marked truncated); None keeps the env's own limit."""
    buckets: int | None = None
    """Buckets per continuous action dimension (None for discrete actions)."""
    seed: int = 0
    """Seed of the first env reset and of the demonstrator."""
    streams: int = 1
    """Env processes playing episodes (``offline_data.collect_streams``); part of the data."""
    description: str = ""
    """Stored in the dataset metadata."""

    def __post_init__(self):
        if self.num_episodes < 1:
            raise ValueError(f"num_episodes={self.num_episodes} must be >= 1")
        if self.streams < 1:
            raise ValueError(f"streams={self.streams} must be >= 1")
        if self.max_total_steps is not None and self.max_total_steps < 1:
            raise ValueError(f"max_total_steps={self.max_total_steps} must be >= 1 or None")


DEFAULTS: dict[str, DefaultDataset] = {
    # About 40k frames: enough for a toy tokenizer and GPT ladder, collected in about a minute.
    "breakout": DefaultDataset(
        env_id="embscale/Breakout-v1", dataset_id=BREAKOUT_DATASET_ID, num_episodes=400,
        max_total_steps=40_000, max_steps_per_episode=2_000, skill=(0.7, 1.0),
        description="Atari Breakout 64x64 RGB (the playfield cropped from the screen, the "
                    "maximum of the last two emulator frames of each step) played by a "
                    "scripted RAM-reading player; skill "
                    "drawn per episode from [0.7, 1.0] (about 20 to 80 points a game), so the "
                    "dataset mimics a population of practised human players whose actions "
                    "can be learnt from the screen."),
    # 50-step episodes; CPU rendering makes Fetch the slow one: 80 episodes = 4,000 steps.
    "fetch": DefaultDataset(
        env_id="embscale/FetchPickAndPlace-v0", dataset_id=FETCH_DATASET_ID, num_episodes=80,
        buckets=500, skill=(0.3, 1.0),
        description="gymnasium-robotics FetchPickAndPlace rendered to 64x64 RGB, a scripted "
                    "pick-and-place controller with skill-dependent noise; 4-D continuous "
                    "actions with 500 uniform buckets per dimension (RT-1 layout)."),
}


def collect_default(name: str, overwrite: bool = False, progress: bool = True,
                    **overrides: Any):
    """Collect one default dataset by name (``breakout`` or ``fetch``); returns the dataset."""
    if name not in DEFAULTS:
        raise ValueError(f"unknown default dataset {name!r}; choose from {sorted(DEFAULTS)}")
    spec = replace(DEFAULTS[name], **overrides)
    common = dict(max_steps_per_episode=spec.max_steps_per_episode,
                  max_total_steps=spec.max_total_steps, buckets=spec.buckets, seed=spec.seed,
                  description=spec.description, overwrite=overwrite, progress=progress)
    return collect_streams(spec.env_id, spec.policy, spec.num_episodes, spec.dataset_id,
                           streams=spec.streams, policy_kwargs={"skill": spec.skill}, **common)


def build_default_datasets(which: Sequence[str] = ("breakout", "fetch"), overwrite: bool = False,
                           progress: bool = True) -> dict[str, Any]:
    """Build the embedded default datasets; existing ones are reused unless ``overwrite``.

    Args:
        which: names among ``DEFAULTS`` (``breakout``, ``fetch``).
        overwrite: collect again even if the dataset exists.
        progress: show progress bars.

    Returns:
        ``{name: minari.MinariDataset}``.
    """
    unknown = [w for w in which if w not in DEFAULTS]
    if unknown:
        raise ValueError(f"unknown default datasets {unknown}; choose from {sorted(DEFAULTS)}")
    built = {}
    for name in which:
        spec = DEFAULTS[name]
        if (dataset_path(spec.dataset_id) / "data").is_dir() and not overwrite:
            logger.info("%s exists; reusing it (overwrite=True collects it again)", spec.dataset_id)
            built[name] = load_dataset(spec.dataset_id)
            continue
        logger.info("collecting %s from %s", spec.dataset_id, spec.env_id)
        built[name] = collect_default(name, overwrite=overwrite, progress=progress)
    return built
