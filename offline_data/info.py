"""Summaries of local datasets (``embscale data info``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from offline_data.datasets import dataset_discretizer, episode_metadata, load_dataset


@dataclass(frozen=True)
class DatasetInfo:
    """What ``embscale data info`` prints about a dataset."""

    dataset_id: str
    env_id: str
    episodes: int
    frames: int  # stored observations, T+1 per episode
    steps: int  # transitions (frame, action) pairs
    frame_shape: tuple[int, ...]
    action_space: str
    action_spec: dict
    disk_bytes: int
    return_mean: float
    return_std: float
    return_min: float
    return_max: float
    skill_min: float | None
    skill_max: float | None
    success_rate: float | None
    description: str

    def to_dict(self) -> dict:
        """JSON-able dict."""
        return asdict(self)

    def format(self) -> str:
        """Human-readable multi-line summary."""
        lines = [
            f"dataset:      {self.dataset_id}",
            f"env:          {self.env_id or '(none: imported)'}",
            f"episodes:     {self.episodes}",
            f"frames:       {self.frames} ({self.steps} steps), "
            f"{'x'.join(map(str, self.frame_shape))} uint8",
            f"actions:      {self.action_space}",
            f"action spec:  {_short_spec(self.action_spec)}",
            f"disk size:    {self.disk_bytes / 2**20:.1f} MiB",
            f"returns:      mean {self.return_mean:.2f} +- {self.return_std:.2f} "
            f"(min {self.return_min:.2f}, max {self.return_max:.2f})",
        ]
        if self.skill_min is not None:
            lines.append(f"skill:        {self.skill_min:.2f} .. {self.skill_max:.2f}")
        if self.success_rate is not None:
            lines.append(f"success rate: {self.success_rate:.1%}")
        if self.description:
            lines.append(f"description:  {self.description}")
        return "\n".join(lines)


def _short_spec(spec: dict) -> str:
    if spec.get("type") == "uniform":
        return (f"uniform, {len(spec['buckets'])} dims, buckets {spec['buckets']}, "
                f"low {spec['low']}, high {spec['high']}")
    return f"{spec.get('type')} {spec.get('kind', '')}, vocab {spec.get('nvec')}"


def dataset_info(dataset_id: str) -> DatasetInfo:
    """Summarise a local dataset from its metadata (no frames are read)."""
    ds = load_dataset(dataset_id)
    meta = ds.storage.metadata
    episodes = episode_metadata(ds)
    returns = np.array([m.get("return", np.nan) for m in episodes], dtype=np.float64)
    if np.isnan(returns).any():  # datasets written by other tools: read the rewards
        returns = np.array([float(np.sum(ep.rewards)) for ep in ds.iterate_episodes()])
    skills = [m["skill"] for m in episodes if m.get("skill") is not None]
    successes = [bool(m["success"]) for m in episodes if "success" in m]
    size = sum(p.stat().st_size for p in ds.storage.data_path.rglob("*") if p.is_file())
    steps = int(ds.total_steps)
    return DatasetInfo(
        dataset_id=dataset_id, env_id=str(meta.get("env_id") or _spec_env_id(ds)),
        episodes=int(ds.total_episodes), frames=steps + int(ds.total_episodes), steps=steps,
        frame_shape=tuple(int(s) for s in ds.observation_space.shape),
        action_space=str(ds.action_space), action_spec=dataset_discretizer(ds).to_spec(),
        disk_bytes=int(size),
        return_mean=float(returns.mean()) if len(returns) else 0.0,
        return_std=float(returns.std()) if len(returns) else 0.0,
        return_min=float(returns.min()) if len(returns) else 0.0,
        return_max=float(returns.max()) if len(returns) else 0.0,
        skill_min=float(min(skills)) if skills else None,
        skill_max=float(max(skills)) if skills else None,
        success_rate=float(np.mean(successes)) if successes else None,
        description=str(meta.get("description", "")))


def verify_episodes(dataset_id: str) -> int:
    """Read every episode of a dataset and check it against the metadata; returns the steps.

    ``data info`` would otherwise report a dataset with a truncated or missing episode file as
    healthy (its summary comes from metadata alone), and training would fail hours later.

    Raises:
        ValueError: an episode is unreadable or its length disagrees with the metadata.
    """
    ds = load_dataset(dataset_id)
    steps = 0
    for i in range(int(ds.total_episodes)):
        try:
            ep = next(iter(ds.iterate_episodes([i])))
            n = len(ep.actions)
            if len(ep.rewards) != n or len(ep.observations) != n + 1:
                raise ValueError(f"{len(ep.observations)} observations for {n} actions")
        except Exception as e:  # noqa: BLE001 - any failure to read is a damaged episode
            why = (str(e).splitlines() or [""])[0][:120]
            raise ValueError(f"dataset {dataset_id!r}: episode {i} is damaged or missing "
                             f"({type(e).__name__}: {why}); collect or import the dataset "
                             "again") from e
        steps += n
    if steps != int(ds.total_steps):
        raise ValueError(f"dataset {dataset_id!r}: its episodes hold {steps} steps but its "
                         f"metadata says {int(ds.total_steps)}; collect or import it again")
    return steps


def summary_table(ids: list[str]) -> str:
    """One line per dataset id: episodes, steps, size.

    A dataset that cannot be summarised (another tool's dataset in the shared Minari root, e.g.
    continuous actions without an ``action_discretizer``) gets a line saying so, with the
    reason, instead of failing the whole listing.
    """
    rows = []
    for dataset_id in ids:
        try:
            info: Any = dataset_info(dataset_id)
        except Exception as e:  # noqa: BLE001 - one foreign dataset must not hide the others
            why = (str(e).splitlines() or [""])[0]
            why = why if len(why) <= 100 else why[:97] + "..."
            rows.append(f"{dataset_id:45s} not an embscale dataset ({type(e).__name__}: {why})")
            continue
        rows.append(f"{dataset_id:45s} {info.episodes:6d} ep {info.steps:9d} steps "
                    f"{info.disk_bytes / 2**20:8.1f} MiB")
    return "\n".join(rows)


def _spec_env_id(dataset: Any) -> str:
    """The env id Minari keeps in the dataset's spec ("" when it has none, as for imports)."""
    env_spec = getattr(getattr(dataset, "spec", None), "env_spec", None)
    return str(getattr(env_spec, "id", "") or "")
