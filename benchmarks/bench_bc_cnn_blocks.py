"""BC-CNN with ConvNeXt blocks (the paper's) against Impala residual blocks (ours), in one run.

Both models share everything but the CNN's blocks: the same transformer shape (``--size``), CNN
stage widths and embedding (the ladder's rule, or the paper's 16/32/32 CNN with ``--paper-cnn``),
initial seed, learning rate (the size's ladder rate), warmup, and the same batches of frame
windows from one Breakout dataset collected by the scripted player (64x64). Training alternates
between the two in chunks of ``--chunk`` steps, so both see the same machine load. Printed per
model: N, training throughput (frames/s, one thread) and the validation loss (mean per-dimension
cross-entropy on the val split) after equal steps; ``impala`` is the baseline.

Example::

    python benchmarks/bench_bc_cnn_blocks.py --steps 300 --size s100k
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import torch


def collect_data(episodes: int, total_steps: int) -> str:
    import agents.demonstrators  # noqa: F401  (registers the scripted Breakout player)
    import envs
    from offline_data.collect import collect, resolve_policy

    dataset_id = "embscale/breakout/bench-cnn-v0"
    env = envs.make("embscale/Breakout-v1")
    try:
        policy = resolve_policy("scripted", env, seed=0)
        collect(env, policy, episodes, dataset_id, seed=0, max_total_steps=total_steps,
                max_steps_per_episode=1000, progress=False)
    finally:
        env.close()
    return dataset_id


@torch.no_grad()
def val_loss(model, loader, batches: int) -> float:
    model.eval()
    losses = [model.compute_loss(b).loss.item()
              for _, b in zip(range(batches), loader.epoch_batches(0), strict=False)]
    model.train()
    return float(np.mean(losses))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="s100k", help="transformer shape (ladder or paper name)")
    ap.add_argument("--paper-cnn", action="store_true",
                    help="the paper-sized CNN (16/32/32 channels, 1024-d embedding)")
    ap.add_argument("--steps", type=int, default=300, help="optimizer steps per model")
    ap.add_argument("--chunk", type=int, default=25, help="steps per turn (interleaving)")
    ap.add_argument("--batch", type=int, default=16, help="windows of 10 frames per step")
    ap.add_argument("--episodes", type=int, default=40)
    ap.add_argument("--total-steps", type=int, default=20_000, help="frames collected")
    ap.add_argument("--val-batches", type=int, default=16)
    args = ap.parse_args()
    torch.set_num_threads(1)

    from agents.bc_cnn import BCCNN
    from agents.frame_data import FrameDataSource
    from worldmodels import presets

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MINARI_DATASETS_PATH"] = tmp
        os.environ["EMBSCALE_FRAMES_DIR"] = os.path.join(tmp, "frames")  # the decoded frames
        dataset_id = collect_data(args.episodes, args.total_steps)
        data = FrameDataSource(dataset_id, seq_len=10)
        shape = presets.get_size(args.size)
        lr = presets.preset_for("bc-cnn", args.size).learning_rate(args.size) \
            if args.size in presets.LADDER else 3e-4
        train = data.loader("train", args.batch, seed=0)
        val = data.loader("val", args.batch, seed=0)
        models, opts, clocks = {}, {}, {}
        for block in ("impala", "convnext"):
            torch.manual_seed(0)
            cfg = data.model_config(shape.n_layer, shape.n_head, shape.n_embd,
                                    paper_cnn=args.paper_cnn, cnn_block=block)
            models[block] = BCCNN(cfg)
            opts[block] = torch.optim.AdamW(models[block].parameters(), lr=lr, weight_decay=0.0)
            clocks[block] = 0.0
        print(f"{dataset_id}: {data.num_train_items} training frames; size {args.size}, lr {lr:g}, "
              f"{args.steps} steps of {args.batch} x 10 frames")
        warmup = 20
        for start in range(0, args.steps, args.chunk):
            for block, model in models.items():
                t0 = time.perf_counter()
                for step in range(start, min(start + args.chunk, args.steps)):
                    for g in opts[block].param_groups:
                        g["lr"] = lr * min(1.0, (step + 1) / warmup)
                    loss = model.compute_loss(train.batch_at(step)).loss
                    opts[block].zero_grad(set_to_none=True)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                    opts[block].step()
                clocks[block] += time.perf_counter() - t0
        frames = args.steps * args.batch * 10
        result = {}
        for block, model in models.items():
            result[block] = (model.num_params(), frames / clocks[block],
                             val_loss(model, val, args.val_batches))
        base = result["impala"]
        for block, (n, fps, loss) in result.items():
            tag = "(baseline)" if block == "impala" else (
                f"({fps / base[1]:.2f}x throughput, val loss {loss - base[2]:+.3f})")
            print(f"{block:>9}: N={n:>9,d}  {fps:7.0f} frames/s  val loss {loss:.4f}  {tag}")


if __name__ == "__main__":
    main()
