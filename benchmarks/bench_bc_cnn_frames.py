"""BC-CNN frames held at the model's size against frames resized every step, in one run.

A BC-CNN that reads 64x64 frames at 32x32 (the embedded default study) can hold its training
frames as stored (uint8, 12 KiB each) and resize every batch, or resize them once when they are
read (``FrameDataSource(..., image_size=32)``: float16 pixel values, 6 KiB each). This benchmark
trains two copies of one model (same seed, same windows) from the two sources, alternating
chunks of ``--chunk`` steps so that both see the same machine load, with one thread. Printed per
size: frames/s of each, the ratio held-resized / resized-every-step with a 95% interval over the
chunk pairs, bytes held per frame, and the final training losses (the inputs differ only by
float rounding, so the losses drift apart no more than two runs would). The baseline is the
per-step resize: the path the default study took before frames were held resized.

Example::

    python benchmarks/bench_bc_cnn_frames.py --sizes s10k s30k s100k --steps 300
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch
from _stats import mean_interval
from bench_bc_cnn_blocks import collect_data


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", default=["s10k", "s30k", "s100k"])
    ap.add_argument("--steps", type=int, default=300, help="optimizer steps per model")
    ap.add_argument("--chunk", type=int, default=25, help="steps per turn (interleaving)")
    ap.add_argument("--batch", type=int, default=8, help="windows of 10 frames per step")
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--episodes", type=int, default=40)
    ap.add_argument("--total-steps", type=int, default=20_000, help="frames collected")
    args = ap.parse_args()
    torch.set_num_threads(1)

    from agents.bc_cnn import BCCNN
    from agents.frame_data import FrameDataSource
    from worldmodels import presets

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MINARI_DATASETS_PATH"] = tmp
        os.environ["EMBSCALE_FRAMES_DIR"] = os.path.join(tmp, "frames")  # the decoded frames
        dataset_id = collect_data(args.episodes, args.total_steps)
        sources = {"resize every step": FrameDataSource(dataset_id, seq_len=10),
                   "held resized": FrameDataSource(dataset_id, seq_len=10,
                                                   image_size=args.image_size)}
        loaders = {}
        for name, source in sources.items():
            t0 = time.perf_counter()
            loaders[name] = source.loader("train", args.batch, seed=0)
            frames = loaders[name].arrays.frames
            print(f"{name:>17}: {frames.nbytes // len(frames):,d} bytes per frame "
                  f"({frames.dtype}, {frames.shape[1]}x{frames.shape[2]}), read in "
                  f"{time.perf_counter() - t0:.1f} s")
        print(f"{dataset_id}: {len(frames):,d} training frames; {args.steps} steps of "
              f"{args.batch} x 10 frames at {args.image_size}x{args.image_size}; baseline: "
              "resize every step")
        for size in args.sizes:
            shape = presets.get_size(size)
            lr = presets.preset_for("bc-cnn", size).learning_rate(size)
            models, opts, clocks, losses = {}, {}, {}, {}
            for name, source in sources.items():
                torch.manual_seed(0)
                models[name] = BCCNN(source.model_config(shape.n_layer, shape.n_head, shape.n_embd,
                                                         image_size=args.image_size))
                opts[name] = torch.optim.AdamW(models[name].parameters(), lr=lr)
                clocks[name] = []
            for start in range(0, args.steps, args.chunk):
                for name, model in models.items():
                    t0 = time.perf_counter()
                    for step in range(start, min(start + args.chunk, args.steps)):
                        loss = model.compute_loss(loaders[name].batch_at(step)).loss
                        opts[name].zero_grad(set_to_none=True)
                        loss.backward()
                        opts[name].step()
                    clocks[name].append(time.perf_counter() - t0)
                    losses[name] = loss.item()
            base, held = clocks["resize every step"][1:], clocks["held resized"][1:]  # warm
            ratio, lo, hi = mean_interval([b / h for b, h in zip(base, held, strict=True)])
            fps = {name: args.chunk * args.batch * 10 * len(c[1:]) / sum(c[1:])
                   for name, c in clocks.items()}
            print(f"{size:>6} (N={models['held resized'].num_params():,d}): "
                  f"{fps['resize every step']:6.0f} -> {fps['held resized']:6.0f} frames/s, "
                  f"ratio {ratio:.2f} [{lo:.2f}, {hi:.2f}]; final train loss "
                  f"{losses['resize every step']:.4f} vs {losses['held resized']:.4f}")


if __name__ == "__main__":
    main()
