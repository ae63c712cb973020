"""Tokenizer and token-loader throughput on this machine.

Prints (1) VQ-VAE encoding throughput in frames/s (the model alone, and the whole
``encode_dataset`` pipeline when a dataset is given: read Minari, encode, write shards) and
(2) how many windows/s the token loader delivers against how many the smallest training preset
consumes (a WM-Token ``TokenModel`` of size s10k, forward + backward + AdamW step, measured in the
same run). The target is a ratio of at least 10.

Usage:
    .venv/bin/python benchmarks/bench_tokenizer.py
    .venv/bin/python benchmarks/bench_tokenizer.py --dataset embscale/breakout/scripted-v1 \
        --tokenizer runs/tokenizer/breakout-scripted-k64
    .venv/bin/python benchmarks/bench_tokenizer.py --runs runs/tokenizer/breakout-scripted-k*
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def _timeit(fn, min_seconds: float = 2.0, min_iters: int = 3) -> tuple[float, int]:
    fn()  # warm-up
    n, start = 0, time.perf_counter()
    while n < min_iters or time.perf_counter() - start < min_seconds:
        fn()
        n += 1
    return time.perf_counter() - start, n


def bench_encode(model, frames: np.ndarray, batch_size: int) -> float:
    from worldmodels.tokenize_dataset import encode_frames

    seconds, n = _timeit(lambda: encode_frames(model, frames, batch_size))
    return n * len(frames) / seconds


def synthetic_shards(path: Path, k: int, v: int, frames: int, episode_len: int = 400):
    from offline_data.token_writer import write_token_shards
    from offline_data.tokens import EpisodeTokens, TokenHeader

    rng = np.random.default_rng(0)
    eps = [EpisodeTokens(rng.integers(0, v, (episode_len, k)), rng.integers(0, 4, (episode_len, 1)),
                         np.zeros(episode_len, np.float32), np.zeros(episode_len, bool))
           for _ in range(frames // episode_len)]
    header = TokenHeader(tokens_per_frame=k, image_vocab=v, action_vocab_sizes=(4,),
                         tokenizer_id="benchmark", tokenizer_sha256="0" * 64)
    return write_token_shards(path, header, {"train": eps})


def bench_loader_vs_model(shards, size: str, task_preset: str) -> dict:
    from offline_data.token_windows import TokenWindowLoader
    from worldmodels.gpt import GPTConfig
    from worldmodels.presets import get_size, get_task_preset
    from worldmodels.token_model import TokenModel, TokenModelConfig

    preset, shape = get_task_preset(task_preset), get_size(size)
    layout = shards.layout
    loader = TokenWindowLoader(shards, "train", seq_len=preset.seq_len,
                               batch_size=preset.micro_batch_size, seed=0)
    stream = loader.batches()
    seconds, n = _timeit(lambda: next(stream))
    loader_wps = n * loader.batch_size / seconds

    gpt = GPTConfig(n_layer=shape.n_layer, n_head=shape.n_head, n_embd=shape.n_embd,
                    block_size=preset.seq_len * layout.tokens_per_step,
                    vocab_size=layout.vocab_size)
    model = TokenModel(TokenModelConfig(gpt=gpt, task="wm",
                                        tokens_per_frame=layout.tokens_per_frame,
                                        image_vocab=layout.image_vocab,
                                        action_vocab_sizes=layout.action_vocab_sizes))
    opt = torch.optim.AdamW(model.parameters(), lr=preset.learning_rate(size))
    batch = loader.batch_at(0)

    def step():
        loss = model.compute_loss(batch).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    seconds, n = _timeit(step)
    model_wps = n * loader.batch_size / seconds
    return {"loader_windows_per_s": loader_wps, "model_windows_per_s": model_wps,
            "ratio": loader_wps / model_wps, "params": model.gpt.num_params(),
            "batch": loader.batch_size, "seq_len": preset.seq_len}


def report_sweep(run_dirs: list[str], psnr_target: float | None, target_k: int) -> bool:
    """Print held-out PSNR per tokens-per-frame from runs' summary.json, per dataset; judge targets.

    Per dataset: PSNR must rise with tokens per frame (when more than one K was run), and the run
    at ``target_k`` must reach the dataset's PSNR target (``PSNR_TARGETS_DB``: 30 dB on
    Breakout's scripted-v1, 26 dB on Fetch; or ``psnr_target``, which a dataset without a target
    needs to be judged) with more than half of the codebook in use. Returns whether all are met.
    """
    import json

    from worldmodels.tokenizer_targets import MIN_CODEBOOK_USAGE, PSNR_TARGETS_DB, judge_target

    rows = sorted((json.loads((Path(d) / "summary.json").read_text()) for d in run_dirs
                   if (Path(d) / "summary.json").is_file()),
                  key=lambda r: (r["dataset_id"], r["tokens_per_frame"]))
    if not rows:
        print("no summary.json under the given --runs")
        return False
    ok = True
    for dataset in sorted({r["dataset_id"] for r in rows}):
        group = [r for r in rows if r["dataset_id"] == dataset]
        print(f"{dataset}:")
        print(f"{'K':>5} {'PSNR dB':>8} {'usage':>7} {'perplexity':>10} {'steps':>6}")
        for r in group:
            print(f"{r['tokens_per_frame']:>5} {r['val/psnr']:>8.2f} "
                  f"{r['val/codebook_usage']:>7.0%} {r['val/perplexity']:>10.1f} "
                  f"{r['step']:>6}")
        if len(group) > 1:
            psnrs = [r["val/psnr"] for r in group]
            rises = all(b > a for a, b in zip(psnrs, psnrs[1:], strict=False))
            steps = {r["step"] for r in group}
            print(f"  PSNR rises with tokens per frame: {'yes' if rises else 'NO'}"
                  f"{'' if len(steps) == 1 else ' (runs differ in steps: ' + str(steps) + ')'}")
            ok = ok and rises
        target = psnr_target if psnr_target is not None else PSNR_TARGETS_DB.get(dataset)
        at_k = [r for r in group if r["tokens_per_frame"] == target_k]
        if at_k and target is None:
            print(f"  K={target_k}: no PSNR target is set for {dataset} (targets: "
                  f"{', '.join(sorted(PSNR_TARGETS_DB))}); pass --psnr-target to judge one")
        elif at_k:
            _, hit, half = judge_target(at_k[0], target)
            print(f"  K={target_k}: PSNR {at_k[0]['val/psnr']:.2f} dB vs target {target} dB: "
                  f"{'met' if hit else 'NOT met'}; codebook usage "
                  f"{at_k[0]['val/codebook_usage']:.0%} > {MIN_CODEBOOK_USAGE:.0%}: "
                  f"{'met' if half else 'NOT met'}")
            ok = ok and hit and half
    return ok


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default=None, help="Minari dataset id (default: synthetic frames)")
    p.add_argument("--tokenizer", default=None, help="tokenizer.pt / run dir (default: untrained)")
    p.add_argument("--tokens-per-frame", type=int, default=64)
    p.add_argument("--frames", type=int, default=1024, help="frames per encode measurement")
    p.add_argument("--batch-size", type=int, default=256, help="frames per encoder call")
    p.add_argument("--splits", default="val",
                   help="splits encoded by the encode_dataset measurement (with --dataset)")
    p.add_argument("--size", default="s10k", help="smallest training size preset")
    p.add_argument("--task-preset", default="ladder", help="task preset of that size")
    p.add_argument("--threads", type=int, default=1, help="torch threads (0 = default)")
    p.add_argument("--runs", nargs="*", default=None,
                   help="tokenizer run directories: print their PSNR per tokens-per-frame instead")
    p.add_argument("--psnr-target", type=float, default=None,
                   help="PSNR target at --target-k (default: 30 dB Breakout, 26 dB Fetch)")
    p.add_argument("--target-k", type=int, default=64, help="tokens per frame of the target")
    args = p.parse_args()
    if args.runs is not None:
        return 0 if report_sweep(args.runs, args.psnr_target, args.target_k) else 1
    if args.threads:
        torch.set_num_threads(args.threads)
    from worldmodels.tokenizer import VQVAE, VQConfig, load_tokenizer

    model = load_tokenizer(args.tokenizer) if args.tokenizer else \
        VQVAE(VQConfig(tokens_per_frame=args.tokens_per_frame)).eval()
    cfg = model.config
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); tokenizer "
          f"{'trained ' + model.tokenizer_id() if args.tokenizer else 'untrained (same cost)'}; "
          f"K={cfg.tokens_per_frame}, V={cfg.codebook_size}, {model.num_params():,} params")
    with tempfile.TemporaryDirectory() as tmp:
        if args.dataset:
            from worldmodels.tokenize_dataset import encode_dataset
            from worldmodels.tokenizer_data import held_out_frames, open_split

            frames = held_out_frames(open_split(args.dataset, "train"), args.frames)
        else:
            frames = np.random.default_rng(0).integers(
                0, 256, (args.frames, cfg.image_height, cfg.image_width, 3), dtype=np.uint8)
        fps = bench_encode(model, frames, args.batch_size)
        print(f"encode (model only, batch {args.batch_size}): {fps:,.0f} frames/s")
        if args.dataset:
            if not args.tokenizer:
                from worldmodels.tokenizer import save_tokenizer

                save_tokenizer(model, Path(tmp) / "tok.pt")
            start = time.perf_counter()
            shards = encode_dataset(args.tokenizer or Path(tmp) / "tok.pt", args.dataset,
                                    Path(tmp) / "shards", batch_size=args.batch_size,
                                    splits=args.splits.split(","), progress=False)
            total = sum(s["num_frames"] for s in shards.header.splits.values())
            print(f"encode_dataset (read + encode + write {total:,} frames of split(s) "
                  f"{args.splits}): {total / (time.perf_counter() - start):,.0f} frames/s")
            if "train" not in args.splits.split(","):
                # the loader benchmark reads train windows: time it on synthetic shards
                shards = synthetic_shards(Path(tmp) / "synthetic", cfg.tokens_per_frame,
                                          cfg.codebook_size, frames=40_000)
        else:
            shards = synthetic_shards(Path(tmp) / "shards", cfg.tokens_per_frame,
                                      cfg.codebook_size, frames=40_000)
        r = bench_loader_vs_model(shards, args.size, args.task_preset)
    print(f"token loader: {r['loader_windows_per_s']:,.0f} windows/s (batches of "
          f"{r['batch']} x {r['seq_len']} steps)")
    print(f"smallest preset {args.size} ({r['params']:,} params, WM-Token, fwd+bwd+AdamW): "
          f"{r['model_windows_per_s']:,.0f} windows/s")
    verdict = "meets" if r["ratio"] >= 10 else "MISSES"
    print(f"loader / consumption ratio: {r['ratio']:.1f}x ({verdict} the >= 10x target)")
    return 0 if r["ratio"] >= 10 else 1


if __name__ == "__main__":
    raise SystemExit(main())
