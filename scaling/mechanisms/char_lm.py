"""Character-level language models for the paper's Section 5.1 mechanism experiment.

Next-character prediction on a plain text file with a context of 16 characters, under three losses
that mirror the move from WM-Token to BC-Token (paper Section 5.1, Figure 10):

- ``dense``: cross-entropy on all 16 positions (like world modelling: 97% of tokens supervised);
- ``sparse``: cross-entropy on the last position only (like BC-Token: few supervised tokens);
- ``superclass``: sparse, and the final target's characters are randomly shuffled (seeded) into
  two macro classes, so the label is coarse (like an action that many situations share).

D counts every input character (16 per window) in all three cases, as D counts every token of a
BC-Token window, so C = 6ND is comparable across losses.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from worldmodels.gpt import GPT, GPTConfig, LossOutput

LOSSES = ("dense", "sparse", "superclass")


@dataclass(frozen=True)
class CharSize:
    """One model of the character-level ladder."""

    n_layer: int
    """transformer blocks"""
    n_head: int
    """attention heads"""
    n_embd: int
    """residual width"""
    learning_rate: float
    """constant AdamW learning rate after warmup"""


# About 4k to 17M parameters (paper: "from 4k parameters to 17M parameters"); N is exact for the
# 65-character tiny-shakespeare vocabulary and context 16 and printed by `embscale reproduce`.
CHAR_SIZES: dict[str, CharSize] = {
    "c4k": CharSize(1, 2, 16, 1e-2),
    "c15k": CharSize(2, 2, 24, 8e-3),
    "c40k": CharSize(2, 4, 40, 6e-3),
    "c110k": CharSize(3, 4, 56, 4e-3),
    "c300k": CharSize(4, 4, 80, 3e-3),
    "c1M": CharSize(6, 6, 120, 2e-3),
    "c6M": CharSize(8, 8, 256, 1e-3),
    "c17M": CharSize(12, 8, 336, 6e-4),
}


class CharBatch(NamedTuple):
    """Windows of characters.

    Attributes:
        idx: int64 (B, T) input character ids.
        targets: int64 (B, T) next-character ids (``idx`` shifted by one).
    """

    idx: torch.Tensor
    targets: torch.Tensor


class CharCorpus:
    """A text file as character ids, split into contiguous train/val parts.

    Args:
        path: a UTF-8 text file.
        val_fraction: the last fraction of the text held out for validation.
    """

    def __init__(self, path: str | Path, val_fraction: float = 0.1):
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"text file {path} does not exist; pass a plain-text file "
                                    "(e.g. tiny-shakespeare)")
        if not 0.0 < val_fraction < 0.5:
            raise ValueError(f"val_fraction must be in (0, 0.5), got {val_fraction!r}")
        try:
            text = path.read_text(encoding="utf-8", errors="strict")
        except UnicodeDecodeError as e:
            raise ValueError(f"text file {path} is not UTF-8 text ({e.reason} at byte "
                             f"{e.start}); pass a plain-text file (e.g. tiny-shakespeare)"
                             ) from None
        if len(text) < 10_000:
            raise ValueError(f"{path} holds only {len(text)} characters; a scaling experiment "
                             "needs at least 10,000 (tiny-shakespeare has 1.1M)")
        self.path = path
        self.chars = sorted(set(text))
        lookup = {c: i for i, c in enumerate(self.chars)}
        ids = np.fromiter((lookup[c] for c in text), dtype=np.int64, count=len(text))
        cut = int(len(ids) * (1.0 - val_fraction))
        self.splits = {"train": ids[:cut], "val": ids[cut:]}

    @property
    def vocab_size(self) -> int:
        """Number of distinct characters."""
        return len(self.chars)


class CharWindowLoader:
    """Random windows of ``context`` characters from one split (seeded, rank-aware)."""

    def __init__(self, ids: np.ndarray, context: int, batch_size: int, seed: int, rank: int,
                 world_size: int):
        if len(ids) <= context + 1:
            raise ValueError(f"split of {len(ids)} characters is too short for context {context}")
        self.ids, self.context, self.batch_size = ids, context, batch_size
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.num_windows = len(ids) - context

    def _batch(self, starts: np.ndarray) -> CharBatch:
        offsets = starts[:, None] + np.arange(self.context + 1)[None, :]  # (B, T+1)
        chunk = torch.from_numpy(self.ids[offsets])
        return CharBatch(chunk[:, :-1].contiguous(), chunk[:, 1:].contiguous())

    def batch_at(self, index: int) -> CharBatch:
        """The ``index``-th batch of this rank's endless seeded stream (uniform window starts)."""
        rng = np.random.default_rng([self.seed, self.rank, self.world_size, index])
        return self._batch(rng.integers(0, self.num_windows, size=self.batch_size))

    def epoch_batches(self, epoch: int = 0) -> Iterator[CharBatch]:
        """Evenly spaced windows over the split, this rank's share, in a fixed order."""
        stride = max(1, self.context // 2)
        starts = np.arange(0, self.num_windows, stride)[self.rank::self.world_size]
        rng = np.random.default_rng([self.seed, epoch])
        starts = rng.permutation(starts)
        for i in range(0, len(starts) - self.batch_size + 1, self.batch_size):
            yield self._batch(starts[i:i + self.batch_size])


class CharDataSource:
    """The trainer's ``DataSource`` over a ``CharCorpus``."""

    def __init__(self, corpus: CharCorpus, context: int = 16):
        if context < 2:
            raise ValueError(f"context must be at least 2 characters, got {context}")
        self.corpus, self.context = corpus, context
        self.items_per_window = context
        self.num_train_items = len(corpus.splits["train"])

    def loader(self, split: str, batch_size: int, seed: int, rank: int, world_size: int
               ) -> CharWindowLoader:
        """Windows of ``split`` ('train' or 'val')."""
        if split not in self.corpus.splits:
            raise ValueError(f"unknown split {split!r}; use 'train' or 'val'")
        return CharWindowLoader(self.corpus.splits[split], self.context, batch_size, seed, rank,
                                world_size)

    def check_model(self, model: nn.Module) -> None:
        """The model must cover the corpus's characters and the context."""
        cfg = model.gpt.config
        if cfg.vocab_size != self.corpus.vocab_size:
            raise ValueError(f"model vocabulary {cfg.vocab_size} != corpus vocabulary "
                             f"{self.corpus.vocab_size}; build the model from this corpus")
        if cfg.block_size < self.context:
            raise ValueError(f"context {self.context} is longer than the model's block size "
                             f"{cfg.block_size}")

    def describe(self) -> dict:
        """JSON-able description saved in config.json."""
        return {"kind": "characters", "path": self.corpus.path.name, "context": self.context,
                "vocab_size": self.corpus.vocab_size, "train_chars": self.num_train_items,
                "val_chars": len(self.corpus.splits["val"])}


def superclass_map(vocab_size: int, num_classes: int = 2, seed: int = 0) -> torch.Tensor:
    """Randomly assign each character to one of ``num_classes`` macro classes (balanced, seeded).

    >>> superclass_map(6, 2, seed=0).bincount().tolist()
    [3, 3]
    """
    if not 2 <= num_classes <= vocab_size:
        raise ValueError(f"num_classes must be in [2, {vocab_size}], got {num_classes}")
    rng = np.random.default_rng(seed)
    classes = np.arange(vocab_size) % num_classes
    return torch.from_numpy(rng.permutation(classes)).long()


class CharLM(nn.Module):
    """A GPT over characters whose loss is dense, sparse or sparse + super-classed.

    The super-classed loss keeps the character head (so N is the same under every loss) and scores
    a macro class by the log-sum-exp of its members' logits.
    """

    def __init__(self, config: GPTConfig, loss: str = "dense", num_superclasses: int = 2,
                 superclass_seed: int = 0):
        super().__init__()
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; choose one of {LOSSES}")
        self.gpt = GPT(config)
        self.loss = loss
        self.register_buffer("classes", superclass_map(config.vocab_size, num_superclasses,
                                                       superclass_seed), persistent=False)
        self.num_superclasses = num_superclasses

    def num_params(self) -> int:
        """N: trainable parameters including embeddings."""
        return self.gpt.num_params()

    def compute_loss(self, batch: CharBatch) -> LossOutput:
        """Cross-entropy under this model's loss."""
        if self.loss == "dense":
            _, loss = self.gpt(batch.idx, batch.targets)
            return LossOutput(loss, loss, {})
        hidden = self.gpt.hidden(batch.idx)[:, -1]  # (B, E): only the last position is scored
        logits = self.gpt.lm_head(hidden).float()  # (B, V)
        target = batch.targets[:, -1]
        if self.loss == "sparse":
            loss = F.cross_entropy(logits, target)
            return LossOutput(loss, loss, {})
        onehot = F.one_hot(self.classes, self.num_superclasses).bool()  # (V, S)
        masked = logits[:, :, None].masked_fill(~onehot[None], float("-inf"))  # (B, V, S)
        class_logits = torch.logsumexp(masked, dim=1)  # (B, S)
        loss = F.cross_entropy(class_logits, self.classes[target])
        return LossOutput(loss, loss, {})


def build_char_model(size: str, vocab_size: int, loss: str, context: int = 16,
                     superclass_seed: int = 0) -> CharLM:
    """A ``CharLM`` of the named ladder size."""
    if size not in CHAR_SIZES:
        raise ValueError(f"unknown character-model size {size!r}; known: {', '.join(CHAR_SIZES)}")
    s = CHAR_SIZES[size]
    cfg = GPTConfig(n_layer=s.n_layer, n_head=s.n_head, n_embd=s.n_embd, block_size=context,
                    vocab_size=vocab_size)
    return CharLM(cfg, loss=loss, superclass_seed=superclass_seed)
