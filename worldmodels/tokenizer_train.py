"""Train a VQ-VAE tokenizer on a Minari dataset's train split; evaluate on held-out episodes.

A run directory holds ``config.json``, ``metrics.jsonl`` (``train/*`` every ``log_every`` steps,
``val/psnr``, ``val/codebook_usage``, ``val/perplexity`` at every evaluation, at most one per
step), ``tb/`` (TensorBoard), ``recon.png`` (held-out originals above their reconstructions),
``checkpoint.pt`` (model, optimiser, step, RNG states, the streamed-frame ring's position; written
atomically), ``tokenizer.pt`` (the frozen tokenizer for ``embscale tokenizer encode``) and
``summary.json``. Started again on the same directory with ``resume=True``, a run continues from
its checkpoint's step, exactly as if never stopped (a checkpoint from before the ring's position
was saved resumes with a fresh ring, with a warning).

Example:
    embscale tokenizer train --dataset embscale/breakout/scripted-v1 --tokens-per-frame 64
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from offline_data.atomic import atomic_file, write_text_atomic
from offline_data.run_lock import DirLock
from worldmodels.run_metrics import (
    METRICS_FILE,
    append_metrics,
    metrics_path,
    read_metrics,
    truncate_metrics,
)
from worldmodels.run_state import load_torch_file
from worldmodels.tokenizer import VQVAE, VQConfig, foreground_mask, load_weights, save_tokenizer
from worldmodels.tokenizer_data import FrameCache, frame_shape, held_out_frames, open_split
from worldmodels.train_utils import resolve_device

logger = logging.getLogger(__name__)

# Config fields that may change when a run is resumed (budgets and logging, not the maths).
RESUMABLE_FIELDS = ("steps", "time_limit_s", "eval_every", "log_every", "checkpoint_every",
                    "device", "num_threads", "out_dir", "tensorboard")



@dataclasses.dataclass
class TokenizerTrainConfig:
    """How a tokenizer is trained."""

    dataset_id: str = "embscale/breakout/scripted-v2"
    """Minari dataset whose train split is used (val split for evaluation)."""
    out_dir: str = "runs/tokenizer/breakout-k64"
    """Run directory."""
    steps: int = 3000
    """Optimiser steps."""
    batch_size: int = 8
    """Frames per step (small batches learn fastest per CPU second; use 32-64 on a GPU)."""
    lr: float = 2e-3
    """Peak Adam learning rate."""
    warmup_steps: int = 50
    """Linear warmup steps."""
    min_lr_ratio: float = 0.1
    """Cosine decay from lr to lr * min_lr_ratio over ``steps``."""
    recon_loss: str = "mse"
    """Reconstruction loss: "mse" or "l1"."""
    gradient_loss_weight: float = 0.5
    """Weight of the L1 loss on image gradients (sharper edges); 0 disables it."""
    foreground_weight: float = 0.0
    """Extra weight of foreground pixels (those differing from the batch median frame) in the
    reconstruction loss; 0 weighs every pixel alike."""
    eval_every: int = 500
    """Steps between held-out evaluations (and a final one at the end)."""
    eval_frames: int = 512
    """Held-out frames evaluated (spread evenly over the val split)."""
    log_every: int = 25
    """Steps between train metric lines."""
    checkpoint_every: int = 500
    """Steps between checkpoints (and one at the end)."""
    grid_frames: int = 8
    """Frames shown in recon.png."""
    max_cached_frames: int = 100_000
    """Train frames held in RAM (uint8); larger splits stream through a ring buffer."""
    refresh_every: int = 4
    """When streaming, steps between loading a new episode into the cache."""
    split_seed: int = 0
    """Seed of the episode train/val/test split (same as the rest of the suite)."""
    seed: int = 0
    """Seed of initialisation and batch sampling."""
    time_limit_s: float = 0.0
    """Stop (checkpointed, resumable) after this many seconds; 0 for no limit."""
    device: str = "auto"
    """"cpu", "cuda", "cuda:1", or "auto" (CUDA when available)."""
    num_threads: int = 1
    """torch CPU threads; 1 is fastest on a shared CPU, 0 keeps torch's default."""
    tensorboard: bool = True
    """Write TensorBoard events under tb/."""

    def __post_init__(self):
        for name in ("steps", "batch_size", "eval_every", "eval_frames", "log_every",
                     "checkpoint_every", "grid_frames", "max_cached_frames", "refresh_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"TokenizerTrainConfig.{name} must be >= 1, got "
                                 f"{getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"TokenizerTrainConfig.lr must be > 0, got {self.lr}")
        if self.recon_loss not in ("mse", "l1"):
            raise ValueError(f"TokenizerTrainConfig.recon_loss must be 'mse' or 'l1', got "
                             f"{self.recon_loss!r}")
        if min(self.gradient_loss_weight, self.foreground_weight, self.time_limit_s,
               self.num_threads) < 0:
            raise ValueError("gradient_loss_weight, foreground_weight, time_limit_s and "
                             "num_threads must be >= 0")

    def lr_at(self, step: int) -> float:
        """Learning rate of optimiser step ``step`` (0-based): warmup, then cosine decay."""
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        progress = min(1.0, (step - self.warmup_steps) / max(1, self.steps - self.warmup_steps))
        cosine = 0.5 * (1 + math.cos(math.pi * progress))
        return self.lr * (self.min_lr_ratio + (1 - self.min_lr_ratio) * cosine)


@torch.no_grad()
def evaluate(model: VQVAE, frames: np.ndarray, batch_size: int = 128) -> dict[str, float]:
    """Reconstruction PSNR and codebook statistics on uint8 (N, H, W, 3) frames.

    PSNR is computed per frame on the uint8 reconstruction (MSE floored at 1e-2, i.e. at most
    68 dB) and averaged over frames. ``psnr_foreground`` pools the error of the pixels that
    differ from the frames' per-pixel median (what moves: a ball, a paddle, a score; their
    share is ``foreground_fraction``): small objects lost in the reconstruction hardly move the
    whole-frame PSNR but sink this one. It is None when no pixel differs. ``codebook_usage`` is
    the fraction of codes used at least once; ``perplexity`` is exp(entropy) of the code
    histogram (= V_o when all codes are used equally often).
    """
    was_training = model.training
    model.eval()
    psnrs, counts = [], torch.zeros(model.config.codebook_size, dtype=torch.float64)
    moving = foreground_mask(model.preprocess(frames)).cpu()[:, 0, :, :, None]  # (N, H, W, 1)
    fg_sq_err = 0.0
    for i in range(0, len(frames), batch_size):
        batch = torch.as_tensor(frames[i:i + batch_size])
        ids = model.encode(batch)
        recon = model.decode(ids).cpu().float()
        sq_err = (recon - batch.float()).pow(2)
        mse = sq_err.mean(dim=(1, 2, 3)).clamp_min(1e-2)
        psnrs.append(10 * torch.log10(255.0**2 / mse))
        fg_sq_err += float((sq_err * moving[i:i + batch_size]).sum())
        counts += torch.bincount(ids.flatten().cpu(), minlength=len(counts)).double()
    model.train(was_training)
    p = counts / counts.sum()
    entropy = -(p[p > 0] * p[p > 0].log()).sum()
    fg_pixels = int(moving.sum())
    fg_mse = fg_sq_err / (3 * fg_pixels) if fg_pixels else None
    return {"psnr": float(torch.cat(psnrs).mean()),
            "psnr_foreground": (10 * math.log10(255.0**2 / max(fg_mse, 1e-2))
                                if fg_mse is not None else None),
            "foreground_fraction": fg_pixels / (len(frames) * frames.shape[1] * frames.shape[2]),
            "codes_used": int((counts > 0).sum()),
            "codebook_usage": float((counts > 0).double().mean()),
            "perplexity": float(entropy.exp())}


def save_recon_grid(model: VQVAE, frames: np.ndarray, path: Path, scale: int = 2) -> None:
    """PNG: originals (top row) above their reconstructions (bottom row)."""
    from PIL import Image

    model_frames = model.decode(model.encode(frames)).cpu().numpy()
    top, bottom = np.concatenate(list(frames), axis=1), np.concatenate(list(model_frames), axis=1)
    grid = np.concatenate([top, bottom], axis=0)
    img = Image.fromarray(grid).resize((grid.shape[1] * scale, grid.shape[0] * scale),
                                       Image.NEAREST)
    with atomic_file(path) as tmp:
        img.save(tmp, format="PNG")


def _config_json(cfg: TokenizerTrainConfig, vq: VQConfig) -> dict:
    return {"train": dataclasses.asdict(cfg), "vq": dataclasses.asdict(vq)}


def _check_resume(saved: dict, cfg: TokenizerTrainConfig, vq: VQConfig) -> None:
    new = _config_json(cfg, vq)
    diffs = [f"vq.{k}: {saved['vq'].get(k)!r} -> {v!r}" for k, v in new["vq"].items()
             if saved["vq"].get(k) != v]
    diffs += [f"{k}: {saved['train'].get(k)!r} -> {v!r}" for k, v in new["train"].items()
              if k not in RESUMABLE_FIELDS and saved["train"].get(k) != v]
    if diffs:
        raise ValueError(f"cannot resume {cfg.out_dir}: its config differs in {diffs}; resume "
                         "with the same settings, or start a new run directory")


def _truncate_metrics(path: Path, step: int) -> dict[str, Any] | None:
    """Drop metric lines logged after the checkpoint a resumed run restarts from.

    A truncated last line (a kill mid-append) is dropped with a warning; any other line that is
    not JSON is a one-line ``ValueError``. Returns the kept val row of ``step`` (None if none).
    """
    if not path.exists():
        return None
    truncate_metrics(path, step)
    return next((r for r in read_metrics(path) if r["step"] == step and "val/psnr" in r), None)


class TokenizerTrainer:
    """Owns the optimiser, data, logging and checkpoints of one tokenizer run."""

    def __init__(self, cfg: TokenizerTrainConfig, vq: VQConfig | None = None, dataset: Any = None,
                 resume: bool = False, overwrite: bool = False):
        self.cfg = cfg
        self.out = Path(cfg.out_dir)
        ckpt_path = self.out / "checkpoint.pt"
        saved = None
        if ckpt_path.exists():
            if resume:
                saved = load_torch_file(ckpt_path, "tokenizer checkpoint")
            elif not overwrite:
                raise FileExistsError(f"{self.out} already holds a tokenizer run; pass "
                                      "--resume to continue it or --overwrite to start over")
        if overwrite and not resume and self.out.exists():
            for name in ("checkpoint.pt", METRICS_FILE, "tokenizer.pt", "summary.json"):
                (self.out / name).unlink(missing_ok=True)
            shutil.rmtree(self.out / "tb", ignore_errors=True)  # the old run's curves
        self.train_reader = open_split(dataset or cfg.dataset_id, "train", cfg.split_seed)
        self.val_reader = open_split(self.train_reader.dataset, "val", cfg.split_seed)
        h, w, _ = frame_shape(self.train_reader)
        if vq is None:
            vq = VQConfig(image_height=h, image_width=w) if saved is None else \
                VQConfig.from_dict(json.loads(saved["config"])["vq"])
        if (vq.image_height, vq.image_width) != (h, w):
            raise ValueError(f"dataset {cfg.dataset_id!r} has {h}x{w} frames but the tokenizer "
                             f"config is for {vq.image_height}x{vq.image_width}; set "
                             f"image_height={h}, image_width={w} or use a matching dataset")
        self.vq = vq
        if saved is not None:
            _check_resume(json.loads(saved["config"]), cfg, vq)
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        self.device = resolve_device(cfg.device)
        torch.manual_seed(cfg.seed)
        self.model = VQVAE(vq).to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.step, self._window, self._seconds = 0, [], 0.0  # log window; seconds of earlier runs
        self._start = time.time()  # of this run's training (reset by train)
        if saved is not None:
            self._window = json.loads(saved.get("log_window", "[]"))
            self._seconds = float(saved.get("seconds", 0.0))
            load_weights(self.model, saved["model"], ckpt_path)
            self.optimizer.load_state_dict(saved["optimizer"])
            self.generator.set_state(saved["generator"])
            torch.set_rng_state(saved["torch_rng"].cpu())
            self.step = int(saved["step"])
            logger.info("resuming %s from step %d", self.out, self.step)
        self.out.mkdir(parents=True, exist_ok=True)
        val_row = _truncate_metrics(metrics_path(self.out), self.step)
        # (step, metrics) of the last evaluation, so that a step gets one val row, not two
        self._last_eval: tuple[int, dict[str, Any]] | None = None if val_row is None else (
            self.step, {k[4:]: v for k, v in val_row.items() if k.startswith("val/")})
        write_text_atomic(self.out / "config.json",
                          json.dumps(_config_json(cfg, vq), indent=2) + "\n")
        cache_state = None if saved is None else saved.get("frame_cache")
        self.cache = FrameCache(self.train_reader, cfg.max_cached_frames, seed=cfg.seed,
                                state=cache_state)
        if saved is not None and cache_state is None and self.cache.streaming:
            msg = (f"{ckpt_path} predates saving the streamed-frame ring's position: resuming with "
                   "a fresh ring (the run samples other frames than an uninterrupted one would)")
            warnings.warn(msg, stacklevel=2)
            logger.warning(msg)
        self.eval_frames = held_out_frames(self.val_reader, cfg.eval_frames)
        self._tb, self._resumed_at = None, self.step

    def _log(self, row: dict) -> None:
        append_metrics(self.out, row)
        if self.cfg.tensorboard:
            if self._tb is None:  # events after the resumed step are a killed run's: purged
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(self.out / "tb"), purge_step=self._resumed_at + 1)
            for k, v in row.items():
                if k != "step" and isinstance(v, (int, float)):
                    self._tb.add_scalar(k, v, row["step"])

    def save_checkpoint(self) -> None:
        """Write checkpoint.pt (resumable state) and tokenizer.pt (frozen model), atomically."""
        state = {
            "config": json.dumps(_config_json(self.cfg, self.vq)),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "step": self.step,
            "frame_cache": self.cache.state_dict(),
            "log_window": json.dumps(self._window),  # metrics of the steps since the last log row
            "seconds": self._seconds + time.time() - self._start,
        }
        with atomic_file(self.out / "checkpoint.pt") as tmp:
            torch.save(state, tmp)
        save_tokenizer(self.model, self.out / "tokenizer.pt")

    def evaluate(self) -> dict[str, float]:
        """Evaluate on the held-out frames, log ``val/*`` and refresh recon.png."""
        metrics = evaluate(self.model, self.eval_frames)
        self._last_eval = (self.step, metrics)
        self._log({"step": self.step, **{f"val/{k}": v for k, v in metrics.items()}})
        save_recon_grid(self.model, self.eval_frames[:: max(1, len(self.eval_frames)
                                                            // self.cfg.grid_frames)]
                        [: self.cfg.grid_frames], self.out / "recon.png")
        return metrics

    def train(self, progress: bool = True, stop_at: int | None = None) -> dict[str, Any]:
        """Train to ``cfg.steps`` (or the time limit); return the summary (also summary.json).

        Args:
            progress: show a progress bar.
            stop_at: stop early at this step, checkpointed (the schedule still spans
                ``cfg.steps``, so resuming continues the same run).
        """
        from tqdm.auto import tqdm

        cfg = self.cfg
        self.model.train()
        start = self._start = time.time()
        start_step = self.step
        bar = tqdm(total=cfg.steps, initial=self.step, disable=not progress, desc="tokenizer",
                   unit="step")
        window = self._window
        stopped_early = False
        while self.step < cfg.steps:
            if (cfg.time_limit_s and time.time() - start > cfg.time_limit_s) or (
                    stop_at is not None and self.step >= stop_at):
                stopped_early = True
                break
            lr = cfg.lr_at(self.step)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            frames = self.cache.sample(cfg.batch_size, self.generator)
            out = self.model.compute_loss(frames, cfg.recon_loss, cfg.gradient_loss_weight,
                                          cfg.foreground_weight)
            self.optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            self.optimizer.step()
            self.step += 1
            window.append({k: float(v) for k, v in out.metrics.items()})
            if self.step % cfg.refresh_every == 0:
                self.cache.refresh()
            if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                elapsed = max(time.time() - start, 1e-9)
                row = {"step": self.step, "lr": lr,
                       "frames_per_s": (self.step - start_step) * cfg.batch_size / elapsed}
                row.update({f"train/{k}": float(np.mean([m[k] for m in window]))
                            for k in window[0]})
                self._log(row)
                bar.set_postfix(loss=f"{row['train/loss']:.4f}", psnr=f"{row['train/psnr']:.1f}")
                window.clear()
            if self.step % cfg.eval_every == 0 and self.step < cfg.steps:
                self.evaluate()
            if self.step % cfg.checkpoint_every == 0:
                self.save_checkpoint()
            bar.update(1)
        bar.close()
        if self._last_eval is not None and self._last_eval[0] == self.step:
            final = self._last_eval[1]  # evaluated at this step already (early stop, or resume)
        else:
            final = self.evaluate()
        self.save_checkpoint()
        if self._tb is not None:
            self._tb.close()
        elapsed = time.time() - start
        summary = {
            "dataset_id": cfg.dataset_id, "tokens_per_frame": self.vq.tokens_per_frame,
            "codebook_size": self.vq.codebook_size, "step": self.step, "steps": cfg.steps,
            "stopped_early": stopped_early, "seconds": self._seconds + elapsed,  # every run's
            "frames_per_s": (self.step - start_step) * cfg.batch_size / max(elapsed, 1e-9),
            "params": self.model.num_params(), "val_frames": len(self.eval_frames),
            "tokenizer_id": self.model.tokenizer_id(), "tokenizer_sha256": self.model.sha256(),
            **{f"val/{k}": v for k, v in final.items()},
        }
        write_text_atomic(self.out / "summary.json", json.dumps(summary, indent=2) + "\n")
        return summary


def train_tokenizer(cfg: TokenizerTrainConfig, vq: VQConfig | None = None, *,
                    resume: bool = False, overwrite: bool = False, progress: bool = True,
                    dataset: Any = None) -> dict[str, Any]:
    """Train (or resume) a tokenizer run; returns its summary. See :class:`TokenizerTrainer`.

    The run directory is locked for the run (:class:`offline_data.run_lock.DirLock`): a second
    process on it is refused instead of interleaving checkpoints and metrics.
    """
    with DirLock(cfg.out_dir, "tokenizer run directory"):
        return TokenizerTrainer(cfg, vq, dataset=dataset, resume=resume,
                                overwrite=overwrite).train(progress=progress)

