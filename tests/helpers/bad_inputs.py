"""Tiny real fixtures for the bad-input tests: a dataset, a tokenizer, shards, a trained model.

Built once per test module (a few seconds) in a directory the tests share read-only.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch

from tests.helpers.tokenizers import TINY_VQ, make_dataset

HERE = Path(__file__).resolve().parent

DATASET = "embscale/synthetic/random-v0"
DAMAGED = "embscale/synthetic/damaged-v0"


class Fixtures:
    """Paths of the shared fixtures (all under ``root``)."""

    def __init__(self, root: Path):
        self.root = root
        self.minari = root / "minari"
        self.tokenizer = root / "tok.pt"
        self.other_tokenizer = root / "tok-other.pt"
        self.tokens = root / "tokens"
        self.other_tokens = root / "tokens-other"
        self.bad_ids_tokens = root / "tokens-bad-ids"
        self.run = root / "run"
        self.checkpoint = self.run / "checkpoints" / "last.pt"
        self.random_bytes = root / "random.bin"
        self.text = root / "notes.txt"
        self.truncated = root / "truncated.pt"
        self.a_file = root / "a-file"
        self.user_dir = root / "my-files"
        self.csv = root / "points.csv"


def _tokenizer(path: Path, seed: int):
    from worldmodels.tokenizer import VQVAE, VQConfig, save_tokenizer

    torch.manual_seed(seed)
    model = VQVAE(VQConfig(image_height=16, image_width=16, tokens_per_frame=4, **TINY_VQ))
    model.eval()
    save_tokenizer(model, path)


def train_argv(data, run_dir, *extra: str) -> list[str]:
    """``embscale train`` of the smallest model for two one-micro-batch steps."""
    return ["-q", "train", "--task", "wm-token", "--size", "s10k", "--data", str(data),
            "--run-dir", str(run_dir), "--no-tensorboard", "--micro-batch-size", "2",
            "--seq-len", "2", "--val-batches", "1", "--tokens-per-update", "0", *extra]


def build(root: Path) -> Fixtures:
    """Write every fixture under ``root``."""
    from scaling.cli import main
    from worldmodels.tokenize_dataset import encode_dataset

    fx = Fixtures(root)
    fx.minari.mkdir(parents=True, exist_ok=True)
    os.environ["MINARI_DATASETS_PATH"] = str(fx.minari)
    make_dataset(DATASET, num_episodes=6, steps=12, size=16)
    make_dataset(DAMAGED, num_episodes=3, steps=12, size=16)
    part = next((fx.minari / DAMAGED / "data" / "1").glob("part-*"))
    part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])  # a truncated episode file
    _tokenizer(fx.tokenizer, 0)
    _tokenizer(fx.other_tokenizer, 1)
    encode_dataset(fx.tokenizer, DATASET, fx.tokens, progress=False)
    encode_dataset(fx.other_tokenizer, DATASET, fx.other_tokens, progress=False)
    assert main(train_argv(fx.tokens, fx.run, "--steps", "2")) == 0
    shutil.copytree(fx.tokens, fx.bad_ids_tokens)
    ids = np.load(fx.bad_ids_tokens / "train" / "frame_tokens.npy", mmap_mode="r+")
    ids[:, 1] = 999  # past the 16-entry codebook: a damaged shard
    ids.flush()
    del ids
    fx.random_bytes.write_bytes(np.random.default_rng(0).bytes(4096))
    fx.text.write_text("these are my notes, not a checkpoint\n")
    fx.truncated.write_bytes(fx.checkpoint.read_bytes()[:1000])
    fx.a_file.write_text("a plain file\n")
    fx.user_dir.mkdir()
    (fx.user_dir / "thesis.tex").write_text("\\section{Years of work}\n")
    fx.csv.write_text("N,D,L\n" + "".join(f"{n},{d},{3 - 0.1 * i}\n" for i, (n, d) in enumerate(
        [(1e4, 1e5), (1e4, 1e6), (3e4, 1e5), (3e4, 1e6), (1e5, 1e5), (1e5, 1e6)])))
    (root / "fit.json").write_text(json.dumps({"not": "a fit"}))
    return fx
