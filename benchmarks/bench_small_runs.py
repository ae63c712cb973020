"""Fixed costs of small runs: ``embscale train`` against the bare model step, and per-run costs
inside a sweep.

1. Throughput. WM-Token at s10k (ladder preset, Breakout layout: 16 image tokens from a
   256-codebook and one 4-way action; random tokens, 40k frames) trained by ``train_model`` (what
   ``embscale train`` runs after its imports: model and data set-up, batches built as it trains,
   log points, validation, checkpoints kept as a sweep keeps them, TensorBoard) against the *bare
   step*: the same model, optimizer and batches (built before timing) in forward, backward and
   AdamW steps and nothing else. The two are interleaved step by step in one process: after every
   step of ``train_model`` a callback times one bare step, so machine load (which moves the
   speed of this machine by 20% or more from one second to the next) hits both alike. The
   wall time of ``train_model`` less its callbacks' time is its own time. Each repetition is one
   ``train_model`` call; the mean ratio comes with a 95% t interval. Target: ratio >= 0.9.
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
from _stats import mean_interval  # noqa: E402

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


class BareStep:
    """The bare step of ``train_model``'s model: forward, backward, clipping and AdamW, nothing
    else, on batches built before timing. Called as a ``train_model`` callback, it times one
    step of its own after every step of the run (and the callback's whole time, to subtract)."""

    def __init__(self, shards: Path, steps: int):
        from scaling.tasks import build
        from worldmodels.gpt import configure_optimizer
        from worldmodels.trainer import seed_everything

        seed_everything(0)
        self.model, source, preset, _ = build("wm-token", "s10k", str(shards))
        per_micro = preset.micro_batch_size * source.items_per_window
        self.accum = max(1, -(-preset.update_tokens("s10k") // per_micro))
        self.tokens_per_step = self.accum * per_micro
        loader = source.loader("train", preset.micro_batch_size, 0, 0, 1)
        self.opt = configure_optimizer(self.model, 1e-3, 0.1, (0.9, 0.95), fused=True)
        self.batches = [loader.batch_at(i) for i in range(steps * self.accum)]
        self.model.train()
        self.steps, self.seconds, self.callback_seconds = 0, 0.0, 0.0

    def step(self) -> None:
        """One optimizer step over ``accum`` micro-batches, timed into ``seconds``."""
        t0 = time.perf_counter()
        for m in range(self.accum):
            batch = self.batches[(self.steps * self.accum + m) % len(self.batches)]
            (self.model.compute_loss(batch).loss / self.accum).backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.seconds += time.perf_counter() - t0
        self.steps += 1

    def __call__(self, step: int, record: dict | None) -> None:
        t0 = time.perf_counter()
        self.step()
        self.callback_seconds += time.perf_counter() - t0


def interleaved_ratio(shards: Path, run_dir: Path, steps: int) -> tuple[float, float, float]:
    """Tokens/s of ``train_model`` and of the bare step, timed step by step in turn, and the ratio.

    ``train_model``'s time is its call's wall time (set-up to return) less the time of its
    callbacks, which ran the bare steps.
    """
    from scaling.training import train_model

    bare = BareStep(shards, steps)
    t0 = time.perf_counter()
    r = train_model("wm-token", "s10k", str(shards), run_dir, steps=steps, keep_checkpoints=True,
                    device="cpu", callbacks=[bare])
    own = time.perf_counter() - t0 - bare.callback_seconds
    if bare.tokens_per_step * bare.steps != r.tokens:
        raise RuntimeError(f"the bare step trained {bare.tokens_per_step * bare.steps} tokens, "
                           f"train_model {r.tokens}: their shapes differ")
    train_tps, bare_tps = r.tokens / own, r.tokens / bare.seconds
    return train_tps, bare_tps, train_tps / bare_tps


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
    from worldmodels.run_metrics import MEAN_LOSS_KEY

    # training steps alone (metrics' tokens_per_s): set-up, validation and checkpoints count as
    # fixed costs, like the process start and imports
    every = [s for specs in rounds_specs for s in specs]
    trained = sum(read_curve(s, MEAN_LOSS_KEY).seconds for s in every)
    in_entry = sum(json.loads((s.run_dir / DONE_FILE).read_text())["seconds"] for s in every)
    # two at a time: the sweep's wall time holds half of the summed per-run work
    return wall, (in_entry - trained) / len(every), (wall - in_entry / 2) * 2 / len(every)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=100, help="optimizer steps per timed run")
    ap.add_argument("--reps", type=int, default=10, help="repetitions (train_model calls)")
    ap.add_argument("--sweep-runs", type=int, default=8, help="tiny runs per round of a sweep")
    ap.add_argument("--rounds", type=int, default=4,
                    help="rounds of a sweep (the default study's protocol ran 4)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (part 1)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        shards = make_shards(tmp / "shards")
        interleaved_ratio(shards, tmp / "warm", 3)  # warm caches and lazy imports on both sides
        ratios = []
        for i in range(args.reps):
            train_tps, bare_tps, ratio = interleaved_ratio(shards, tmp / f"run{i}", args.steps)
            ratios.append(ratio)
            print(f"rep {i}: embscale train {train_tps:,.0f} tokens/s, bare step {bare_tps:,.0f} "
                  f"tokens/s, ratio {ratio:.3f}", flush=True)
        print(f"s10k, {args.steps} steps, {args.threads} thread(s), bare step interleaved after "
              f"every step: embscale train / bare step = {statistics.median(ratios):.3f} (median "
              f"of {args.reps}; target >= 0.9)")
        if args.reps > 1:
            mean, lo, hi = mean_interval(ratios)
            verdict = "met" if lo >= 0.9 else "not shown"
            print(f"  mean {mean:.3f}, 95% t interval [{lo:.3f}, {hi:.3f}] over {args.reps} "
                  f"repetitions: target {verdict} (shown when the interval lies above 0.9)")
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
