"""BC-CNN's training frames mapped from one file against a copy in the process's memory.

``FrameDataSource`` decodes a split's frames once into a file (``agents.frame_store``) that every
process maps read-only. This benchmark collects a Breakout dataset, then prints:

* the first read (decode, resize to ``--image-size``, write the file) and a second read by a
  fresh reader (``agents.frame_cache`` emptied, as in a new worker process), in seconds;
* the process's anonymous memory (``RssAnon``: memory no other process can share) added by the
  mapped frames, against a private in-memory copy of the same array (the baseline: what each
  worker held before, and twice while it assembled it);
* batches/s of random windows from the mapped file against the in-memory copy, alternating
  chunks of ``--chunk`` batches, with the ratio's 95% interval over the chunk pairs.

Example::

    python benchmarks/bench_frame_store.py --total-steps 60000
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
from _stats import mean_interval
from bench_bc_cnn_blocks import collect_data


def rss_anon() -> int:
    """Anonymous resident memory of this process in bytes (Linux ``/proc/self/status``)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    raise OSError("no RssAnon in /proc/self/status (this benchmark needs Linux)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=120)
    ap.add_argument("--total-steps", type=int, default=60_000, help="frames collected")
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--batch", type=int, default=8, help="windows of 10 frames per batch")
    ap.add_argument("--chunk", type=int, default=200, help="batches per turn")
    ap.add_argument("--turns", type=int, default=12)
    args = ap.parse_args()

    from agents import frame_cache
    from agents.frame_data import FrameDataSource, FrameWindowLoader

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MINARI_DATASETS_PATH"] = os.path.join(tmp, "minari")
        os.environ["EMBSCALE_FRAMES_DIR"] = os.path.join(tmp, "frames")
        dataset_id = collect_data(args.episodes, args.total_steps)
        times = {}
        for name in ("first read (decode, write)", "second read (map)"):
            frame_cache.clear()
            t0 = time.perf_counter()
            source = FrameDataSource(dataset_id, seq_len=10, image_size=args.image_size)
            before = rss_anon()
            mapped = source.loader("train", args.batch, seed=0)
            times[name] = (time.perf_counter() - t0, rss_anon() - before)
        arrays = mapped.arrays
        before = rss_anon()
        copy = np.array(arrays.frames)  # the baseline: a private copy in memory
        copied = rss_anon() - before
        private = FrameWindowLoader(arrays._replace(frames=copy), 10, args.batch, seed=0)
        frames = arrays.frames
        print(f"{dataset_id}: {len(frames):,d} training frames at {frames.shape[1]}x"
              f"{frames.shape[2]} ({frames.dtype}, {frames.nbytes / 2**20:.0f} MiB); baseline: "
              "a private in-memory copy of the same array")
        for name, (seconds, added) in times.items():
            print(f"{name:>27}: {seconds:6.2f} s, anonymous memory +{added / 2**20:.0f} MiB")
        print(f"{'private in-memory copy':>27}: anonymous memory +{copied / 2**20:.0f} MiB")
        clocks: dict[str, list[float]] = {"mapped": [], "in memory": []}
        for turn in range(args.turns + 1):
            for name, loader in (("mapped", mapped), ("in memory", private)):
                t0 = time.perf_counter()
                for b in range(args.chunk):
                    loader.batch_at(turn * args.chunk + b)
                if turn:  # the first turn warms both
                    clocks[name].append(time.perf_counter() - t0)
        ratio, lo, hi = mean_interval([m / p for m, p in zip(clocks["in memory"],
                                                             clocks["mapped"], strict=True)])
        rates = {name: args.chunk * len(c) / sum(c) for name, c in clocks.items()}
        print(f"batches of {args.batch} x 10 frames: mapped {rates['mapped']:,.0f}/s, in memory "
              f"{rates['in memory']:,.0f}/s; mapped / in memory {ratio:.3f} [{lo:.3f}, {hi:.3f}]")


if __name__ == "__main__":
    main()
