"""Import gameplay logs: per episode a video file and a CSV of controller actions with timestamps.

Layout: a directory with ``<episode>.<mp4|mkv|avi|mov|webm>`` and ``<episode>.csv`` sharing a stem.
The CSV has a ``timestamp`` column (seconds, on the video's clock: frame ``i`` is shown at
``i / fps``; shift it with ``time_offset``) and one column per controller input. Columns whose
values are all 0/1 are buttons; the others are axes in ``[-1, 1]`` (joysticks, triggers). Optional
columns ``reward`` and ``terminated`` are used when present. Every log needs the first log's
action columns, in any order (they are matched by name), and the first log decides the buttons.

Both streams are resampled to ``rate`` Hz (default 10) on their common time span: sample ``k`` is
taken at ``t_k = start + k / rate``; the observation is the video frame on screen at ``t_k``,
axes hold their last logged value, and a button counts as pressed if it was pressed at any logged
time in ``[t_k, t_k + 1 / rate)`` (so short taps survive downsampling). Frames are resized to
``size``: one side of a square (64) or height x width (``"72x120"``, ``(72, 120)``).

Example:
    embscale data import gameplay --source logs/ --dataset-id embscale/mygame/human-v0
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from offline_data.datasets import Episode
from offline_data.discretize import UniformDiscretizer
from offline_data.frame_size import parse_frame_size, resize_rgb
from offline_data.minari_writer import MinariWriter

logger = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".mkv", ".avi", ".mov", ".webm")


@dataclass(frozen=True)
class GameplayImportConfig:
    """How gameplay logs are resampled and discretized."""

    rate: float = 10.0
    """Target sampling rate in Hz."""
    size: int | str | tuple[int, int] = 64
    """Output frame size in pixels: one side of a square, or (height, width) / "HxW"."""
    axis_buckets: int = 11
    """Uniform buckets per axis over [-1, 1] (11 as for the paper's joysticks)."""
    time_offset: float = 0.0
    """Seconds added to the CSV timestamps to put them on the video's clock."""
    timestamp_column: str = "timestamp"
    """Name of the CSV time column (seconds)."""

    def __post_init__(self):
        if self.rate <= 0:
            raise ValueError(f"rate={self.rate} must be > 0 Hz")
        object.__setattr__(self, "size", parse_frame_size(self.size))
        if self.axis_buckets < 2:
            raise ValueError(f"axis_buckets={self.axis_buckets} must be >= 2")


@dataclass(frozen=True)
class ActionLog:
    """A parsed controller log."""

    times: np.ndarray  # float64 (N,) seconds, increasing
    values: np.ndarray  # float32 (N, d_a)
    columns: list[str]
    button_dims: list[int]
    rewards: np.ndarray | None  # float64 (N,)
    terminated: np.ndarray | None  # bool (N,)


def _numbers(path: Path, rows: list[dict], names: list[str]) -> np.ndarray:
    """The ``names`` columns of ``rows`` as float64 (N, len(names)); a bad cell is named."""
    try:
        return np.array([[float(r[c]) for c in names] for r in rows], dtype=np.float64)
    except (TypeError, ValueError):
        pass
    for i, r in enumerate(rows):  # slow path: find the first bad cell to name it
        for c in names:
            try:
                float(r[c])
            except (TypeError, ValueError):
                raise ValueError(f"action log {path} row {i + 1} (after the header), column "
                                 f"{c!r} holds {r[c]!r}, not a number; every column must hold "
                                 "numbers") from None
    raise AssertionError("unreachable")  # pragma: no cover


def _action_columns(path: Path, own: list[str], first: Sequence[str] | None) -> list[str]:
    """This log's action columns in the first log's order (logs are matched by column name)."""
    if first is None:
        return own
    if set(own) != set(first):
        raise ValueError(f"action log {path} has action columns {own} but the first log has "
                         f"{list(first)}; every log needs the same columns (in any order)")
    return list(first)


def read_action_log(path: str | Path, config: GameplayImportConfig,
                    columns: Sequence[str] | None = None,
                    buttons: Sequence[str] | None = None) -> ActionLog:
    """Parse a controller CSV (timestamp column + one column per input).

    ``columns`` (the first log's action columns) puts this log's columns in that order, matched
    by name; a log with another set of columns is refused. ``buttons`` (the first log's button
    columns) makes those the buttons, which must hold only 0/1 here too; by default the columns
    whose values are all 0/1 are the buttons.
    """
    path = Path(path)
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"action log {path} has no rows; it needs a header and one row per "
                         "controller sample")
    header = list(rows[0])
    if config.timestamp_column not in header:
        raise ValueError(f"action log {path} has no {config.timestamp_column!r} column (columns: "
                         f"{header}); add one in seconds or set timestamp_column")
    extra = {config.timestamp_column, "reward", "terminated"}
    columns = _action_columns(path, [c for c in header if c not in extra], columns)
    if not columns:
        raise ValueError(f"action log {path} has no action columns besides {sorted(extra)}")
    optional = [c for c in ("reward", "terminated") if c in header]
    names = [config.timestamp_column, *columns, *optional]
    table = _numbers(path, rows, names)
    bad = ~np.isfinite(table)
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"action log {path} has a non-finite value ({table[row, col]}) in column "
                         f"{names[col]!r} (row {row + 1} after the header); every value must be "
                         "a finite number")
    table = table[np.argsort(table[:, 0], kind="stable")]
    values = table[:, 1:1 + len(columns)].astype(np.float32)
    is01 = [bool(np.isin(values[:, j], (0.0, 1.0)).all()) for j in range(len(columns))]
    if buttons is None:
        button_dims = [j for j in range(len(columns)) if is01[j]]
    else:
        button_dims = [columns.index(b) for b in buttons]
        not01 = [columns[j] for j in button_dims if not is01[j]]
        if not01:
            raise ValueError(f"action log {path}: columns {not01} are buttons (all 0/1) in the "
                             "first log but hold other values here; every log needs the same "
                             "button columns")
    axes = [j for j in range(values.shape[1]) if j not in button_dims]
    if axes and np.abs(values[:, axes]).max() > 1.0 + 1e-6:
        raise ValueError(f"axis columns {[columns[j] for j in axes]} of {path} leave [-1, 1]; "
                         "normalise them (buttons must be 0/1)")
    extras = dict(zip(optional, table[:, 1 + len(columns):].T, strict=True))
    terminated = extras.get("terminated")
    return ActionLog(times=table[:, 0] + config.time_offset, values=values, columns=columns,
                     button_dims=button_dims, rewards=extras.get("reward"),
                     terminated=None if terminated is None else terminated > 0.5)


def _video_meta(path: Path) -> tuple[float, int, tuple[int, int]]:
    """(fps, approximate frame count, (width, height)) from the container header (no decoding)."""
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    try:
        meta = next(reader)
    except (OSError, RuntimeError, StopIteration) as e:  # ffmpeg's whole banner: keep its end
        said = str(e).strip().splitlines()[-1][:200] if str(e).strip() else type(e).__name__
        raise ValueError(f"{path} is not a readable video (ffmpeg: {said}); check the file, or "
                         "re-encode it (e.g. ffmpeg -i in.mkv out.mp4)") from None
    finally:
        reader.close()
    fps = float(meta["fps"])
    if not fps > 0 or not meta.get("duration"):
        raise ValueError(f"{path} reports no frame rate or duration; re-mux it (e.g. ffmpeg -i "
                         f"{path.name} -c copy fixed.mp4)")
    return fps, max(int(round(float(meta["duration"]) * fps)), 1), tuple(meta["size"])


MIN_OVERLAP = 0.5
"""Refuse a (video, log) pair whose overlap is below this fraction of the longer of the two."""
WARN_OVERLAP = 0.95
"""Warn when the overlap is below this fraction: the rest of the longer one is dropped."""


def _check_overlap(video: str, log: str, overlap: float, video_s: float, log_s: float) -> None:
    """Warn (or refuse, below ``MIN_OVERLAP``) when a video and its log cover different spans."""
    longer = max(video_s, log_s, 1e-9)
    if overlap / longer >= WARN_OVERLAP:
        return
    msg = (f"{video} ({video_s:.1f} s) and {log} ({log_s:.1f} s) overlap for only "
           f"{overlap:.1f} s ({overlap / longer:.0%} of the longer); the rest is dropped")
    if overlap / longer < MIN_OVERLAP:
        raise ValueError(f"{msg}: below {MIN_OVERLAP:.0%}, so they are probably not a pair; pair "
                         "the right files, or align them with --time-offset")
    logger.warning("%s", msg)


def import_episode(video: str | Path, log_path: str | Path,
                   config: GameplayImportConfig = GameplayImportConfig(),
                   columns: Sequence[str] | None = None,
                   buttons: Sequence[str] | None = None) -> Episode:
    """Resample one (video, action log) pair to an ``Episode`` at ``config.rate`` Hz.

    ``columns`` and ``buttons`` (the first log's) order the actions and pick the buttons, as for
    ``read_action_log``.

    Raises:
        ValueError: if the video and the log do not overlap in time, or the log is unusable.
    """
    video, log_path = Path(video), Path(log_path)
    log = read_action_log(log_path, config, columns=columns, buttons=buttons)
    fps, nframes, (width, height) = _video_meta(video)
    v_start, v_end = 0.0, nframes / fps
    start, end = max(v_start, log.times[0]), min(v_end, log.times[-1])
    period = 1.0 / config.rate
    if end - start < period:
        raise ValueError(
            f"the timestamps of {video.name} (video covers {v_start:.2f}-{v_end:.2f} s at "
            f"{fps:g} fps) and {log_path.name} (actions cover {log.times[0]:.2f}-"
            f"{log.times[-1]:.2f} s) do not overlap by one {period:.2f} s sample; pair the right "
            "files, or shift the log onto the video's clock with time_offset (--time-offset)")
    _check_overlap(video.name, log_path.name, end - start, v_end - v_start,
                   float(log.times[-1] - log.times[0]))
    sample_times = start + period * np.arange(int(np.floor((end - start) / period)) + 1)
    frame_idx = np.minimum(np.floor(sample_times * fps + 1e-6).astype(np.int64), nframes - 1)

    # Axes: last logged value at t_k; buttons: pressed anywhere in [t_k, t_k + period).
    held = np.clip(np.searchsorted(log.times, sample_times, side="right") - 1, 0, None)
    actions = log.values[held].copy()
    if log.button_dims:
        hi = np.searchsorted(log.times, sample_times + period, side="left")
        for k, (lo_i, hi_i) in enumerate(zip(held, hi, strict=True)):
            window = log.values[lo_i:max(hi_i, lo_i + 1), log.button_dims]
            actions[k, log.button_dims] = window.max(axis=0)

    frames = np.empty((len(sample_times), *config.size, 3), np.uint8)
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(video))
    next(reader)  # metadata
    wanted = 0
    try:  # stream the video: only the sampled frames are kept
        for i, raw in enumerate(reader):
            while wanted < len(frame_idx) and frame_idx[wanted] == i:
                frame = np.frombuffer(raw, np.uint8).reshape(height, width, 3)
                frames[wanted] = resize_rgb(frame, config.size)
                wanted += 1
            if wanted == len(frame_idx):
                break
    finally:
        reader.close()
    if wanted < len(frame_idx):  # container reported more frames than it decoded
        frames = frames[:wanted]
    steps = len(frames) - 1
    if steps < 1:
        raise ValueError(f"{video.name} yields fewer than 2 samples at {config.rate:g} Hz")
    rewards = np.zeros(steps)
    if log.rewards is not None:  # rewards logged in (t_k, t_k+1] belong to step k
        cum = np.concatenate([[0.0], np.cumsum(log.rewards)])
        at = np.searchsorted(log.times, sample_times[:steps + 1], side="right")
        rewards = np.diff(cum[at])
    terminations = np.zeros(steps, bool)
    if log.terminated is not None and log.terminated.any():
        terminations[-1] = True
    truncations = ~terminations & (np.arange(steps) == steps - 1)
    return Episode(frames, actions[:steps], rewards, terminations, truncations,
                   {"source": video.name, "fps": fps, "rate": config.rate})


def find_pairs(source: str | Path) -> list[tuple[Path, Path]]:
    """(video, csv) pairs sharing a stem in ``source``, sorted by stem."""
    source = Path(source)
    if not source.is_dir():
        raise FileNotFoundError(f"{source} is not a directory of <episode>.mp4 + <episode>.csv")
    videos = {p.stem: p for p in source.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES}
    logs = {p.stem: p for p in source.glob("*.csv")}
    pairs = [(videos[s], logs[s]) for s in sorted(videos.keys() & logs.keys())]
    lonely = sorted(videos.keys() ^ logs.keys())
    if lonely:
        logger.warning("skipping files without a partner (video or csv): %s", lonely)
    if not pairs:
        raise FileNotFoundError(f"no <episode>.{{mp4,mkv,...}} + <episode>.csv pairs in {source}")
    return pairs


def import_gameplay(source: str | Path | Sequence[tuple[Path, Path]], dataset_id: str,
                    config: GameplayImportConfig = GameplayImportConfig(),
                    description: str = "", overwrite: bool = False, progress: bool = True):
    """Import every (video, csv) pair as one episode of a new Minari dataset (atomic write).

    The first log's action columns fix the action order (later logs are matched by column name)
    and its 0/1 columns are the buttons of every log.

    Raises:
        ValueError: a log has other action columns than the first, or a bad value.
    """
    from gymnasium import spaces
    from tqdm.auto import tqdm

    pairs = find_pairs(source) if isinstance(source, (str, Path)) else list(source)
    if not pairs:
        raise ValueError("no (video, csv) pairs to import")
    log = read_action_log(pairs[0][1], config)  # its columns and buttons bind every log
    buttons = [log.columns[j] for j in log.button_dims]
    episodes: Iterator[Episode] = (import_episode(v, c, config, log.columns, buttons)
                                   for v, c in pairs)
    first = next(episodes)
    d_a = len(log.columns)
    low = np.where(np.isin(np.arange(d_a), log.button_dims), 0.0, -1.0).astype(np.float32)
    action_space = spaces.Box(low, np.ones(d_a, np.float32), dtype=np.float32)
    obs_space = spaces.Box(0, 255, (*config.size, 3), np.uint8)
    discretizer = UniformDiscretizer(low, np.ones(d_a), config.axis_buckets,
                                     button_dims=log.button_dims)
    with MinariWriter(dataset_id, observation_space=obs_space, action_space=action_space,
                      discretizer=discretizer, algorithm_name="human-gameplay-log",
                      description=description or f"gameplay logs imported at {config.rate:g} Hz",
                      metadata={"action_columns": log.columns, "rate_hz": config.rate},
                      overwrite=overwrite) as writer:
        bar = tqdm(total=len(pairs), disable=not progress, desc=dataset_id, unit="ep")
        writer.add_episode(*first)
        bar.update(1)
        for ep in episodes:
            writer.add_episode(*ep)
            bar.update(1)
        bar.close()
        return writer.commit()
