"""Imagined frames per second of the world-model simulator: KV cache vs full recompute.

Run: ``.venv/bin/python benchmarks/bench_imagination.py`` (add ``--device cuda`` on a GPU).

Builds a real (randomly initialised) VQ-VAE tokenizer at 64 tokens per frame and a WM-Token
transformer, starts every row from a burn-in of held-out-like frames, and imagines frames for
batches of 1, 16 and 64 rows, once decoding with the KV cache and once recomputing the whole
context at every generated token (the baseline), in the same run. Frames/s count decoded RGB
frames (tokenizer decode included). The target is a speed-up of at least 5x.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from gymnasium import spaces

from offline_data.discretize import discretizer_for_space
from offline_data.tokens import EpisodeTokens, TokenLayout
from worldmodels.simulator import SimulatorConfig, TokenWorldModelSimulator
from worldmodels.token_model import TokenModel, TokenModelConfig
from worldmodels.tokenizer import VQVAE, VQConfig


def build(args):
    torch.manual_seed(0)
    vq = VQVAE(VQConfig(tokens_per_frame=args.tokens_per_frame, codebook_size=args.codebook)).eval()
    layout = TokenLayout(args.tokens_per_frame, args.codebook, (4,))
    cfg = TokenModelConfig.for_layout(layout, n_layer=args.n_layer, n_head=args.n_head,
                                      n_embd=args.n_embd, seq_len=args.context_steps,
                                      reward_head=True, termination_head=True)
    model = TokenModel(cfg).to(args.device).eval()
    vq.to(args.device)
    rng = np.random.default_rng(0)
    episodes = [EpisodeTokens(rng.integers(0, args.codebook, (16, args.tokens_per_frame)),
                              rng.integers(0, 4, (16, 1)), np.zeros(16, np.float32),
                              np.zeros(16, bool)) for _ in range(4)]
    return model, vq, episodes


def frames_per_s(model, vq, episodes, batch, steps, use_cache, burn_in) -> float:
    sim = TokenWorldModelSimulator(
        model, vq, discretizer_for_space(spaces.Discrete(4)), batch, episodes,
        SimulatorConfig(burn_in=burn_in, use_cache=use_cache), seed=0)
    sim.reset(np.arange(batch))
    actions = np.random.default_rng(0).integers(0, 4, (steps, batch))
    sync = torch.cuda.synchronize if sim.device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for a in actions:
        sim.step(a)
    sync()
    return batch * steps / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16, 64])
    p.add_argument("--tokens-per-frame", type=int, default=64)
    p.add_argument("--codebook", type=int, default=512)
    p.add_argument("--n-layer", type=int, default=2)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--n-embd", type=int, default=64)
    p.add_argument("--context-steps", type=int, default=10,
                   help="timesteps of context (10 as in the paper)")
    p.add_argument("--burn-in", type=int, default=8, help="real frames before imagining")
    p.add_argument("--cached-steps", type=int, default=4, help="imagined steps, KV cache")
    p.add_argument("--recompute-steps", type=int, default=1, help="imagined steps, baseline")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (0: torch default; 1 is steadiest on a shared CPU)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model, vq, episodes = build(args)
    print(f"WM-Token N={model.num_params():,} params, {args.tokens_per_frame} tokens/frame, "
          f"context {args.context_steps} steps ({model.config.gpt.block_size} tokens), "
          f"burn-in {args.burn_in} frames, device {args.device}")
    print(f"{'batch':>6} {'cached frames/s':>16} {'recompute frames/s':>19} {'speed-up':>9}")
    worst = float("inf")
    for batch in args.batch_sizes:
        cached = frames_per_s(model, vq, episodes, batch, args.cached_steps, True, args.burn_in)
        full = frames_per_s(model, vq, episodes, batch, args.recompute_steps, False, args.burn_in)
        worst = min(worst, cached / full)
        print(f"{batch:>6} {cached:>16.1f} {full:>19.2f} {cached / full:>8.1f}x", flush=True)
    verdict = "met" if worst >= 5 else "NOT met"
    print(f"smallest speed-up {worst:.1f}x; target >= 5x: {verdict}")


if __name__ == "__main__":
    main()
