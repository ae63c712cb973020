"""GPT core: a GPT-2 style causal transformer with a KV cache for incremental decoding.

Pre-norm blocks, MLP 4x, learned absolute positions, PyTorch's fused attention
(``scaled_dot_product_attention``) and tied input/output token embeddings, as in nanoGPT.

Example:
    >>> import torch
    >>> cfg = GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=8, vocab_size=11)
    >>> model = GPT(cfg)
    >>> logits, loss = model(torch.zeros(2, 8, dtype=torch.long))
    >>> tuple(logits.shape), loss is None
    ((2, 8, 11), True)

Parameter counting (``num_params``) includes every embedding, following the paper's Section 3.4
(Pearce & Song 2024): N is all trainable parameters of the transformer.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class GPTConfig:
    """Shape of a GPT transformer."""

    n_layer: int = 2
    """number of transformer blocks"""
    n_head: int = 2
    """attention heads per block"""
    n_embd: int = 64
    """residual stream width (embedding dimension); the MLP is 4x wider"""
    block_size: int = 256
    """longest input sequence in tokens (positions have learned embeddings up to this)"""
    vocab_size: int = 512
    """number of token ids; 0 for a core fed with embeddings only (BC-CNN)"""
    dropout: float = 0.0
    """dropout probability on attention, residual and embedding outputs"""
    bias: bool = True
    """use biases in linear layers and layer norms (GPT-2 style)"""

    def __post_init__(self) -> None:
        for name in ("n_layer", "n_head", "n_embd", "block_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"GPTConfig.{name} must be a positive int, got {value!r}")
        if not isinstance(self.vocab_size, int) or self.vocab_size < 0:
            raise ValueError(f"GPTConfig.vocab_size must be an int >= 0, got {self.vocab_size!r}")
        if self.n_embd % self.n_head:
            raise ValueError(
                f"GPTConfig.n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head}); "
                "pick a width that is a multiple of the head count"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"GPTConfig.dropout must be in [0, 1), got {self.dropout!r}")

    def to_dict(self) -> dict:
        """JSON-able form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> GPTConfig:
        """Inverse of ``to_dict``; unknown keys raise ``ValueError``."""
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown GPTConfig keys {sorted(unknown)}; known: "
                             f"{sorted(cls.__dataclass_fields__)}")
        return cls(**d)


class LossOutput(NamedTuple):
    """What every trainable model's ``compute_loss(batch)`` returns (IRIS style).

    Attributes:
        loss: scalar tensor that is back-propagated (may include auxiliary heads).
        scaling_loss: scalar tensor, the cross-entropy the scaling laws are fitted to (logged as
            ``train/loss`` and ``val/loss``).
        metrics: further scalar tensors to log, keyed by short names (e.g. ``reward_loss``).
    """

    loss: torch.Tensor
    scaling_loss: torch.Tensor
    metrics: dict[str, torch.Tensor] = {}


@dataclass
class KVCache:
    """Keys and values of every layer for incremental decoding.

    Tensors are preallocated to ``block_size`` positions; ``length`` is the number of positions
    filled. Feed tokens with ``GPT.forward(..., cache=cache)``; they are appended. ``crop`` rolls
    the cache back (e.g. to re-sample a frame). Shapes: (B, n_head, block_size, E / n_head).
    """

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    length: int = 0
    extra: dict = field(default_factory=dict)

    @classmethod
    def empty(cls, config: GPTConfig, batch_size: int, device: torch.device | str | None = None,
              dtype: torch.dtype = torch.float32) -> KVCache:
        """A cache with room for ``config.block_size`` positions."""
        shape = (batch_size, config.n_head, config.block_size, config.n_embd // config.n_head)
        return cls(keys=[torch.zeros(shape, device=device, dtype=dtype)
                         for _ in range(config.n_layer)],
                   values=[torch.zeros(shape, device=device, dtype=dtype)
                           for _ in range(config.n_layer)])

    @property
    def batch_size(self) -> int:
        """Number of sequences held."""
        return self.keys[0].shape[0]

    @property
    def capacity(self) -> int:
        """Most positions the cache can hold (the model's block size)."""
        return self.keys[0].shape[2]

    def crop(self, length: int) -> None:
        """Forget every position from ``length`` on."""
        if not 0 <= length <= self.length:
            raise ValueError(f"crop length must be in [0, {self.length}], got {length}")
        self.length = length

    def reset(self) -> None:
        """Forget every position."""
        self.length = 0


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with fused SDPA and an optional KV cache."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_head = config.n_head
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, layer_cache: tuple[torch.Tensor, torch.Tensor] | None = None,
                start: int = 0) -> torch.Tensor:
        """Attend over ``x`` (B, L, E), after ``start`` cached positions when a cache is given."""
        B, L, E = x.shape
        q, k, v = self.c_attn(x).split(E, dim=2)
        q = q.view(B, L, self.n_head, E // self.n_head).transpose(1, 2)  # B, nh, L, hd
        k = k.view(B, L, self.n_head, E // self.n_head).transpose(1, 2)
        v = v.view(B, L, self.n_head, E // self.n_head).transpose(1, 2)
        dropout_p = self.dropout if self.training else 0.0
        if layer_cache is None or start == 0:
            if layer_cache is not None:
                layer_cache[0][:, :, :L] = k
                layer_cache[1][:, :, :L] = v
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)
        else:
            ck, cv = layer_cache
            ck[:, :, start:start + L] = k
            cv[:, :, start:start + L] = v
            k_all, v_all = ck[:, :, :start + L], cv[:, :, :start + L]
            # SDPA's is_causal aligns the mask top-left, wrong when queries follow cached keys:
            # query i (absolute position start + i) may see keys 0 .. start + i.
            mask = None
            if L > 1:
                mask = torch.ones(L, start + L, dtype=torch.bool, device=x.device).tril(start)
            y = F.scaled_dot_product_attention(q, k_all, v_all, attn_mask=mask,
                                               dropout_p=dropout_p)
        y = y.transpose(1, 2).contiguous().view(B, L, E)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    """Two-layer GELU MLP, 4x wider than the residual stream."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the MLP to (B, L, E)."""
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, layer_cache=None, start: int = 0) -> torch.Tensor:
        """Apply the block to (B, L, E)."""
        x = x + self.attn(self.ln_1(x), layer_cache, start)
        return x + self.mlp(self.ln_2(x))


class TransformerCore(nn.Module):
    """Positions, blocks and final norm: embeddings in, hidden states out (no vocabulary)."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.h = nn.ModuleList([Block(config) for _ in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """Hidden states (B, L, E) for input embeddings ``x`` (B, L, E).

        With a ``cache``, ``x`` continues the cached sequence and is appended to it.
        """
        L = x.shape[1]
        start = 0 if cache is None else cache.length
        if start + L > self.config.block_size:
            raise ValueError(
                f"sequence of {start + L} tokens (cached {start} + new {L}) exceeds the model's "
                f"block_size {self.config.block_size}; shorten the context or crop the cache"
            )
        if cache is not None and cache.batch_size != x.shape[0]:
            raise ValueError(f"cache holds {cache.batch_size} sequences but the input has "
                             f"{x.shape[0]}; make the cache with the same batch size")
        pos = torch.arange(start, start + L, device=x.device)
        x = self.drop(x + self.wpe(pos))
        for i, block in enumerate(self.h):
            layer_cache = None if cache is None else (cache.keys[i], cache.values[i])
            x = block(x, layer_cache, start)
        if cache is not None:
            cache.length = start + L
        return self.ln_f(x)


def init_weights(module: nn.Module, n_layer: int) -> None:
    """GPT-2 initialisation: N(0, 0.02), residual projections scaled by 1/sqrt(2 n_layer)."""
    for name, p in module.named_parameters():
        if p.dim() >= 2:
            std = 0.02 / math.sqrt(2 * n_layer) if name.endswith("c_proj.weight") else 0.02
            nn.init.normal_(p, mean=0.0, std=std)
        elif name.endswith("bias"):
            nn.init.zeros_(p)


class GPT(nn.Module):
    """Token-level GPT: token embedding (tied with the output head) + ``TransformerCore``."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        if config.vocab_size < 1:
            raise ValueError("GPT needs GPTConfig.vocab_size >= 1; use TransformerCore for "
                             "embedding inputs")
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.core = TransformerCore(config)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        init_weights(self, config.n_layer)
        self.lm_head.weight = self.wte.weight  # weight tying (nanoGPT); counted once in N

    def new_cache(self, batch_size: int, device=None, dtype: torch.dtype | None = None) -> KVCache:
        """An empty KV cache for ``batch_size`` sequences on the model's device."""
        p = self.wte.weight
        return KVCache.empty(self.config, batch_size, device or p.device, dtype or p.dtype)

    def hidden(self, idx: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """Final-norm hidden states (B, L, E) for token ids ``idx`` (B, L)."""
        return self.core(self.wte(idx), cache)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None,
                cache: KVCache | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits (B, L, V) for ``idx`` (B, L); mean cross-entropy when ``targets`` (B, L) given.

        Targets equal to -1 are ignored. With a ``cache`` the tokens continue the cached sequence.
        """
        logits = self.lm_head(self.hidden(idx, cache))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(),
                                   targets.reshape(-1), ignore_index=-1)
        return logits, loss

    def num_params(self) -> int:
        """N: every trainable parameter, embeddings included (tied weights counted once)."""
        return count_params(self)


def count_params(module: nn.Module) -> int:
    """Number of distinct trainable parameters of ``module`` (shared tensors counted once)."""
    seen, total = set(), 0
    for p in module.parameters():
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total


def configure_optimizer(model: nn.Module, learning_rate: float, weight_decay: float,
                        betas: tuple[float, float], fused: bool | None = None
                        ) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (nanoGPT).

    Weight decay applies to parameters with 2 or more dimensions (linear weights, embeddings);
    biases and layer-norm gains are not decayed.
    """
    params = {}
    for p in model.parameters():
        if p.requires_grad:
            params[id(p)] = p
    decay = [p for p in params.values() if p.dim() >= 2]
    no_decay = [p for p in params.values() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    kwargs = {}
    if fused is not None:
        kwargs["fused"] = fused
    return torch.optim.AdamW(groups, lr=learning_rate, betas=betas, **kwargs)
