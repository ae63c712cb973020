"""A run directory's state, read and written so that a crash or bad numbers lose nothing.

The trainer calls these functions; they hold the rules, so the loop stays short:

- ``metrics.jsonl`` is strict JSON (non-finite numbers become ``null``); a truncated last line
  (the process died mid-write) is dropped with a warning instead of blocking the resume;
- a resume reads ``checkpoints/last.pt``, or, when that is truncated or corrupt, the newest intact
  ``checkpoints/step_<step>.pt``, with a warning;
- a checkpoint is written only from a step whose losses and parameters are all finite, so the
  "last good checkpoint" a NaN error names is good;
- unreadable checkpoint files give a one-line error naming the file, never PyTorch's advice to
  load untrusted files with ``weights_only=False``.
"""

from __future__ import annotations

import logging
import math
import os
import pickle
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from offline_data.fingerprint import check_fingerprint

logger = logging.getLogger(__name__)


def check_budget(max_tokens: float, max_flops: float, tokens_per_step: int,
                 flops_per_step: float) -> None:
    """Refuse a token or FLOPs budget smaller than one optimizer step (it would train a whole one).

    Raises:
        ValueError: naming the budget, one step's size and the fix.
    """
    for name, budget, step in (("--tokens", max_tokens, tokens_per_step),
                               ("--flops", max_flops, flops_per_step)):
        if budget and budget < step:
            raise ValueError(f"{name} {budget:g} is less than one optimizer step ({step:g}); "
                             f"raise {name} to at least {step:g}, or lower --tokens-per-update "
                             "and --micro-batch-size")


_LOAD_ERRORS = (RuntimeError, pickle.UnpicklingError, EOFError, zipfile.BadZipFile, ValueError,
                KeyError, AttributeError, IndexError, UnicodeDecodeError, OSError)


def load_torch_file(path: str | os.PathLike, what: str = "checkpoint",
                    map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(path, weights_only=True)`` with a one-line error for a damaged file.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is truncated, not a PyTorch file, or holds objects other than
            tensors and plain containers (which ``weights_only`` refuses to run).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no {what} at {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except _LOAD_ERRORS as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "weights_only" in first or "Weights only" in first:
            first = "it holds objects other than tensors (refused: loading them could run code)"
        raise ValueError(f"{path} is not a readable {what}: {first[:160]}; it is truncated, "
                         "damaged or not written by embscale; pass the right file or write it "
                         "again") from e


def kept_checkpoint_name(step: int) -> str:
    """File name of the checkpoint kept at ``step`` (``--keep-checkpoints``)."""
    return f"step_{step:08d}.pt"


def kept_checkpoints(directory: str | os.PathLike) -> list[tuple[int, Path]]:
    """``(step, path)`` of the checkpoints kept in a run's ``checkpoints/``, by step."""
    found = [(int(m.group(1)), p) for p in Path(directory).glob("step_*.pt")
             if (m := re.fullmatch(r"step_(\d+)\.pt", p.name))]
    return sorted(found)


def _step_checkpoints(directory: Path) -> list[Path]:
    return [p for _, p in reversed(kept_checkpoints(directory))]


def load_resume_checkpoint(last: Path, map_location: str | torch.device) -> dict:
    """``last`` (checkpoints/last.pt), or the newest intact step checkpoint when it is damaged.

    Raises:
        ValueError: ``last`` is damaged and no intact step checkpoint remains.
    """
    try:
        return load_torch_file(last, "checkpoint", map_location)
    except ValueError as e:
        reason = str(e)
    for candidate in _step_checkpoints(last.parent):
        try:
            ckpt = load_torch_file(candidate, "checkpoint", map_location)
        except ValueError:
            continue
        msg = f"{reason}; resuming from the newest intact checkpoint {candidate.name} instead"
        warnings.warn(msg, stacklevel=2)
        logger.warning(msg)
        return ckpt
    raise ValueError(f"{reason}; no intact checkpoints/step_*.pt to fall back on: start a new "
                     f"--run-dir (or remove {last} to start this run over)")


def check_finite(values: dict[str, float], model: nn.Module) -> str | None:
    """None when every value and parameter is finite, else what is not (for the error)."""
    bad = [f"{k} = {v}" for k, v in values.items()
           if isinstance(v, float) and not math.isfinite(v)]
    if not bad and not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
        bad.append("non-finite parameters after the update")
    return ", ".join(bad) or None


def check_same_data(old: dict, new: dict, run_dir: str | os.PathLike) -> bool:
    """Refuse to resume when the run's data changed (``data_fingerprint`` of two run configs).

    Data that grew from the checkpoint's data (more training episodes, the same validation and
    test episodes; ``offline_data.growth``) is accepted: the run continues its curve on it.
    Returns True when the data grew.
    """
    if new.get("data_fingerprint") is None:
        return False
    before = old.get("data_fingerprint")
    if before is not None and before != new["data_fingerprint"] and \
            before in new.get("data_grown_from", ()):
        logger.info("resuming %s on grown data: more training episodes than at its last "
                    "checkpoint", run_dir)
        return True
    data = new.get("data", {})
    check_fingerprint(before, new["data_fingerprint"], str(run_dir),
                      str(data.get("path") or data.get("dataset_id")))
    return False


def data_fingerprint(data: Any) -> str | None:
    """The fingerprint of a data source's files (None for sources that offer none)."""
    fingerprint = getattr(data, "fingerprint", None)
    return fingerprint() if callable(fingerprint) else None


def data_grown_from(data: Any) -> list[str]:
    """Fingerprints of the data a source grew from (empty for sources that did not grow)."""
    grown = getattr(data, "grown_from", None)
    return list(grown()) if callable(grown) else []


def check_tokenizer_match(recorded: str | None, actual: str | None, model: str, other: str,
                          allow_mismatch: bool = False) -> None:
    """Refuse a model meeting tokens or a tokenizer other than the ones it was trained on.

    Args:
        recorded: the tokenizer sha256 in the model's run config (None: not recorded, so
            nothing to compare).
        actual: the sha256 of the tokenizer (or of the shards' tokenizer) it meets now.
        model: the model's checkpoint path (for the message).
        other: what it meets, e.g. ``"tokenizer tok.pt"`` or ``"token shard tokens/"``.
        allow_mismatch: the expert override (``--allow-tokenizer-mismatch``): warn instead.

    Raises:
        ValueError: the two differ and ``allow_mismatch`` is off.
    """
    if not recorded or not actual or recorded == actual:
        return
    msg = (f"{model} was trained on tokens of tokenizer sha256 {recorded[:12]}..., but "
           f"{other} is of tokenizer sha256 {actual[:12]}...: its losses and frames would be "
           "meaningless; pass the tokenizer and shards the model was trained with (or "
           "--allow-tokenizer-mismatch if you know they are equivalent)")
    if not allow_mismatch:
        raise ValueError(msg)
    warnings.warn(msg, stacklevel=2)
    logger.warning(msg)


def recorded_tokenizer(ckpt: dict) -> str | None:
    """The tokenizer sha256 a model checkpoint's run config records (None if none)."""
    run_config = ckpt.get("run_config") if isinstance(ckpt, dict) else None
    return ((run_config or {}).get("data") or {}).get("tokenizer_sha256")
