"""A fixed-shape decode step checked token by token against ``row_forward`` (the variable-shape
path), on rows of different lengths with one row restarted mid-way."""

from __future__ import annotations

import copy
import functools

import torch

from worldmodels.decode_math import decode_one
from worldmodels.decode_step import DecodeStep
from worldmodels.gpt import GPT, GPTConfig
from worldmodels.row_cache import RowKVCache, place_rows, rebuild, row_forward


def small_gpt(device="cpu", n_embd=32):
    torch.manual_seed(0)
    cfg = GPTConfig(n_layer=2, n_head=2, n_embd=n_embd, block_size=40, vocab_size=50)
    return GPT(cfg).to(device).eval()


def padded_cache(gpt, batch):
    """Rows of different lengths (right-aligned, so some start after column 0)."""
    dev = gpt.wte.weight.device
    cache = RowKVCache(gpt, batch, 40)
    g = torch.Generator().manual_seed(1)
    rebuild(gpt, cache, [torch.randint(0, 50, (5 + 3 * b,), generator=g).to(dev)
                         for b in range(batch)])
    return cache


def check_against_row_forward(gpt, batch, mode, steps=8, fused_forms=False, **kwargs):
    """Feed ``steps`` tokens through a ``DecodeStep`` and through ``row_forward`` on a copy of
    the same cache; the hidden states, tokens and keys must agree. Returns the step."""
    ref = padded_cache(gpt, batch)
    cache = copy.deepcopy(ref)
    step = DecodeStep(gpt, cache, mode=mode, **kwargs)
    if fused_forms:  # the compiled step's arithmetic, run eagerly
        step._fn = functools.partial(decode_one, attention="reductions")
    g = torch.Generator().manual_seed(2)
    for i in range(steps):
        ids = torch.randint(0, 50, (batch,), generator=g).to(cache.tokens.device)
        want = row_forward(gpt, ref, ids[:, None])[:, -1]
        got = step(ids)
        torch.testing.assert_close(got, want, atol=2e-5, rtol=2e-5, msg=f"token {i}")
        if i == 3:  # a row restarts mid-way: the step must follow the cache's new first column
            rows = torch.tensor([batch - 1], device=ids.device)
            seq = torch.randint(0, 50, (1, 4), generator=g).to(ids.device)
            place_rows(gpt, ref, rows, seq)
            place_rows(gpt, cache, rows, seq)
    assert cache.length == ref.length
    assert torch.equal(cache.tokens, ref.tokens) and torch.equal(cache.first, ref.first)
    for k, k_ref in zip(cache.keys, ref.keys, strict=True):
        torch.testing.assert_close(k[:, :, :ref.length], k_ref[:, :, :ref.length],
                                   atol=2e-5, rtol=2e-5)
    return step
