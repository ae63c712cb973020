"""``embscale tokenizer train|encode``: train a VQ-VAE tokenizer, tokenize a dataset into shards.

Example:
    embscale tokenizer train --dataset embscale/breakout/scripted-v2 --tokens-per-frame 64
    embscale tokenizer encode --tokenizer runs/tokenizer/breakout-scripted-v2-k64 \
        --dataset embscale/breakout/scripted-v2 --out tokens/breakout-scripted-k64
"""

from __future__ import annotations

import argparse
import json
import os

from offline_data import argtypes as A
from offline_data.atomic import check_output_dir
from worldmodels.threads import add_threads_argument, apply_threads
from worldmodels.tokenizer_config import VQConfig
from worldmodels.tokenizer_targets import format_summary, format_target


def register(subparsers) -> None:
    """Add ``tokenizer train`` and ``tokenizer encode`` to the ``embscale`` parser."""
    parser = subparsers.add_parser("tokenizer", help="train a VQ-VAE tokenizer; tokenize datasets")
    sub = parser.add_subparsers(dest="tokenizer_command", metavar="ACTION")
    parser.set_defaults(func=lambda args: parser.print_help() or 2)

    t = sub.add_parser("train", help="train a tokenizer on a dataset's train split",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    t.add_argument("--dataset", required=True, help="Minari dataset id")
    t.add_argument("--tokens-per-frame", type=A.positive_int, default=64,
                   help="d_z: tokens per frame (a grid with the frame's aspect ratio, e.g. 16, 36, "
                        "64, 100, 256 at 64x64)")
    t.add_argument("--codebook-size", type=A.positive_int, default=512,
                   help="V_o: codebook entries")
    t.add_argument("--code-dim", type=A.positive_int, default=8, help="code vector dimension")
    t.add_argument("--no-normalize-codes", action="store_true",
                   help="compare raw (not l2-normalised) encoder outputs and codes")
    t.add_argument("--patch-local", action="store_true",
                   help="encode each token from its own patch only, so unchanged patches keep "
                        "their tokens from frame to frame (grid must divide the frame)")
    t.add_argument("--channels", type=A.positive_int, default=16,
                   help="conv width at half resolution")
    t.add_argument("--max-channels", type=A.positive_int, default=64, help="cap on conv width")
    t.add_argument("--res-blocks", type=A.nonnegative_int, default=1,
                   help="residual blocks per level")
    t.add_argument("--num-down", type=A.nonnegative_int, default=2,
                   help="stride-2 levels of the trunk, the same for every --tokens-per-frame")
    t.add_argument("--out", default=None,
                   help="run directory (default runs/tokenizer/<env>-<source>-k<K>)")
    t.add_argument("--steps", type=A.positive_int, default=3000, help="optimiser steps")
    t.add_argument("--batch-size", type=A.positive_int, default=8, help="frames per step")
    t.add_argument("--lr", type=A.learning_rate, default=2e-3, help="peak learning rate")
    t.add_argument("--recon-loss", choices=("mse", "l1"), default="mse")
    t.add_argument("--gradient-loss-weight", type=A.nonnegative_float, default=0.5,
                   help="weight of the L1 image-gradient loss")
    t.add_argument("--foreground-weight", type=A.nonnegative_float, default=0.0,
                   help="extra weight of moving pixels (those differing from the batch's median "
                        "frame: ball, paddle) in the reconstruction loss; 0 = every pixel alike")
    t.add_argument("--eval-every", type=A.positive_int, default=500,
                   help="steps between evaluations")
    t.add_argument("--eval-frames", type=A.positive_int, default=512,
                   help="held-out frames evaluated")
    t.add_argument("--max-cached-frames", type=A.positive_int, default=100_000,
                   help="train frames cached in RAM (uint8); more stream from disk")
    t.add_argument("--time-limit", type=A.nonnegative_float, default=0.0,
                   help="stop after this many seconds (resumable); 0 = none")
    t.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    t.add_argument("--threads", type=A.nonnegative_int, default=1,
                   help="torch CPU threads (1 is fastest on a shared CPU; 0 = torch default)")
    t.add_argument("--seed", type=A.nonnegative_int, default=0, help="seed of init and batches")
    again = t.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue the run in --out")
    again.add_argument("--overwrite", action="store_true", help="start over in an existing --out")
    t.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    t.set_defaults(func=_train)

    e = sub.add_parser("encode", help="tokenize a dataset into token shards",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    e.add_argument("--tokenizer", required=True, help="tokenizer.pt or a tokenizer run directory")
    e.add_argument("--dataset", required=True, help="Minari dataset id")
    e.add_argument("--out", required=True, help="token shard directory to create")
    e.add_argument("--splits", default="train,val,test", help="comma-separated splits")
    e.add_argument("--batch-size", type=A.positive_int, default=256, help="frames per encoder call")
    e.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    e.add_argument("--workers", type=A.positive_int, default=1,
                   help="local processes (under torchrun, RANK/WORLD_SIZE split the work)")
    add_threads_argument(e)
    e.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    e.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    e.set_defaults(func=_encode)


def default_out_dir(dataset_id: str, tokens_per_frame: int) -> str:
    """``runs/tokenizer/<env>-<source>-k<K>`` for a dataset id ``embscale/<env>/<source>``.

    A ``-v0`` suffix is dropped (``embscale/fetch-pick-place/scripted-v0`` gives
    ``fetch-pick-place-scripted-k64``); later versions stay in the name
    (``embscale/breakout/scripted-v2`` gives ``breakout-scripted-v2-k64``).
    """
    parts = dataset_id.split("/")[1:] or [dataset_id]
    name = "-".join(p.replace("-v0", "") for p in parts)
    return os.path.join("runs", "tokenizer", f"{name}-k{tokens_per_frame}")


def _train(args) -> int:
    if args.out:
        check_output_dir(args.out, "--out")
    from worldmodels.tokenizer_data import frame_shape, open_split  # torch
    from worldmodels.tokenizer_train import TokenizerTrainConfig, train_tokenizer  # torch

    h, w, _ = frame_shape(open_split(args.dataset, "train"))
    vq = VQConfig(image_height=h, image_width=w, tokens_per_frame=args.tokens_per_frame,
                  codebook_size=args.codebook_size, code_dim=args.code_dim,
                  channels=args.channels, max_channels=args.max_channels,
                  num_res_blocks=args.res_blocks, num_down=args.num_down,
                  normalize_codes=not args.no_normalize_codes, patch_local=args.patch_local)
    cfg = TokenizerTrainConfig(
        dataset_id=args.dataset, out_dir=args.out or default_out_dir(args.dataset,
                                                                     args.tokens_per_frame),
        steps=args.steps, batch_size=args.batch_size, lr=args.lr, recon_loss=args.recon_loss,
        gradient_loss_weight=args.gradient_loss_weight,
        foreground_weight=args.foreground_weight, eval_every=args.eval_every,
        checkpoint_every=args.eval_every, eval_frames=args.eval_frames,
        max_cached_frames=args.max_cached_frames, time_limit_s=args.time_limit,
        device=args.device, num_threads=args.threads, seed=args.seed)
    summary = train_tokenizer(cfg, vq, resume=args.resume, overwrite=args.overwrite,
                              progress=not args.no_progress)
    print(format_summary(summary))
    target = format_target(summary)
    if target:
        print(target)
    print(f"  run directory: {cfg.out_dir} (tokenizer.pt, metrics.jsonl, recon.png, tb/)")
    return 0


def _splits(text: str) -> list[str]:
    """The ``--splits`` list, refused when empty."""
    splits = [s.strip() for s in text.split(",") if s.strip()]
    if not splits:
        raise ValueError(f"--splits {text!r} names no split; give e.g. train,val,test or train")
    return splits


def _encode(args) -> int:
    from offline_data.reader import EmptySplitError
    from worldmodels.tokenize_dataset import encode_dataset  # torch

    apply_threads(args.threads, processes=args.workers)

    try:
        shards = encode_dataset(args.tokenizer, args.dataset, args.out,
                                splits=_splits(args.splits),
                                batch_size=args.batch_size, device=args.device,
                                num_workers=args.workers,
                                overwrite=args.overwrite, progress=not args.no_progress)
    except EmptySplitError as e:  # name this command's way out
        raise ValueError(f"{e} (here: --splits train)") from None
    if shards is not None:
        h = shards.header
        print(json.dumps({"out": str(shards.path), "tokenizer_id": h.tokenizer_id,
                          "tokens_per_frame": h.tokens_per_frame, "image_vocab": h.image_vocab,
                          "action_vocab_sizes": list(h.action_vocab_sizes),
                          "splits": {k: {"num_frames": v["num_frames"],
                                         "num_episodes": v["num_episodes"]}
                                     for k, v in h.splits.items()}}, indent=2))
    return 0
