"""LeRobot import throughput (frames/s) at 96x96, against decoding the same videos alone.

Builds a LeRobot dataset in a temporary directory (``--version`` v3.0 by default: several
episodes per parquet table and per mp4; h264 yuv420p video as LeRobot recordings hold, at the
frame size imported, so no resize) and measures, interleaved over ``--repeats`` rounds:

* ``decode only`` (the baseline): every frame of every video through
  ``offline_data.importers.video.FrameStream``, nothing else;
* ``import``: ``offline_data.importers.lerobot.import_lerobot`` writing a Minari dataset, the
  whole call timed (metadata, action range pass, tables, video, discretizer, write, commit).

The target is >= 1,000 frames/s for the import at 96x96 on 2 cores.

Example::

    python benchmarks/bench_lerobot.py --episodes 20 --frames 200
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the test helpers' package

from offline_data.importers.lerobot import LeRobotImportConfig, import_lerobot  # noqa: E402
from offline_data.importers.lerobot_layout import episode_refs, read_layout  # noqa: E402
from offline_data.importers.video import FrameStream  # noqa: E402
from tests.helpers.lerobot import write_lerobot  # noqa: E402


def decode_only(root: Path, size: tuple[int, int]) -> int:
    layout = read_layout(root)
    camera = layout.video_keys[0]
    n = 0
    for path in sorted({r.video_file for r in episode_refs(layout, camera)}):
        with FrameStream(path, size) as video:
            while True:
                try:
                    video.take([video.position])
                except ValueError:
                    break
                n += 1
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--version", default="v3.0", choices=["v2.1", "v3.0"])
    ap.add_argument("--episodes", type=int, default=20)
    ap.add_argument("--frames", type=int, default=200, help="frames per episode")
    ap.add_argument("--size", type=int, default=96, help="frame side in pixels")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    size = (args.size, args.size)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MINARI_DATASETS_PATH"] = str(Path(tmp) / "minari")
        root = write_lerobot(Path(tmp) / "lerobot", args.version, [args.frames] * args.episodes,
                             fps=30.0, size=size, d_a=6, per_file=10, lossless=False)
        total = args.episodes * args.frames
        print(f"LeRobot {args.version}: {args.episodes} episodes x {args.frames} frames at "
              f"{args.size}x{args.size}, h264; {os.cpu_count()} cores visible")
        dec, imp = [], []
        for r in range(args.repeats):
            start = time.perf_counter()
            assert decode_only(root, size) == total
            dec.append(total / (time.perf_counter() - start))
            start = time.perf_counter()
            ds = import_lerobot(root, f"embscale/bench/lerobot{r}-v0",
                                LeRobotImportConfig(size=size), progress=False)
            imp.append(total / (time.perf_counter() - start))
            assert ds.total_steps == total - args.episodes
        d, i = statistics.median(dec), statistics.median(imp)
        print(f"decode only (baseline): {d:8.0f} frames/s")
        print(f"import               : {i:8.0f} frames/s  ({i / d:.2f} of decoding)")
        print("target >= 1,000 frames/s: " + ("met" if i >= 1000 else "NOT met"))


if __name__ == "__main__":
    main()
