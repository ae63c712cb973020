"""BC-CNN's frame encoders: Impala-style stages with residual blocks (ours) or ConvNeXt blocks.

Both map frames float (N, 3, H, W) in [0, 1] to embeddings (N, cnn_embd) through the same stage
plan: per stage a 3x3 conv to the stage's width and a stride-2 max-pool (Espeholt et al. 2018, as
in VPT), then two blocks at that width; after the last stage an average pool to
``cnn_pool x cnn_pool``, a linear layer to ``cnn_embd`` and a ReLU. They differ in the blocks:

* ``impala``: two 3x3 convolutions with ReLUs and a skip connection (VPT's Impala CNN);
* ``convnext``: the paper's choice (Appendix A.1, "similar to VPT, however it uses ConvNext
  blocks"): a 7x7 depthwise conv, LayerNorm over channels, a 4x pointwise MLP with GELU and a
  learned per-channel scale initialised at 1e-6 on the residual branch (Liu et al. 2022).

``benchmarks/bench_bc_cnn_blocks.py`` trains both on the same data in one run.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from agents.bc_cnn_shapes import CNN_BLOCKS, DEFAULT_CNN_BLOCK, IMAGE_CHANNELS


class ImpalaBlock(nn.Module):
    """``x + conv(relu(conv(relu(x))))`` with 3x3 convolutions."""

    def __init__(self, c: int):
        super().__init__()
        self.conv0 = nn.Conv2d(c, c, 3, padding=1)
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Same shape as ``x`` (N, C, H, W)."""
        return x + self.conv1(F.relu(self.conv0(F.relu(x))))


class ConvNeXtBlock(nn.Module):
    """ConvNeXt block: depthwise 7x7, LayerNorm, Linear(C, 4C), GELU, Linear(4C, C), scale."""

    def __init__(self, c: int, layer_scale: float = 1e-6):
        super().__init__()
        self.dwconv = nn.Conv2d(c, c, 7, padding=3, groups=c)
        self.norm = nn.LayerNorm(c, eps=1e-6)
        self.pw1 = nn.Linear(c, 4 * c)
        self.pw2 = nn.Linear(4 * c, c)
        self.gamma = nn.Parameter(torch.full((c,), layer_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Same shape as ``x`` (N, C, H, W)."""
        y = self.dwconv(x).permute(0, 2, 3, 1)  # N, H, W, C: LayerNorm and Linear act on C
        y = self.pw2(F.gelu(self.pw1(self.norm(y))))
        return x + (self.gamma * y).permute(0, 3, 1, 2)


class FrameCNN(nn.Module):
    """Frames float (N, 3, H, W) in [0, 1] -> embeddings (N, embd).

    Args:
        channels: width of each stage (each halves the resolution).
        pool: the last stage is average-pooled to pool x pool.
        embd: output embedding size.
        block: ``"impala"`` or ``"convnext"``.
    """

    def __init__(self, channels: tuple[int, ...], pool: int, embd: int,
                 block: str = DEFAULT_CNN_BLOCK):
        super().__init__()
        if block not in CNN_BLOCKS:
            raise ValueError(f"cnn_block={block!r}; choose one of {', '.join(CNN_BLOCKS)}")
        make = ImpalaBlock if block == "impala" else ConvNeXtBlock
        layers: list[nn.Module] = []
        c_in = IMAGE_CHANNELS
        for c in channels:
            layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.MaxPool2d(3, stride=2, padding=1),
                       make(c), make(c)]
            c_in = c
        self.stages = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(pool)
        self.fc = nn.Linear(c_in * pool ** 2, embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Embed (N, 3, H, W) frames."""
        x = self.pool(F.relu(self.stages(x)))
        return F.relu(self.fc(x.flatten(1)))
