"""WM-Token and BC-Token: one GPT over the interleaved token stream, the task picks the loss.

Each timestep is ``[z_t^1 .. z_t^dz, a_t^1 .. a_t^da]`` in global ids (``offline_data.tokens``'s
``TokenLayout``). WM-Token is trained on the next-token cross-entropy of image tokens only, BC-Token
on action tokens only (3% vs 97% of targets at d_z=540, d_a=16). Optional reward and termination
heads (IRIS style: reward sign in {-1, 0, +1} and terminated in {no, yes} as classes) read the
hidden state at the last action token of each step, so a trained world model can serve as an env.

Example:
    >>> from worldmodels.gpt import GPTConfig
    >>> cfg = TokenModelConfig(gpt=GPTConfig(n_layer=1, n_head=1, n_embd=8, block_size=12,
    ...                        vocab_size=20), task="wm", tokens_per_frame=4, image_vocab=16,
    ...                        action_vocab_sizes=(4,))
    >>> TokenModel(cfg).tokens_per_step
    5
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from offline_data.atomic import atomic_file
from offline_data.tokens import TokenLayout
from worldmodels.checkpoint import register_model_kind
from worldmodels.gpt import GPT, GPTConfig, KVCache, LossOutput
from worldmodels.presets import transformer_params

TASKS = ("wm", "bc")


@dataclass
class TokenModelConfig:
    """A token-sequence model: GPT shape, token layout, task and auxiliary heads."""

    gpt: GPTConfig = field(default_factory=GPTConfig)
    """transformer shape; vocab_size must equal image_vocab + sum(action_vocab_sizes)"""
    task: str = "wm"
    """'wm' (loss on image tokens: WM-Token) or 'bc' (loss on action tokens: BC-Token)"""
    tokens_per_frame: int = 16
    """d_z: image tokens per frame"""
    image_vocab: int = 256
    """V_o: image codebook size"""
    action_vocab_sizes: tuple[int, ...] = (4,)
    """vocabulary of each action dimension (d_a entries)"""
    reward_head: bool = False
    """train a reward-sign head (classes -1, 0, +1) at each step's last action token"""
    termination_head: bool = False
    """train a termination head (classes no, yes) at each step's last action token"""
    aux_loss_weight: float = 1.0
    """weight of the reward and termination cross-entropies in the back-propagated loss"""

    def __post_init__(self) -> None:
        if isinstance(self.gpt, dict):
            self.gpt = GPTConfig.from_dict(self.gpt)
        self.action_vocab_sizes = tuple(int(v) for v in self.action_vocab_sizes)
        if self.task not in TASKS:
            raise ValueError(f"TokenModelConfig.task must be one of {TASKS}, got {self.task!r}")
        if self.tokens_per_frame < 1 or self.image_vocab < 1:
            raise ValueError(f"TokenModelConfig.tokens_per_frame and image_vocab must be >= 1, got "
                             f"{self.tokens_per_frame}, {self.image_vocab}")
        if not self.action_vocab_sizes or min(self.action_vocab_sizes) < 1:
            raise ValueError("TokenModelConfig.action_vocab_sizes must hold one vocabulary >= 1 "
                             f"per action dimension, got {self.action_vocab_sizes}")
        vocab = self.image_vocab + sum(self.action_vocab_sizes)
        if self.gpt.vocab_size != vocab:
            raise ValueError(
                f"GPTConfig.vocab_size is {self.gpt.vocab_size} but the token layout needs "
                f"image_vocab + sum(action_vocab_sizes) = {vocab}; build the model from the token "
                "shard header (TokenModelConfig.for_layout)"
            )
        if self.gpt.block_size < self.tokens_per_step:
            raise ValueError(f"GPTConfig.block_size {self.gpt.block_size} is shorter than one "
                             f"timestep ({self.tokens_per_step} tokens)")
        if self.aux_loss_weight < 0:
            raise ValueError(f"TokenModelConfig.aux_loss_weight must be >= 0, got "
                             f"{self.aux_loss_weight}")

    @property
    def layout(self) -> TokenLayout:
        """The token layout the model reads (d_z, V_o, action vocabularies)."""
        return TokenLayout(self.tokens_per_frame, self.image_vocab, self.action_vocab_sizes)

    @property
    def tokens_per_step(self) -> int:
        """d_z + d_a."""
        return self.layout.tokens_per_step

    @property
    def context_steps(self) -> int:
        """Whole timesteps that fit in the block size."""
        return self.gpt.block_size // self.tokens_per_step

    def num_params(self) -> int:
        """N of the ``TokenModel`` this config builds, counted from shapes (no module is built).

        The transformer with its embeddings, as ``TokenModel.num_params``: the reward and
        termination heads are not part of N.
        """
        g = self.gpt
        return transformer_params(g.n_layer, g.n_embd, g.block_size, g.vocab_size, g.bias)

    def to_dict(self) -> dict:
        """JSON-able form."""
        d = asdict(self)
        d["action_vocab_sizes"] = list(self.action_vocab_sizes)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TokenModelConfig:
        """Inverse of ``to_dict``; unknown keys raise ``ValueError``."""
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown TokenModelConfig keys {sorted(unknown)}")
        return cls(**d)

    @classmethod
    def for_layout(cls, layout, n_layer: int, n_head: int, n_embd: int, seq_len: int,
                   task: str = "wm", **kwargs) -> TokenModelConfig:
        """Config for a ``TokenLayout`` and ``seq_len`` steps of context (block = T (d_z + d_a))."""
        gpt = GPTConfig(n_layer=n_layer, n_head=n_head, n_embd=n_embd,
                        block_size=seq_len * layout.tokens_per_step, vocab_size=layout.vocab_size,
                        **{k: kwargs.pop(k) for k in ("dropout", "bias") if k in kwargs})
        return cls(gpt=gpt, task=task, tokens_per_frame=layout.tokens_per_frame,
                   image_vocab=layout.image_vocab,
                   action_vocab_sizes=tuple(layout.action_vocab_sizes), **kwargs)


class StepOutput(NamedTuple):
    """Outputs at each fed position."""

    logits: torch.Tensor  # float (B, L, V) next-token logits
    reward_logits: torch.Tensor | None  # float (B, L, 3) classes reward < 0, == 0, > 0
    termination_logits: torch.Tensor | None  # float (B, L, 2) classes continue, terminated


def _head(n_embd: int, classes: int) -> nn.Module:
    return nn.Sequential(nn.Linear(n_embd, n_embd), nn.ReLU(), nn.Linear(n_embd, classes))


class TokenModel(nn.Module):
    """GPT over interleaved image/action tokens with a task-chosen loss mask."""

    def __init__(self, config: TokenModelConfig):
        super().__init__()
        self.config = config
        self.gpt = GPT(config.gpt)
        E = config.gpt.n_embd
        self.reward_head = _head(E, 3) if config.reward_head else None
        self.termination_head = _head(E, 2) if config.termination_head else None
        K = self.tokens_per_step
        image = np.arange(K) < config.tokens_per_frame
        # Positions (within a window of block_size tokens) whose next token is a loss target.
        target_is_image = np.tile(image, config.gpt.block_size // K + 1)[1:config.gpt.block_size]
        wanted = target_is_image if config.task == "wm" else ~target_is_image
        self.register_buffer("_loss_positions", torch.from_numpy(np.flatnonzero(wanted)),
                             persistent=False)

    @property
    def tokens_per_step(self) -> int:
        """d_z + d_a."""
        return self.config.tokens_per_step

    @property
    def image_vocab(self) -> int:
        """V_o."""
        return self.config.image_vocab

    @property
    def action_offsets(self) -> tuple[int, ...]:
        """First global id of each action dimension."""
        offsets = np.cumsum([self.config.image_vocab, *self.config.action_vocab_sizes])
        return tuple(int(o) for o in offsets[:-1])

    def num_params(self) -> int:
        """N of the transformer (embeddings included); reward/termination heads excluded."""
        return self.gpt.num_params()

    def compute_loss(self, batch) -> LossOutput:
        """Loss on a ``TokenBatch`` (tokens (B, L) with L = T * (d_z + d_a)).

        ``scaling_loss`` is the mean next-token cross-entropy over the task's targets (image tokens
        for 'wm', action tokens for 'bc'); ``loss`` adds the weighted auxiliary head losses.
        """
        tokens = batch.tokens
        B, L = tokens.shape
        K = self.tokens_per_step
        if L % K:
            raise ValueError(f"token windows of length {L} are not whole timesteps of {K} tokens; "
                             "the shard layout does not match the model")
        hidden = self.gpt.hidden(tokens)  # B, L, E
        pos = self._loss_positions[self._loss_positions < L - 1]
        logits = self.gpt.lm_head(hidden[:, pos])  # B, P, V
        targets = tokens[:, pos + 1]
        ce = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1))
        metrics: dict[str, torch.Tensor] = {}
        loss = ce
        if self.reward_head is not None or self.termination_head is not None:
            step_end = hidden[:, K - 1::K]  # B, T, E: hidden state at each step's last action
            if self.reward_head is not None:
                reward_cls = torch.sign(batch.rewards.float()).long() + 1  # B, T in {0, 1, 2}
                r_loss = F.cross_entropy(self.reward_head(step_end).reshape(-1, 3).float(),
                                         reward_cls.reshape(-1))
                metrics["reward_loss"] = r_loss.detach()
                loss = loss + self.config.aux_loss_weight * r_loss
            if self.termination_head is not None:
                term_cls = batch.terminations.long()
                t_loss = F.cross_entropy(
                    self.termination_head(step_end).reshape(-1, 2).float(), term_cls.reshape(-1))
                metrics["termination_loss"] = t_loss.detach()
                loss = loss + self.config.aux_loss_weight * t_loss
        return LossOutput(loss=loss, scaling_loss=ce.detach(), metrics=metrics)

    # ----- incremental decoding (world-model environments, BC-Token policies) -----

    def new_cache(self, batch_size: int, device=None) -> KVCache:
        """An empty KV cache for ``batch_size`` sequences."""
        return self.gpt.new_cache(batch_size, device)

    @torch.no_grad()
    def forward_with_cache(self, idx: torch.Tensor, cache: KVCache) -> StepOutput:
        """Append global token ids ``idx`` (B, L) to ``cache``; outputs at each new position.

        The reward/termination logits are meaningful at a step's last action token (they predict
        the reward and termination that follow that action).
        """
        hidden = self.gpt.hidden(idx, cache)
        return StepOutput(
            logits=self.gpt.lm_head(hidden),
            reward_logits=None if self.reward_head is None else self.reward_head(hidden),
            termination_logits=(None if self.termination_head is None
                                else self.termination_head(hidden)),
        )

    @torch.no_grad()
    def _sample_range(self, logits: torch.Tensor, lo: int, hi: int, temperature: float,
                      top_k: int | None, generator: torch.Generator | None) -> torch.Tensor:
        """Sample ids in [lo, hi) from logits (B, V); returns global ids (B,)."""
        sub = logits[:, lo:hi].float()
        if temperature <= 0:
            return sub.argmax(-1) + lo
        sub = sub / temperature
        if top_k is not None and top_k < sub.shape[-1]:
            kth = torch.topk(sub, top_k, dim=-1).values[:, -1:]
            sub = sub.masked_fill(sub < kth, float("-inf"))
        probs = torch.softmax(sub, dim=-1)
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1) + lo

    @torch.no_grad()
    def sample_frame(self, logits: torch.Tensor, cache: KVCache, temperature: float = 1.0,
                     top_k: int | None = None, generator: torch.Generator | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """Generate the d_z image tokens of the next frame autoregressively, feeding each one.

        Args:
            logits: (B, V) next-token logits at the cache's last position (the step's last action
                token, or the start of a frame).
            cache: KV cache, extended by d_z positions.
            temperature: softmax temperature; <= 0 means greedy.
            top_k: keep only the k most likely image tokens.
            generator: torch random generator for reproducible sampling.

        Returns:
            ``(frame_tokens, next_logits)``: int64 (B, d_z) image ids in [0, V_o), and (B, V)
            logits after the last image token (they predict the first action token).
        """
        tokens = []
        for _ in range(self.config.tokens_per_frame):
            tok = self._sample_range(logits, 0, self.image_vocab, temperature, top_k, generator)
            tokens.append(tok)
            logits = self.forward_with_cache(tok[:, None], cache).logits[:, -1]
        return torch.stack(tokens, 1), logits

    @torch.no_grad()
    def sample_action(self, logits: torch.Tensor, cache: KVCache, temperature: float = 1.0,
                      top_k: int | None = None, generator: torch.Generator | None = None
                      ) -> tuple[torch.Tensor, StepOutput]:
        """Generate the d_a action tokens (each in its own id range), feeding each one.

        Args:
            logits: (B, V) logits after the frame's last image token.
            cache: KV cache, extended by d_a positions.
            temperature: softmax temperature; <= 0 means greedy.
            top_k: keep only the k most likely ids of each dimension.
            generator: torch random generator for reproducible sampling.

        Returns:
            ``(action_tokens, out)``: int64 (B, d_a) local action ids per dimension, and the
            ``StepOutput`` of the last fed token (next-frame logits, reward/termination logits).
        """
        tokens, out = [], None
        for lo, size in zip(self.action_offsets, self.config.action_vocab_sizes, strict=True):
            tok = self._sample_range(logits, lo, lo + size, temperature, top_k, generator)
            tokens.append(tok - lo)
            out = self.forward_with_cache(tok[:, None], cache)
            logits = out.logits[:, -1]
        return torch.stack(tokens, 1), out

    def action_to_global(self, action_tokens: torch.Tensor) -> torch.Tensor:
        """Local per-dimension action ids (B, d_a) -> global ids (B, d_a)."""
        offsets = torch.tensor(self.action_offsets, device=action_tokens.device)
        return action_tokens.long() + offsets


def save_token_model(model: TokenModel, path: str | os.PathLike) -> None:
    """Write weights + config to ``path`` atomically (a trainer checkpoint loads the same way)."""
    with atomic_file(path) as tmp:
        torch.save({"model": model.state_dict(), "model_kind": "token_model",
                    "model_config": model.config.to_dict()}, tmp)


def _role(model_config: dict) -> tuple[str, str]:
    if model_config.get("task") == "wm":
        return "WM-Token world model", "world model"
    return "BC-Token policy", "policy"


register_model_kind("token_model", lambda cfg: TokenModel(TokenModelConfig.from_dict(cfg)),
                    _role)
