"""The study's dataset: collection (``offline_data.defaults``, ``.collect``) and summary."""

from __future__ import annotations

from typing import Any

import agents.demonstrators  # noqa: F401  (registers the scripted demonstrators)
import envs
from offline_data.collect_streams import collect_streams
from offline_data.datasets import (
    dataset_discretizer,
    dataset_path,
    episode_metadata,
    load_dataset,
)
from offline_data.defaults import DEFAULTS, collect_default
from offline_data.discretize import discretizer_for_space


def collect_default_dataset(ds, progress: bool = True) -> None:
    """Collect ``ds.id`` from ``ds.env`` with ``ds.policy`` (atomic: all or nothing).

    For an env with an embedded default (Breakout, Fetch) at the default frame size the default's
    recipe is used (demonstrator skill range, discretizer buckets) with the spec's counts.
    """
    for name, default in DEFAULTS.items():
        if default.env_id == ds.env and ds.frame_size == 64 and ds.policy == default.policy:
            skill = {} if ds.skill is None else {"skill": _skill(ds.skill)}
            collect_default(name, progress=progress, dataset_id=ds.id, num_episodes=ds.episodes,
                            max_total_steps=ds.max_total_steps or None,
                            max_steps_per_episode=ds.max_episode_steps or None, seed=ds.seed,
                            streams=ds.streams, **skill)
            return
    skill = (0.0, 1.0) if ds.skill is None else _skill(ds.skill)
    kwargs = {"skill": skill} if ds.policy == "scripted" else {}
    counts = dict(seed=ds.seed, max_total_steps=ds.max_total_steps or None,
                  max_steps_per_episode=ds.max_episode_steps or None,
                  description=f"collected by `embscale study` from {ds.env} with the {ds.policy} "
                              "policy", progress=progress)
    collect_streams(ds.env, ds.policy, ds.episodes, ds.id, streams=ds.streams,
                    policy_kwargs=kwargs, env_kwargs={"size": ds.frame_size}, **counts)


def _skill(skill) -> float | tuple[float, float]:
    """DatasetSpec.skill (already validated to a float or [low, high]) as the collector takes it."""
    return tuple(skill) if isinstance(skill, list) else skill


def action_vocab(spec) -> tuple[int, ...]:
    """Action vocabulary per dimension of the study's dataset (or of the env it collects from)."""
    if (dataset_path(spec.dataset.id) / "data").is_dir():
        return tuple(dataset_discretizer(load_dataset(spec.dataset.id)).vocab_sizes)
    env = envs.make(spec.dataset.env)
    try:
        return tuple(discretizer_for_space(env.action_space).vocab_sizes)
    finally:
        env.close()


def dataset_summary(dataset_id: str) -> dict[str, Any]:
    """Episodes, frames, returns and skills of a dataset, from its metadata."""
    import numpy as np

    ds = load_dataset(dataset_id)
    meta = episode_metadata(ds)
    steps = np.array([m.get("total_steps", 0) for m in meta], np.int64)
    returns = np.array([m["return"] for m in meta if "return" in m], np.float64)
    skills = np.array([m["skill"] for m in meta if "skill" in m], np.float64)
    disc = dataset_discretizer(ds)

    def stats(a):
        return ({"mean": float(a.mean()), "min": float(a.min()), "max": float(a.max())}
                if a.size else None)

    return {"id": dataset_id, "episodes": len(meta), "frames": int(steps.sum()),
            "episode_steps": stats(steps.astype(float)), "returns": stats(returns),
            "skills": stats(skills), "observation_shape": list(ds.observation_space.shape),
            "action_space": str(ds.action_space), "action_vocab_sizes": list(disc.vocab_sizes),
            "env_spec": getattr(ds.spec.env_spec, "id", None) if ds.spec.env_spec else None}
