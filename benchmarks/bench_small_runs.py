"""Fixed costs of small runs: ``embscale train`` against the bare model step, and per-run costs
inside a sweep.

1. Throughput. WM-Token at s10k (ladder preset, Breakout layout: 16 image tokens from a
   256-codebook and one 4-way action; random tokens, 40k frames) trained by ``train_model`` (what
   ``embscale train`` runs after its imports: model and data set-up, log points, validation,
   checkpoints kept as a sweep keeps them, TensorBoard) against the *bare step*: the same model,
   optimizer and batches in a loop of forward, backward and AdamW steps and nothing else. The two
   are interleaved in one process so machine load hits both alike. Target: ratio >= 0.9.
2. Fixed cost per run in a sweep: ``--rounds`` rounds of ``--sweep-runs`` tiny runs (s10k, 2
   steps) trained by ``run_sweep`` (a process per run), by ``run_pooled_sweep`` (two worker
   processes per round, several runs each) and by one ``WorkerPool`` whose two workers serve
   every round (what the budget protocol does). Fixed cost per run = the time of its training
   call outside its training steps (set-up, validation, checkpoints) + its share of the time
   outside training calls (process starts and imports). Target: < 1 s per run.

Run: python benchmarks/bench_small_runs.py [--steps 100] [--reps 3] [--sweep-runs 8] [--rounds 4]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from offline_data.token_writer import write_token_shards  # noqa: E402
from offline_data.tokens import EpisodeTokens, TokenHeader  # noqa: E402


def make_shards(path: Path, frames: int = 40_000, episode: int = 1_000) -> Path:
    """Random tokens in the default study's layout (throughput does not depend on content)."""
    rng = np.random.default_rng(0)
    header = TokenHeader(tokens_per_frame=16, image_vocab=256, action_vocab_sizes=(4,),
                         tokenizer_id="bench", tokenizer_sha256="0" * 64,
                         dataset_id="embscale/bench/random-v0")

    def episodes(n):
        for _ in range(n):
            term = np.zeros(episode, bool)
            term[-1] = True
            yield EpisodeTokens(rng.integers(0, 256, (episode, 16)),
                                rng.integers(0, 4, (episode, 1)), np.zeros(episode, np.float32),
                                term)

    n = frames // episode
    write_token_shards(path, header, {"train": episodes(n - 2), "val": episodes(2)})
    return path


def train_e2e(shards: Path, run_dir: Path, steps: int) -> tuple[float, float]:
    """Tokens per wall second and per CPU second of ``train_model`` from its call to its return."""
    from scaling.training import train_model

    t0, c0 = time.perf_counter(), time.process_time()
    r = train_model("wm-token", "s10k", str(shards), run_dir, steps=steps, keep_checkpoints=True,
                    device="cpu")
    return r.tokens / (time.perf_counter() - t0), r.tokens / (time.process_time() - c0)


def bare_step(shards: Path, steps: int) -> tuple[float, float]:
    """Tokens per wall and per CPU second of the same model's forward/backward/AdamW loop."""
    from scaling.tasks import build
    from worldmodels.gpt import configure_optimizer
    from worldmodels.trainer import seed_everything

    seed_everything(0)
    model, source, preset, _ = build("wm-token", "s10k", str(shards))
    per_micro = preset.micro_batch_size * source.items_per_window
    accum = max(1, -(-preset.update_tokens("s10k") // per_micro))
    loader = source.loader("train", preset.micro_batch_size, 0, 0, 1)
    opt = configure_optimizer(model, 1e-3, 0.1, (0.9, 0.95))
    batches = [loader.batch_at(i) for i in range(steps * accum)]
    model.train()
    t0, c0 = time.perf_counter(), time.process_time()
    for s in range(steps):
        for m in range(accum):
            (model.compute_loss(batches[s * accum + m]).loss / accum).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    tokens = steps * accum * per_micro
    return tokens / (time.perf_counter() - t0), tokens / (time.process_time() - c0)


def sweep_fixed_cost(shards: Path, root: Path, runs: int, mode: str, rounds: int = 1
                     ) -> tuple[float, float, float]:
    """Wall seconds of a sweep of ``runs`` 2-step s10k runs per round; per run, the seconds of its
    training call outside its training steps (set-up, validation, checkpoints, logs), and the
    seconds outside its training call (process start and imports, shared by a worker's runs).

    ``mode``: ``process`` (``run_sweep``, a process per run), ``pooled`` (``run_pooled_sweep``,
    a pool per round) or ``pool`` (one ``WorkerPool`` for every round, as the budget protocol
    runs its rounds).
    """
    from scaling.study.sweep import DONE_FILE, RunSpec, run_sweep
    from scaling.study.sweep_pool import WorkerPool, run_pooled_sweep

    def specs_of(k):
        return [RunSpec(name=f"k{k}-r{i}", task="wm-token", size="s10k", seed=i,
                        out_dir=str(root / f"k{k}-r{i}"), data=str(shards), tokens=2 * 4096.0,
                        device="cpu", params=10_000) for i in range(runs)]

    rounds_specs = [specs_of(k) for k in range(rounds)]
    t0 = time.perf_counter()
    if mode == "pool":
        with WorkerPool(2) as pool:
            for specs in rounds_specs:
                pool.run(specs)
    elif mode == "pooled":
        for specs in rounds_specs:
            run_pooled_sweep(specs, parallel=2)
    else:
        for specs in rounds_specs:
            run_sweep(specs, parallel=2, progress=False, poll_s=0.05)
    wall = time.perf_counter() - t0
    from scaling.study.budget_rounds import read_curve

    # training steps alone (metrics' tokens_per_s): set-up, validation and checkpoints count as
    # fixed costs, like the process start and imports
    every = [s for specs in rounds_specs for s in specs]
    trained = sum(read_curve(s).seconds for s in every)
    in_entry = sum(json.loads((s.run_dir / DONE_FILE).read_text())["seconds"] for s in every)
    # two at a time: the sweep's wall time holds half of the summed per-run work
    return wall, (in_entry - trained) / len(every), (wall - in_entry / 2) * 2 / len(every)


def mean_interval(values: list[float]) -> tuple[float, float, float]:
    """Mean and 95% Student-t interval of the mean of ``values`` (at least two)."""
    from scipy import stats

    v = np.asarray(values, np.float64)
    half = stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
    return float(v.mean()), float(v.mean() - half), float(v.mean() + half)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=100, help="optimizer steps per timed run")
    ap.add_argument("--reps", type=int, default=3, help="interleaved repetitions")
    ap.add_argument("--sweep-runs", type=int, default=8, help="tiny runs per round of a sweep")
    ap.add_argument("--rounds", type=int, default=4,
                    help="rounds of a sweep (the default study's protocol ran 4)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (part 1)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        shards = make_shards(tmp / "shards")
        bare_step(shards, 3)  # warm caches and lazy imports on both sides
        train_e2e(shards, tmp / "warm", 3)
        wall, cpu = [], []
        for i in range(args.reps):
            b = bare_step(shards, args.steps)
            o = train_e2e(shards, tmp / f"run{i}", args.steps)
            wall.append(o[0] / b[0])
            cpu.append(o[1] / b[1])
            print(f"rep {i}: bare step {b[0]:,.0f} tokens/s ({b[1]:,.0f} per CPU s), embscale "
                  f"train {o[0]:,.0f} tokens/s ({o[1]:,.0f} per CPU s), ratio {wall[-1]:.3f} "
                  f"(CPU time {cpu[-1]:.3f})", flush=True)
        print(f"s10k, {args.steps} steps, {args.threads} thread(s): embscale train / bare step = "
              f"{statistics.median(wall):.3f} by wall time, {statistics.median(cpu):.3f} by CPU "
              f"time (medians of {args.reps}; target >= 0.9)")
        if args.reps > 1:
            mean, lo, hi = mean_interval(wall)
            print(f"  by wall time: mean {mean:.3f}, 95% t interval [{lo:.3f}, {hi:.3f}] over "
                  f"{args.reps} interleaved repetitions (the target is shown when the interval "
                  "lies above 0.9)")
        modes = {"process": "run_sweep (a process per run)",
                 "pooled": "run_pooled_sweep (2 workers, a pool per round)",
                 "pool": "WorkerPool (2 workers kept for every round, as the protocol runs)"}
        for mode, kind in modes.items():
            wall, inside, outside = sweep_fixed_cost(shards, tmp / f"sweep-{mode}",
                                                     args.sweep_runs, mode, args.rounds)
            print(f"{kind}: {args.rounds} round(s) of {args.sweep_runs} runs in {wall:.1f} s; "
                  f"fixed cost per run {inside + outside:.2f} s (target < 1 s): {inside:.2f} s "
                  f"in the run's training call outside its steps, {outside:.2f} s outside it "
                  "(process start, imports)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
