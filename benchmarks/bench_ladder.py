"""Train the small ladder on real data and check the two learning targets.

For each task, size and seed it trains one model for the same number of tokens D and prints the
initial loss, the final train and held-out (`val/loss`) losses, the loss over the whole
`--eval-split` (`agents.held_out`, each timestep once, with its standard error) and the wall time;
then it checks that (1) every held-out loss fell well below its initial value and (2) larger
models reached a lower whole-split loss at equal tokens, in the mean over seeds.

Run (token shards from `embscale tokenizer encode`, frames from the Minari dataset):
    .venv/bin/python benchmarks/bench_ladder.py --tokens-dir tokens/breakout \
        --dataset embscale/breakout/scripted-v1 --sizes s10k s30k s100k --tokens 3e5
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from agents.held_out import held_out_loss
from scaling.training import train_model
from worldmodels.run_metrics import read_metrics


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokens-dir", default=None, help="token shard directory (token tasks)")
    p.add_argument("--dataset", default=None, help="Minari dataset id (bc-cnn)")
    p.add_argument("--tasks", nargs="+", default=["wm-token", "bc-token", "bc-cnn"])
    p.add_argument("--sizes", nargs="+", default=["s10k", "s30k", "s100k"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0], help="seeds per size")
    p.add_argument("--tokens", type=float, default=3e5, help="D per token-model run")
    p.add_argument("--cnn-items", type=float, default=2e4, help="D per BC-CNN run")
    p.add_argument("--seq-len", type=int, default=None, help="timesteps per window")
    p.add_argument("--tokens-per-update", type=int, default=None, help="override the preset")
    p.add_argument("--micro-batch-size", type=int, default=None, help="override the preset")
    p.add_argument("--warmup-steps", type=int, default=None, help="override the preset")
    p.add_argument("--val-batches", type=int, default=16, help="held-out micro-batches")
    p.add_argument("--eval-split", default="test", help="split scored whole at the end")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--out", default=None, help="keep the runs here (default: a temp dir)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out or tempfile.mkdtemp(prefix="ladder-"))
    print(f"{'task':>9} {'size':>6} {'seed':>4} {'N':>9} {'D':>10} {'initial':>8} {'train':>7} "
          f"{'val':>7} {args.eval_split + ' ± s.e.':>15} {'min':>5}")
    extra = {k: v for k, v in (("seq_len", args.seq_len),
                               ("tokens_per_update", args.tokens_per_update),
                               ("micro_batch_size", args.micro_batch_size),
                               ("warmup_steps", args.warmup_steps)) if v is not None}
    ok = True
    for task in args.tasks:
        data = args.dataset if task == "bc-cnn" else args.tokens_dir
        if data is None:
            print(f"{task:>9}: skipped (no --{'dataset' if task == 'bc-cnn' else 'tokens-dir'})")
            continue
        budget = args.cnn_items if task == "bc-cnn" else args.tokens
        means = []
        for size in args.sizes:
            scores = []
            for seed in args.seeds:
                t0 = time.perf_counter()
                run = out / f"{task}-{size}-seed{seed}"
                r = train_model(task, size, data, run, seed=seed, tokens=budget,
                                tensorboard=False, val_points_per_decade=3,
                                val_batches=args.val_batches, **extra)
                first = read_metrics(run)[0]["train/loss"]
                whole = held_out_loss(run, args.eval_split, batch_size=64)
                scores.append(whole["loss"])
                minutes = (time.perf_counter() - t0) / 60
                print(f"{task:>9} {size:>6} {seed:>4} {r.params:>9,} {r.tokens:>10,} "
                      f"{first:>8.3f} {r.train_loss:>7.3f} {r.val_loss:>7.3f} "
                      f"{whole['loss']:>8.3f} ± {whole['stderr']:.3f} {minutes:>5.1f}", flush=True)
                fell = r.val_loss < 0.8 * first
                ok &= fell
                if not fell:
                    print(f"  {task} {size} seed {seed}: held-out loss did not fall below 0.8 x "
                          "initial")
            means.append(float(np.mean(scores)))
            if len(scores) > 1:
                print(f"  {task} {size}: mean {means[-1]:.3f} over {len(scores)} seeds "
                      f"(spread {max(scores) - min(scores):.3f})")
        ordered = all(a > b for a, b in zip(means, means[1:], strict=False))
        ok &= ordered
        print(f"  {task}: larger models reach lower {args.eval_split} loss at equal D: {ordered}")
        if task == "bc-token":
            _print_action_bar(data, run, means, args.eval_split)
    print(f"runs in {out}; all targets hold: {ok}")
    return 0


def _print_action_bar(tokens_dir: str, run: Path, vals: list[float], split: str) -> None:
    """What the action history alone gives BC-Token (``scaling.study.action_baselines``).

    Shown for context.
    """
    from scaling.study.action_baselines import action_baselines, context_bar

    seq_len = json.loads((run / "config.json").read_text())["data"]["seq_len"]
    b = action_baselines(tokens_dir, split=split, context_steps=seq_len)
    bar = context_bar(b)
    print(f"  bc-token: {split} action-only bar (order-{b['best_order_in_context']} n-gram "
          f"within the {seq_len}-step window) "
          f"{bar:.3f}, marginal {b['marginal']:.3f}; sizes below the bar: "
          f"{sum(v < bar for v in vals)} of {len(vals)}")


if __name__ == "__main__":
    raise SystemExit(main())
