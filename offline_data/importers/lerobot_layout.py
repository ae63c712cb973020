"""The on-disk layout of a local LeRobot dataset (codebase versions v2.0, v2.1 and v3.0).

Both layouts keep ``meta/info.json`` (``codebase_version``, ``fps``, ``features``, ``data_path``
and ``video_path`` templates, ``chunks_size``) and one mp4 per camera (feature of dtype
``video``); the frame tables are parquet with one row per frame (``episode_index``,
``frame_index``, ``timestamp`` in seconds from the episode's start, ``action`` and the other
features).

* **v2.0 / v2.1**: one parquet table and one mp4 per camera per episode, in chunks of
  ``chunks_size`` episodes: ``data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet``
  and ``videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4``; episodes
  (``episode_index``, ``tasks``, ``length``) are listed one per line in ``meta/episodes.jsonl``.
* **v3.0**: several episodes per file:
  ``data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet`` and
  ``videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4``; the episode index
  is a parquet table under ``meta/episodes/`` whose rows name each episode's data file
  (``data/chunk_index``, ``data/file_index``), its video file per camera
  (``videos/{key}/chunk_index``, ``videos/{key}/file_index``) and where the episode starts in
  that video (``videos/{key}/from_timestamp``, seconds).

Only the metadata is read here; ``offline_data.importers.lerobot`` reads frames and tables.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

SUPPORTED_VERSIONS = ("v2.0", "v2.1", "v3.0")


class EpisodeRef(NamedTuple):
    """Where one episode's rows and frames live."""

    episode_index: int
    length: int
    """Rows (frames) of the episode in its table."""
    tasks: list[str]
    data_file: Path
    video_file: Path
    video_start_s: float
    """Time of the episode's first frame in ``video_file`` (0 unless several share a file)."""


@dataclass(frozen=True)
class LeRobotLayout:
    """What ``meta/info.json`` says about a dataset."""

    root: Path
    version: str
    fps: float
    features: dict[str, Any]
    info: dict[str, Any]

    @property
    def video_keys(self) -> list[str]:
        """Cameras stored as mp4 (features of dtype ``video``), in info.json order."""
        return [k for k, f in self.features.items() if f.get("dtype") == "video"]

    @property
    def image_keys(self) -> list[str]:
        """Cameras stored as images inside the parquet tables (dtype ``image``)."""
        return [k for k, f in self.features.items() if f.get("dtype") == "image"]

    @property
    def packed(self) -> bool:
        """True for v3.0, whose files hold several episodes."""
        return self.version.startswith("v3")

    def video_fps(self, key: str) -> float:
        """Frame rate of camera ``key`` (``video.fps`` of its feature info, else the dataset's)."""
        info = self.features[key].get("info") or {}
        return float(info.get("video.fps") or self.fps)

    def check_camera(self, camera: str | None) -> str:
        """The camera to import: ``camera``, or the first video key when None.

        Raises:
            ValueError: the key is not a video feature (the message lists the ones there are).
        """
        keys = self.video_keys
        if not keys:
            images = self.image_keys
            where = (f"; its cameras {images} are images inside the parquet tables, which this "
                     "importer does not read" if images else "")
            raise ValueError(f"LeRobot dataset {self.root} stores no camera as mp4 (no feature of "
                             f"dtype 'video'){where}")
        if camera is None:
            return keys[0]
        if camera not in keys:
            raise ValueError(f"camera {camera!r} is not a video feature of {self.root}; the "
                             f"cameras are {keys} (pass one with --camera)")
        return camera


def read_layout(root: str | Path) -> LeRobotLayout:
    """Read ``meta/info.json`` of a local LeRobot dataset.

    Raises:
        FileNotFoundError: ``root`` has no ``meta/info.json``.
        ValueError: an unknown ``codebase_version`` or a malformed info.json.
    """
    root = Path(root)
    path = root / "meta" / "info.json"
    if not path.is_file():
        raise FileNotFoundError(f"{root} is not a LeRobot dataset: {path} is missing (give the "
                                "dataset's root directory, the one holding meta/, data/, videos/)")
    try:
        info = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e})") from e
    if not isinstance(info, dict):
        raise ValueError(f"{path} must hold a JSON object (LeRobot's info.json), got "
                         f"{type(info).__name__}")
    version = str(info.get("codebase_version", ""))
    if version not in SUPPORTED_VERSIONS:
        raise ValueError(f"{path} has codebase_version {version!r}; this importer reads "
                         f"{', '.join(SUPPORTED_VERSIONS)} (convert older datasets with "
                         "LeRobot's conversion scripts)")
    for key in ("fps", "features", "data_path"):
        if key not in info:
            raise ValueError(f"{path} lacks {key!r}; it is not a LeRobot {version} info.json")
    if float(info["fps"]) <= 0:
        raise ValueError(f"{path} has fps={info['fps']}; it must be > 0")
    return LeRobotLayout(root, version, float(info["fps"]), dict(info["features"]), info)


def _tasks_of(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(t) for t in value]


def _episodes_v2(layout: LeRobotLayout, camera: str) -> list[EpisodeRef]:
    path = layout.root / "meta" / "episodes.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; a LeRobot {layout.version} dataset lists its "
                                "episodes there")
    chunks = int(layout.info.get("chunks_size") or 1000)
    video_path = layout.info.get("video_path")
    if not video_path:
        raise ValueError(f"{layout.root}/meta/info.json has no video_path although {camera!r} is "
                         "a video feature")
    refs = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        ep = int(row["episode_index"])
        fields = {"episode_chunk": ep // chunks, "episode_index": ep, "video_key": camera}
        refs.append(EpisodeRef(ep, int(row["length"]), _tasks_of(row.get("tasks")),
                               layout.root / layout.info["data_path"].format(**fields),
                               layout.root / video_path.format(**fields), 0.0))
    return sorted(refs, key=lambda r: r.episode_index)


def _episodes_v3(layout: LeRobotLayout, camera: str) -> list[EpisodeRef]:
    import pyarrow.parquet as pq

    files = sorted((layout.root / "meta" / "episodes").glob("**/*.parquet"))
    if not files:
        raise FileNotFoundError(f"{layout.root}/meta/episodes/ holds no parquet file; a LeRobot "
                                "v3.0 dataset indexes its episodes there")
    prefix = f"videos/{camera}/"
    wanted = ["episode_index", "length", "data/chunk_index", "data/file_index",
              prefix + "chunk_index", prefix + "file_index", prefix + "from_timestamp"]
    refs = []
    for f in files:
        schema = pq.read_schema(f)
        missing = [c for c in wanted if c not in schema.names]
        if missing:
            raise ValueError(f"episode index {f} lacks the columns {missing}; it is not a LeRobot "
                             "v3.0 episode table (or the camera has no video there)")
        cols = wanted + (["tasks"] if "tasks" in schema.names else [])
        for row in pq.read_table(f, columns=cols).to_pylist():
            data = layout.info["data_path"].format(chunk_index=row["data/chunk_index"],
                                                   file_index=row["data/file_index"])
            video = layout.info["video_path"].format(video_key=camera,
                                                     chunk_index=row[prefix + "chunk_index"],
                                                     file_index=row[prefix + "file_index"])
            refs.append(EpisodeRef(int(row["episode_index"]), int(row["length"]),
                                   _tasks_of(row.get("tasks")), layout.root / data,
                                   layout.root / video, float(row[prefix + "from_timestamp"])))
    return sorted(refs, key=lambda r: r.episode_index)


def episode_refs(layout: LeRobotLayout, camera: str) -> list[EpisodeRef]:
    """Every episode of the dataset, by ``episode_index``, with its files for ``camera``."""
    refs = _episodes_v3(layout, camera) if layout.packed else _episodes_v2(layout, camera)
    if not refs:
        raise ValueError(f"LeRobot dataset {layout.root} lists no episodes")
    return refs
