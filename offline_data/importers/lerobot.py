"""Import a local LeRobot dataset (codebase v2.0, v2.1 or v3.0) as a Minari dataset.

One camera (a feature of dtype ``video``; ``camera`` picks it, default the first) gives the
observations; the ``action`` column gives the actions, discretized uniformly per dimension into
``buckets`` (500 by default, as RT-1's arm) over the range the dataset's actions span; episodes are
split by ``episode_index`` and each keeps its task strings (``tasks``) in its metadata. The file
layouts are described in ``offline_data.importers.lerobot_layout``; the ``lerobot`` package is not
needed (parquet through pyarrow, video through the ffmpeg binary of imageio-ffmpeg).

Frame ``i`` of an episode has the table row ``i``: its timestamp (seconds from the episode's
start) picks the video frame ``round((start + timestamp) * video_fps)``, where ``start`` is where
the episode begins in its video (0 in v2.x; several episodes share a file in v3.0). The dataset's
``fps`` is kept unless ``rate`` asks for another, and then the episode is resampled as the
gameplay importer does: sample ``k`` at ``t_k = t_0 + k / rate`` takes the frame on screen and the
action commanded at ``t_k`` (the last row at or before it), and the rewards of the rows it spans.
An episode of n samples gives n observations and n-1 transitions; the reward of the last row is
added to the last transition (its next frame is not recorded). ``next.done`` on the last row marks
the episode terminated, otherwise it is truncated.

Example:
    embscale data import lerobot ~/lerobot/pusht --dataset-id embscale/pusht/human-v0 --size 96
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from offline_data.datasets import Episode
from offline_data.discretize import UniformDiscretizer
from offline_data.frame_size import parse_frame_size
from offline_data.importers.lerobot_layout import (
    EpisodeRef,
    LeRobotLayout,
    episode_refs,
    read_layout,
)
from offline_data.importers.video import FrameStream
from offline_data.minari_writer import MinariWriter

logger = logging.getLogger(__name__)


MAX_UPSAMPLING = 10.0
"""A ``rate`` above this many times the dataset's fps is refused: it only repeats frames."""


@dataclass(frozen=True)
class LeRobotImportConfig:
    """How a LeRobot dataset becomes a Minari dataset."""

    camera: str | None = None
    """Video feature used as the observation (None: the first in info.json)."""
    size: int | str | tuple[int, int] = 64
    """Output frame size: one side of a square or (height, width) / "HxW"."""
    rate: float | None = None
    """Sampling rate in Hz (None: the dataset's fps, no resampling)."""
    buckets: int = 500
    """Uniform buckets per action dimension (500 as RT-1's arm)."""
    action_key: str = "action"
    """Column of the action vectors."""
    reward_key: str = "next.reward"
    """Column of the rewards (zeros when the dataset has none)."""
    done_key: str = "next.done"
    """Column of the done flags (episodes are truncated when it is absent)."""

    def __post_init__(self):
        object.__setattr__(self, "size", parse_frame_size(self.size))
        if self.rate is not None and not (self.rate > 0 and math.isfinite(self.rate)):
            raise ValueError(f"rate={self.rate} (--rate) must be a finite number > 0 Hz (or None "
                             "for the dataset's fps)")
        if self.buckets < 2:
            raise ValueError(f"buckets={self.buckets} (--buckets) must be >= 2")


def _vectors(table: Any, key: str, where: str) -> np.ndarray:
    """A column of vectors (list / fixed-size list) or scalars as a float64 (rows, d) array."""
    import pyarrow as pa

    if key not in table.column_names:
        raise ValueError(f"{where} has no {key!r} column (columns: {table.column_names})")
    col = table.column(key).combine_chunks()
    if pa.types.is_list(col.type) or pa.types.is_fixed_size_list(col.type) \
            or pa.types.is_large_list(col.type):
        values = col.flatten().to_numpy(zero_copy_only=False).astype(np.float64)
        if len(col) and values.size % len(col):
            raise ValueError(f"{where}: the rows of {key!r} have different lengths")
        return values.reshape(len(col), -1)
    return col.to_numpy(zero_copy_only=False).astype(np.float64).reshape(len(col), -1)


class _TableCache:
    """The last parquet file read, with the row ranges of its episodes (v3 packs many)."""

    def __init__(self, config: LeRobotImportConfig):
        self.config = config
        self.path: Path | None = None
        self.columns: dict[str, np.ndarray] = {}
        self.rows: dict[int, np.ndarray] = {}

    def episode(self, ref: EpisodeRef) -> dict[str, np.ndarray]:
        if ref.data_file != self.path:
            import pyarrow.parquet as pq

            if not ref.data_file.is_file():
                raise FileNotFoundError(f"table {ref.data_file} of episode {ref.episode_index} is "
                                        "missing")
            names = pq.read_schema(ref.data_file).names
            c = self.config
            keep = [k for k in ("episode_index", "timestamp", c.action_key, c.reward_key,
                                c.done_key) if k in names]
            table = pq.read_table(ref.data_file, columns=keep)
            where = str(ref.data_file)
            for key in ("episode_index", "timestamp"):
                if key not in names:
                    raise ValueError(f"{where} has no {key!r} column (columns: {names})")
            self.columns = {"timestamp": _vectors(table, "timestamp", where)[:, 0],
                            "action": _vectors(table, c.action_key, where)}
            for key in (c.reward_key, c.done_key):
                if key in names:
                    self.columns[key] = _vectors(table, key, where)[:, 0]
            index = table.column("episode_index").to_numpy()
            order = np.argsort(index, kind="stable")
            bounds = np.flatnonzero(np.diff(index[order])) + 1
            self.rows = {int(index[g[0]]): g for g in np.split(order, bounds) if len(g)}
            self.path = ref.data_file
        rows = self.rows.get(ref.episode_index)
        if rows is None:
            raise ValueError(f"{ref.data_file} has no rows of episode {ref.episode_index}")
        return {k: v[rows] for k, v in self.columns.items()}


def check_rate(config: LeRobotImportConfig, layout: LeRobotLayout) -> None:
    """Refuse a ``rate`` above ``MAX_UPSAMPLING`` times the dataset's fps (absurd sample counts).

    Raises:
        ValueError: naming the rate (``--rate``), the dataset's fps and the highest usable rate.
    """
    if config.rate is not None and config.rate > MAX_UPSAMPLING * layout.fps:
        raise ValueError(f"rate={config.rate:g} Hz (--rate) is more than {MAX_UPSAMPLING:g}x the "
                         f"fps ({layout.fps:g}) of {layout.root}: each frame would repeat in "
                         f"~{config.rate / layout.fps:.3g} samples; give at most "
                         f"{MAX_UPSAMPLING * layout.fps:g} Hz, or leave --rate out to keep its fps")


def _sample_rows(timestamps: np.ndarray, fps: float, rate: float | None) -> np.ndarray:
    """Rows shown at each sample time (every row when ``rate`` is None or the dataset's fps)."""
    if rate is None or abs(rate - fps) < 1e-9:
        return np.arange(len(timestamps))
    t0, t1 = timestamps[0], timestamps[-1]
    times = t0 + np.arange(int(np.floor((t1 - t0) * rate + 1e-6)) + 1) / rate
    return np.clip(np.searchsorted(timestamps, times + 1e-6, side="right") - 1, 0, None)


def _episode(ref: EpisodeRef, columns: dict[str, np.ndarray], video: FrameStream,
             layout: LeRobotLayout, camera: str, config: LeRobotImportConfig) -> Episode:
    ts = columns["timestamp"]
    if len(ts) != ref.length:
        logger.warning("episode %d: the index says %d frames, its table has %d rows",
                       ref.episode_index, ref.length, len(ts))
    order = np.argsort(ts, kind="stable")
    ts = ts[order]
    rows = _sample_rows(ts, layout.fps, config.rate)
    if len(rows) < 2:
        raise ValueError(f"episode {ref.episode_index} has {len(rows)} samples; an episode needs "
                         "at least 2 (is the rate too low for its length?)")
    fps = layout.video_fps(camera)
    frame_ids = np.round((ref.video_start_s + ts[rows]) * fps).astype(np.int64)
    try:
        frames = video.take(frame_ids)
    except ValueError as e:
        raise ValueError(f"episode {ref.episode_index} ({len(ts)} rows in {ref.data_file.name}) "
                         f"needs frames up to {int(frame_ids[-1])} of {video.path}: {e}") from e
    actions = columns["action"][order][rows[:-1]].astype(np.float32)
    rewards = np.zeros(len(rows) - 1)
    if config.reward_key in columns:  # rows [rows[k], rows[k+1]) belong to transition k
        cum = np.concatenate([[0.0], np.cumsum(columns[config.reward_key][order])])
        edges = np.r_[rows[:-1], len(ts)]
        rewards = cum[edges[1:]] - cum[edges[:-1]]
    terminated = bool(config.done_key in columns and columns[config.done_key][order][-1] > 0.5)
    terminations = np.zeros(len(rows) - 1, bool)
    terminations[-1] = terminated
    truncations = ~terminations & (np.arange(len(rows) - 1) == len(rows) - 2)
    meta = {"source": f"episode_{ref.episode_index:06d}", "episode_index": ref.episode_index,
            "tasks": ref.tasks, "fps": layout.fps, "rate": config.rate or layout.fps}
    return Episode(frames, actions, rewards, terminations, truncations, meta)


def iter_lerobot_episodes(layout: LeRobotLayout, refs: list[EpisodeRef], camera: str,
                          config: LeRobotImportConfig) -> Iterator[Episode]:
    """Episodes in ``episode_index`` order, each video file decoded once, front to back.

    The next video file's decoder is started on a background thread while the current episode is
    imported: starting ffmpeg and reading a file's header costs about as much as decoding a
    few hundred small frames, which one-file-per-episode layouts (v2.x) pay per episode.
    """
    from concurrent.futures import Future, ThreadPoolExecutor

    check_rate(config, layout)
    tables = _TableCache(config)
    video: FrameStream | None = None
    ahead: tuple[Path, Future] | None = None
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lerobot-video")
    try:
        for i, ref in enumerate(refs):
            if video is None or video.path != ref.video_file or (
                    np.round(ref.video_start_s * layout.video_fps(camera)) < video.position):
                if video is not None:
                    video.close()
                if ahead is not None and ahead[0] == ref.video_file:
                    video, ahead = ahead[1].result(), None
                else:
                    video = FrameStream(ref.video_file, config.size)  # type: ignore[arg-type]
            following = refs[i + 1].video_file if i + 1 < len(refs) else None
            if ahead is None and following is not None and following != ref.video_file:
                ahead = (following, pool.submit(FrameStream, following, config.size))
            yield _episode(ref, tables.episode(ref), video, layout, camera, config)
    finally:
        if video is not None:
            video.close()
        if ahead is not None:
            try:
                ahead[1].result().close()
            except Exception:  # noqa: BLE001 - its error is moot once the import stopped
                pass
        pool.shutdown()


def action_range(layout: LeRobotLayout, refs: list[EpisodeRef], key: str) -> tuple[np.ndarray,
                                                                                   np.ndarray]:
    """Per-dimension (low, high) of the ``key`` column over every table (a first pass)."""
    import pyarrow.parquet as pq

    low = high = None
    for path in sorted({r.data_file for r in refs}):
        if not path.is_file():
            raise FileNotFoundError(f"table {path} listed by {layout.root}/meta is missing")
        table = pq.read_table(path, columns=[key]) if key in pq.read_schema(path).names else None
        if table is None:
            raise ValueError(f"{path} has no {key!r} column (columns: "
                             f"{pq.read_schema(path).names}); name the action column")
        a = _vectors(table, key, str(path))
        lo, hi = a.min(axis=0), a.max(axis=0)
        low = lo if low is None else np.minimum(low, lo)
        high = hi if high is None else np.maximum(high, hi)
    assert low is not None and high is not None
    flat = high - low < 1e-6  # a constant dimension still needs a non-empty range
    return (low - flat * 0.5).astype(np.float32), (high + flat * 0.5).astype(np.float32)


def import_lerobot(source: str | Path, dataset_id: str,
                   config: LeRobotImportConfig = LeRobotImportConfig(), description: str = "",
                   overwrite: bool = False, progress: bool = True):
    """Import a local LeRobot dataset directory as a Minari dataset (atomic write).

    Raises:
        FileNotFoundError: no ``meta/info.json`` (or a listed file is missing).
        ValueError: an unknown codebase version, a camera that is not a video feature (the
            message lists the cameras), a video shorter than its table, or a ``rate`` above
            ``MAX_UPSAMPLING`` times the dataset's fps.
    """
    from gymnasium import spaces
    from tqdm.auto import tqdm

    layout = read_layout(source)
    check_rate(config, layout)
    camera = layout.check_camera(config.camera)
    refs = episode_refs(layout, camera)
    low, high = action_range(layout, refs, config.action_key)
    action_space = spaces.Box(low, high, dtype=np.float32)
    obs_space = spaces.Box(0, 255, (*config.size, 3), np.uint8)  # type: ignore[misc]
    discretizer = UniformDiscretizer(low, high, config.buckets)
    names = (layout.features.get(config.action_key) or {}).get("names")
    tasks = sorted({t for r in refs for t in r.tasks})
    rate = config.rate or layout.fps
    meta = {"lerobot_codebase_version": layout.version, "lerobot_fps": layout.fps,
            "lerobot_camera": camera, "rate_hz": rate, "tasks": tasks,
            "robot_type": layout.info.get("robot_type") or "",
            "action_names": names if isinstance(names, list) else []}
    with MinariWriter(dataset_id, observation_space=obs_space, action_space=action_space,
                      discretizer=discretizer, algorithm_name="lerobot-import",
                      description=description or (f"LeRobot {layout.version} dataset "
                                                  f"{Path(source).name} ({camera}) at {rate:g} Hz"),
                      metadata=meta, overwrite=overwrite) as writer:
        bar = tqdm(total=len(refs), disable=not progress, desc=dataset_id, unit="ep")
        for ep in iter_lerobot_episodes(layout, refs, camera, config):
            writer.add_episode(*ep)
            bar.update(1)
        bar.close()
        return writer.commit()
