"""Where the GPU time goes: SDPA's backends, a compiled training step and an imagined step.

Three parts, each printing what it measured (``--parts`` picks some):

- ``sdpa``: causal attention alone (forward and backward, bf16) with each of SDPA's fused backends
  (flash, cuDNN, memory-efficient) at the paper's context of 2,570 tokens and head width 64, in
  TFLOP/s (the forward's two products over the causal half, the backward counted as 2.5 times the
  forward);
- ``train``: one compiled training step of ``--train-sizes`` (bf16 autocast, fused AdamW, as the
  trainer runs) at 256 tokens per frame, its tokens/s and MFU (6ND over the dense bf16 peak, as
  ``bench_train.py`` counts it), then its kernels' time from ``torch.profiler`` in groups (matrix
  products, attention, the compiler's fused elementwise and norm kernels, AdamW, other) and the
  largest kernels;
- ``imagine``: one imagined step of 256 rows at 256 tokens per frame on s2M with a bf16 cache
  (the setting of ``bench_imagination.py``'s GPU target), its kernels grouped the same way.

Needs CUDA. Run: python benchmarks/profile_gpu.py [--parts sdpa train imagine]
(about 2 minutes on an H200, most of it compiling).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.profiler import ProfilerActivity, profile

from worldmodels.gpt import GPT, GPTConfig, configure_optimizer
from worldmodels.presets import get_size

PEAK_BF16 = 989e12  # dense bf16 FLOP/s of an H100 or H200 (datasheet), as bench_train.py
VOCAB = 260  # 256 image codes and 4 actions


def _median_seconds(fn, n: int = 10) -> float:
    fn()
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def group(kernel: str) -> str:
    """The kind of work a CUDA kernel does, from its name."""
    k = kernel.lower()
    if any(s in k for s in ("flash", "fmha", "sdpa", "attention")):
        return "attention"
    if any(s in k for s in ("gemm", "nvjet", "cutlass", "gemv", "xmma", "sm90_", "cublas")):
        return "matrix products"
    if "triton" in k:
        return "fused elementwise/norm/reduction (compiled)"
    if any(s in k for s in ("adam", "foreach", "multi_tensor")):
        return "AdamW"
    return "other"


def kernel_report(prof, wall: float, top: int = 8) -> None:
    """Print the profiled kernels' time by group, and the largest kernels."""
    kernels: dict[str, float] = {}
    for e in prof.key_averages():
        if e.self_device_time_total > 0:
            kernels[e.key] = kernels.get(e.key, 0.0) + e.self_device_time_total / 1e6
    total = sum(kernels.values())
    groups: dict[str, float] = {}
    for k, s in kernels.items():
        groups[group(k)] = groups.get(group(k), 0.0) + s
    print(f"  GPU kernel time {total * 1e3:.1f} ms (wall {wall * 1e3:.1f} ms): "
          + ", ".join(f"{g} {s / total:.0%}" for g, s in sorted(groups.items(),
                                                                  key=lambda x: -x[1])))
    for k, s in sorted(kernels.items(), key=lambda x: -x[1])[:top]:
        print(f"    {s * 1e3:8.2f} ms  {k[:100]}")


def sdpa_backends(batch: int = 16, heads: tuple[int, ...] = (12, 8), context: int = 2570,
                  head_width: int = 64) -> None:
    flops_fwd = 4 * context * context * head_width / 2  # QK^T and AV over the causal half
    for h in heads:
        q, k, v = (torch.randn(batch, h, context, head_width, device="cuda",
                               dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
        for backend in (SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION,
                        SDPBackend.EFFICIENT_ATTENTION):
            def step(backend=backend, q=q, k=k, v=v):
                with sdpa_kernel([backend]):
                    y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
                y.sum().backward()
            try:
                t = _median_seconds(step)
            except RuntimeError as e:  # a backend that does not take this shape
                print(f"  sdpa {backend.name} heads {h}: not available ({str(e)[:80]})")
                continue
            tflops = 3.5 * flops_fwd * batch * h / t / 1e12
            print(f"  sdpa {backend.name:<19} batch {batch} heads {h} context {context} head "
                  f"{head_width}: {t * 1e3:.2f} ms forward+backward, {tflops:.0f} TFLOP/s")


def train_step(size: str, tokens_per_frame: int = 256, batch: int = 16) -> None:
    s = get_size(size)
    block = 10 * (tokens_per_frame + 1)
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=s.n_layer, n_head=s.n_head, n_embd=s.n_embd,
                          block_size=block, vocab_size=VOCAB)).cuda()
    opt = configure_optimizer(model, 1e-4, 0.1, (0.9, 0.95), fused=True)
    compiled = torch.compile(model)
    idx = torch.randint(0, VOCAB, (batch, block + 1), device="cuda")

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            _, loss = compiled(idx[:, :-1], idx[:, 1:])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    t0 = time.perf_counter()
    step()
    torch.cuda.synchronize()
    first = time.perf_counter() - t0
    wall = _median_seconds(step, 8)
    tps = batch * block / wall
    n = model.num_params()
    attn = 6 * s.n_layer * block * s.n_embd
    print(f"train {size}, {tokens_per_frame} tokens/frame, batch {batch}: first step (compile) "
          f"{first:.0f} s, {wall * 1e3:.1f} ms/step, {tps:,.0f} tokens/s, MFU "
          f"{6 * n * tps / PEAK_BF16:.1%} counting 6ND, {(6 * n + attn) * tps / PEAK_BF16:.1%} "
          "with attention")
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        step()
        torch.cuda.synchronize()
    kernel_report(prof, wall)
    torch._dynamo.reset()


def imagined_step(rows: int = 256, tokens_per_frame: int = 256, size: str = "s2M",
                  attention: str | None = None) -> None:
    from bench_imagination import Runner, build

    args = argparse.Namespace(tokens_per_frame=tokens_per_frame, codebook=256, size=size,
                              context_steps=10, device="cuda", burn_in=4,
                              cache_dtype="bfloat16")
    model, vq, episodes = build(args)
    runner = Runner(model, vq, episodes, rows, args, decode="cuda-graph",
                    decode_attention=attention)
    first = runner.warm_up()
    wall = runner.run(3)
    d = runner.sim.decoder
    print(f"imagine {size}, {tokens_per_frame} tokens/frame, {rows} rows, bf16 cache, attention "
          f"{d.attention}, widths {d.widths}: warm-up (compile, capture) {first:.1f} s, "
          f"{wall:.3f} s per step over 3 steps")
    runner.sim.reset(np.arange(rows))
    t0 = time.perf_counter()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        runner.sim.step(np.zeros(rows, np.int64))
        torch.cuda.synchronize()
    kernel_report(prof, time.perf_counter() - t0)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--parts", nargs="+", default=["sdpa", "train", "imagine"],
                   choices=["sdpa", "train", "imagine"])
    p.add_argument("--train-sizes", nargs="+", default=["110M", "27M"])
    p.add_argument("--attention", default=None, choices=("reductions", "triton", "sdpa"),
                   help="how the imagined step's tokens attend (default: reductions)")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("profile_gpu.py needs a CUDA device")
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}")
    if "sdpa" in args.parts:
        sdpa_backends()
    if "train" in args.parts:
        for size in args.train_sizes:
            train_step(size)
    if "imagine" in args.parts:
        imagined_step(attention=args.attention)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
