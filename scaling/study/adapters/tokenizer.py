"""The study's tokenizer: train it, then encode the dataset into token shards.

Translates the spec's ``tokenizer`` section into ``worldmodels.tokenizer_train`` and
``worldmodels.tokenize_dataset`` calls.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from offline_data.datasets import load_dataset
from worldmodels.tokenizer_config import VQConfig


def tokenizer_finished(out_dir: Path, steps: int) -> bool:
    """True when the tokenizer run in ``out_dir`` has trained all ``steps``."""
    summary = Path(out_dir) / "summary.json"
    return summary.is_file() and int(json.loads(summary.read_text()).get("step", 0)) >= steps


def tokenizer_threads() -> int:
    """Torch threads for the study's tokenizer: ``EMBSCALE_THREADS``, else every core.

    The count does not follow the machine's load: float sums differ between thread counts, so a
    count chosen by load made the tokenizer, and everything trained on its tokens, differ between
    a run on an idle machine and one beside other work (the default study's BC-Token losses
    moved by up to 0.05). Set ``EMBSCALE_THREADS=1`` on a machine that other jobs keep busy.
    """
    return int(os.environ.get("EMBSCALE_THREADS", "0") or 0) or (os.cpu_count() or 1)


# Fields of the tokenizer's training config that a study spec may set in tokenizer.overrides
# (the rest of that config is the study's own: dataset, directory, steps, device, threads).
TOKENIZER_TRAIN_OPTIONS = ("lr", "warmup_steps", "min_lr_ratio", "recon_loss",
                           "gradient_loss_weight", "foreground_weight", "seed")


def split_tokenizer_overrides(overrides: dict[str, Any]) -> tuple[dict, dict]:
    """Split ``tokenizer.overrides`` into VQConfig fields and training options.

    >>> split_tokenizer_overrides({"code_dim": 16, "foreground_weight": 20.0})
    ({'code_dim': 16}, {'foreground_weight': 20.0})
    """
    model_fields = {f.name for f in dataclasses.fields(VQConfig)} - {
        "image_height", "image_width", "tokens_per_frame", "codebook_size"}
    unknown = sorted(set(overrides) - model_fields - set(TOKENIZER_TRAIN_OPTIONS))
    if unknown:
        raise ValueError(f"tokenizer.overrides has unknown keys {unknown}; use VQConfig fields "
                         f"{sorted(model_fields)} or training options "
                         f"{sorted(TOKENIZER_TRAIN_OPTIONS)}")
    model = {k: v for k, v in overrides.items() if k in model_fields}
    train = {k: v for k, v in overrides.items() if k not in model_fields}
    return model, train


def check_tokenizer_override_values(overrides: dict[str, Any]) -> None:
    """Refuse training-option values the tokenizer trainer refuses (an lr of -1).

    Called when a spec is read from a file, so a bad value fails before the dataset stage; it
    loads the trainer (torch), so the presets built at import leave it out.
    """
    _, train = split_tokenizer_overrides(overrides)
    if not train:
        return
    from worldmodels.tokenizer_train import TokenizerTrainConfig  # torch

    try:
        TokenizerTrainConfig(dataset_id="check", out_dir="check", **train)
    except (ValueError, TypeError) as e:
        raise ValueError(f"tokenizer.overrides: {e}") from None


def train_tokenizer(spec, out_dir: Path, progress: bool = True) -> dict[str, Any]:
    """Train (or resume) the study's tokenizer in ``out_dir``."""
    from worldmodels.tokenizer_train import TokenizerTrainConfig  # torch
    from worldmodels.tokenizer_train import train_tokenizer as _train  # torch

    t = spec.tokenizer
    h, w = load_dataset(spec.dataset.id).observation_space.shape[:2]
    model_opts, train_opts = split_tokenizer_overrides(t.overrides)
    vq = VQConfig(image_height=h, image_width=w, tokens_per_frame=t.tokens_per_frame,
                  codebook_size=t.codebook_size, **model_opts)
    threads = tokenizer_threads()
    cfg = TokenizerTrainConfig(dataset_id=spec.dataset.id, out_dir=str(out_dir), steps=t.steps,
                               batch_size=t.batch_size, eval_every=max(1, t.steps // 3),
                               checkpoint_every=max(1, min(500, t.steps // 4)),
                               device="cuda" if spec.device == "cuda" else spec.device,
                               num_threads=threads, **train_opts)
    return _train(cfg, vq, resume=True, progress=progress)


def encode_dataset(spec, tokenizer: Path, out: Path, progress: bool = True) -> None:
    """Tokenize the study's dataset into token shards at ``out`` (replacing a partial one)."""
    from worldmodels.tokenize_dataset import encode_dataset as _encode  # torch

    workers = min(2, os.cpu_count() or 1) if spec.device == "cpu" else 1
    _encode(tokenizer, spec.dataset.id, out, device=spec.device, overwrite=out.exists(),
            num_workers=workers, progress=progress)
