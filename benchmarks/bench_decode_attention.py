"""One decoded token's attention over a layer's KV cache: the split-K Triton kernel's launches
against the decode step's reductions, SDPA and a copy of the same bytes.

Run on a GPU: ``python benchmarks/bench_decode_attention.py`` (it needs Triton, which CUDA builds
of torch bring). On CPU it runs through Triton's interpreter (``TRITON_INTERPRET=1``, tiny shapes
such as ``--rows 4 --heads 2 --columns 130 --column 100``): a check that every path runs and
agrees, whose timings say nothing about a GPU.

The default shapes are one layer of the GPU imagination target's step: s2M (8 heads of 18
values), 256 rows, a bf16 cache of 2,570 columns (10 timesteps of 257 tokens) written up to
column 1,799 (4 burn-in frames and 3 imagined steps), every row owning its columns from 0
(``--first-max`` draws later starts). Each path computes the attention of one query per row
over its owned columns, and each is checked against SDPA in fp32 before it is timed:

- ``reductions`` (the baseline): products, a masked softmax and a sum over the attended width,
  as the decode step runs them by default on a GPU (``worldmodels.decode_math.attend``); the
  width is the smallest of 4 fixed widths that holds the written column, as in the step;
- ``sdpa``: ``scaled_dot_product_attention`` with the owned-columns mask over that width;
- ``sdpa, head padded to P``: the same with every head zero-padded to P values (a layout the
  fused kernels accept), to tell whether a padded cache is worth building; the padding is done
  before timing;
- ``triton bB wW sS``: the kernel (``worldmodels.decode_attention``) with ``KernelConfig(B, W,
  S)``, which reads only the owned columns;
- ``copy``: a clone of the owned keys and values, the bandwidth reference (it reads and writes
  them).

GB/s counts the owned keys' and values' bytes once per call, whatever a path reads. Rounds
interleave the paths (the order rotates) so that load hits all alike; each round gives one ratio
of the baseline's time over each path's, and the mean ratio comes with a 95% t interval. The
launch with the lowest median time is the candidate for ``decode_attention.DEFAULT_CONFIG``.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time

import torch
import torch.nn.functional as F
from _stats import mean_interval

from worldmodels.decode_attention import DEFAULT_CONFIG, KernelConfig, available, decode_attention
from worldmodels.decode_math import attend, owned_mask

GPU_CONFIGS = [KernelConfig(b, w, s) for b, w, s in
               itertools.product((32, 64, 128, 256), (2, 4, 8), (0, 2, 4))]
"""The launches timed on a GPU by default (36)."""


def _parse_configs(text: list[str] | None, device: str) -> list[KernelConfig]:
    if text:
        return [KernelConfig(*(int(x) for x in t.split(","))) for t in text]
    if device == "cuda":
        return GPU_CONFIGS
    return [DEFAULT_CONFIG, KernelConfig(32, 2, 0)]


def _timer(device: str):
    """A function that times ``reps`` calls of ``fn`` in seconds per call."""
    if device == "cuda":
        def timed(fn, reps):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(reps):
                fn()
            end.record()
            torch.cuda.synchronize()
            return start.elapsed_time(end) / 1e3 / reps
    else:
        def timed(fn, reps):
            t0 = time.perf_counter()
            for _ in range(reps):
                fn()
            return (time.perf_counter() - t0) / reps
    return timed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=256)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--head", type=int, default=18, help="values per head (s2M: 144 / 8)")
    p.add_argument("--columns", type=int, default=2570, help="the cache's capacity")
    p.add_argument("--column", type=int, default=1799, help="the column just written")
    p.add_argument("--first-max", type=int, default=0,
                   help="rows' first owned columns drawn from [0, FIRST_MAX]")
    p.add_argument("--widths", type=int, default=4,
                   help="fixed widths of the cache, as the decode step's (the baseline's span)")
    p.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32"))
    p.add_argument("--configs", nargs="*", default=None,
                   help="kernel launches as block,warps,stages (default: 36 on CUDA, 2 on CPU)")
    p.add_argument("--padded-heads", type=int, nargs="*", default=[24, 32])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--reps", type=int, default=None, help="calls per timing (CUDA 50, CPU 1)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    dev = args.device
    if not available(dev):
        raise SystemExit(f"the Triton kernel cannot run on {dev}: it needs Triton and CUDA, or "
                         "TRITON_INTERPRET=1 on CPU")
    if not 0 <= args.first_max <= args.column < args.columns:
        raise SystemExit("need 0 <= --first-max <= --column < --columns")
    dtype = getattr(torch, args.dtype)
    reps = args.reps or (50 if dev == "cuda" else 1)
    g = torch.Generator().manual_seed(0)
    B, nh, hd = args.rows, args.heads, args.head
    keys = torch.randn(B, nh, args.columns, hd, generator=g).to(dev, dtype)
    values = torch.randn(B, nh, args.columns, hd, generator=g).to(dev, dtype)
    q = torch.randn(B, nh, 1, hd, generator=g).to(dev, dtype)
    first = torch.randint(0, args.first_max + 1, (B,), generator=g).to(dev)
    col = torch.tensor([args.column], device=dev)
    n = args.widths
    width = min(w for w in (-(-args.columns * j // n) for j in range(1, n + 1)) if w > args.column)
    k_w, v_w = keys[:, :, :width], values[:, :, :width]
    mask = owned_mask(first, col, width)
    owned = int((args.column + 1 - first).sum()) * nh * hd * 2 * keys.element_size()
    lo = int(first.min())
    paths = {
        "reductions": lambda: attend(q, k_w, v_w, first, col, mask, "reductions"),
        "sdpa": lambda: attend(q, k_w, v_w, first, col, mask, "sdpa"),
    }
    for pad in (x for x in args.padded_heads if x > hd):
        qp, kp, vp = (F.pad(t, (0, pad - hd)).contiguous() for t in (q, k_w, v_w))
        paths[f"sdpa, head padded to {pad}"] = (
            lambda qp=qp, kp=kp, vp=vp: F.scaled_dot_product_attention(
                qp, kp, vp, attn_mask=mask, scale=hd ** -0.5)[..., :hd])
    for c in _parse_configs(args.configs, dev):
        paths[f"triton b{c.block} w{c.num_warps} s{c.num_stages}"] = (
            lambda c=c: decode_attention(q, k_w, v_w, first, col, c))
    paths["copy"] = lambda: (keys[:, :, lo:args.column + 1].clone(),
                             values[:, :, lo:args.column + 1].clone())

    want = F.scaled_dot_product_attention(q.float(), k_w.float(), v_w.float(), attn_mask=mask)
    print(f"device {dev}; {B} rows x {nh} heads x {hd} values, {args.dtype} cache of "
          f"{args.columns} columns written to {args.column}, rows from column 0 to "
          f"{args.first_max}; baseline: reductions over {width} columns (of {n} widths); "
          f"owned keys and values {owned / 1e6:.3g} MB per call; {reps} calls per timing")
    failed = []
    for name, fn in list(paths.items()):
        if name == "copy":
            continue
        try:
            err = (fn().float() - want).abs().max().item()
        except Exception as e:  # a launch this GPU refuses (shared memory, registers)
            print(f"{name}: failed to run ({type(e).__name__}: {str(e).splitlines()[0]})")
            failed.append(name)
            continue
        if err > (1e-2 if dtype == torch.bfloat16 else 1e-4):
            raise SystemExit(f"{name} differs from SDPA in fp32 by {err:.3g}")
    for name in failed:
        del paths[name]
    timed = _timer(dev)
    for fn in paths.values():  # warm up: compile the kernels, allocate
        timed(fn, 2)
    times: dict[str, list[float]] = {k: [] for k in paths}
    names = list(paths)
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            times[name].append(timed(paths[name], reps))
    base = times["reductions"]
    print(f"{'path':<28} {'us/call':>9} {'GB/s':>7}  reductions' time / this path's [95%]")
    best = None
    for name, ts in times.items():
        med = statistics.median(ts)
        m, a, b = mean_interval([x / y for x, y in zip(base, ts, strict=True)])
        print(f"{name:<28} {med * 1e6:9.1f} {owned / med / 1e9:7.1f}  {m:.2f} [{a:.2f}, {b:.2f}]")
        if name.startswith("triton") and (best is None or med < best[1]):
            best = (name, med)
    if best:
        print(f"fastest launch: {best[0]} ({best[1] * 1e6:.1f} us/call; "
              f"default {DEFAULT_CONFIG})")


if __name__ == "__main__":
    main()
