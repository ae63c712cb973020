"""The sweep's default training entry: one ``RunSpec`` in, one trained run out.

``python -m scaling.study.sweep`` calls :func:`train_run` (named in each ``run_spec.json`` as
``scaling.study.adapters.training:train_run``) in the worker process.
"""

from __future__ import annotations

from typing import Any

from scaling.training import train_model


def train_run(run) -> dict[str, Any]:
    """The sweep's training entry: train (or resume) one ``RunSpec`` with kept checkpoints."""
    overrides = {"keep_checkpoints": True, "device": run.device, **run.overrides}
    result = train_model(run.task, run.size, run.data, run.out_dir, seed=run.seed,
                         tokens=run.tokens, flops=run.flops, preset=run.preset, **overrides)
    return {"params": int(result.params), "steps": int(result.steps),
            "tokens": int(result.tokens), "flops": float(result.flops),
            "train_loss": float(result.train_loss),
            "val_loss": None if result.val_loss is None else float(result.val_loss)}
