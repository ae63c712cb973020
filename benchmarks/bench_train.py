"""Training throughput of our GPT vs a plain reference transformer of the same shape.

For each size of the small ladder it times full training steps (forward, backward, AdamW) of
WM-Token's GPT (fused ``scaled_dot_product_attention``) and of a reference written the textbook way
(explicit QK^T, mask, softmax, @V), on the same token layout, in the same run, interleaving the two
so that machine load hits both alike. It prints tokens/s, 6ND FLOP/s and the ratio ours/reference.
On CUDA it also prints model FLOPs utilisation (6ND FLOP/s over the GPU's bf16 peak) for a paper
preset.

Run: .venv/bin/python benchmarks/bench_train.py [--sizes s10k s100k] [--steps 10] [--threads 1]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from worldmodels.gpt import GPT, GPTConfig, configure_optimizer, init_weights
from worldmodels.presets import LADDER, get_size

# Breakout-like layout: 16 image tokens from a 256-codebook, one 4-way action, 10 steps.
IMAGE_VOCAB, D_Z, ACTIONS, SEQ_LEN = 256, 16, 4, 10
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12}


class RefAttention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.n_head = cfg.n_head
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd)
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd)
        mask = torch.tril(torch.ones(cfg.block_size, cfg.block_size, dtype=torch.bool))
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x):
        B, L, E = x.shape
        q, k, v = self.c_attn(x).split(E, dim=2)
        q, k, v = (t.view(B, L, self.n_head, -1).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(k.size(-1))
        att = att.masked_fill(~self.mask[:L, :L], float("-inf")).softmax(-1)
        return self.c_proj((att @ v).transpose(1, 2).reshape(B, L, E))


class RefBlock(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(cfg.n_embd), nn.LayerNorm(cfg.n_embd)
        self.attn = RefAttention(cfg)
        self.mlp = nn.Sequential(nn.Linear(cfg.n_embd, 4 * cfg.n_embd), nn.GELU(),
                                 nn.Linear(4 * cfg.n_embd, cfg.n_embd))

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class RefGPT(nn.Module):
    """The same shape and parameter count as ``GPT``, attention written out by hand."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.block_size, cfg.n_embd)
        self.h = nn.ModuleList([RefBlock(cfg) for _ in range(cfg.n_layer)])
        self.ln_f = nn.LayerNorm(cfg.n_embd)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        init_weights(self, cfg.n_layer)
        self.lm_head.weight = self.wte.weight

    def forward(self, idx, targets):
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1], device=idx.device))
        for block in self.h:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))
        return logits, F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))


def _step_fn(model, opt, idx, device):
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda"
                else torch.autocast("cpu", enabled=False))

    def step():
        with autocast:
            _, loss = model(idx[:, :-1], idx[:, 1:])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return step


def _time(step, steps, device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def bench_shape(n_layer, n_head, n_embd, vocab, block, batch, steps, rounds, device):
    """(N, tokens/s ours, tokens/s reference)."""
    cfg = GPTConfig(n_layer=n_layer, n_head=n_head, n_embd=n_embd, block_size=block,
                    vocab_size=vocab)
    torch.manual_seed(0)
    ours = GPT(cfg).to(device)
    ref = RefGPT(cfg).to(device)
    n = ours.num_params()
    assert n == sum(p.numel() for p in ref.parameters()), "reference must match N"
    idx = torch.randint(0, vocab, (batch, block + 1), device=device)
    fused = device.type == "cuda" or None
    steps_fns = {name: _step_fn(m, configure_optimizer(m, 1e-4, 0.1, (0.9, 0.95), fused=fused),
                                idx, device) for name, m in (("ours", ours), ("ref", ref))}
    times = {"ours": [], "ref": []}
    for fn in list(steps_fns):  # warm up; the reference's T x T scores may not fit
        try:
            _time(steps_fns[fn], 2, device)
        except torch.OutOfMemoryError:
            print(f"{fn}: out of memory at batch {batch} x context {block}")
            del steps_fns[fn]
            times[fn].append(math.inf)
            torch.cuda.empty_cache()
    for r in range(rounds):  # interleave so load drifts hit both
        order = [k for k in (("ours", "ref") if r % 2 == 0 else ("ref", "ours")) if k in steps_fns]
        for name in order:
            times[name].append(_time(steps_fns[name], steps, device))
    tokens = batch * block * steps
    return n, tokens / statistics.median(times["ours"]), tokens / statistics.median(times["ref"])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", nargs="+", default=list(LADDER), help="ladder sizes to time")
    p.add_argument("--batch", type=int, default=16, help="windows per step")
    p.add_argument("--steps", type=int, default=5, help="training steps per timing")
    p.add_argument("--rounds", type=int, default=5, help="interleaved timings per model")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--gpu-size", default="27M", help="paper size for the MFU line (CUDA only)")
    p.add_argument("--tokens-per-frame", type=int, default=D_Z,
                   help="image tokens per timestep (256: the paper's WM-Token-256 layout)")
    p.add_argument("--seq-len", type=int, default=SEQ_LEN, help="timesteps per window")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    vocab, block = IMAGE_VOCAB + ACTIONS, args.seq_len * (args.tokens_per_frame + 1)
    print(f"device {device} ({torch.get_num_threads()} threads), layout "
          f"d_z={args.tokens_per_frame} "
          f"V={vocab} context={block}, batch {args.batch}, median of {args.rounds}x"
          f"{args.steps} steps")
    print(f"{'size':>7} {'N':>10} {'ours tok/s':>11} {'ref tok/s':>10} {'ours FLOP/s':>12} "
          f"{'ref FLOP/s':>11} {'ours/ref':>9}")
    ratios = []
    sizes = list(args.sizes)
    if device.type == "cuda":
        sizes = sizes + [args.gpu_size]
    for name in sizes:
        s = get_size(name)
        n, ours, ref = bench_shape(s.n_layer, s.n_head, s.n_embd, vocab, block, args.batch,
                                   args.steps, args.rounds, device)
        if ref > 0:  # 0: the reference ran out of memory
            ratios.append(ours / ref)
        print(f"{name:>7} {n:>10,} {ours:>11,.0f} {ref:>10,.0f} {6 * n * ours:>12.3g} "
              f"{6 * n * ref:>11.3g} {ours / ref:>9.2f}")
        if device.type == "cuda" and name == args.gpu_size:
            gpu = torch.cuda.get_device_name()
            peak = next((v for k, v in PEAK_BF16.items() if k in gpu), None)
            # causal attention adds 6 * n_layer * block * n_embd FLOPs per trained token (QK^T
            # and AV over half the window on average, forward and backward)
            attn = 6 * s.n_layer * block * s.n_embd
            mfu = (f"{6 * n * ours / peak:.1%} counting 6ND, {(6 * n + attn) * ours / peak:.1%} "
                   "with attention" if peak else "unknown peak")
            print(f"MFU of {name} on {gpu}: {mfu} (model FLOP/s over the bf16 dense peak)")
    print(f"geometric mean ours/ref: {math.exp(statistics.mean(map(math.log, ratios))):.2f} "
          "(>= 1: ours is not slower)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
