"""The arithmetic of cached decoding, as functions of tensors: one token, or one imagined step.

:func:`decode_one` feeds one token per row into a ``RowKVCache`` with fixed shapes (it attends
over the cache's full capacity, masking the columns a row does not own), so that it can be
compiled or captured once; :func:`decode_frame` chains it over a step's action tokens and the
next frame's image tokens, sampling each image token on the device with
:func:`sample_image_ids` (the Gumbel-max trick). ``worldmodels.decode_step.DecodeStep`` runs
them over a cache.

The linear layers call the BLAS (``F.linear``) at every batch size. Written instead as broadcast
multiply-and-sum reductions that the compiler fuses into its own loops, a compiled frame step at
batch 1 on one CPU thread (torch 2.13, 16 tokens per frame, context 170; best of 5 x 100 calls)
took 3.04-3.06 ms at s300k against 1.49-1.55 ms with the BLAS in two alternated runs each, and
1.42 against 0.96 ms at s100k and 11.0 against 5.9 ms at s1M in one run each; at s10k (0.30
against 0.29 ms) the two were not told apart.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F

from worldmodels.decode_attention import DEFAULT_CONFIG, KernelConfig, decode_attention
from worldmodels.gpt import GPT


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


def owned_mask(first: torch.Tensor, col: torch.Tensor, width: int) -> torch.Tensor:
    """Bool (B, 1, 1, width): the columns ``[first[b], col]`` each row attends to."""
    cols = torch.arange(width, device=first.device)
    return ((cols[None, :] >= first[:, None]) & (cols[None, :] <= col))[:, None, None, :]


def attend(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, first: torch.Tensor,
           col: torch.Tensor, mask: torch.Tensor, attention: str = "sdpa",
           kernel: KernelConfig = DEFAULT_CONFIG) -> torch.Tensor:
    """One query per row over its owned columns of one layer's cache: (B, n_head, 1, head).

    Args:
        q: (B, n_head, 1, head) queries.
        keys: (B, n_head, S, head) the layer's cached keys (or a view of its first S columns).
        values: like ``keys``.
        first: int64 (B,) each row's first owned column.
        col: int64 (1,) the column just written, the last each row attends to.
        mask: :func:`owned_mask` of ``first``, ``col`` and ``S`` (the Triton kernel ignores it).
        attention: ``sdpa``, ``reductions`` or ``triton``, as :func:`decode_one` describes them.
        kernel: the Triton kernel's launch (``attention="triton"`` only).
    """
    if attention == "reductions":
        att = (q * keys).sum(-1, keepdim=True) * q.shape[-1] ** -0.5  # B, nh, S, 1
        # a masked key gets -inf, so exp gives an exact 0 as in SDPA; a row always sees itself
        att = att.masked_fill(~mask.transpose(-1, -2), float("-inf")).softmax(2)
        return (att * values).sum(2, keepdim=True)  # B, nh, 1, hd
    if attention == "triton":
        return decode_attention(q.to(keys.dtype), keys, values, first, col, kernel)
    return F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)


def decode_one(w: DecodeWeights, keys: list[torch.Tensor], values: list[torch.Tensor],
               tokens: torch.Tensor, token_ids: torch.Tensor, first: torch.Tensor,
               col: torch.Tensor, attention: str = "sdpa", kernel: KernelConfig = DEFAULT_CONFIG
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
        attention: how the token attends over its row's columns: ``sdpa`` (PyTorch's
            ``scaled_dot_product_attention`` with a mask); ``reductions`` (products, a masked
            softmax and a sum, which a compiler fuses: at one query the fused SDPA kernel's own
            overhead dominates); ``triton`` (the split-K kernel of
            :mod:`worldmodels.decode_attention`, CUDA, which reads only the owned columns).
        kernel: that kernel's launch (``decode_attention.KernelConfig``).

    Returns:
        float (B, E) hidden state after the final layer norm.
    """
    B, S = tokens.shape
    tokens.index_copy_(1, col, token_ids[:, None])
    pos = (col - first).clamp(min=0)  # B
    x = F.embedding(token_ids, w.wte) + F.embedding(pos, w.wpe)  # B, E
    E, nh = x.shape[-1], w.n_head
    # A row sees its own columns up to the write column; the rest of the capacity is masked.
    mask = owned_mask(first, col, S)
    for i, lw in enumerate(w.layers):
        h = F.layer_norm(x, (E,), lw.ln_1_w, lw.ln_1_b, w.eps)
        q, k, v = F.linear(h, lw.attn_w, lw.attn_b).split(E, dim=1)
        q = q.view(B, nh, 1, E // nh)
        keys[i].index_copy_(2, col, k.view(B, nh, 1, E // nh).to(keys[i].dtype))
        values[i].index_copy_(2, col, v.view(B, nh, 1, E // nh).to(values[i].dtype))
        y = attend(q, keys[i], values[i], first, col, mask, attention, kernel)
        x = x + F.linear(y.reshape(B, E), lw.attn_proj_w, lw.attn_proj_b)
        h = F.layer_norm(x, (E,), lw.ln_2_w, lw.ln_2_b, w.eps)
        h = F.gelu(F.linear(h, lw.fc_w, lw.fc_b))
        x = x + F.linear(h, lw.mlp_proj_w, lw.mlp_proj_b)
    return F.layer_norm(x, (E,), w.ln_f_w, w.ln_f_b, w.eps)


def sample_image_ids(logits: torch.Tensor, uniforms: torch.Tensor | None, image_vocab: int,
                     temperature: float = 1.0, top_k: int | None = None) -> torch.Tensor:
    """Sample an image id in ``[0, image_vocab)`` per row with the Gumbel-max trick.

    ``argmax(logits / T + g)`` with Gumbel noise ``g = -log(-log(u))`` draws each id with its
    softmax probability, as ``torch.multinomial`` does; but the randomness comes in as
    ``uniforms`` drawn beforehand, and the draw is a single reduction: a compiled step samples
    on the device without a cumulative sum or a generator, and every decoding path turns the same
    uniforms into the same ids.

    Args:
        logits: float (B, V) next-token logits; the first ``image_vocab`` are image ids.
        uniforms: float (B, image_vocab) in [0, 1), one per row and id; unused (may be None)
            when greedy.
        image_vocab: V_o, the number of image ids.
        temperature: softmax temperature; 0 takes the most likely id.
        top_k: sample among the k most likely ids only (None: all).

    Returns:
        int64 (B,) image ids.

    >>> u = torch.rand(1, 2, generator=torch.Generator().manual_seed(0))
    >>> sample_image_ids(torch.tensor([[0.0, 2.0, -9.0]]), u, 2, top_k=1)
    tensor([1])
    """
    sub = logits[:, :image_vocab].float()
    if temperature == 0:
        return sub.argmax(-1)
    sub = sub / temperature
    if top_k is not None and top_k < image_vocab:
        kth = torch.topk(sub, top_k, dim=-1).values[:, -1:]
        sub = sub.masked_fill(sub < kth, float("-inf"))
    return (sub - torch.log(-torch.log(uniforms))).argmax(-1)


def sample_frame(hidden: torch.Tensor, feed: Callable[[int, torch.Tensor], torch.Tensor],
                 logits_of: Callable[[torch.Tensor], torch.Tensor],
                 uniforms: torch.Tensor | None, image_vocab: int, tokens_per_frame: int,
                 temperature: float = 1.0, top_k: int | None = None) -> torch.Tensor:
    """Sample a frame's image tokens one by one, feeding each (the last one too).

    Every decoding path runs this loop with its own way of feeding a token: the compiled step
    (:func:`decode_frame`), a CUDA graph per token, the variable-shape cached path and full
    recompute.

    Args:
        hidden: float (B, E) hidden state after the step's last action token.
        feed: ``feed(k, ids)`` appends image token ``k`` (int64 (B,)) and returns the hidden
            state (B, E) after it.
        logits_of: next-token logits (B, V) of a hidden state.
        uniforms: float (B, tokens_per_frame, image_vocab) in [0, 1) (None if greedy).
        image_vocab: V_o, the number of image ids.
        tokens_per_frame: image tokens per frame.
        temperature: softmax temperature; 0 samples greedily.
        top_k: sample among the k most likely ids only (None: all).

    Returns:
        int64 (B, tokens_per_frame) image ids.
    """
    out = []
    for k in range(tokens_per_frame):
        tok = sample_image_ids(logits_of(hidden), None if uniforms is None else uniforms[:, k],
                               image_vocab, temperature, top_k)
        out.append(tok)
        hidden = feed(k, tok)
    return torch.stack(out, 1)


def decode_frame(w: DecodeWeights, keys: list[torch.Tensor], values: list[torch.Tensor],
                 tokens: torch.Tensor, first: torch.Tensor, col: torch.Tensor,
                 action_ids: torch.Tensor, uniforms: torch.Tensor | None, image_vocab: int,
                 tokens_per_frame: int, temperature: float = 1.0, top_k: int | None = None,
                 attention: str = "sdpa", kernel: KernelConfig = DEFAULT_CONFIG
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Feed a step's action tokens, then sample and feed the next frame's image tokens.

    ``d_a + tokens_per_frame`` calls of :func:`decode_one` from column ``col`` on, with sampling
    (:func:`sample_image_ids`) in between: one imagined step of every row, with nothing asked of
    the host, so that a compiler turns the whole step into one call.

    Args:
        w: the model's tensors (``decode_weights``).
        keys: per layer, float (B, n_head, S, E / n_head), written from column ``col`` on.
        values: per layer, like ``keys``.
        tokens: int64 (B, S) token ids held by the cache, written from column ``col`` on.
        first: int64 (B,) each row's first owned column.
        col: int64 (1,) the column of the first action token.
        action_ids: int64 (B, d_a) global action ids.
        uniforms: float (B, tokens_per_frame, image_vocab) in [0, 1) (None if greedy).
        image_vocab: V_o, the number of image ids.
        tokens_per_frame: image tokens per frame (the paper's d_z).
        temperature: softmax temperature; 0 samples greedily.
        top_k: sample among the k most likely ids only (None: all).
        attention: how each token attends (see :func:`decode_one`).
        kernel: the Triton kernel's launch (see :func:`decode_one`).

    Returns:
        ``(frame_tokens, hidden)``: int64 (B, tokens_per_frame) image ids, and the hidden state
        (B, E) at the last action token (what the reward and termination heads read).
    """
    def feed(ids: torch.Tensor, at: torch.Tensor) -> torch.Tensor:
        return decode_one(w, keys, values, tokens, ids, first, at, attention=attention,
                          kernel=kernel)

    hidden = None
    for j in range(action_ids.shape[1]):
        hidden = feed(action_ids[:, j], col + j)
    col = col + action_ids.shape[1]
    z = sample_frame(hidden, lambda k, ids: feed(ids, col + k),
                     lambda h: F.linear(h, w.wte),  # the head is tied to wte
                     uniforms, image_vocab, tokens_per_frame, temperature, top_k)
    return z, hidden
