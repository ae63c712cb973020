"""Vector quantizer with an exponential-moving-average codebook (VQ-VAE, van den Oord et al. 2017).

Codes move to the running mean of the encoder outputs assigned to them (no codebook gradient),
start on encoder outputs of the first batch, and codes that fall out of use are restarted on
random encoder outputs of the current batch (as in Jukebox / SoundStream), so most of the codebook
stays in use.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


class QuantizerOutput(NamedTuple):
    """Result of snapping encoder outputs to the codebook."""

    quantized: torch.Tensor  # float (B, D, gh, gw), straight-through gradient to the encoder
    indices: torch.Tensor  # int64 (B, gh, gw)
    commit_loss: torch.Tensor  # scalar
    perplexity: torch.Tensor  # scalar, exp(entropy) of this batch's code histogram
    restarted: int  # codes restarted in this step


class EMAQuantizer(nn.Module):
    """Nearest-neighbour codebook with EMA updates, data-dependent init and dead-code restarts."""

    def __init__(self, num_codes: int, dim: int, decay: float, dead_code_ratio: float,
                 eps: float = 1e-5, normalize: bool = False):
        super().__init__()
        self.num_codes, self.dim, self.decay, self.eps = num_codes, dim, decay, eps
        self.normalize = normalize
        self.dead_code_ratio = dead_code_ratio
        self.register_buffer("embedding", torch.randn(num_codes, dim) * 0.1)
        self.register_buffer("cluster_size", torch.zeros(num_codes))
        self.register_buffer("embed_sum", torch.zeros(num_codes, dim))
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))

    def nearest(self, flat: torch.Tensor) -> torch.Tensor:
        """int64 (N,) index of the nearest code to each row of ``flat`` (N, D)."""
        e = self.embedding
        dist = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ e.t() + e.pow(2).sum(1)
        return dist.argmin(1)

    def _sample_rows(self, flat: torch.Tensor, n: int) -> torch.Tensor:
        idx = torch.randint(0, flat.shape[0], (n,), device=flat.device)
        rows = flat[idx] + 0.01 * flat.std() * torch.randn(n, self.dim, device=flat.device)
        return F.normalize(rows, dim=1) if self.normalize else rows

    def project(self, flat: torch.Tensor) -> torch.Tensor:
        """Encoder outputs (N, D) as compared with the codes (unit length when normalizing)."""
        return F.normalize(flat, dim=1) if self.normalize else flat

    @torch.no_grad()
    def _update(self, flat: torch.Tensor, indices: torch.Tensor) -> int:
        counts = torch.bincount(indices, minlength=self.num_codes).to(flat.dtype)
        sums = torch.zeros_like(self.embed_sum).index_add_(0, indices, flat)
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.embed_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        n = self.cluster_size.sum()
        # Laplace smoothing keeps rarely used codes from dividing by ~0.
        size = (self.cluster_size + self.eps) / (n + self.num_codes * self.eps) * n
        embedding = self.embed_sum / size[:, None]
        self.embedding.copy_(F.normalize(embedding, dim=1) if self.normalize else embedding)
        threshold = self.dead_code_ratio * flat.shape[0] / self.num_codes
        dead = self.cluster_size < threshold
        num_dead = int(dead.sum())
        if num_dead:  # restart dead codes on random encoder outputs of this batch
            fresh = self._sample_rows(flat, num_dead)
            self.embedding[dead] = fresh
            # Twice the threshold: an unused restarted code is tried again ~70 steps later
            # (decay 0.99), soon enough for short training runs.
            self.cluster_size[dead] = 2 * threshold
            self.embed_sum[dead] = fresh * (2 * threshold)
        return num_dead

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        """Quantize ``z`` (B, D, gh, gw); in training mode also update the codebook."""
        b, _, h, w = z.shape
        flat = self.project(rearrange(z, "b d h w -> (b h w) d").float())
        if self.training and not bool(self.initialized):
            # Data-dependent init: codes start on encoder outputs, so none starts out of reach.
            self.embedding.copy_(self._sample_rows(flat.detach(), self.num_codes))
            start = 2 * self.dead_code_ratio * flat.shape[0] / self.num_codes
            self.embed_sum.copy_(self.embedding * start)
            self.cluster_size.fill_(start)
            self.initialized.fill_(True)
        indices = self.nearest(flat.detach())
        restarted = self._update(flat.detach(), indices) if self.training else 0
        q = self.embedding[indices]
        commit = F.mse_loss(flat, q.detach())
        probs = torch.bincount(indices, minlength=self.num_codes).float() / indices.numel()
        perplexity = torch.exp(-(probs * torch.log(probs + 1e-10)).sum())
        q = flat + (q - flat).detach()  # straight-through estimator
        quantized = rearrange(q, "(b h w) d -> b d h w", b=b, h=h, w=w)
        return QuantizerOutput(quantized, indices.view(b, h, w), commit, perplexity, restarted)
