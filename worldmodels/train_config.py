"""The typed configuration of a pre-training run, as its ``config.json`` holds it.

:class:`TrainConfig` is the trainer's part (optimisation, budget, logging, checkpoints);
:class:`RunConfig` nests it with the data's description and the model's record
(:class:`ModelRecord`: task, size, preset, model kind and config). ``config.json`` is
``RunConfig.to_dict()``; a run resumes only when its saved config equals the new one apart from
:data:`RESUMABLE_FIELDS`. Nothing here imports torch, so specs and command lines can check
options against these fields cheaply.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, NamedTuple

from offline_data.argtypes import MAX_LEARNING_RATE

# Fields that may differ when a run is resumed: budgets and how it runs, not what it computes.
RESUMABLE_FIELDS = ("max_tokens", "max_flops", "max_steps", "compile", "device", "tensorboard",
                    "resume", "run_dir")
DATA_LOCATION_KEYS = ("path", "supplements")
"""Keys of a data description that say where the data lives, not what it is (see comparable)."""
INFINITE_DATA_PASSES = 4.0  # Muennighoff et al. 2024: up to 4 passes ~ infinite-data regime


def accumulation(micro_batch_size: int, world_size: int, inputs_per_window: int,
                 tokens_per_update: int) -> tuple[int, int]:
    """(micro-batches accumulated per optimizer step, inputs D per optimizer step).

    Each process reads ``micro_batch_size`` windows of ``inputs_per_window`` inputs per
    forward pass; micro-batches are accumulated until an update holds at least
    ``tokens_per_update`` inputs over the ``world_size`` processes (at least one).

    >>> accumulation(8, 1, 10 * 17, 4096)
    (4, 5440)
    """
    per_micro = micro_batch_size * world_size * inputs_per_window
    steps = max(1, math.ceil(tokens_per_update / per_micro))
    return steps, per_micro * steps


VAL_WINDOW_SEED = 1
"""Seed of the held-out window order, not ``TrainConfig.seed``: every run on the same data is
scored on the same windows, so the spread between seeds is the models' and not the sample's."""


class NonFiniteLossError(ValueError):
    """Training stopped because the loss or gradient norm became NaN or infinite."""


def check_learning_rate(lr: float, name: str = "learning_rate") -> float:
    """Return ``lr`` when it is finite and in (0, ``MAX_LEARNING_RATE``]; else ValueError.

    >>> check_learning_rate(3e-4)
    0.0003
    """
    if not isinstance(lr, (int, float)) or not math.isfinite(lr) or not 0 < lr <= MAX_LEARNING_RATE:
        raise ValueError(f"{name} {lr!r} is not a usable learning rate: it must be finite, > 0 "
                         f"and at most {MAX_LEARNING_RATE:g} (typical AdamW values are 1e-4 to "
                         "1e-2)")
    return float(lr)


@dataclass
class TrainConfig:
    """Optimisation, budget, logging and checkpointing of one pre-training run."""

    run_dir: str = "runs/default/run"
    """run directory (config.json, metrics.jsonl, checkpoints/, tb/)"""
    seed: int = 0
    """seed of initialisation, data order and dropout"""
    learning_rate: float = 1e-3
    """peak AdamW learning rate, held constant after warmup"""
    warmup_steps: int = 20
    """optimizer steps of linear warmup from 0"""
    weight_decay: float = 0.1
    """AdamW weight decay on matrices"""
    beta1: float = 0.9
    """AdamW beta1"""
    beta2: float = 0.95
    """AdamW beta2"""
    grad_clip: float = 1.0
    """clip the global gradient norm to this (0 = off)"""
    micro_batch_size: int = 16
    """windows per forward pass on each process"""
    tokens_per_update: int = 0
    """target D per optimizer step; gradients are accumulated to reach it (0 = one micro-batch)"""
    max_tokens: float = 0
    """stop after this many tokens D (0 = no limit)"""
    max_flops: float = 0
    """stop after this compute C = 6ND in FLOPs (0 = no limit)"""
    max_steps: int = 0
    """stop after this many optimizer steps (0 = no limit)"""
    log_points_per_decade: int = 20
    """train metrics points per decade of steps (= per decade of FLOPs)"""
    val_points_per_decade: int = 5
    """validation points per decade of steps (step 1, then from step 10; and the end)"""
    val_batches: int = 4
    """micro-batches of held-out windows per validation (the same windows every time; at 8, the
    seven validations of a 100-step s10k run took 10% of its time)"""
    checkpoint_every: int = 0
    """also checkpoint every this many steps (0 = at validation points and the end only)"""
    keep_checkpoints: bool = False
    """keep every checkpoint as checkpoints/step_<step>.pt (for loss-vs-quality studies)"""
    compile: bool | None = None
    """torch.compile the model (None: on CUDA only; the CPU path stays eager)"""
    device: str = "auto"
    """'auto' (CUDA if available), 'cpu' or 'cuda[:i]'"""
    tensorboard: bool = True
    """also write TensorBoard events to tb/"""
    resume: bool = True
    """continue from checkpoints/last.pt when the run directory holds one"""

    def __post_init__(self) -> None:
        check_learning_rate(self.learning_rate, "TrainConfig.learning_rate")
        checks = {"warmup_steps": self.warmup_steps >= 0,
                  "weight_decay": self.weight_decay >= 0, "beta1": 0 <= self.beta1 < 1,
                  "beta2": 0 <= self.beta2 < 1, "grad_clip": self.grad_clip >= 0,
                  "micro_batch_size": self.micro_batch_size >= 1,
                  "tokens_per_update": self.tokens_per_update >= 0,
                  "max_tokens": 0 <= self.max_tokens < math.inf,
                  "max_flops": 0 <= self.max_flops < math.inf,
                  "max_steps": self.max_steps >= 0,
                  "log_points_per_decade": self.log_points_per_decade >= 1,
                  "val_points_per_decade": self.val_points_per_decade >= 0,
                  "val_batches": self.val_batches >= 0,
                  "checkpoint_every": self.checkpoint_every >= 0}
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"TrainConfig.{name} has an invalid value {getattr(self, name)!r}")
        if not (self.max_tokens or self.max_flops or self.max_steps):
            raise ValueError("TrainConfig needs a budget: set max_tokens, max_flops or max_steps "
                             "(--tokens, --flops or --steps)")


class TrainResult(NamedTuple):
    """Summary of a finished run."""

    run_dir: Path
    steps: int
    tokens: int
    flops: float
    params: int
    train_loss: float
    val_loss: float | None


@dataclass
class ModelRecord:
    """What a run records about its model (every field is optional; unset ones are left out)."""

    task: str | None = None
    """the task (``wm-token``, ``bc-token``, ``bc-cnn``; a loss name in Section 5.1)"""
    size: str | None = None
    """the size name of ``worldmodels.presets`` (or of the character ladder)"""
    preset: str | None = None
    """the hyperparameter preset it was trained with"""
    model_kind: str | None = None
    """the kind ``worldmodels.checkpoint.load_model`` rebuilds it with"""
    model_config: dict[str, Any] | None = None
    """the model's own config (``TokenModelConfig``, ``BCCNNConfig``, ...) as a dict"""

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelRecord:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown model record keys {unknown}; use "
                             f"{[f.name for f in fields(cls)]}")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        """The set fields."""
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class RunConfig:
    """A run's whole configuration: trainer, data and model; ``config.json`` is its dict."""

    train: TrainConfig
    """optimisation, budget, logging and checkpoints"""
    data: dict[str, Any] = field(default_factory=dict)
    """the data source's description (``DataSource.describe()``)"""
    model: ModelRecord = field(default_factory=ModelRecord)
    """task, size, preset, model kind and model config"""
    params: int = 0
    """N: trainable parameters of the model, embeddings included"""
    data_fingerprint: str | None = None
    """sha256 of the data's files (``offline_data.fingerprint``); resume refuses a change"""
    data_grown_from: list[str] = field(default_factory=list)
    """fingerprints of the data this data grew from (``offline_data.growth``): a checkpoint
    written on any of them resumes here"""

    def to_dict(self) -> dict[str, Any]:
        """The ``config.json`` object."""
        d = {"train": asdict(self.train), "data": self.data, **self.model.to_dict(),
             "params": self.params, "data_fingerprint": self.data_fingerprint}
        if self.data_grown_from:
            d["data_grown_from"] = list(self.data_grown_from)
        return d

    def comparable(self) -> dict[str, Any]:
        """The parts a resumed run must share with its checkpoint (JSON-normalised)."""
        return comparable(self.to_dict())


def comparable(run_config: dict[str, Any]) -> dict[str, Any]:
    """``run_config`` (a ``config.json`` object) without :data:`RESUMABLE_FIELDS`."""
    rc = json.loads(json.dumps(run_config))
    for name in RESUMABLE_FIELDS:
        rc.get("train", {}).pop(name, None)
    rc.pop("data_fingerprint", None)  # compared on its own, with its own message
    rc.pop("data_grown_from", None)
    # Where the data lives is not what it is: its fingerprint (compared on its own) says that,
    # and grown data (offline_data.growth) moves to a new path with more training episodes.
    for key in DATA_LOCATION_KEYS:
        rc.get("data", {}).pop(key, None)
    return rc
