"""``embscale train``: pre-train one WM-Token, BC-Token or BC-CNN model.

Example:
    embscale train --task wm-token --size s100k --data tokens/breakout-k16 --tokens 2e6

It lives in ``scaling`` because BC-CNN comes from ``agents`` and the token models from
``worldmodels``; ``scaling`` may import both. Under ``torchrun`` every process runs the same
command and the trainer uses DDP::

    torchrun --nproc_per_node=8 -m scaling.cli train --task wm-token --size 27M ...

Programs call :func:`train_model` (and :func:`model_params` for N without training).
"""

from __future__ import annotations

import argparse
import logging
import os
from dataclasses import fields
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

TASKS = ("wm-token", "bc-token", "bc-cnn")
_MODEL_OPTIONS = ("seq_len", "aux_heads", "image_size", "dropout")


def build(task: str, size: str, data: str, seq_len: int | None = None, preset: str | None = None,
          aux_heads: bool = True, image_size: int | None = None, dropout: float = 0.0):
    """Build ``(model, data_source, preset, run_config)`` for a task and size name.

    Args:
        task: 'wm-token', 'bc-token' or 'bc-cnn'.
        size: a size name of ``worldmodels.presets`` ("s100k", "27M", ...).
        data: token shard directory (token tasks) or Minari dataset id (bc-cnn).
        seq_len: timesteps per window (default: the preset's).
        preset: task preset name (default: the ladder for small sizes, else the paper's).
        aux_heads: train reward and termination heads with WM-Token (for world-model envs).
        image_size: BC-CNN frame size (default: the preset's, else the dataset's).
        dropout: transformer dropout.
    """
    from worldmodels import presets

    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    shape = presets.get_size(size)
    p = presets.get_task_preset(preset) if preset else presets.preset_for(task, size)
    if p.task not in ("any", task):
        raise ValueError(f"preset {p.name!r} is for task {p.task!r}, not {task!r}; pick a "
                         f"{task} preset")
    seq_len = int(seq_len or p.seq_len)
    if task == "bc-cnn":
        from agents.bc_cnn import BCCNN, FrameDataSource

        if Path(str(data)).is_dir() and (Path(str(data)) / "header.json").is_file():
            raise ValueError(f"{data} is a token shard; bc-cnn reads frames: pass the Minari "
                             "dataset id (e.g. embscale/breakout/scripted-v1)")
        source = FrameDataSource(data, seq_len=seq_len)
        kwargs = {}
        if image_size or p.image_size:
            kwargs["image_size"] = image_size or p.image_size
        # the paper's 0.6M CNN for paper sizes; the ladder's CNN scales with the width
        cfg = source.model_config(shape.n_layer, shape.n_head, shape.n_embd,
                                  paper_cnn=size not in presets.LADDER, **kwargs)
        cfg.gpt = type(cfg.gpt)(**{**cfg.gpt.to_dict(), "dropout": dropout})
        model, kind = BCCNN(cfg), "bc_cnn"
    else:
        from worldmodels.token_data import TokenDataSource
        from worldmodels.token_model import TokenModel

        source = TokenDataSource(data, seq_len=seq_len)
        heads = aux_heads and task == "wm-token"
        cfg = source.model_config(shape.n_layer, shape.n_head, shape.n_embd,
                                  task="wm" if task == "wm-token" else "bc", dropout=dropout,
                                  reward_head=heads, termination_head=heads)
        if p.tokens_per_frame and p.tokens_per_frame != source.layout.d_z:
            logger.warning("preset %s was tuned for d_z=%d; these shards have d_z=%d", p.name,
                           p.tokens_per_frame, source.layout.d_z)
        model, kind = TokenModel(cfg), "token_model"
    run_config = {"task": task, "size": size, "preset": p.name, "model_kind": kind,
                  "model_config": cfg.to_dict()}
    return model, source, p, run_config


def model_params(task: str, size: str, data: str, **model_options: Any) -> int:
    """N of ``size`` for ``task`` on ``data`` (embeddings and CNN included), without training."""
    return build(task, size, data, **model_options)[0].num_params()


def train_model(task: str, size: str, data: str, run_dir: str | os.PathLike, *, seed: int = 0,
                tokens: float | None = None, flops: float | None = None,
                steps: int | None = None, preset: str | None = None, **overrides: Any):
    """Train one model; returns the trainer's ``TrainResult``. Resumes a killed run.

    Args:
        task: 'wm-token', 'bc-token' or 'bc-cnn'.
        size: a size name of ``worldmodels.presets``.
        data: token shard directory (token tasks) or Minari dataset id (bc-cnn).
        run_dir: run directory (``runs/<study>/<run>``).
        seed: seed of initialisation, data order and dropout.
        tokens: budget in tokens D.
        flops: budget in FLOPs C = 6ND.
        steps: budget in optimizer steps (at least one budget is needed).
        preset: task preset name (default: by size, see :func:`build`).
        overrides: ``TrainConfig`` fields (learning_rate, tokens_per_update, device, ...) and the
            model options of :func:`build` (seq_len, aux_heads, image_size, dropout).
    """
    from worldmodels.trainer import TrainConfig, Trainer, seed_everything

    known = {f.name for f in fields(TrainConfig)} | set(_MODEL_OPTIONS)
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown training options {unknown}; known: {sorted(known)}")
    model_opts = {k: overrides.pop(k) for k in _MODEL_OPTIONS if k in overrides}
    seed_everything(seed)
    model, source, p, run_config = build(task, size, data, preset=preset, **model_opts)
    cfg = {"run_dir": str(run_dir), "seed": seed, "learning_rate": p.learning_rate(size)
           if "learning_rate" not in overrides else overrides["learning_rate"],
           "warmup_steps": p.warmup_steps, "micro_batch_size": p.micro_batch_size,
           "tokens_per_update": p.update_tokens(size), "max_tokens": tokens or 0,
           "max_flops": flops or 0, "max_steps": steps or 0}
    cfg.update(overrides)
    return Trainer(model, source, TrainConfig(**cfg), run_config=run_config).train()


def _run(args: argparse.Namespace) -> int:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if int(os.environ.get("RANK", "0")) != 0:
        logging.getLogger().setLevel(logging.WARNING)
    run_dir = args.run_dir or os.path.join(
        "runs", args.study, f"{args.task}-{args.size}-seed{args.seed}")
    overrides = {"device": args.device, "compile": args.compile,
                 "tensorboard": not args.no_tensorboard, "resume": not args.no_resume,
                 "keep_checkpoints": args.keep_checkpoints, "aux_heads": not args.no_aux_heads,
                 "dropout": args.dropout}
    for opt, field_name in [("lr", "learning_rate"), ("warmup_steps", "warmup_steps"),
                            ("tokens_per_update", "tokens_per_update"),
                            ("micro_batch_size", "micro_batch_size"),
                            ("weight_decay", "weight_decay"), ("grad_clip", "grad_clip"),
                            ("log_points_per_decade", "log_points_per_decade"),
                            ("val_points_per_decade", "val_points_per_decade"),
                            ("val_batches", "val_batches"),
                            ("checkpoint_every", "checkpoint_every"),
                            ("seq_len", "seq_len"), ("image_size", "image_size")]:
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
    p.add_argument("--task", required=True, choices=TASKS,
                   help="wm-token: world model (loss on image tokens); bc-token: behaviour "
                        "cloning on the token stream (loss on action tokens); bc-cnn: behaviour "
                        "cloning from frames through a CNN")
    p.add_argument("--size", required=True,
                   help="model size: paper Table 2 (2M 4M 11M 15M 27M 52M 110M 206M 894M), "
                        "RT-1 (rt1-0.08M ... rt1-0.99M) or the CPU ladder (s10k s30k s100k "
                        "s300k s1M s2M)")
    p.add_argument("--data", required=True,
                   help="token shard directory from `embscale tokenizer encode` (token tasks) or "
                        "Minari dataset id (bc-cnn)")
    p.add_argument("--study", default="default", help="study name: runs go to runs/<study>/")
    p.add_argument("--run-dir", default=None,
                   help="run directory (default runs/<study>/<task>-<size>-seed<seed>)")
    p.add_argument("--preset", default=None,
                   help="hyperparameter preset: wm-token-256, wm-token-540, bc-token-540, "
                        "bc-cnn, rt1 (paper Tables 3-7) or ladder (default: ladder for s* "
                        "sizes, else the paper's preset holding the size)")
    p.add_argument("--seed", type=int, default=0, help="seed of init, data order and dropout")
    budget = p.add_argument_group("budget (at least one; the first reached stops the run)")
    budget.add_argument("--tokens", type=float, default=None,
                        help="tokens D (transformer inputs: d_z + d_a per step, 1 for bc-cnn)")
    budget.add_argument("--flops", type=float, default=None, help="compute C = 6ND in FLOPs")
    budget.add_argument("--steps", type=int, default=None, help="optimizer steps")
    opt = p.add_argument_group("optimisation (default: from the preset)")
    opt.add_argument("--lr", type=float, default=None, help="constant learning rate")
    opt.add_argument("--warmup-steps", type=int, default=None, help="linear warmup steps")
    opt.add_argument("--tokens-per-update", type=int, default=None,
                     help="D per optimizer step, reached by gradient accumulation")
    opt.add_argument("--micro-batch-size", type=int, default=None,
                     help="windows per forward pass per process")
    opt.add_argument("--seq-len", type=int, default=None, help="timesteps per window")
    opt.add_argument("--weight-decay", type=float, default=None, help="AdamW weight decay")
    opt.add_argument("--grad-clip", type=float, default=None, help="gradient norm clip (0: off)")
    opt.add_argument("--dropout", type=float, default=0.0, help="transformer dropout")
    model = p.add_argument_group("model")
    model.add_argument("--no-aux-heads", action="store_true",
                       help="wm-token: skip the reward and termination heads (they are needed "
                            "to use the world model as an environment; not counted in N)")
    model.add_argument("--image-size", type=int, default=None,
                       help="bc-cnn: resize frames to this size (default: the dataset's)")
    log = p.add_argument_group("logging and checkpoints")
    log.add_argument("--log-points-per-decade", type=int, default=None,
                     help="metrics points per decade of steps (default 20)")
    log.add_argument("--val-points-per-decade", type=int, default=None,
                     help="validation points per decade of steps (default 5)")
    log.add_argument("--val-batches", type=int, default=None,
                     help="held-out micro-batches per validation (default 8)")
    log.add_argument("--checkpoint-every", type=int, default=None,
                     help="also checkpoint every this many steps")
    log.add_argument("--keep-checkpoints", action="store_true",
                     help="keep every checkpoint as checkpoints/step_<step>.pt")
    log.add_argument("--no-tensorboard", action="store_true", help="skip TensorBoard events")
    log.add_argument("--no-resume", action="store_true",
                     help="refuse to continue an existing run instead of resuming it")
    run = p.add_argument_group("hardware")
    run.add_argument("--device", default="auto", help="auto, cpu or cuda")
    run.add_argument("--compile", action="store_true", help="torch.compile the model")
    run.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.set_defaults(func=_run)
