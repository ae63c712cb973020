"""The trainer's run directory: checkpoints written atomically, kept ones, and resume.

:class:`CheckpointedRun` is the part of :class:`worldmodels.trainer.Trainer` that owns
``checkpoints/`` and ``config.json``: a checkpoint is never written from a step whose losses or
weights are not finite, ``--keep-checkpoints`` hard-links ``last.pt`` (written once), and a run
resumes only from a checkpoint of the same config and data (the metrics logged after it are
dropped, since the resumed run logs them again).

A checkpoint is a snapshot taken at its step (CPU copies of the weights, optimizer state and RNG
state); serialising, ``fsync`` and the rename happen on a writer thread while training goes on,
one checkpoint at a time. A run killed before a write commits resumes from the previous one,
which the atomic rename leaves intact; a run that ends or fails waits for the write first.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import torch

from offline_data.atomic import atomic_file, remove_stale_temp_files, write_text_atomic
from worldmodels import run_state
from worldmodels.run_metrics import metrics_path, truncate_metrics
from worldmodels.train_config import comparable
from worldmodels.train_utils import dict_diff

logger = logging.getLogger(__name__)


class CheckpointedRun:
    """Checkpoints and resume of a :class:`worldmodels.trainer.Trainer`.

    A mixin: it uses the trainer's model, optimizer, config, run directory, step, tokens, rank
    and its running loss interval.
    """

    @property
    def checkpoint_path(self) -> Path:
        """The latest checkpoint of this run."""
        return self.run_dir / "checkpoints" / "last.pt"

    def _comparable(self, run_config: dict) -> dict:
        return comparable(run_config)

    def _save_checkpoint(self, values: dict[str, float]) -> None:
        bad = run_state.check_finite(values, self.model)  # never checkpoint a bad step
        if bad:
            raise self._non_finite(bad, self.step)
        if self.rank != 0:
            return
        state = {
            "model": _snapshot(self.model.state_dict()),
            "optimizer": _snapshot(self.optimizer.state_dict()),
            "step": self.step, "tokens": self.tokens, "run_config": self.run_config,
            "model_kind": self.run_config.get("model_kind", ""),
            "model_config": self.run_config.get("model_config", {}),
            "torch_rng": torch.get_rng_state(),
            # dropout on a GPU draws from the device's generator, not the CPU's
            "cuda_rng": (torch.cuda.get_rng_state(self.device)
                         if self.device.type == "cuda" else None),
            "interval_loss": torch.tensor([self._interval[0], self._interval[1]],
                                          dtype=torch.float64),
        }
        self.wait_for_checkpoint()  # one write at a time, in step order
        if getattr(self, "_writer", None) is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint")
        keep = self.step if self.config.keep_checkpoints else None
        self._pending: Future | None = self._writer.submit(self._write_checkpoint, state, keep)

    def _write_checkpoint(self, state: dict, keep: int | None) -> None:
        with atomic_file(self.checkpoint_path) as tmp:
            torch.save(state, tmp)
        if keep is not None:
            self._keep_checkpoint(keep)

    def wait_for_checkpoint(self) -> None:
        """Block until the checkpoint being written is committed (re-raising its error)."""
        pending, self._pending = getattr(self, "_pending", None), None
        if pending is not None:
            pending.result()

    def close_checkpoints(self) -> None:
        """Wait for the last write and stop the writer thread."""
        try:
            self.wait_for_checkpoint()
        finally:
            writer, self._writer = getattr(self, "_writer", None), None
            if writer is not None:
                writer.shutdown(wait=True)

    def _keep_checkpoint(self, step: int) -> None:
        """Hard-link ``last.pt`` (replaced, never rewritten) as ``step_<step>.pt``; else copy."""
        kept = self.checkpoint_path.with_name(run_state.kept_checkpoint_name(step))
        with atomic_file(kept) as tmp:
            tmp.unlink()
            try:
                os.link(self.checkpoint_path, tmp)
            except OSError:
                shutil.copyfile(self.checkpoint_path, tmp)

    def _start_run_dir(self) -> None:
        """Resume from the last checkpoint, or start a fresh run directory."""
        metrics = metrics_path(self.run_dir)
        if self.rank == 0:  # the lock's holder: files a killed write left are no one's
            stale = [p.name for d in (self.run_dir, self.checkpoint_path.parent)
                     for p in remove_stale_temp_files(d)]
            if stale:
                logger.warning("removed %s, left by a killed write in %s", ", ".join(stale),
                               self.run_dir)
        if self.config.resume and self.checkpoint_path.is_file():
            ckpt = run_state.load_resume_checkpoint(self.checkpoint_path, self.device)
            run_state.check_same_data(ckpt["run_config"], self.run_config, self.run_dir)
            old, new = self._comparable(ckpt["run_config"]), self._comparable(self.run_config)
            if old != new:
                diff = dict_diff(old, new)
                raise ValueError(
                    f"cannot resume {self.run_dir}: its checkpoint is from another config "
                    f"({'; '.join(diff[:6])}); use a new --run-dir, or the same settings")
            self.model.load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
            self.step, self.tokens = int(ckpt["step"]), int(ckpt["tokens"])
            torch.set_rng_state(ckpt["torch_rng"].cpu())
            if self.device.type == "cuda" and ckpt.get("cuda_rng") is not None:
                torch.cuda.set_rng_state(ckpt["cuda_rng"].cpu(), self.device)
            # Checkpoints written before train/loss_mean existed carry no running interval.
            interval = ckpt.get("interval_loss", torch.tensor([0.0, 0.0]))
            self._interval = (float(interval[0]), int(interval[1]))
            if self.rank == 0 and metrics.is_file():
                truncate_metrics(self.run_dir, self.step)
            logger.info("resumed %s at step %d (%d tokens)", self.run_dir, self.step, self.tokens)
        elif self.rank == 0:
            if metrics.is_file() and metrics.stat().st_size and not self.config.resume:
                raise FileExistsError(f"{self.run_dir} already holds a run; pick a new run "
                                      "directory, or resume it (leave out --no-resume)")
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_text_atomic(metrics, "")
        if self.rank == 0:
            write_text_atomic(self.run_dir / "config.json",
                              json.dumps(self.run_config, indent=2, sort_keys=True) + "\n")


def _snapshot(value):
    """``value`` (a state dict, nested) with every tensor copied to the CPU, detached."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: _snapshot(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_snapshot(v) for v in value)
    return value
