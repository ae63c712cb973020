"""Training throughput of our GPT vs Hugging Face transformers' GPT-2 of the same shape.

For each size of the small ladder it times full training steps (forward, backward, AdamW) of
WM-Token's GPT and of ``transformers``' ``GPT2LMHeadModel`` built with the same shape (layers,
heads, width, context, vocabulary, exact GELU, tied embeddings: the same N) and its SDPA attention,
on the same token layout, in the same run, one step of each in turn so that machine load (which
moves this kind of shared machine's speed by 20% from one second to the next) hits both alike.
That peer is the baseline; ``--textbook`` adds a third model with attention written out by hand
(QK^T, mask, softmax, @V), an easy baseline shown for reference only. It prints tokens/s, 6ND
FLOP/s and the ratio ours/GPT-2: the mean, over pairs of adjacent steps, of GPT-2's step time over
ours, with a 95% t interval (target: >= 1.0 at every ladder size on CPU; shown where the interval
lies above 1.0).

Both take fused AdamW steps, as the trainer does. On CUDA both also run as the trainer runs (bf16
autocast; ours torch.compiled unless ``--no-compile``) and it adds the paper sizes
(``--gpu-sizes``, default 27M and 110M) at 256 and 540 tokens per frame
(``--gpu-tokens-per-frame``), printing model FLOPs utilisation: 6ND FLOP/s over the GPU's dense
bf16 peak, and separately with causal attention's FLOPs added.

Run: .venv/bin/python benchmarks/bench_train.py [--sizes s10k s100k] [--steps 5] [--threads 1]
(needs ``pip install -e .[bench]`` for transformers)
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
import torch.nn.functional as F
from _stats import mean_interval
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


class HFGPT2(nn.Module):
    """``transformers``' GPT-2 of our shape, with SDPA attention and the same loss."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        try:
            from transformers import GPT2Config, GPT2LMHeadModel
        except ImportError as e:
            raise ImportError("the GPT-2 peer needs transformers: pip install -e '.[bench]'") from e
        hf = GPT2Config(n_layer=cfg.n_layer, n_head=cfg.n_head, n_embd=cfg.n_embd,
                        n_positions=cfg.block_size, vocab_size=cfg.vocab_size,
                        activation_function="gelu", resid_pdrop=0.0, embd_pdrop=0.0,
                        attn_pdrop=0.0, bos_token_id=0, eos_token_id=0)
        self.model = GPT2LMHeadModel._from_config(hf, attn_implementation="sdpa")

    def forward(self, idx, targets):
        logits = self.model(input_ids=idx, use_cache=False).logits
        return logits, F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(),
                                       targets.reshape(-1))


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


def bench_shape(n_layer, n_head, n_embd, vocab, block, batch, steps, rounds, device,
                peers=("ours", "gpt2"), compile_ours=False, compile_peer=False
                ) -> tuple[int, dict[str, float], list[float]]:
    """(N, tokens/s of each model, ours/GPT-2 speed ratio of each pair of adjacent steps).

    The models take ``rounds * steps`` single steps in turn (the order alternating); tokens/s is
    over each model's median step, and each pair of adjacent steps gives one ratio of GPT-2's
    step time over ours. A model that ran out of memory gets 0 tokens/s.
    """
    cfg = GPTConfig(n_layer=n_layer, n_head=n_head, n_embd=n_embd, block_size=block,
                    vocab_size=vocab)
    makers = {"ours": GPT, "gpt2": HFGPT2, "textbook": RefGPT}
    models = {}
    for name in peers:
        torch.manual_seed(0)
        models[name] = makers[name](cfg).to(device)
    n = models["ours"].num_params()
    for name, m in models.items():
        assert sum(p.numel() for p in m.parameters()) == n, f"{name} must match N"
    idx = torch.randint(0, vocab, (batch, block + 1), device=device)
    steps_fns = {}
    for name, m in models.items():
        opt = configure_optimizer(m, 1e-4, 0.1, (0.9, 0.95), fused=True)  # as the trainer
        on = compile_ours if name == "ours" else compile_peer and name == "gpt2"
        steps_fns[name] = _step_fn(torch.compile(m) if on else m, opt, idx, device)
    times = {name: [] for name in models}
    for name in list(steps_fns):  # warm up (and compile); the textbook T x T scores may not fit
        try:
            _time(steps_fns[name], 3, device)
        except torch.OutOfMemoryError:
            print(f"{name}: out of memory at batch {batch} x context {block}")
            del steps_fns[name]
            times[name].append(math.inf)
            torch.cuda.empty_cache()
    for r in range(rounds * steps):  # one step of each model in turn: load drifts hit all alike
        order = list(steps_fns) if r % 2 == 0 else list(reversed(steps_fns))
        for name in order:
            times[name].append(_time(steps_fns[name], 1, device))
    tokens = batch * block
    tps = {name: tokens / statistics.median(t) for name, t in times.items()}
    pairs = ([g / o for o, g in zip(times["ours"], times["gpt2"], strict=True)]
             if "gpt2" in steps_fns and "ours" in steps_fns else [])
    return n, tps, pairs


def attention_flops_per_token(n_layer: int, n_embd: int, block: int) -> int:
    """Causal attention's training FLOPs per token beyond 6N: QK^T and AV over half the window
    on average, forward and backward (6 * n_layer * block * n_embd)."""
    return 6 * n_layer * block * n_embd


def mfu_line(name, n, s, block, tokens_per_s) -> str:
    """MFU of a model on this GPU: 6ND, and 6ND plus attention, over the dense bf16 peak."""
    gpu = torch.cuda.get_device_name()
    peak = next((v for k, v in PEAK_BF16.items() if k in gpu), None)
    if peak is None:
        return f"MFU of {name} on {gpu}: unknown peak (add it to PEAK_BF16)"
    attn = attention_flops_per_token(s.n_layer, s.n_embd, block)
    return (f"{6 * n * tokens_per_s / peak:.1%} counting 6ND, "
            f"{(6 * n + attn) * tokens_per_s / peak:.1%} with attention")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", nargs="*", default=list(LADDER),
                   help="ladder sizes to time (none: only the paper sizes, on CUDA)")
    p.add_argument("--batch", type=int, default=16, help="windows per step")
    p.add_argument("--steps", type=int, default=6,
                   help="with --rounds: rounds x steps single steps of each model, in turn")
    p.add_argument("--rounds", type=int, default=5, help="see --steps")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--tokens-per-frame", type=int, default=D_Z,
                   help="image tokens per timestep of the ladder sizes")
    p.add_argument("--seq-len", type=int, default=SEQ_LEN, help="timesteps per window")
    p.add_argument("--textbook", action="store_true",
                   help="also time a model with attention written out by hand")
    p.add_argument("--gpu-sizes", nargs="*", default=["27M", "110M"],
                   help="paper sizes for the MFU lines (CUDA only)")
    p.add_argument("--gpu-tokens-per-frame", type=int, nargs="*", default=[256, 540],
                   help="layouts of the paper sizes (CUDA only)")
    p.add_argument("--gpu-batch", type=int, default=8, help="windows per step, paper sizes")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile our model (default: on CUDA only, as the trainer)")
    p.add_argument("--compile-peer", action="store_true",
                   help="torch.compile GPT-2 too (compare both at their best)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    compile_ours = device.type == "cuda" if args.compile is None else args.compile
    peers = ("ours", "gpt2", "textbook") if args.textbook else ("ours", "gpt2")
    vocab = IMAGE_VOCAB + ACTIONS
    runs = [(name, args.tokens_per_frame, args.batch) for name in args.sizes]
    if device.type == "cuda":
        runs += [(name, d_z, args.gpu_batch) for d_z in args.gpu_tokens_per_frame
                 for name in args.gpu_sizes]
    print(f"device {device} ({torch.get_num_threads()} threads), V={vocab}, "
          f"{args.seq_len} steps per window, {args.rounds * args.steps} training steps of each "
          f"model, one of each in turn; tokens/s over the median step; ours compiled: "
          f"{compile_ours}; GPT-2 compiled: {args.compile_peer}")
    print("baseline: transformers GPT2LMHeadModel, same shape and N, SDPA attention"
          + ("; textbook: attention written out by hand" if args.textbook else ""))
    cols = "".join(f" {p + ' tok/s':>14}" for p in peers)
    print(f"{'size':>6} {'d_z':>4} {'context':>7} {'N':>11}{cols} {'ours FLOP/s':>12} "
          f"{'ours/gpt2 [95% interval]':>26}")
    ratios = {}
    for name, d_z, batch in runs:
        s = get_size(name)
        block = args.seq_len * (d_z + 1)
        n, tps, pairs = bench_shape(s.n_layer, s.n_head, s.n_embd, vocab, block, batch,
                                    args.steps, args.rounds, device, peers, compile_ours,
                                    args.compile_peer)
        mean, lo, hi = mean_interval(pairs) if pairs else (math.inf, math.nan, math.nan)
        ratios[(name, d_z)] = (mean, lo, hi)
        cols = "".join(f" {tps[p]:>14,.0f}" for p in peers)
        print(f"{name:>6} {d_z:>4} {block:>7} {n:>11,}{cols} {6 * n * tps['ours']:>12.3g} "
              f"{f'{mean:.3f} [{lo:.3f}, {hi:.3f}]':>26}", flush=True)
        if device.type == "cuda" and name in args.gpu_sizes:
            print(f"  MFU ours: {mfu_line(name, n, s, block, tps['ours'])}; "
                  f"gpt2: {mfu_line(name, n, s, block, tps['gpt2'])}")
    shown = [k for k, (_, lo, _) in ratios.items() if lo >= 1.0]
    below = [k for k, (_, _, hi) in ratios.items() if hi < 1.0]
    print(f"ours/gpt2 is the mean over pairs of adjacent steps of GPT-2's step time over ours; "
          f">= 1.0 shown (interval above 1.0) at {len(shown)} of {len(ratios)} sizes"
          + (f"; below 1.0 (interval under 1.0) at {', '.join(k[0] for k in below)}"
             if below else "; below 1.0 at none")
          + f"; target >= 1.0 at every size: {'met' if len(shown) == len(ratios) else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
