"""AdamW step time on CPU: PyTorch's per-tensor default against its foreach and fused kernels.

The trainer takes fused AdamW steps on CPU as on CUDA (``worldmodels.trainer``). For the ladder's
WM-Token GPT and BC-CNN (16 tokens per frame, 10 timesteps; BC-CNN at the default study's 32x32
frames) it times one optimizer step of each implementation in turn over the same gradients, so
machine load hits all alike. The baseline is the per-tensor loop that ``torch.optim.AdamW``
runs on CPU when neither ``foreach`` nor ``fused`` is set; the printed ratio is the mean, over
rounds, of the baseline's step time over fused's, with a 95% t interval.

Run: .venv/bin/python benchmarks/bench_adamw.py [--sizes s10k s300k] [--rounds 30]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from _stats import mean_interval

from agents.bc_cnn import BCCNN, BCCNNConfig
from worldmodels.gpt import GPT, GPTConfig, configure_optimizer
from worldmodels.presets import LADDER, get_size

VOCAB, CONTEXT, SEQ_LEN, IMAGE = 260, 170, 10, 32


def _model(kind: str, size: str) -> torch.nn.Module:
    s = get_size(size)
    if kind == "wm-token":
        return GPT(GPTConfig(n_layer=s.n_layer, n_head=s.n_head, n_embd=s.n_embd,
                             block_size=CONTEXT, vocab_size=VOCAB))
    return BCCNN(BCCNNConfig.for_width(s.n_layer, s.n_head, s.n_embd, SEQ_LEN, (4,),
                                       image_size=IMAGE))


def bench(kind: str, size: str, rounds: int) -> tuple[int, dict[str, float], list[float]]:
    """(parameter tensors, median ms per step of each implementation, per-round ratios)."""
    torch.manual_seed(0)
    model = _model(kind, size)
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    per_tensor = configure_optimizer(model, 1e-3, 0.1, (0.9, 0.95))
    groups = [{"params": g["params"], "weight_decay": g["weight_decay"]}
              for g in per_tensor.param_groups]  # the same decay split for all three
    opts = {"per-tensor": per_tensor,
            "foreach": torch.optim.AdamW(groups, lr=1e-3, betas=(0.9, 0.95), foreach=True),
            "fused": configure_optimizer(model, 1e-3, 0.1, (0.9, 0.95), fused=True)}
    times = {k: [] for k in opts}
    for opt in opts.values():  # warm up: the first steps allocate the moments
        opt.step()
        opt.step()
    for r in range(rounds):
        for k in (list(opts) if r % 2 == 0 else list(reversed(opts))):
            t0 = time.perf_counter()
            opts[k].step()
            times[k].append(time.perf_counter() - t0)
    ratios = [b / f for b, f in zip(times["per-tensor"], times["fused"], strict=True)]
    n_tensors = sum(1 for _ in model.parameters())
    return n_tensors, {k: 1e3 * statistics.median(v) for k, v in times.items()}, ratios


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", nargs="+", default=list(LADDER[:5]), help="ladder sizes")
    p.add_argument("--rounds", type=int, default=30, help="steps of each implementation")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"{torch.get_num_threads()} thread(s); baseline: torch.optim.AdamW's per-tensor loop "
          f"(CPU default); ms per step are medians over {args.rounds} steps, in turn")
    print(f"{'task':>8} {'size':>6} {'tensors':>7} {'per-tensor':>10} {'foreach':>8} "
          f"{'fused':>7} {'per-tensor/fused [95% interval]':>32}")
    for kind in ("wm-token", "bc-cnn"):
        for size in args.sizes:
            n, ms, ratios = bench(kind, size, args.rounds)
            mean, lo, hi = mean_interval(ratios)
            print(f"{kind:>8} {size:>6} {n:>7} {ms['per-tensor']:>10.3f} {ms['foreach']:>8.3f} "
                  f"{ms['fused']:>7.3f} {f'{mean:.2f} [{lo:.2f}, {hi:.2f}]':>32}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
