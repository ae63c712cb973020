"""Write small LeRobot-layout datasets (v2.1, v3.0) with pyarrow and imageio-ffmpeg's ffmpeg.

The frames carry their (episode, frame) in the red channel and are encoded losslessly
(libx264rgb, qp 0), so a test can check which frame an importer picked.
"""

from __future__ import annotations

import json
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

CAMERA = "observation.images.top"


def frame(episode: int, i: int, size: tuple[int, int]) -> np.ndarray:
    h, w = size
    rng = np.random.default_rng(1000 * episode + i)
    f = np.zeros((h, w, 3), np.uint8)
    f[..., 0] = (40 * episode + 3 * i) % 256
    f[..., 1] = rng.integers(0, 255, (h, w), dtype=np.uint8) // 4
    f[: h // 2, : w // 3, 2] = 200
    return f


def write_video(path: Path, frames: list[np.ndarray], fps: float, lossless: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = frames[0].shape[:2]
    if lossless:
        kwargs = {"codec": "libx264rgb", "quality": None, "pix_fmt_out": "rgb24",
                  "output_params": ["-qp", "0", "-preset", "ultrafast"]}
    else:  # what LeRobot-style recordings hold: lossy h264 in yuv420p
        kwargs = {"codec": "libx264", "quality": None, "pix_fmt_out": "yuv420p",
                  "output_params": ["-crf", "23", "-preset", "veryfast"]}
    writer = imageio_ffmpeg.write_frames(str(path), (w, h), fps=fps, macro_block_size=1,
                                         **kwargs)
    writer.send(None)
    for f in frames:
        writer.send(f)
    writer.close()


def episode_table(episode: int, n: int, fps: float, d_a: int, first_index: int,
                  task_index: int, done: bool) -> dict:
    rng = np.random.default_rng(episode)
    actions = rng.uniform(-2.0, 3.0, (n, d_a)).astype(np.float32)
    return {
        "action": actions,
        "observation.state": rng.standard_normal((n, 2)).astype(np.float32),
        "timestamp": (np.arange(n) / fps).astype(np.float32),
        "frame_index": np.arange(n, dtype=np.int64),
        "episode_index": np.full(n, episode, np.int64),
        "index": first_index + np.arange(n, dtype=np.int64),
        "task_index": np.full(n, task_index, np.int64),
        "next.reward": (np.arange(n) == n - 1).astype(np.float32) * (episode + 1),
        "next.done": (np.arange(n) == n - 1) & done,
    }


def _table(cols: dict) -> pa.Table:
    arrays = {}
    for k, v in cols.items():
        if v.ndim == 2:  # LeRobot stores vectors as fixed-size lists
            arrays[k] = pa.FixedSizeListArray.from_arrays(pa.array(v.reshape(-1)), v.shape[1])
        else:
            arrays[k] = pa.array(v)
    return pa.table(arrays)


def _info(version: str, fps: float, size: tuple[int, int], d_a: int, episodes: int,
          frames: int) -> dict:
    h, w = size
    if version == "v3.0":
        paths = {"data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
                 "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/"
                               "file-{file_index:03d}.mp4"}
    else:
        paths = {"data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
                 "video_path": "videos/chunk-{episode_chunk:03d}/{video_key}/"
                               "episode_{episode_index:06d}.mp4"}
    return {
        "codebase_version": version, "robot_type": "so100", "total_episodes": episodes,
        "total_frames": frames, "total_tasks": 2, "chunks_size": 1000, "fps": fps,
        "splits": {"train": f"0:{episodes}"}, **paths,
        "features": {
            "action": {"dtype": "float32", "shape": [d_a],
                       "names": [f"joint{j}" for j in range(d_a)]},
            "observation.state": {"dtype": "float32", "shape": [2]},
            CAMERA: {"dtype": "video", "shape": [h, w, 3], "names": ["height", "width", "channels"],
                     "info": {"video.fps": fps, "video.height": h, "video.width": w,
                              "video.codec": "h264", "video.pix_fmt": "rgb24"}},
            "timestamp": {"dtype": "float32", "shape": [1]},
            "frame_index": {"dtype": "int64", "shape": [1]},
            "episode_index": {"dtype": "int64", "shape": [1]},
            "index": {"dtype": "int64", "shape": [1]},
            "task_index": {"dtype": "int64", "shape": [1]},
            "next.reward": {"dtype": "float32", "shape": [1]},
            "next.done": {"dtype": "bool", "shape": [1]},
        },
    }


TASKS = ["push the block", "stack the cups"]


def write_lerobot(root: Path, version: str, lengths: list[int], fps: float = 10.0,
                  size: tuple[int, int] = (24, 40), d_a: int = 3, per_file: int = 2,
                  video_frames: dict[int, int] | None = None, lossless: bool = True) -> Path:
    """A LeRobot dataset at ``root``; ``video_frames`` truncates some episodes' videos (v2.1)."""
    root = Path(root)
    (root / "meta").mkdir(parents=True, exist_ok=True)
    tables, first = [], 0
    for e, n in enumerate(lengths):
        tables.append(episode_table(e, n, fps, d_a, first, e % 2, done=(e % 2 == 0)))
        first += n
    (root / "meta" / "info.json").write_text(json.dumps(
        _info(version, fps, size, d_a, len(lengths), first)))
    frames = [[frame(e, i, size) for i in range(n)] for e, n in enumerate(lengths)]
    if version != "v3.0":
        lines = []
        for e, n in enumerate(lengths):
            (root / "data" / "chunk-000").mkdir(parents=True, exist_ok=True)
            pq.write_table(_table(tables[e]),
                           root / "data" / "chunk-000" / f"episode_{e:06d}.parquet")
            keep = (video_frames or {}).get(e, n)
            write_video(root / "videos" / "chunk-000" / CAMERA / f"episode_{e:06d}.mp4",
                        frames[e][:keep], fps, lossless)
            lines.append(json.dumps({"episode_index": e, "tasks": [TASKS[e % 2]], "length": n}))
        (root / "meta" / "episodes.jsonl").write_text("\n".join(lines) + "\n")
        (root / "meta" / "tasks.jsonl").write_text("\n".join(
            json.dumps({"task_index": i, "task": t}) for i, t in enumerate(TASKS)) + "\n")
        return root
    rows = []
    for f0 in range(0, len(lengths), per_file):
        file_index = f0 // per_file
        group = list(range(f0, min(f0 + per_file, len(lengths))))
        merged = {k: np.concatenate([tables[e][k] for e in group]) for k in tables[0]}
        (root / "data" / "chunk-000").mkdir(parents=True, exist_ok=True)
        pq.write_table(_table(merged),
                       root / "data" / "chunk-000" / f"file-{file_index:03d}.parquet")
        write_video(root / "videos" / CAMERA / "chunk-000" / f"file-{file_index:03d}.mp4",
                    [f for e in group for f in frames[e]], fps, lossless)
        start = 0.0
        for e in group:
            n = lengths[e]
            rows.append({"episode_index": e, "tasks": [TASKS[e % 2]], "length": n,
                         "data/chunk_index": 0, "data/file_index": file_index,
                         "dataset_from_index": int(tables[e]["index"][0]),
                         "dataset_to_index": int(tables[e]["index"][-1]) + 1,
                         f"videos/{CAMERA}/chunk_index": 0,
                         f"videos/{CAMERA}/file_index": file_index,
                         f"videos/{CAMERA}/from_timestamp": start,
                         f"videos/{CAMERA}/to_timestamp": start + n / fps,
                         "meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0})
            start += n / fps
    (root / "meta" / "episodes" / "chunk-000").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows),
                   root / "meta" / "episodes" / "chunk-000" / "file-000.parquet")
    pq.write_table(pa.table({"task_index": list(range(len(TASKS))), "task": TASKS}),
                   root / "meta" / "tasks.parquet")
    return root
