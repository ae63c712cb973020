"""Token shards as a trainer ``DataSource`` for WM-Token and BC-Token.

Example:
    data = TokenDataSource("tokens/breakout-k64", seq_len=10)
    model = TokenModel(data.model_config(n_layer=2, n_head=2, n_embd=64, task="wm"))
"""

from __future__ import annotations

import os

from offline_data.fingerprint import directory_fingerprint
from offline_data.token_windows import TokenWindowLoader
from offline_data.tokens import TokenShards


class TokenDataSource:
    """Windows of ``seq_len`` timesteps from a token shard directory.

    Args:
        path: token shard directory (``embscale tokenizer encode`` writes one).
        seq_len: timesteps per window (T; the paper uses 10).
    """

    def __init__(self, path: str | os.PathLike, seq_len: int = 10):
        if seq_len < 1:
            raise ValueError(f"seq_len must be >= 1, got {seq_len}")
        self.path = str(path)
        self.shards = TokenShards.open(path)
        self.layout = self.shards.layout
        self.seq_len = int(seq_len)
        missing = [s for s in ("train", "val") if s not in self.shards.split_names]
        if missing:
            raise ValueError(f"token shard {path} has no {missing} split(s) (has "
                             f"{self.shards.split_names}); encode the dataset with train and "
                             "val splits")

    @property
    def items_per_window(self) -> int:
        """D per window: T (d_z + d_a)."""
        return self.seq_len * self.layout.tokens_per_step

    @property
    def num_train_items(self) -> int:
        """Tokens in the training split: frames x (d_z + d_a)."""
        return self.shards.split("train").num_frames * self.layout.tokens_per_step

    def loader(self, split: str, batch_size: int, seed: int, rank: int = 0,
               world_size: int = 1) -> TokenWindowLoader:
        """A ``TokenWindowLoader`` over ``split``."""
        return TokenWindowLoader(self.shards, split, self.seq_len, batch_size, seed, rank=rank,
                                 world_size=world_size)

    def model_config(self, n_layer: int, n_head: int, n_embd: int, task: str = "wm", **kwargs):
        """A ``TokenModelConfig`` matching these shards' layout and context."""
        from worldmodels.token_model import TokenModelConfig  # torch

        return TokenModelConfig.for_layout(self.layout, n_layer, n_head, n_embd, self.seq_len,
                                           task=task, **kwargs)

    def check_model(self, model) -> None:
        """Raise ``ValueError`` if ``model`` (a ``TokenModel``) cannot read these windows."""
        cfg = model.config
        layout = self.layout
        if (cfg.gpt.vocab_size != layout.vocab_size or cfg.image_vocab != layout.image_vocab
                or cfg.tokens_per_frame != layout.tokens_per_frame
                or tuple(cfg.action_vocab_sizes) != tuple(layout.action_vocab_sizes)):
            raise ValueError(
                f"token shard {self.path} has layout {layout} (vocab {layout.vocab_size}) but the "
                f"model expects tokens_per_frame={cfg.tokens_per_frame}, "
                f"image_vocab={cfg.image_vocab}, "
                f"action_vocab_sizes={tuple(cfg.action_vocab_sizes)} (vocab "
                f"{cfg.gpt.vocab_size}); train a model for these shards or use the shards of the "
                "tokenizer the model was trained with")
        if self.items_per_window > cfg.gpt.block_size:
            raise ValueError(
                f"context of {self.seq_len} steps x {layout.tokens_per_step} tokens = "
                f"{self.items_per_window} is longer than the model's block_size "
                f"{cfg.gpt.block_size}; lower seq_len to at most "
                f"{cfg.gpt.block_size // layout.tokens_per_step} or build a bigger block")

    def fingerprint(self) -> str:
        """Fingerprint of the shard files (a resumed run refuses data that changed)."""
        return directory_fingerprint(self.path)

    def grown_from(self) -> list[str]:
        """Fingerprints of the shards these grew from (``TokenHeader.grown_from``)."""
        return list(self.shards.header.grown_from)

    def describe(self) -> dict:
        """JSON-able description for config.json."""
        h = self.shards.header
        return {"kind": "tokens", "path": self.path, "seq_len": self.seq_len,
                "tokens_per_frame": h.tokens_per_frame, "image_vocab": h.image_vocab,
                "action_vocab_sizes": list(h.action_vocab_sizes),
                "tokenizer_sha256": h.tokenizer_sha256, "dataset_id": h.dataset_id,
                **({"supplements": list(h.supplements)} if h.supplements else {})}
