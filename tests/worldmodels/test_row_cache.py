"""Per-row KV cache: incremental decoding equals a full forward, rows restart and slide."""

from __future__ import annotations

import torch

from worldmodels.gpt import GPT, GPTConfig
from worldmodels.row_cache import RowKVCache, place_rows, row_forward, slide


def _gpt():
    torch.manual_seed(0)
    return GPT(GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=40, vocab_size=50)).eval()


def test_incremental_rows_equal_full_forward():
    gpt = _gpt()
    x = torch.randint(0, 50, (3, 30))
    cache = RowKVCache(gpt, 3, 40)
    parts = [row_forward(gpt, cache, x[:, :10])]
    parts += [row_forward(gpt, cache, x[:, i:i + 1]) for i in range(10, 30)]
    torch.testing.assert_close(torch.cat(parts, 1), gpt.hidden(x), atol=1e-5, rtol=1e-5)
    assert not cache.padded  # every row starts at column 0: no mask, no device sync to know it


def test_restarted_row_sees_only_its_own_tokens_from_position_zero():
    gpt = _gpt()
    x = torch.randint(0, 50, (3, 30))
    cache = RowKVCache(gpt, 3, 40)
    row_forward(gpt, cache, x[:, :20])
    place_rows(gpt, cache, torch.tensor([1]), x[1:2, :5])
    nxt = torch.randint(0, 50, (3, 1))
    h = row_forward(gpt, cache, nxt)[:, -1]
    torch.testing.assert_close(h[1], gpt.hidden(torch.cat([x[1:2, :5], nxt[1:2]], 1))[0, -1],
                               atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(h[0], gpt.hidden(torch.cat([x[0:1, :20], nxt[0:1]], 1))[0, -1],
                               atol=1e-5, rtol=1e-5)
    assert cache.first.tolist() == [0, 15, 0] and cache.padded


def test_slide_keeps_the_last_tokens_and_restarts_positions():
    gpt = _gpt()
    x = torch.randint(0, 50, (2, 36))
    cache = RowKVCache(gpt, 2, 40)
    row_forward(gpt, cache, x)
    place_rows(gpt, cache, torch.tensor([1]), x[1:2, :4])
    slide(gpt, cache, keep=8)
    assert cache.length == 8 and cache.first.tolist() == [0, 4]
    nxt = torch.randint(0, 50, (2, 1))
    h = row_forward(gpt, cache, nxt)[:, -1]
    torch.testing.assert_close(h[0], gpt.hidden(torch.cat([x[0:1, -8:], nxt[:1]], 1))[0, -1],
                               atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(h[1], gpt.hidden(torch.cat([x[1:2, :4], nxt[1:]], 1))[0, -1],
                               atol=1e-5, rtol=1e-5)
