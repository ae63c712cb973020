"""A fixed-shape single-token decode step over a ``RowKVCache`` (compiled, or a CUDA graph).

Decoding one token at a time is bound by per-op overhead, not by arithmetic: at the study's sizes
a token costs a few hundred small tensor ops, each far cheaper to compute than to launch. This
step removes the reasons the eager path cannot be captured: every call has the same shapes (it
attends over the cache's full capacity, masking the columns a row does not own, instead of over
the first ``length`` columns), the write column is a device tensor rather than a Python int, and
nothing in it asks the host for a value. So it can be compiled once (``torch.compile``, CPU or
GPU) or captured once as a CUDA graph and replayed for every token.

The keys and values it writes, and the hidden state it returns, are those of ``row_forward``
feeding one token at the shared column; only the reduction over the masked-out columns differs in
rounding (a masked key adds an exact zero), so greedy and seeded sampling give the same tokens.
Sampling itself stays outside, on the device, with the caller's random generator.

Example:
    >>> from worldmodels.gpt import GPT, GPTConfig
    >>> from worldmodels.row_cache import RowKVCache, rebuild
    >>> gpt = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=8, block_size=16, vocab_size=10)).eval()
    >>> cache = RowKVCache(gpt, batch_size=2, capacity=16)
    >>> _ = rebuild(gpt, cache, [torch.tensor([1, 2, 3]), torch.tensor([4])])
    >>> step = DecodeStep(gpt, cache, mode="eager")
    >>> tuple(step(torch.tensor([5, 6])).shape), cache.length
    ((2, 8), 4)
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
import warnings
from typing import NamedTuple

import torch
import torch.nn.functional as F

from worldmodels.gpt import GPT
from worldmodels.row_cache import RowKVCache

logger = logging.getLogger(__name__)

DECODE_MODES = ("auto", "eager", "compile", "cuda-graph")


class LayerWeights(NamedTuple):
    """One block's tensors, in the order the decode step applies them (biases may be None)."""

    ln_1_w: torch.Tensor
    ln_1_b: torch.Tensor | None
    attn_w: torch.Tensor
    attn_b: torch.Tensor | None
    attn_proj_w: torch.Tensor
    attn_proj_b: torch.Tensor | None
    ln_2_w: torch.Tensor
    ln_2_b: torch.Tensor | None
    fc_w: torch.Tensor
    fc_b: torch.Tensor | None
    mlp_proj_w: torch.Tensor
    mlp_proj_b: torch.Tensor | None


class DecodeWeights(NamedTuple):
    """The model's tensors, shared with it (not copied): in-place training updates show here.

    The step takes tensors rather than modules so that a compiled step guards on a few tensors,
    not on every module attribute (the guard check alone cost about as much as the arithmetic).
    """

    wte: torch.Tensor
    wpe: torch.Tensor
    layers: tuple[LayerWeights, ...]
    ln_f_w: torch.Tensor
    ln_f_b: torch.Tensor | None
    n_head: int
    eps: float


def decode_weights(gpt: GPT) -> DecodeWeights:
    """The tensors of ``gpt`` a decode step reads."""
    core = gpt.core
    layers = tuple(LayerWeights(
        b.ln_1.weight, b.ln_1.bias, b.attn.c_attn.weight, b.attn.c_attn.bias,
        b.attn.c_proj.weight, b.attn.c_proj.bias, b.ln_2.weight, b.ln_2.bias,
        b.mlp.c_fc.weight, b.mlp.c_fc.bias, b.mlp.c_proj.weight, b.mlp.c_proj.bias)
        for b in core.h)
    return DecodeWeights(gpt.wte.weight, core.wpe.weight, layers, core.ln_f.weight,
                         core.ln_f.bias, gpt.config.n_head, core.ln_f.eps)


def _linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, gemv: bool
            ) -> torch.Tensor:
    """``F.linear``, or as a broadcast multiply-and-sum that a compiler fuses into one loop.

    A compiled step at batch 1 spends most of its time calling the BLAS for (1, E) x (E, 4E)
    products; written as a reduction they become generated code with no call overhead.
    """
    if not gemv:
        return F.linear(x, w, b)
    y = (x[:, None, :] * w).sum(-1)
    return y if b is None else y + b


def decode_one(w: DecodeWeights, keys: list[torch.Tensor], values: list[torch.Tensor],
               tokens: torch.Tensor, token_ids: torch.Tensor, first: torch.Tensor,
               col: torch.Tensor, gemv: bool = False, math_attention: bool = False
               ) -> torch.Tensor:
    """Feed one token per row at column ``col``; return the final-norm hidden state (B, E).

    The same arithmetic as ``GPT``'s blocks (pre-norm, fused attention, GELU MLP), written with
    the functional ops the modules call.

    Args:
        w: the model's tensors (``decode_weights``).
        keys: per layer, float (B, n_head, S, E / n_head), written at column ``col``.
        values: per layer, like ``keys``.
        tokens: int64 (B, S) token ids held by the cache, written at column ``col``.
        token_ids: int64 (B,) the token fed to each row.
        first: int64 (B,) each row's first owned column (its position 0).
        col: int64 (1,) the shared write column, a device tensor so shapes never change.
        gemv: write the linear layers as fused reductions (for a compiled step at batch 1).
        math_attention: write attention as products, a masked softmax and a sum, which a
            compiler fuses (at one query the fused SDPA kernel's own overhead dominates).

    Returns:
        float (B, E) hidden state after the final layer norm.
    """
    B, S = tokens.shape
    tokens.index_copy_(1, col, token_ids[:, None])
    pos = (col - first).clamp(min=0)  # B
    x = F.embedding(token_ids, w.wte) + F.embedding(pos, w.wpe)  # B, E
    E, nh = x.shape[-1], w.n_head
    keycols = torch.arange(S, device=tokens.device)
    # A row sees its own columns up to the write column; the rest of the capacity is masked.
    mask = ((keycols[None, :] >= first[:, None]) & (keycols[None, :] <= col))[:, None, None, :]
    for i, lw in enumerate(w.layers):
        h = F.layer_norm(x, (E,), lw.ln_1_w, lw.ln_1_b, w.eps)
        q, k, v = _linear(h, lw.attn_w, lw.attn_b, gemv).split(E, dim=1)
        q = q.view(B, nh, 1, E // nh)
        keys[i].index_copy_(2, col, k.view(B, nh, 1, E // nh).to(keys[i].dtype))
        values[i].index_copy_(2, col, v.view(B, nh, 1, E // nh).to(values[i].dtype))
        if math_attention:
            att = (q * keys[i]).sum(-1, keepdim=True) * (E // nh) ** -0.5  # B, nh, S, 1
            # a masked key gets -inf, so exp gives an exact 0 as in SDPA; a row always sees itself
            att = att.masked_fill(~mask.transpose(-1, -2), float("-inf")).softmax(2)
            y = (att * values[i]).sum(2, keepdim=True)  # B, nh, 1, hd
        else:
            y = F.scaled_dot_product_attention(q, keys[i], values[i], attn_mask=mask)
        x = x + _linear(y.reshape(B, E), lw.attn_proj_w, lw.attn_proj_b, gemv)
        h = F.layer_norm(x, (E,), lw.ln_2_w, lw.ln_2_b, w.eps)
        h = F.gelu(_linear(h, lw.fc_w, lw.fc_b, gemv))
        x = x + _linear(h, lw.mlp_proj_w, lw.mlp_proj_b, gemv)
    return F.layer_norm(x, (E,), w.ln_f_w, w.ln_f_b, w.eps)


def resolve_decode_mode(mode: str, device: torch.device) -> str:
    """The mode ``auto`` stands for on ``device`` (a CUDA graph on GPU, compiled on CPU)."""
    if mode not in DECODE_MODES:
        raise ValueError(f"decode mode must be one of {DECODE_MODES}, got {mode!r}")
    if mode == "auto":
        return "cuda-graph" if device.type == "cuda" else "compile"
    if mode == "cuda-graph" and device.type != "cuda":
        raise ValueError(f"decode mode 'cuda-graph' needs a CUDA device, the model is on {device}; "
                         "use 'compile' or 'eager'")
    return mode


class DecodeStep:
    """Callable ``step(token_ids (B,)) -> hidden (B, E)`` appending one token to every row.

    Args:
        gpt: the model (in eval mode).
        cache: the row cache it extends; its tensors are used in place, never reallocated.
        mode: ``eager``; ``compile`` (``torch.compile``, compiled on the first call);
            ``cuda-graph`` (captured on the first call, replayed after); ``auto``: a CUDA graph on
            GPU, compiled on CPU.
        autocast: a ``torch.autocast`` context the step runs under (bf16 with a bf16 cache;
            made with ``cache_enabled=False`` for a CUDA graph); None runs in the model's dtype.
        compile_after: in ``auto`` mode on CPU, tokens decoded eagerly before compiling (a
            compilation takes tens of seconds, so short runs and tests never pay for it).
    """

    def __init__(self, gpt: GPT, cache: RowKVCache, mode: str = "auto",
                 autocast: contextlib.AbstractContextManager | None = None,
                 compile_after: int = 4096):
        self.gpt, self.cache = gpt, cache
        self.device = cache.tokens.device
        self.mode = resolve_decode_mode(mode, self.device)
        self.compile_after = compile_after if mode == "auto" and self.mode == "compile" else 0
        self.tokens_decoded = 0
        """tokens fed so far (per row)"""
        self.weights = decode_weights(gpt)
        self.autocast = autocast or contextlib.nullcontext()
        self.col = torch.zeros(1, dtype=torch.long, device=self.device)
        self._ids = torch.zeros(cache.batch_size, dtype=torch.long, device=self.device)
        self._fn = self._compiled = decode_one
        if self.mode == "compile":
            fused = functools.partial(decode_one, math_attention=True,
                                      gemv=cache.batch_size == 1 and self.device.type == "cpu")
            # fullgraph: a graph break would bring back the per-op overhead this step removes
            self._compiled = torch.compile(fused, fullgraph=True, dynamic=False)
            if not self.compile_after:
                self._fn = self._compiled
        self._graph: torch.cuda.CUDAGraph | None = None
        self._out: torch.Tensor | None = None
        self.compile_seconds: float | None = None
        """wall time of the first compiled or captured call (compilation or capture included)"""

    def _run(self, token_ids: torch.Tensor) -> torch.Tensor:
        c = self.cache
        with self.autocast:
            return self._fn(self.weights, c.keys, c.values, c.tokens, token_ids, c.first, self.col)

    def _capture(self) -> None:
        """Record the step as a CUDA graph (after warm-up runs on a side stream)."""
        c = self.cache
        saved = ([k.clone() for k in c.keys], [v.clone() for v in c.values], c.tokens.clone())
        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream):
            for _ in range(2):
                self._run(self._ids)
        torch.cuda.current_stream(self.device).wait_stream(stream)
        self._graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self._graph):
            self._out = self._run(self._ids)
        for dst, src in zip(c.keys + c.values + [c.tokens], saved[0] + saved[1] + [saved[2]],
                            strict=True):
            dst.copy_(src)  # the warm-up and capture wrote the current column: undo it

    def _first_compiled_call(self, token_ids: torch.Tensor) -> torch.Tensor:
        """Run the first compiled call, or fall back to eager decoding if compilation fails.

        torch.compile needs a C++ compiler on CPU; without one the step warns and goes on eagerly,
        with the same outputs, only slower.
        """
        try:
            return self._run(token_ids)
        except Exception as e:  # any compiler failure: nothing has run yet
            warnings.warn(f"torch.compile of the decode step failed ({type(e).__name__}: {e}); "
                          "decoding eagerly instead (SimulatorConfig.decode='eager' skips the "
                          "attempt)", stacklevel=3)
            self.mode, self._fn = "eager", decode_one
            return self._run(token_ids)

    @torch.no_grad()
    def __call__(self, token_ids: torch.Tensor) -> torch.Tensor:
        """Append ``token_ids`` int64 (B,) at the cache's shared column; hidden float (B, E)."""
        c = self.cache
        if token_ids.shape != (c.batch_size,):
            raise ValueError(f"decode step feeds one token per row: expected shape "
                             f"({c.batch_size},), got {tuple(token_ids.shape)}")
        if c.length >= c.capacity:
            raise ValueError(f"the cache is full ({c.capacity} columns); slide it first")
        self.col.fill_(c.length)
        if self.compile_after and self.tokens_decoded >= self.compile_after:
            self._fn = self._compiled
        first = (self.mode != "eager" and self.compile_seconds is None
                 and (self.mode == "cuda-graph" or self._fn is self._compiled))
        start = time.perf_counter()
        if self.mode == "cuda-graph":
            self._ids.copy_(token_ids)
            if self._graph is None:
                self._capture()
            self._graph.replay()
            out = self._out.clone()
        elif first:
            out = self._first_compiled_call(token_ids)
        else:
            out = self._run(token_ids)
        if first:
            self.compile_seconds = time.perf_counter() - start
            logger.info("decode step (%s) ready in %.1f s", self.mode, self.compile_seconds)
        c.length += 1
        self.tokens_decoded += 1
        return out
