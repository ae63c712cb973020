"""``embscale train``: pre-train one WM-Token, BC-Token or BC-CNN model.

Example:
    embscale train --task wm-token --size s100k --data tokens/breakout-k16 --tokens 2e6

It lives in ``scaling`` because BC-CNN comes from ``agents`` and the token models from
``worldmodels``; ``scaling`` may import both. Under ``torchrun`` every process runs the same
command and the trainer uses DDP::

    torchrun --nproc_per_node=8 -m scaling.cli train --task wm-token --size 27M ...

Programs call :func:`scaling.training.train_model` (and :func:`scaling.tasks.model_params` for
N without training).
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from agents.bc_cnn_shapes import CNN_BLOCKS, DEFAULT_CNN_BLOCK
from offline_data import argtypes as A
from scaling.study.spec import STUDY_NAME_RE
from scaling.tasks import TRAINABLE
from scaling.training import train_model
from worldmodels.threads import add_threads_argument, apply_threads
from worldmodels.train_config import TrainConfig

logger = logging.getLogger(__name__)

# Flags that set one trainer field (TrainConfig) or model option (scaling.tasks.MODEL_OPTIONS)
# when given: flag dest -> field. tests/scaling/test_train_cli.py checks that every field has a
# flag here or in FIELDS_SET_OTHERWISE, so the two cannot drift apart.
FLAG_FIELDS = {"lr": "learning_rate", "warmup_steps": "warmup_steps",
               "tokens_per_update": "tokens_per_update", "micro_batch_size": "micro_batch_size",
               "weight_decay": "weight_decay", "grad_clip": "grad_clip",
               "log_points_per_decade": "log_points_per_decade",
               "val_points_per_decade": "val_points_per_decade", "val_batches": "val_batches",
               "checkpoint_every": "checkpoint_every", "seq_len": "seq_len",
               "image_size": "image_size", "cnn_block": "cnn_block"}
# Fields set by other flags (or, for the AdamW betas, only by the preset): field -> flag.
FIELDS_SET_OTHERWISE = {"run_dir": "--run-dir/--study", "seed": "--seed", "max_tokens": "--tokens",
                        "max_flops": "--flops", "max_steps": "--steps", "device": "--device",
                        "compile": "--compile", "tensorboard": "--no-tensorboard",
                        "resume": "--no-resume", "keep_checkpoints": "--keep-checkpoints",
                        "aux_heads": "--no-aux-heads", "dropout": "--dropout",
                        "beta1": "(preset)", "beta2": "(preset)"}


def _run(args: argparse.Namespace) -> int:
    import torch

    apply_threads(args.threads)
    if int(os.environ.get("RANK", "0")) != 0:
        logging.getLogger().setLevel(logging.WARNING)
    if args.run_dir is None and not STUDY_NAME_RE.match(args.study):
        raise ValueError(f"--study {args.study!r} must be a plain directory name (letters, "
                         "digits, '.', '_', '-'); for another place pass --run-dir")
    frame_only = [f for f, v in (("--image-size", args.image_size), ("--cnn-block", args.cnn_block))
                  if v is not None]
    if frame_only and args.task != "bc-cnn":
        raise ValueError(f"{', '.join(frame_only)} shape BC-CNN's frames and CNN; --task "
                         f"{args.task} reads token shards, so drop them")
    run_dir = args.run_dir or os.path.join(
        "runs", args.study, f"{args.task}-{args.size}-seed{args.seed}")
    overrides = {"device": args.device, "compile": args.compile,
                 "tensorboard": not args.no_tensorboard, "resume": not args.no_resume,
                 "keep_checkpoints": args.keep_checkpoints, "aux_heads": not args.no_aux_heads,
                 "dropout": args.dropout}
    for opt, field_name in FLAG_FIELDS.items():
        value = getattr(args, opt)
        if value is not None:
            overrides[field_name] = value
    try:
        result = train_model(args.task, args.size, args.data, run_dir, seed=args.seed,
                             tokens=args.tokens, flops=args.flops, steps=args.steps,
                             preset=args.preset, **overrides)
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    if int(os.environ.get("RANK", "0")) == 0:
        val = f", val/loss {result.val_loss:.4f}" if result.val_loss is not None else ""
        print(f"{result.run_dir}: N={result.params:,} params, {result.steps} steps, "
              f"D={result.tokens:,} tokens, C={result.flops:.3g} FLOPs, "
              f"train/loss {result.train_loss:.4f}{val}")
        tb = "" if args.no_tensorboard else f" (TensorBoard: {Path(result.run_dir) / 'tb'})"
        print(f"curves: {Path(result.run_dir) / 'metrics.jsonl'}{tb}")
    return 0


def register(subparsers) -> None:
    """Add ``embscale train``."""
    p = subparsers.add_parser(
        "train", help="pre-train one WM-Token, BC-Token or BC-CNN model",
        description="Pre-train one model on one trainer: AdamW, constant learning rate after "
                    "warmup, log-spaced metrics.jsonl + TensorBoard under the run directory, "
                    "atomic checkpoints; running the same command again resumes a killed run. "
                    "Under torchrun every process runs this command (DDP).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--task", required=True, choices=TRAINABLE,
                   help="wm-token: world model (loss on image tokens); bc-token: behaviour "
                        "cloning on the token stream (loss on action tokens); bc-cnn: behaviour "
                        "cloning from frames through a CNN")
    p.add_argument("--size", required=True,
                   help="model size: paper Table 2 (2M 4M 11M 15M 27M 52M 110M 206M 894M), "
                        "RT-1 (rt1-0.08M ... rt1-0.99M) or the CPU ladder (s3k s10k s30k "
                        "s100k s300k s1M s2M)")
    p.add_argument("--data", required=True,
                   help="token shard directory from `embscale tokenizer encode` (token tasks) or "
                        "Minari dataset id (bc-cnn)")
    p.add_argument("--study", default="default", help="study name: runs go to runs/<study>/")
    p.add_argument("--run-dir", default=None,
                   help="run directory (default runs/<study>/<task>-<size>-seed<seed>)")
    p.add_argument("--preset", default=None,
                   help="hyperparameter preset: wm-token-256, wm-token-540, bc-token-540, "
                        "bc-cnn, rt1 (paper Tables 3-7), ladder, ladder-bc-token or ladder-cnn "
                        "(default: the task's ladder preset for s* sizes, else the paper's "
                        "preset holding the size)")
    p.add_argument("--seed", type=A.nonnegative_int, default=0,
                   help="seed of init, data order and dropout")
    budget = p.add_argument_group("budget (at least one; the first reached stops the run)")
    budget.add_argument("--tokens", type=A.positive_float, default=None,
                        help="tokens D (transformer inputs: d_z + d_a per step, 1 for bc-cnn)")
    budget.add_argument("--flops", type=A.positive_float, default=None,
                    help="compute C = 6ND in FLOPs")
    budget.add_argument("--steps", type=A.positive_int, default=None, help="optimizer steps")
    opt = p.add_argument_group("optimisation (default: from the preset)")
    opt.add_argument("--lr", type=A.learning_rate, default=None, help="constant learning rate")
    opt.add_argument("--warmup-steps", type=A.nonnegative_int, default=None,
                 help="linear warmup steps")
    opt.add_argument("--tokens-per-update", type=A.nonnegative_int, default=None,
                     help="D per optimizer step, reached by gradient accumulation")
    opt.add_argument("--micro-batch-size", type=A.positive_int, default=None,
                     help="windows per forward pass per process")
    opt.add_argument("--seq-len", type=A.positive_int, default=None, help="timesteps per window")
    opt.add_argument("--weight-decay", type=A.nonnegative_float, default=None,
                 help="AdamW weight decay")
    opt.add_argument("--grad-clip", type=A.nonnegative_float, default=None,
                 help="gradient norm clip (0: off)")
    opt.add_argument("--dropout", type=A.fraction, default=0.0, help="transformer dropout")
    model = p.add_argument_group("model")
    model.add_argument("--no-aux-heads", action="store_true",
                       help="wm-token: skip the reward and termination heads (they are needed "
                            "to use the world model as an environment; not counted in N)")
    model.add_argument("--image-size", type=A.positive_int, default=None,
                       help="bc-cnn: resize frames to this size (default: the dataset's)")
    model.add_argument("--cnn-block", choices=CNN_BLOCKS, default=None,
                       help=f"bc-cnn: blocks of the CNN's stages, impala (residual 3x3 convs, "
                            f"VPT's) or convnext (the paper's Appendix A.1); default "
                            f"{DEFAULT_CNN_BLOCK}")
    log = p.add_argument_group("logging and checkpoints")
    log.add_argument("--log-points-per-decade", type=A.positive_int, default=None,
                     help="metrics points per decade of steps (default "
                          f"{TrainConfig.log_points_per_decade})")
    log.add_argument("--val-points-per-decade", type=A.nonnegative_int, default=None,
                     help="validation points per decade of steps (default "
                          f"{TrainConfig.val_points_per_decade})")
    log.add_argument("--val-batches", type=A.nonnegative_int, default=None,
                     help="held-out micro-batches per validation (default "
                          f"{TrainConfig.val_batches})")
    log.add_argument("--checkpoint-every", type=A.nonnegative_int, default=None,
                     help="also checkpoint every this many steps")
    log.add_argument("--keep-checkpoints", action="store_true",
                     help="keep every checkpoint as checkpoints/step_<step>.pt")
    log.add_argument("--no-tensorboard", action="store_true", help="skip TensorBoard events")
    log.add_argument("--no-resume", action="store_true",
                     help="refuse to continue an existing run instead of resuming it")
    run = p.add_argument_group("hardware")
    run.add_argument("--device", default="auto", help="auto, cpu or cuda")
    run.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                     help="torch.compile the model (default: on CUDA, off on CPU)")
    add_threads_argument(run)
    p.set_defaults(func=_run)
