"""Train one model of a task: ``train_model`` (what ``embscale train`` and the sweep call).

Example::

    from scaling.training import train_model
    result = train_model("wm-token", "s100k", "tokens/breakout", "runs/demo/wm", tokens=2e6)
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import fields
from typing import Any

from scaling.tasks import MODEL_OPTIONS, build
from worldmodels.train_config import TrainConfig


def training_options() -> set[str]:
    """Names ``train_model`` accepts as overrides: ``TrainConfig`` fields and model options."""
    return {f.name for f in fields(TrainConfig)} | set(MODEL_OPTIONS)


def check_training_options(overrides: dict[str, Any], where: str = "training options") -> None:
    """Raise ``ValueError`` naming the keys of ``overrides`` that no trainer field matches."""
    known = training_options()
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown {where} {unknown}; known: {sorted(known)}")


BUDGET_KEYWORDS = {"max_tokens": "tokens", "max_flops": "flops", "max_steps": "steps"}
"""Budget fields of ``TrainConfig`` that ``train_model`` sets from its own keywords."""


def train_model(task: str, size: str, data: str, run_dir: str | os.PathLike, *, seed: int = 0,
                tokens: float | None = None, flops: float | None = None,
                steps: int | None = None, preset: str | None = None,
                callbacks: list[Callable[[int, dict | None], None]] | None = None,
                **overrides: Any):
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
        callbacks: called as ``callback(step, record)`` after every optimizer step (``record``:
            the logged metrics at a log point, else None); see ``worldmodels.trainer.Trainer``.
        overrides: ``TrainConfig`` fields (learning_rate, tokens_per_update, device, ...) and the
            model options of :func:`build` (seq_len, aux_heads, image_size, dropout).
    """
    check_training_options(overrides)
    clash = [k for k in BUDGET_KEYWORDS if k in overrides]
    if clash:  # cfg.update(overrides) would silently replace the budget given below
        raise ValueError(f"training options {clash} set the budget; pass " + ", ".join(
            f"{BUDGET_KEYWORDS[k]}=" for k in clash) + " instead")
    from worldmodels.trainer import Trainer, seed_everything  # torch

    model_opts = {k: overrides.pop(k) for k in MODEL_OPTIONS if k in overrides}
    seed_everything(seed)
    model, source, p, run_config = build(task, size, data, preset=preset, **model_opts)
    cfg = {"run_dir": str(run_dir), "seed": seed, "learning_rate": p.learning_rate(size)
           if "learning_rate" not in overrides else overrides["learning_rate"],
           "warmup_steps": p.warmup_steps, "micro_batch_size": p.micro_batch_size,
           "tokens_per_update": p.update_tokens(size), "max_tokens": tokens or 0,
           "max_flops": flops or 0, "max_steps": steps or 0}
    cfg.update(overrides)
    return Trainer(model, source, TrainConfig(**cfg), run_config=run_config,
                   callbacks=callbacks).train()
