"""BC-CNN: a CNN per frame, a causal GPT core over frame embeddings, one head per action dimension.

A small CNN embeds each frame, the transformer reads one embedding per timestep, and independent
categorical heads predict every action dimension in one forward pass.

The CNN has Impala-style stages (conv, max-pool, two blocks per stage; Espeholt et al. 2018, as in
VPT), followed by average pooling to a small grid, a linear layer to ``cnn_embd`` and a linear map
to the transformer width. Its blocks are residual 3x3 conv pairs (``cnn_block="impala"``, the
default, VPT's) or ConvNeXt blocks (``cnn_block="convnext"``, the paper's Appendix A.1 choice);
see ``agents.bc_cnn_nets``. D counts one input per timestep and N includes the CNN (paper
Section 3.4).

Example:
    data = FrameDataSource("embscale/breakout/scripted-v2", seq_len=10)  # agents.frame_data
    model = BCCNN(data.model_config(n_layer=2, n_head=2, n_embd=64))
    # train with worldmodels.trainer.Trainer(model, data, TrainConfig(...))
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from agents.bc_cnn_nets import FrameCNN
from agents.bc_cnn_shapes import (
    CNN_BLOCKS,
    DEFAULT_CNN_BLOCK,
    PAPER_CNN,
    CNNShape,
    bc_cnn_params,
    ladder_cnn,
)
from offline_data.atomic import atomic_file
from worldmodels.checkpoint import register_model_kind
from worldmodels.gpt import GPTConfig, LossOutput, TransformerCore, count_params, init_weights

logger = logging.getLogger(__name__)


@dataclass
class BCCNNConfig:
    """Shape of a BC-CNN model."""

    gpt: GPTConfig = field(default_factory=lambda: GPTConfig(vocab_size=0, block_size=10))
    """transformer core (vocab_size 0: it reads frame embeddings); block_size = max timesteps"""
    action_vocab_sizes: tuple[int, ...] = (4,)
    """classes of each action dimension (one head each)"""
    image_size: int = 64
    """frames are resized to image_size x image_size before the CNN (pixels)"""
    cnn_channels: tuple[int, ...] = PAPER_CNN.channels
    """channels of each CNN stage (each halves the resolution)"""
    cnn_pool: int = PAPER_CNN.pool
    """the last stage is average-pooled to cnn_pool x cnn_pool"""
    cnn_embd: int = PAPER_CNN.embd
    """CNN output embedding, then mapped linearly to the transformer width (paper: 1024)"""
    cnn_block: str = DEFAULT_CNN_BLOCK
    """blocks of each CNN stage: "impala" (residual 3x3 convs, VPT) or "convnext" (the paper's)"""

    def __post_init__(self) -> None:
        if isinstance(self.gpt, dict):
            self.gpt = GPTConfig.from_dict(self.gpt)
        self.action_vocab_sizes = tuple(int(v) for v in self.action_vocab_sizes)
        self.cnn_channels = tuple(int(c) for c in self.cnn_channels)
        if not self.action_vocab_sizes or min(self.action_vocab_sizes) < 1:
            raise ValueError("BCCNNConfig.action_vocab_sizes needs one size >= 1 per action "
                             f"dimension, got {self.action_vocab_sizes}")
        if self.cnn_block not in CNN_BLOCKS:
            raise ValueError(f"BCCNNConfig.cnn_block={self.cnn_block!r}; choose one of "
                             f"{', '.join(CNN_BLOCKS)}")
        if not self.cnn_channels or min(self.cnn_channels) < 1:
            raise ValueError(f"BCCNNConfig.cnn_channels must be positive, got {self.cnn_channels}")
        if self.image_size < 2 ** len(self.cnn_channels):
            raise ValueError(f"BCCNNConfig.image_size {self.image_size} is too small for "
                             f"{len(self.cnn_channels)} stages that each halve it")
        for name in ("cnn_pool", "cnn_embd"):
            if getattr(self, name) < 1:
                raise ValueError(f"BCCNNConfig.{name} must be >= 1, got {getattr(self, name)}")

    def num_params(self) -> int:
        """N of the ``BCCNN`` this config builds, counted from shapes (no module is built)."""
        return bc_cnn_params(self.gpt.n_layer, self.gpt.n_embd, self.gpt.block_size,
                             self.action_vocab_sizes,
                             CNNShape(self.cnn_channels, self.cnn_pool, self.cnn_embd),
                             self.cnn_block, bias=self.gpt.bias)

    def to_dict(self) -> dict:
        """JSON-able form."""
        d = asdict(self)
        d["action_vocab_sizes"] = list(self.action_vocab_sizes)
        d["cnn_channels"] = list(self.cnn_channels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> BCCNNConfig:
        """Inverse of ``to_dict``; unknown keys raise ``ValueError``."""
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown BCCNNConfig keys {sorted(unknown)}")
        return cls(**d)

    @classmethod
    def for_width(cls, n_layer: int, n_head: int, n_embd: int, seq_len: int,
                  action_vocab_sizes, image_size: int = 64, **kwargs) -> BCCNNConfig:
        """A config whose CNN scales with the transformer width (the small CPU ladder's rule)."""
        shape = ladder_cnn(n_embd)
        cnn = {"cnn_channels": shape.channels, "cnn_embd": shape.embd}
        cnn.update(kwargs)
        return cls(gpt=GPTConfig(n_layer=n_layer, n_head=n_head, n_embd=n_embd,
                                 block_size=seq_len, vocab_size=0),
                   action_vocab_sizes=tuple(action_vocab_sizes), image_size=image_size, **cnn)


class BCCNN(nn.Module):
    """Behaviour cloning from frames: CNN per frame -> GPT core -> one head per action dimension."""

    def __init__(self, config: BCCNNConfig):
        super().__init__()
        self.config = config
        self.cnn = FrameCNN(config.cnn_channels, config.cnn_pool, config.cnn_embd,
                            config.cnn_block)
        self.proj = nn.Linear(config.cnn_embd, config.gpt.n_embd)
        self.core = TransformerCore(config.gpt)
        self.heads = nn.Linear(config.gpt.n_embd, sum(config.action_vocab_sizes))
        init_weights(self.core, config.gpt.n_layer)

    def num_params(self) -> int:
        """N: every trainable parameter, the CNN included (paper Section 3.4)."""
        return count_params(self)

    def embed(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames (B, T, H, W, 3) -> transformer inputs (B, T, E).

        ``frames`` are uint8 of any size (resized here to ``image_size``), or floating pixel
        values (0-255) already at ``image_size``, as :func:`resize_frames` stores them.
        """
        B, T = frames.shape[:2]
        x = frames.reshape(B * T, *frames.shape[2:]).permute(0, 3, 1, 2).float() / 255.0
        size = self.config.image_size
        if x.shape[-2:] != (size, size):
            if frames.is_floating_point():
                raise ValueError(f"float frames of {tuple(x.shape[-2:])} pixels, but the model "
                                 f"reads {size}x{size}: pass uint8 frames (resized here) or "
                                 "frames from resize_frames(frames, image_size)")
            x = F.interpolate(x, size=(size, size), mode="area")
        return self.proj(self.cnn(x)).view(B, T, -1)

    def forward(self, frames: torch.Tensor) -> list[torch.Tensor]:
        """Action logits per dimension, each (B, T, vocab_j), for uint8 frames (B, T, H, W, 3).

        Position t sees frames 0..t (causal) and predicts the action taken on frame t.
        """
        if frames.shape[1] > self.config.gpt.block_size:
            raise ValueError(f"{frames.shape[1]} timesteps exceed the model's context of "
                             f"{self.config.gpt.block_size}; pass at most that many frames")
        return self.logits_from_embeddings(self.embed(frames))

    def logits_from_embeddings(self, embeddings: torch.Tensor) -> list[torch.Tensor]:
        """Action logits per dimension for frame embeddings (B, T, E) from :meth:`embed`.

        The CNN sees each frame alone, so a policy can embed every frame once and keep the
        embeddings of its context instead of re-running the CNN over the whole window.
        """
        hidden = self.core(embeddings)
        return list(self.heads(hidden).split(list(self.config.action_vocab_sizes), dim=-1))

    def compute_loss(self, batch) -> LossOutput:
        """Mean over action dimensions of the cross-entropy of each head (FrameBatch input)."""
        logits = self(batch.frames)
        actions = batch.actions.long()  # B, T, d_a
        losses = [F.cross_entropy(lg.reshape(-1, lg.shape[-1]).float(),
                                  actions[..., j].reshape(-1)) for j, lg in enumerate(logits)]
        loss = torch.stack(losses).mean()
        return LossOutput(loss=loss, scaling_loss=loss.detach(), metrics={})

    @torch.no_grad()
    def predict_actions(self, frames: torch.Tensor, deterministic: bool = True,
                        generator: torch.Generator | None = None) -> torch.Tensor:
        """Action ids (B, d_a) for the last frame of each context (B, T, H, W, 3)."""
        out = []
        for lg in self(frames):
            last = lg[:, -1].float()
            if deterministic:
                out.append(last.argmax(-1))
            else:
                out.append(torch.multinomial(torch.softmax(last, -1), 1,
                                             generator=generator).squeeze(-1))
        return torch.stack(out, -1)


def resize_frames(frames, size: int, chunk: int = 4096):
    """uint8 frames (N, H, W, 3) at ``size`` x ``size``, as pixel values (0-255) in float16.

    The same area average as :meth:`BCCNN.embed` applies to uint8 frames, done once: a dataset
    stored this way holds a 64x64 frame read at 32x32 in half the memory (6 KiB, not 12) and
    needs no resize per step. A mean of 4 pixels (2x) is exact in float16; of 16 (4x), within
    1/32 of a pixel level. Returns a numpy array.
    """
    frames = np.asarray(frames)
    out = np.empty((len(frames), size, size, frames.shape[-1]), np.float16)
    for i in range(0, len(frames), chunk):
        x = torch.from_numpy(np.array(frames[i:i + chunk])).permute(0, 3, 1, 2)  # a writable copy
        x = F.interpolate(x.float(), size=(size, size), mode="area")
        out[i:i + chunk] = x.permute(0, 2, 3, 1).to(torch.float16).numpy()
    return out


def save_bc_cnn(model: BCCNN, path: str | os.PathLike) -> None:
    """Write weights + config atomically (a trainer checkpoint loads the same way)."""
    with atomic_file(path) as tmp:
        torch.save({"model": model.state_dict(), "model_kind": "bc_cnn",
                    "model_config": model.config.to_dict()}, tmp)


register_model_kind("bc_cnn", lambda cfg: BCCNN(BCCNNConfig.from_dict(cfg)),
                    lambda cfg: ("BC-CNN policy", "policy"))
