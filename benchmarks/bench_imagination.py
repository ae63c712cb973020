"""Imagined frames per second of the world-model simulator: KV cache vs full recompute.

Run: ``.venv/bin/python benchmarks/bench_imagination.py`` (add ``--device cuda`` on a GPU).

By default it uses the study's own layout: a real (randomly initialised) VQ-VAE tokenizer at 16
tokens per frame from a 256-code book, one 4-way action, the s300k transformer and 10 timesteps of
context (170 tokens), with a burn-in of 4 real frames. For batches of 1, 16 and 64 rows it
imagines frames three ways in the same run, interleaving their timings so that machine load hits
all alike:

- ``recompute`` (the baseline): no cache; the whole context is re-encoded at every generated
  token (``SimulatorConfig(use_cache=False)``);
- ``rows``: the KV cache decoded by the variable-shape ``row_forward`` (the previous cached path);
- ``cached``: the KV cache decoded by the fixed-shape step in ``--decode`` mode (``compile`` on
  CPU, ``cuda-graph`` on GPU by default), compiled or captured before timing (its one-off time
  is printed separately); on GPU it attends over 4 fixed widths of the cache by default
  (``--widths``).

Frames/s count decoded RGB frames (tokenizer decode included); s/step is the wall time of one
imagined step of every row. Each timed run starts from a fresh burn-in and runs long enough to
slide the context window; the baseline and the cached paths imagine the same number of steps, so
they decode over the same context lengths. Each round times every path once, so each round gives
one ratio of recompute's time over the compiled step's; the mean ratio comes with a 95% t
interval. Targets: cached >= 8x recompute at batch 1 on CPU (met when the interval lies above
8); on a GPU at most 0.2 s per step with 256 rows at 256 tokens per frame on s2M
(``--tokens-per-frame 256 --size s2M --batch-sizes 256``).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from _stats import mean_interval
from gymnasium import spaces

from offline_data.discretize import discretizer_for_space
from offline_data.tokens import EpisodeTokens, TokenLayout
from worldmodels.presets import get_size
from worldmodels.simulator import SimulatorConfig, TokenWorldModelSimulator
from worldmodels.token_model import TokenModel, TokenModelConfig
from worldmodels.tokenizer import VQVAE, VQConfig


def build(args):
    torch.manual_seed(0)
    vq = VQVAE(VQConfig(tokens_per_frame=args.tokens_per_frame, codebook_size=args.codebook)).eval()
    layout = TokenLayout(args.tokens_per_frame, args.codebook, (4,))
    size = get_size(args.size)
    cfg = TokenModelConfig.for_layout(layout, n_layer=size.n_layer, n_head=size.n_head,
                                      n_embd=size.n_embd, seq_len=args.context_steps,
                                      reward_head=True, termination_head=True)
    model = TokenModel(cfg).to(args.device).eval()
    vq.to(args.device)
    rng = np.random.default_rng(0)
    episodes = [EpisodeTokens(rng.integers(0, args.codebook, (16, args.tokens_per_frame)),
                              rng.integers(0, 4, (16, 1)), np.zeros(16, np.float32),
                              np.zeros(16, bool)) for _ in range(4)]
    return model, vq, episodes


class Runner:
    """One simulator of one kind, timed over fresh imagined runs."""

    def __init__(self, model, vq, episodes, batch, args, **config):
        self.sim = TokenWorldModelSimulator(
            model, vq, discretizer_for_space(spaces.Discrete(4)), batch, episodes,
            SimulatorConfig(burn_in=args.burn_in, cache_dtype=args.cache_dtype, **config),
            seed=0)
        self.batch = batch
        self.sync = (torch.cuda.synchronize if self.sim.device.type == "cuda"
                     else (lambda: None))

    def warm_up(self) -> float:
        """Seconds of a first short run (compilation or graph capture included)."""
        t0 = time.perf_counter()
        self.run(2)
        return time.perf_counter() - t0

    def run(self, steps: int) -> float:
        """Seconds per imagined step of every row, from a fresh burn-in (reset not timed)."""
        self.sim.reset(np.arange(self.batch))
        actions = np.random.default_rng(0).integers(0, 4, (steps, self.batch))
        self.sync()
        t0 = time.perf_counter()
        for a in actions:
            self.sim.step(a)
        self.sync()
        return (time.perf_counter() - t0) / steps


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16, 64])
    p.add_argument("--tokens-per-frame", type=int, default=16, help="the study's layout: 16")
    p.add_argument("--codebook", type=int, default=256)
    p.add_argument("--size", default="s300k", help="transformer size preset")
    p.add_argument("--context-steps", type=int, default=10,
                   help="timesteps of context (10 as in the paper)")
    p.add_argument("--burn-in", type=int, default=4, help="real frames before imagining")
    p.add_argument("--cached-steps", type=int, default=12,
                   help="imagined steps per cached timing (the window slides after 6)")
    p.add_argument("--recompute-steps", type=int, default=None,
                   help="imagined steps per recompute timing (default: --cached-steps, so both "
                        "imagine the same steps over the same context lengths; 0: skip it)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved timings of each kind")
    p.add_argument("--decode", default="auto",
                   help="decode mode of 'cached': compile, cuda-graph, eager (auto: cuda-graph "
                        "on GPU, compile on CPU)")
    p.add_argument("--attention", default=None, choices=("sdpa", "reductions", "triton"),
                   help="how a cached token attends (default: reductions when compiled or "
                        "captured; triton: the split-K kernel, CUDA)")
    p.add_argument("--widths", type=int, default=None,
                   help="widths of the cache a cached token attends over (default: 4 for a CUDA "
                        "graph attending with reductions, else 1: the whole capacity)")
    p.add_argument("--kernel", default=None,
                   help="launch of the triton attention's kernel as block,warps,stages (default: "
                        "decode_attention.DEFAULT_CONFIG; bench_decode_attention.py times them)")
    p.add_argument("--cache-dtype", default="float32", choices=("float32", "bfloat16"))
    p.add_argument("--no-rows", action="store_true", help="skip the variable-shape cached path")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (0: torch default; 1 is steadiest on a shared CPU)")
    args = p.parse_args(argv)
    if args.recompute_steps is None:
        args.recompute_steps = args.cached_steps
    if args.threads:
        torch.set_num_threads(args.threads)
    decode = args.decode
    if decode == "auto":
        decode = "cuda-graph" if torch.device(args.device).type == "cuda" else "compile"
    model, vq, episodes = build(args)
    print(f"WM-Token {args.size} N={model.num_params():,} params, {args.tokens_per_frame} "
          f"tokens/frame, context {args.context_steps} steps ({model.config.gpt.block_size} "
          f"tokens), burn-in {args.burn_in} frames, device {args.device}, "
          f"{torch.get_num_threads()} thread(s), cache {args.cache_dtype}")
    print(f"baseline: recompute (no KV cache, whole context re-encoded at every token), "
          f"{args.recompute_steps} steps per timing; cached: fixed-shape step ({decode}), "
          f"{args.cached_steps} steps per timing; median of {args.rounds} interleaved timings; "
          "frames/s include tokenizer decoding")
    header = f"{'batch':>6} {'cached fr/s':>12} {'s/step':>8} "
    header += "" if args.no_rows else f"{'rows fr/s':>10} "
    print(header + f"{'recompute fr/s':>15} {'cached/recompute':>17} {'first call s':>13}")
    paired: dict[int, list[float]] = {}
    for batch in args.batch_sizes:
        kernel = tuple(int(x) for x in args.kernel.split(",")) if args.kernel else None
        kinds = {"cached": (dict(decode=decode, decode_attention=args.attention,
                                 decode_widths=args.widths, decode_kernel=kernel),
                            args.cached_steps),
                 "rows": (dict(decode="rows"), args.cached_steps),
                 "recompute": (dict(use_cache=False), args.recompute_steps)}
        if args.no_rows:
            del kinds["rows"]
        if not args.recompute_steps:
            del kinds["recompute"]
        runners = {k: Runner(model, vq, episodes, batch, args, **cfg) for k, (cfg, _) in
                   kinds.items()}
        if batch == args.batch_sizes[0] and runners["cached"].sim.decoder is not None:
            d = runners["cached"].sim.decoder
            launch = f", kernel {tuple(d.kernel)}" if d.attention == "triton" else ""
            print(f"cached step attends ({d.attention}{launch}) over cache widths {d.widths}")
        first = runners["cached"].warm_up()
        for k in runners:
            if k != "cached":
                runners[k].warm_up()
        times = {k: [] for k in runners}
        for r in range(args.rounds):
            order = list(runners) if r % 2 == 0 else list(reversed(runners))
            for k in order:
                times[k].append(runners[k].run(kinds[k][1]))
        fps = {k: batch / statistics.median(v) for k, v in times.items()}
        speed = fps["cached"] / fps["recompute"] if "recompute" in fps else float("nan")
        if "recompute" in times:  # each round's recompute time over its cached time
            paired[batch] = [r / c for r, c in zip(times["recompute"], times["cached"],
                                                   strict=True)]
        row = f"{batch:>6} {fps['cached']:>12.1f} {batch / fps['cached']:>8.3f} "
        row += "" if args.no_rows else f"{fps['rows']:>10.1f} "
        row += f"{fps.get('recompute', float('nan')):>15.2f} {speed:>16.1f}x {first:>13.1f}"
        print(row, flush=True)
    for batch, ratios in paired.items():
        if len(ratios) < 2:
            continue
        mean, lo, hi = mean_interval(ratios)
        line = (f"batch {batch}: cached/recompute per round {mean:.2f}x, 95% t interval "
                f"[{lo:.2f}, {hi:.2f}] over {len(ratios)} rounds")
        if batch == 1:
            verdict = "met" if lo >= 8 else ("not met" if hi < 8 else "not shown")
            line += f"; target >= 8x on CPU: {verdict} (met when the interval lies above 8)"
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
