"""Pre-training loss of a checkpoint over a whole held-out split.

The trainer's ``val/loss`` averages a fixed sample of held-out windows (``val_batches`` of them)
at many points of a run: enough to draw a curve, noisy for comparing final models whose losses
differ by a few hundredths. :func:`held_out_loss` scores one checkpoint (WM-Token, BC-Token or
BC-CNN) on every ``stride``-th window of a split of the data it was trained on, so that with the
default stride (the window length T) every timestep's targets are scored about once, and gives
a standard error over batches of consecutive windows (windows of one episode are correlated, so a
per-window error would be too small).

Example::

    from agents.held_out import held_out_loss
    print(held_out_loss("runs/demo/bc-token-s100k-seed0", split="test"))
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import torch

import worldmodels.token_model  # noqa: F401  (registers token_model checkpoints)
from agents.frame_data import FrameDataSource
from worldmodels.checkpoint import model_from_checkpoint, read_model_checkpoint
from worldmodels.run_state import check_tokenizer_match, recorded_tokenizer
from worldmodels.token_data import TokenDataSource
from worldmodels.train_utils import resolve_device, to_device

SPLITS = ("train", "val", "test")


def _model_and_loader(ckpt: dict, split: str, data: str | None, allow_mismatch: bool = False):
    """The checkpoint's model and a window loader over ``split`` of its data."""
    kind, recorded = ckpt.get("model_kind"), ckpt.get("run_config", {}).get("data", {})
    seq_len = int(recorded.get("seq_len") or 10)
    data = data or recorded.get("dataset_id" if kind == "bc_cnn" else "path")
    if data is None:
        raise ValueError("the checkpoint does not record its training data; pass the token "
                         "shard directory or Minari dataset id (--data)")
    if kind == "bc_cnn":
        image_size = (ckpt.get("model_config") or {}).get("image_size")
        source = FrameDataSource(data, seq_len=seq_len, image_size=image_size)
    elif kind == "token_model":
        source = TokenDataSource(data, seq_len=seq_len)
        check_tokenizer_match(recorded_tokenizer(ckpt), source.shards.header.tokenizer_sha256,
                              "the checkpoint", f"token shard {data}", allow_mismatch)
    else:
        raise ValueError(f"the checkpoint holds a {kind!r} model; pass one written by `embscale "
                         "train` (WM-Token, BC-Token or BC-CNN)")
    model = model_from_checkpoint(ckpt)
    source.check_model(model)
    # only get_batch() of explicit window ids is used: the loader's own batch size is moot
    return model.eval(), source.loader(split, 1, seed=0)


@torch.no_grad()
def held_out_loss(checkpoint: str | os.PathLike, split: str = "test", *, stride: int | None = None,
                  batch_size: int = 32, data: str | None = None,
                  device: str = "cpu", allow_tokenizer_mismatch: bool = False
                  ) -> dict[str, Any]:
    """Mean pre-training loss (the curves' ``scaling_loss``) of a checkpoint over a split.

    Args:
        checkpoint: a run directory (its ``checkpoints/last.pt``) or a checkpoint file.
        split: ``"train"``, ``"val"`` or ``"test"`` of the data the model was trained on.
        stride: score every ``stride``-th window of the split, in order (default: the window
            length T, so each timestep is scored about once; 1 scores every window).
        batch_size: windows per forward pass; a batch holds consecutive windows, and the
            standard error is taken over batches.
        data: token shard directory or Minari dataset id (default: the one the run recorded).
        device: torch device.
        allow_tokenizer_mismatch: score shards of another tokenizer than the model's (warns).

    Returns:
        ``{"loss", "stderr", "windows", "split", "step", "tokens", "params", "task",
        "checkpoint"}``.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if batch_size < 1 or (stride is not None and stride < 1):
        raise ValueError(f"batch_size and stride must be >= 1, got {batch_size} and {stride}")
    ckpt = read_model_checkpoint(checkpoint, expect="any")
    model, loader = _model_and_loader(ckpt, split, data, allow_tokenizer_mismatch)
    device = resolve_device(device)
    model.to(device)
    ids = np.arange(0, loader.num_windows, stride or loader.seq_len)
    means, counts = [], []
    for lo in range(0, len(ids), batch_size):
        batch = to_device(loader.get_batch(ids[lo:lo + batch_size]), device)
        means.append(float(model.compute_loss(batch).scaling_loss))
        counts.append(len(ids[lo:lo + batch_size]))
    means, w = np.array(means), np.array(counts) / sum(counts)
    loss = float(np.sum(w * means))
    # a weighted mean's standard error from the spread of the batch means (1 batch: unknown)
    stderr = (math.sqrt(float(np.sum(w**2 * (means - loss) ** 2)) * len(w) / (len(w) - 1))
              if len(w) > 1 else math.nan)
    return {"loss": loss, "stderr": stderr, "windows": len(ids), "split": split,
            "step": int(ckpt.get("step", 0)), "tokens": int(ckpt.get("tokens", 0)),
            "params": int(ckpt.get("run_config", {}).get("params", model.num_params())),
            "task": ckpt.get("run_config", {}).get("task"), "checkpoint": str(checkpoint)}
