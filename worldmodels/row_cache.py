"""A KV cache whose rows start, restart and slide independently (for batched imagination).

``GPT``'s own cache holds one length for the whole batch. A batch of imagined episodes needs more:
each row resets on its own (a new burn-in), and learned absolute positions must restart at 0 for
it, as in training where a window's first frame sits at position 0. Here every row writes at a
shared column pointer ``length``; row ``b`` owns columns ``[first[b], length)``, its position is
``column - first[b]``, and attention masks out the columns before ``first[b]``.

When the context is full the window slides: the last few frames of every row are re-encoded from
column 0 in one batched forward (learned absolute positions make the old keys stale, so some
recompute is unavoidable), then decoding continues incrementally. Sliding by half a window
amortises that recompute over many steps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from worldmodels.gpt import GPT


class RowKVCache:
    """Keys/values (B, n_head, capacity, E / n_head) per layer, plus the tokens they encode.

    ``dtype`` defaults to the model's; a bf16 cache halves its memory at large batch (feed it
    under bf16 autocast so that queries match its keys).
    """

    def __init__(self, gpt: GPT, batch_size: int, capacity: int, dtype: torch.dtype | None = None):
        cfg = gpt.config
        if capacity > cfg.block_size:
            raise ValueError(f"capacity {capacity} exceeds the model's block_size {cfg.block_size}")
        p = gpt.wte.weight
        shape = (batch_size, cfg.n_head, capacity, cfg.n_embd // cfg.n_head)
        self.keys = [torch.zeros(shape, device=p.device, dtype=dtype or p.dtype)
                     for _ in range(cfg.n_layer)]
        self.values = [torch.zeros_like(k) for k in self.keys]
        self.tokens = torch.zeros(batch_size, capacity, dtype=torch.long, device=p.device)
        self.first = torch.zeros(batch_size, dtype=torch.long, device=p.device)
        self.length = 0
        # Whether some row may start after column 0, known on the host so that decoding a token
        # never waits for the GPU to say so (True is always safe: it only selects the mask).
        self.padded = False

    @property
    def batch_size(self) -> int:
        """Rows held."""
        return self.tokens.shape[0]

    @property
    def capacity(self) -> int:
        """Columns available."""
        return self.tokens.shape[1]

    def row_tokens(self, row: int) -> torch.Tensor:
        """The token ids row ``row`` currently holds, int64 (n,)."""
        return self.tokens[row, int(self.first[row]):self.length]


@torch.no_grad()
def row_forward(gpt: GPT, cache: RowKVCache, tokens: torch.Tensor, col0: int | None = None
                ) -> torch.Tensor:
    """Feed ``tokens`` (B, L) at columns ``[col0, col0 + L)`` (default: append); hidden (B, L, E).

    Keys and values are written into ``cache``; each query attends to its row's columns from
    ``first`` up to itself. A padding query (column before its row's ``first``) attends to itself
    only, so it stays finite and never leaks into real rows.
    """
    col0 = cache.length if col0 is None else col0
    B, L = tokens.shape
    end = col0 + L
    if end > cache.capacity:
        raise ValueError(f"{end} columns exceed the cache capacity {cache.capacity}")
    dev = tokens.device
    cols = torch.arange(col0, end, device=dev)
    keycols = torch.arange(end, device=dev)
    first = cache.first[:, None, None]  # B, 1, 1
    padded, causal = cache.padded, False
    if L == 1 and not padded:
        mask = None  # one query, every row starts at column 0: it may see all keys
    elif col0 == 0 and not padded:
        # A fresh pass over unpadded rows is plain causal attention: the fused kernels' own
        # mask, instead of a (B, L, L) boolean one that sends SDPA to its unfused path.
        mask, causal = None, True
    else:
        key, query = keycols[None, None, :], cols[None, :, None]
        mask = ((key >= first) & (key <= query)) | (key == query)  # B, L, S
        mask = mask[:, None]  # B, 1, L, S
    pos = (cols[None, :] - cache.first[:, None]).clamp(min=0)  # B, L
    cache.tokens[:, col0:end] = tokens
    core = gpt.core
    x = gpt.wte(tokens) + core.wpe(pos)
    for i, block in enumerate(core.h):
        attn = block.attn
        E, nh = x.shape[-1], attn.n_head
        q, k, v = attn.c_attn(block.ln_1(x)).split(E, dim=2)
        q, k, v = (t.view(B, L, nh, E // nh).transpose(1, 2) for t in (q, k, v))
        cache.keys[i][:, :, col0:end] = k
        cache.values[i][:, :, col0:end] = v
        k_all, v_all = cache.keys[i][:, :, :end], cache.values[i][:, :, :end]
        y = F.scaled_dot_product_attention(q, k_all, v_all, attn_mask=mask, is_causal=causal)
        x = x + attn.c_proj(y.transpose(1, 2).reshape(B, L, E))
        x = x + block.mlp(block.ln_2(x))
    cache.length = max(cache.length, end)
    return core.ln_f(x)


@torch.no_grad()
def rebuild(gpt: GPT, cache: RowKVCache, sequences: list[torch.Tensor]) -> torch.Tensor | None:
    """Refill the cache from scratch with one token sequence per row, right-aligned.

    Returns the hidden states (B, width, E) of the re-encoded columns (None when all are empty);
    the last column holds every row's last token.
    """
    if len(sequences) != cache.batch_size:
        raise ValueError(f"need {cache.batch_size} sequences, got {len(sequences)}")
    width = max(len(s) for s in sequences)
    if width > cache.capacity:
        raise ValueError(f"a sequence of {width} tokens exceeds the cache capacity "
                         f"{cache.capacity}")
    tokens = torch.zeros(cache.batch_size, width, dtype=torch.long, device=cache.tokens.device)
    pads = [width - len(s) for s in sequences]
    for b, s in enumerate(sequences):
        tokens[b, pads[b]:] = s
    cache.first.copy_(torch.tensor(pads, dtype=torch.long))
    cache.padded = any(pads)
    cache.length = 0
    return row_forward(gpt, cache, tokens, col0=0) if width else None


@torch.no_grad()
def place_rows(gpt: GPT, cache: RowKVCache, rows: torch.Tensor, sequences: torch.Tensor) -> None:
    """Replace rows ``rows`` (n,) by fresh token sequences (n, S) ending at the shared column.

    Only the new rows are encoded when there is room to the left of the write column; otherwise
    every row is re-encoded (right-aligned) in one forward.
    """
    n, S = sequences.shape
    t = cache.length
    if n == cache.batch_size and len(set(rows.tolist())) == n:
        # Every row restarts: encode from column 0, so a reset is bit-for-bit repeatable.
        order = torch.argsort(rows)
        rebuild(gpt, cache, list(sequences[order]))
        return
    if S > t:
        seqs = [cache.row_tokens(b) for b in range(cache.batch_size)]
        for r, s in zip(rows.tolist(), sequences, strict=True):
            seqs[r] = s
        rebuild(gpt, cache, seqs)
        return
    sub = RowKVCache.__new__(RowKVCache)
    sub.keys = [k.new_zeros(n, k.shape[1], t, k.shape[3]) for k in cache.keys]
    sub.values = [torch.zeros_like(k) for k in sub.keys]
    sub.tokens = cache.tokens.new_zeros(n, t)
    sub.first = torch.full((n,), t - S, dtype=torch.long, device=cache.tokens.device)
    sub.padded = t > S
    sub.length = 0
    row_forward(gpt, sub, sequences, col0=t - S)
    for layer in range(len(cache.keys)):
        cache.keys[layer][rows, :, t - S:t] = sub.keys[layer][:, :, t - S:t]
        cache.values[layer][rows, :, t - S:t] = sub.values[layer][:, :, t - S:t]
    cache.tokens[rows, t - S:t] = sequences
    cache.first[rows] = t - S
    cache.padded = cache.padded or t > S


@torch.no_grad()
def slide(gpt: GPT, cache: RowKVCache, keep: int) -> None:
    """Keep the last ``keep`` tokens of every row (fewer if a row is shorter) and re-encode."""
    t = cache.length
    rebuild(gpt, cache, [cache.tokens[b, max(int(cache.first[b]), t - keep):t]
                         for b in range(cache.batch_size)])
