"""Synthetic-but-structured token shards for the sequence-model tests.

Within a frame each token follows from the one before it, the next frame's first token from the
previous frame's first token and the action, and the action mostly from the frame (10% random), so
both WM and BC losses can fall far below their initial values in a few steps.
"""

from __future__ import annotations

import numpy as np

from offline_data.token_writer import write_token_shards
from offline_data.tokens import EpisodeTokens, TokenHeader

K, V, AV = 4, 16, (3,)


def episode(rng: np.random.Generator, n: int) -> EpisodeTokens:
    z = np.zeros((n, K), np.int64)
    a = np.zeros((n, len(AV)), np.int64)
    first = rng.integers(0, V)
    for t in range(n):
        z[t] = (first + np.cumsum(np.arange(K))) % V
        a[t, 0] = z[t, 0] % AV[0] if rng.random() < 0.9 else rng.integers(0, AV[0])
        first = (first + a[t, 0] + 1) % V
    rewards = (a[:, 0] == 2).astype(np.float32)
    term = np.zeros(n, bool)
    term[-1] = True
    return EpisodeTokens(z, a, rewards, term)


def write_shards(path, episodes=(40, 8), length=24, seed=0, image_vocab=V):
    rng = np.random.default_rng(seed)
    header = TokenHeader(tokens_per_frame=K, image_vocab=image_vocab, action_vocab_sizes=AV,
                         tokenizer_id="synthetic", tokenizer_sha256="0" * 64,
                         dataset_id="embscale/synthetic/structured-v0")
    splits = {"train": [episode(rng, length) for _ in range(episodes[0])],
              "val": [episode(rng, length) for _ in range(episodes[1])]}
    return write_token_shards(path, header, {k: iter(v) for k, v in splits.items()})
