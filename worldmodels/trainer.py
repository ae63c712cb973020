"""One pre-training loop for WM-Token, BC-Token and BC-CNN.

Any ``nn.Module`` with ``compute_loss(batch) -> LossOutput`` and ``num_params()`` trains here on
any ``DataSource``. AdamW with a constant learning rate after a linear warmup (no decay, so every
logged point is a valid (N, D, L) sample for the scaling laws), gradient accumulation to a
tokens-per-update target, clipping, bf16 autocast on CUDA (fp32 on CPU), optional
``torch.compile``, DDP under ``torchrun``. Stops at a token, FLOPs or step budget.

A run directory ``runs/<study>/<run>/`` holds ``config.json``, ``metrics.jsonl`` (one object per log
point: step, tokens D, flops C = 6ND, params N, train/loss, train/loss_mean (mean since the previous
point), lr, tokens_per_s of the training steps alone, epoch, val/loss at step 1, on the log grid
from step 10 and at the end), ``checkpoints/last.pt`` (written atomically) and ``tb/``. Log
points are spaced evenly in log(step), so every decade of FLOPs gets the same number of points. A
killed run started again with the same config resumes from its last checkpoint and continues the
same curve.

Example:
    trainer = Trainer(model, data, TrainConfig(run_dir="runs/demo/wm-s100k", max_tokens=2e6),
                      run_config={"task": "wm-token"})
    result = trainer.train()
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from offline_data.run_lock import DirLock
from worldmodels import run_state
from worldmodels.gpt import configure_optimizer
from worldmodels.run_checkpoints import CheckpointedRun
from worldmodels.run_metrics import append_metrics, last_losses
from worldmodels.train_config import (  # noqa: F401  (TrainConfig is imported from here too)
    INFINITE_DATA_PASSES,
    RESUMABLE_FIELDS,
    VAL_WINDOW_SEED,
    ModelRecord,
    NonFiniteLossError,
    RunConfig,
    TrainConfig,
    TrainResult,
    accumulation,
    comparable,
)
from worldmodels.train_utils import (
    DataSource,
    Prefetcher,
    Progress,
    WindowLoader,
    is_log_step,
    is_val_step,
    load_checkpoint,
    resolve_device,
    seed_everything,
    to_device,
)

logger = logging.getLogger(__name__)

class _LossModule(nn.Module):
    """Calls ``compute_loss`` through ``forward`` so DDP's hooks see every pass."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch):
        out = self.model.compute_loss(batch)
        return out.loss, out.scaling_loss, out.metrics


class Trainer(CheckpointedRun):
    """Trains ``model`` on ``data`` under ``config``; one instance per process under torchrun.

    Args:
        model: module with ``compute_loss(batch) -> LossOutput`` and ``num_params()``.
        data: a ``DataSource``.
        config: a ``TrainConfig``.
        run_config: JSON-able description of the model and task (saved in config.json and every
            checkpoint, compared on resume). Should include ``model_kind`` and ``model_config``.
        callbacks: called as ``callback(step, record)`` after every optimizer step (``record`` is
            the metrics dict when the step was logged, else None).
    """

    def __init__(self, model: nn.Module, data: DataSource, config: TrainConfig,
                 run_config: dict | None = None,
                 callbacks: list[Callable[[int, dict | None], None]] | None = None):
        for attr in ("compute_loss", "num_params"):
            if not callable(getattr(model, attr, None)):
                raise TypeError(f"{type(model).__name__} has no {attr}(); the trainer needs "
                                "compute_loss(batch) -> LossOutput and num_params()")
        data.check_model(model)
        self.config, self.data, self.callbacks = config, data, list(callbacks or [])
        self.run_dir = Path(config.run_dir)
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.distributed = self.world_size > 1
        dev = resolve_device(config.device)
        if dev.type == "cuda" and self.distributed:
            dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        elif dev.type == "cuda" and dev.index is None:  # set_device needs an index
            dev = torch.device("cuda", torch.cuda.current_device())
        self.device = dev
        if self.distributed and not torch.distributed.is_initialized():
            backend = "nccl" if self.device.type == "cuda" else "gloo"
            torch.distributed.init_process_group(backend=backend)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self.model = model.to(self.device)
        self.num_params = int(model.num_params())
        self.run = RunConfig(train=config, data=data.describe(),
                             model=ModelRecord.from_dict(run_config or {}),
                             params=self.num_params,
                             data_fingerprint=run_state.data_fingerprint(data),
                             data_grown_from=run_state.data_grown_from(data))
        self.run_config = self.run.to_dict()  # config.json and the checkpoints' record
        self.accum_steps, self.inputs_per_update = accumulation(
            config.micro_batch_size, self.world_size, data.items_per_window,
            config.tokens_per_update)
        self.train_loader = data.loader("train", config.micro_batch_size, config.seed,
                                        self.rank, self.world_size)
        self._batches: WindowLoader | Prefetcher = self.train_loader  # read ahead in train()
        self.val_loader = None
        if config.val_batches and config.val_points_per_decade:
            self.val_loader = data.loader("val", config.micro_batch_size, VAL_WINDOW_SEED,
                                          self.rank, self.world_size)
        self.optimizer = configure_optimizer(
            model, config.learning_rate, config.weight_decay, (config.beta1, config.beta2),
            # fused AdamW: one kernel per step (on CPU 3.6-4.8x the per-tensor loop, bench_adamw.py)
            fused=True if self.device.type in ("cuda", "cpu") else None)
        module: nn.Module = _LossModule(model)
        if self.distributed:
            module = nn.parallel.DistributedDataParallel(
                module, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        # compile=None: on CUDA only (with bf16 autocast, fused SDPA); CPU stays eager
        on = self.device.type == "cuda" if config.compile is None else config.compile
        self.loss_module = torch.compile(module) if on else module
        self.step = 0
        self.tokens = 0
        self._warned_passes = False
        # (sum, count) of train losses since the last log point: train/loss_mean smooths the
        # single-step train/loss without shifting it (an interval is ~12% of the steps at 20/decade)
        self._interval = (0.0, 0)

    # ----- budget and schedule -----

    @property
    def flops(self) -> float:
        """C = 6 N D so far."""
        return 6.0 * self.num_params * self.tokens

    def lr_at(self, step: int) -> float:
        """Learning rate of optimizer step ``step`` (1-based): linear warmup, then constant."""
        if self.config.warmup_steps and step <= self.config.warmup_steps:
            return self.config.learning_rate * step / self.config.warmup_steps
        return self.config.learning_rate

    def total_steps(self) -> int:
        """Optimizer steps the budget allows (the smallest of the step, token and FLOPs limits)."""
        per_update = self.inputs_per_update
        run_state.check_budget(self.config.max_tokens, self.config.max_flops, per_update,
                               6.0 * self.num_params * per_update)
        limits = []
        if self.config.max_steps:
            limits.append(self.config.max_steps)
        if self.config.max_tokens:
            limits.append(math.ceil(self.config.max_tokens / self.inputs_per_update))
        if self.config.max_flops:
            limits.append(math.ceil(self.config.max_flops / (6.0 * self.num_params
                                                             * self.inputs_per_update)))
        return max(1, min(limits))

    def _autocast(self):
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _all_mean(self, values: torch.Tensor) -> torch.Tensor:
        if self.distributed:
            values = values.clone()
            torch.distributed.all_reduce(values)
            values /= self.world_size
        return values

    # ----- the loop -----

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Mean losses over ``val_batches`` held-out micro-batches (``VAL_WINDOW_SEED``'s order)."""
        self.model.eval()
        sums: dict[str, float] = {}
        count = 0
        batches = self.val_loader.epoch_batches(0)
        for _ in range(self.config.val_batches):
            batch = next(batches, None)
            if batch is None:
                break
            with self._autocast():
                out = self.model.compute_loss(to_device(batch, self.device))
            for key, value in {"loss": out.scaling_loss, **out.metrics}.items():
                sums[key] = sums.get(key, 0.0) + float(value)
            count += 1
        self.model.train()
        keys = sorted(sums)
        means = self._all_mean(torch.tensor([sums[k] / max(count, 1) for k in keys],
                                            dtype=torch.float64))
        return {f"val/{k}": float(v) for k, v in zip(keys, means, strict=True)}

    def _train_step(self) -> dict[str, float]:
        """One optimizer step over ``accum_steps`` micro-batches; returns mean losses."""
        lr = self.lr_at(self.step + 1)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        sums: dict[str, torch.Tensor] = {}
        for micro in range(self.accum_steps):
            index = self.step * self.accum_steps + micro
            batch = to_device(self._batches.batch_at(index), self.device)
            sync = (not self.distributed or micro == self.accum_steps - 1)
            ctx = contextlib.nullcontext() if sync else self.loss_module.no_sync()
            with ctx:
                with self._autocast():
                    loss, scaling_loss, metrics = self.loss_module(batch)
                (loss / self.accum_steps).backward()
            for key, value in {"loss": scaling_loss, **metrics}.items():
                sums[key] = sums.get(key, 0.0) + value.detach().float()
        grad_norm = torch.tensor(0.0)
        if self.config.grad_clip:
            grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(),
                                                       self.config.grad_clip)
        keys = sorted(sums)
        means = self._all_mean(torch.stack([sums[k] / self.accum_steps for k in keys]).cpu()
                               .double())
        out = {f"train/{k}": float(v) for k, v in zip(keys, means, strict=True)}
        if not all(math.isfinite(v) for v in out.values()) or not math.isfinite(float(grad_norm)):
            raise self._non_finite(f"training loss {out['train/loss']} (grad norm "
                                   f"{float(grad_norm)})", self.step + 1)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        out["lr"] = lr
        out["grad_norm"] = float(grad_norm)
        return out

    def _non_finite(self, what: str, step: int) -> NonFiniteLossError:
        self.wait_for_checkpoint()
        last = (f"the last good checkpoint is {self.checkpoint_path}"
                if self.checkpoint_path.is_file() else "no checkpoint was written before it")
        return NonFiniteLossError(
            f"{what} at step {step} ({self.tokens} tokens); {last}. Lower the learning rate "
            f"(now {self.lr_at(step):g}) or lengthen the warmup, and start a new run directory")

    def _check_passes(self) -> float:
        passes = self.tokens / max(1, self.data.num_train_items)
        if passes > INFINITE_DATA_PASSES and not self._warned_passes:
            self._warned_passes = True
            msg = (f"run has made {passes:.1f} passes over the {self.data.num_train_items} "
                   f"training tokens: beyond {INFINITE_DATA_PASSES:g} it leaves the infinite-data "
                   "regime, so later points are not clean scaling-law samples; use more data or a "
                   "smaller budget")
            warnings.warn(msg, stacklevel=2)
            logger.warning(msg)
        return passes

    def train(self) -> TrainResult:
        """Run until the budget is spent (or resume and finish a killed run), holding the lock."""
        with DirLock(self.run_dir, "run directory") if self.rank == 0 else contextlib.nullcontext():
            return self._train()

    def _train(self) -> TrainResult:
        cfg = self.config
        self._start_run_dir()
        total = self.total_steps()
        planned = total * self.inputs_per_update / max(1, self.data.num_train_items)
        if self.rank == 0:
            logger.info("N=%d params, %d tokens/step (%d micro-batches x %d windows x %d "
                        "processes), %d steps planned (%.2f passes)", self.num_params,
                        self.inputs_per_update, self.accum_steps, cfg.micro_batch_size,
                        self.world_size, total, planned)
            if planned > INFINITE_DATA_PASSES:
                logger.warning("the budget is %.1f passes over the training data: the run will "
                               "leave the infinite-data regime (> %g passes)", planned,
                               INFINITE_DATA_PASSES)
        writer = None
        if cfg.tensorboard and self.rank == 0:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(self.run_dir / "tb"), purge_step=self.step + 1)
        self.model.train()
        train_seconds, last_tokens = 0.0, self.tokens
        train_loss, val_loss = self._logged_losses()
        progress = Progress(total, self.step, enabled=self.rank == 0)
        self._batches = Prefetcher(self.train_loader)
        try:
            while self.step < total:
                t0 = time.perf_counter()
                out = self._train_step()
                train_seconds += time.perf_counter() - t0
                self.step += 1
                self.tokens += self.inputs_per_update
                progress.update(1)
                train_loss = out["train/loss"]
                self._interval = (self._interval[0] + train_loss, self._interval[1] + 1)
                final = self.step >= total
                record = None
                do_val = self.val_loader is not None and (
                    final or is_val_step(self.step, cfg.val_points_per_decade))
                if final or do_val or is_log_step(self.step, cfg.log_points_per_decade):
                    # throughput of the training steps alone (not validation or checkpoints)
                    record = {"step": self.step, "tokens": self.tokens, "flops": self.flops,
                              "params": self.num_params, **out,
                              "tokens_per_s": (self.tokens - last_tokens) / max(train_seconds,
                                                                                1e-9),
                              "epoch": self._check_passes(),
                              "train/loss_mean": self._interval[0] / self._interval[1]}
                    self._interval = (0.0, 0)
                    train_seconds, last_tokens = 0.0, self.tokens
                    if do_val:
                        record.update(self.evaluate())
                        val_loss = record["val/loss"]
                    self._log(record, writer)
                if final or do_val or (cfg.checkpoint_every
                                       and self.step % cfg.checkpoint_every == 0):
                    self._save_checkpoint(record or out)
                for callback in self.callbacks:
                    callback(self.step, record)
            self.wait_for_checkpoint()
            if self.world_size > 1:
                # Rank 0 writes the last checkpoint after the final step; no rank may leave (and
                # tear down the process group under it) before that is done.
                torch.distributed.barrier()
        finally:
            self.close_checkpoints()
            progress.close()
            self._batches.close()
            self._batches = self.train_loader
            if writer is not None:
                writer.close()
        return TrainResult(self.run_dir, self.step, self.tokens, self.flops, self.num_params,
                           train_loss, val_loss)

    def _logged_losses(self) -> tuple[float, float | None]:
        """Last logged train and val losses (a finished run resumed reports them)."""
        return last_losses(self.run_dir) if self.step else (float("nan"), None)

    def _log(self, record: dict, writer) -> None:
        if self.rank != 0:
            return
        append_metrics(self.run_dir, record)
        if writer is not None:
            for key, value in record.items():
                if key not in ("step",) and isinstance(value, (int, float)):
                    writer.add_scalar(key, value, self.step)
        logger.info("step %d tokens %d loss %.4f%s", self.step, self.tokens,
                    record["train/loss"],
                    f" val {record['val/loss']:.4f}" if "val/loss" in record else "")


__all__ = ["DataSource", "NonFiniteLossError", "TrainConfig", "TrainResult", "Trainer",
           "WindowLoader", "is_log_step", "load_checkpoint", "seed_everything"]
