"""VQ-VAE image tokenizer: frames <-> ``tokens_per_frame`` discrete ids in ``[0, codebook_size)``.

A convolutional encoder maps an RGB frame to a ``gh x gw`` grid of code vectors (``gh * gw`` =
tokens per frame, ``gh / gw`` = frame height / width), each snapped to its nearest codebook entry;
a mirrored decoder maps the grid back to pixels. The trunk has the same depth and widths for every
grid and only a learned resample at its end differs, so tokenizers with different tokens per frame
differ in their bottleneck alone. The codebook is updated by exponential moving
averages of the vectors assigned to it (van den Oord et al. 2017, appendix; Razavi et al. 2019) and
codes left unused are restarted on encoder outputs of the current batch, which keeps most of the
codebook alive. The paper freezes such a tokenizer before training its world models.

Example:
    model = load_tokenizer("runs/tokenizer/breakout-k64/tokenizer.pt")
    ids = model.encode(frames)  # uint8 (B, 64, 64, 3) -> int64 (B, 64)
    recon = model.decode(ids)  # uint8 (B, 64, 64, 3)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from offline_data.atomic import atomic_file
from worldmodels.quantizer import EMAQuantizer
from worldmodels.run_state import load_torch_file
from worldmodels.tokenizer_config import (  # noqa: F401  (re-exported)
    VQConfig,
    possible_tokens_per_frame,
    shuffle_factor,
    token_grid,
)


class ResBlock(nn.Module):
    """Pre-activation residual block of two 3x3 convolutions."""

    def __init__(self, ch: int):
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``x + F(x)`` (same shape)."""
        return x + self.conv2(F.silu(self.conv1(F.silu(x))))


class Encoder(nn.Module):
    """Fixed trunk of stride-2 levels, then a learned resample to the token grid.

    The trunk (``num_down`` levels) is the same for every tokens per frame, so a sweep over K
    compares bottlenecks, not network depths. The resample folds each token's patch of the
    trunk's map into channels (space-to-depth by r = :func:`shuffle_factor`, after a bilinear
    resize to r x grid when the grid does not divide the map) and mixes them with a 1x1 conv:
    every position inside a patch keeps its own channels, so a small object (the Breakout ball)
    can be told apart by where it is, which an average over the patch would blur away.
    """

    def __init__(self, cfg: VQConfig):
        super().__init__()
        self.grid = cfg.grid
        self.down = nn.ModuleList()
        self.blocks = nn.ModuleList()
        ch = 3
        for level in range(1, cfg.num_down + 1):
            self.down.append(nn.Conv2d(ch, cfg.width(level), 4, stride=2, padding=1))
            ch = cfg.width(level)
            self.blocks.append(nn.Sequential(*[ResBlock(ch) for _ in range(cfg.num_res_blocks)]))
        top = cfg.max_channels
        self.pre = nn.Conv2d(ch, top, 3, padding=1)
        r = cfg.fold_factor
        self.folded = cfg.folded_size
        self.resized = cfg.level_sizes[-1] != self.folded
        self.squeeze = (nn.Sequential(nn.PixelUnshuffle(r), nn.Conv2d(top * r * r, top, 1))
                        if r > 1 else nn.Identity())
        self.grid_blocks = nn.Sequential(*[ResBlock(top) for _ in range(cfg.num_res_blocks)])
        self.out = nn.Conv2d(top, cfg.code_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Centred pixels (B, 3, H, W) -> code vectors (B, D, gh, gw)."""
        for down, blocks in zip(self.down, self.blocks, strict=True):
            x = blocks(down(x))
        x = self.pre(F.silu(x))
        if self.resized:  # e.g. 16x16 -> 18x18 for 36 tokens (6x6 patches of 3x3)
            x = F.interpolate(x, size=self.folded, mode="bilinear", antialias=True)
        x = self.squeeze(x)  # e.g. 16x16 -> 4x4 for 16 tokens: space-to-depth
        return self.out(F.silu(self.grid_blocks(x)))  # (B, D, gh, gw)


class PatchEncoder(nn.Module):
    """Per-patch encoder: each token's code is a function of its own patch of pixels alone.

    Space-to-depth folds every patch (H / gh x W / gw pixels) into channels, then 1x1 convs (a
    per-patch MLP with residual blocks) map it to a code vector, so nothing outside a patch can
    change its token. The decoder stays convolutional (it may use neighbouring codes).
    """

    def __init__(self, cfg: VQConfig):
        super().__init__()
        ph = cfg.image_height // cfg.grid[0]
        top = cfg.max_channels
        self.fold = nn.PixelUnshuffle(ph)
        self.inp = nn.Conv2d(3 * ph * ph, top, 1)
        # as many residual blocks as the conv encoder has over its levels and the grid
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Conv2d(top, top, 1), nn.SiLU(), nn.Conv2d(top, top, 1))
            for _ in range(max(1, cfg.num_res_blocks) * (cfg.num_down + 1)))
        self.out = nn.Conv2d(top, cfg.code_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Centred pixels (B, 3, H, W) -> code vectors (B, D, gh, gw)."""
        x = self.inp(self.fold(x))
        for block in self.blocks:
            x = x + block(F.silu(x))
        return self.out(F.silu(x))


class Decoder(nn.Module):
    """Mirror of :class:`Encoder`: grid blocks, depth-to-space, transposed convs.

    A 1x1 conv and depth-to-space unfold each token into its patch (then a bilinear resize where
    the grid does not divide the trunk's map).
    """

    def __init__(self, cfg: VQConfig):
        super().__init__()
        self.sizes = cfg.level_sizes
        n, top = cfg.num_down, cfg.max_channels
        self.inp = nn.Conv2d(cfg.code_dim, top, 3, padding=1)
        self.grid_blocks = nn.Sequential(*[ResBlock(top) for _ in range(cfg.num_res_blocks)])
        r = cfg.fold_factor
        self.resized = self.sizes[-1] != cfg.folded_size
        self.expand = (nn.Sequential(nn.Conv2d(top, top * r * r, 1), nn.PixelShuffle(r))
                       if r > 1 else nn.Identity())
        self.post = nn.Conv2d(top, cfg.width(n), 3, padding=1)
        self.blocks = nn.ModuleList()
        self.up = nn.ModuleList()
        for level in range(n, 0, -1):
            ch = cfg.width(level)
            self.blocks.append(nn.Sequential(*[ResBlock(ch) for _ in range(cfg.num_res_blocks)]))
            out = cfg.width(level - 1) if level > 1 else 3
            self.up.append(nn.ConvTranspose2d(ch, out, 4, stride=2, padding=1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Code vectors (B, D, gh, gw) -> centred pixels (B, 3, H, W)."""
        x = self.expand(self.grid_blocks(self.inp(z)))
        if self.resized:
            x = F.interpolate(x, size=self.sizes[-1], mode="bilinear")
        x = self.post(F.silu(x))
        for i, (blocks, up) in enumerate(zip(self.blocks, self.up, strict=True)):
            target = self.sizes[len(self.sizes) - 2 - i]
            x = up(F.silu(blocks(x)), output_size=target)
        return x  # (B, 3, H, W), pixel values centred on 0 (x / 255 - 0.5)


def foreground_mask(x: torch.Tensor, threshold: float = 0.1) -> torch.Tensor:
    """1.0 where a pixel differs from the batch's per-pixel median frame, else 0.0.

    Args:
        x: centred frames (B, 3, H, W) in [-0.5, 0.5].
        threshold: largest channel difference (of 1.0) still counted as background.

    Returns:
        (B, 1, H, W) float mask, broadcastable over channels.
    """
    background = x.median(dim=0, keepdim=True).values
    return ((x - background).abs().amax(dim=1, keepdim=True) > threshold).to(x.dtype)


class VQOutput(NamedTuple):
    """Forward pass of :class:`VQVAE`."""

    recon: torch.Tensor  # float (B, 3, H, W), centred pixels (x / 255 - 0.5)
    indices: torch.Tensor  # int64 (B, K)
    commit_loss: torch.Tensor  # scalar
    perplexity: torch.Tensor  # scalar
    restarted: int


class VQLoss(NamedTuple):
    """Result of :meth:`VQVAE.compute_loss`."""

    loss: torch.Tensor  # scalar to minimise
    metrics: dict  # floats: loss, recon_loss, psnr (dB, float pixels), commit_loss, perplexity, ...
    output: VQOutput


_LATER_FIELDS = {"patch_local": False}
"""VQConfig fields newer than the checksum format, with the value older tokenizers had."""


class VQVAE(nn.Module):
    """Convolutional VQ-VAE with an EMA codebook (see module docstring)."""

    def __init__(self, config: VQConfig):
        super().__init__()
        self.config = config
        self.encoder = PatchEncoder(config) if config.patch_local else Encoder(config)
        self.quantizer = EMAQuantizer(config.codebook_size, config.code_dim, config.ema_decay,
                                      config.dead_code_ratio,
                                      normalize=config.normalize_codes)
        self.decoder = Decoder(config)

    @property
    def device(self) -> torch.device:
        """Device of the parameters."""
        return self.quantizer.embedding.device

    def num_params(self) -> int:
        """Trainable parameters (the EMA codebook is a buffer and not counted)."""
        return sum(p.numel() for p in self.parameters())

    def preprocess(self, frames: torch.Tensor | np.ndarray) -> torch.Tensor:
        """uint8 (B, H, W, 3) frames -> float (B, 3, H, W) centred pixels, checking the size."""
        if isinstance(frames, np.ndarray) and not frames.flags.writeable:
            frames = frames.copy()  # memory-mapped or read-only arrays: torch wants writable
        x = torch.as_tensor(frames)
        h, w = self.config.image_height, self.config.image_width
        if x.ndim != 4 or tuple(x.shape[1:]) != (h, w, 3):
            raise ValueError(
                f"frames have shape {tuple(x.shape)}, this tokenizer expects (B, {h}, {w}, 3) "
                f"uint8; resize the frames to {h}x{w} or train a tokenizer on frames of this size"
            )
        x = x.to(self.device, non_blocking=True)
        return rearrange(x, "b h w c -> b c h w").float().div(255.0).sub(0.5)

    @staticmethod
    def postprocess(x: torch.Tensor) -> torch.Tensor:
        """Float (B, 3, H, W) centred pixels -> uint8 (B, H, W, 3)."""
        x = (x.add(0.5).mul(255.0)).round().clamp(0, 255).to(torch.uint8)
        return rearrange(x, "b c h w -> b h w c")

    def forward(self, x: torch.Tensor) -> VQOutput:
        """Reconstruct centred pixels ``x`` (B, 3, H, W)."""
        q = self.quantizer(self.encoder(x))
        recon = self.decoder(q.quantized)
        return VQOutput(recon, q.indices.flatten(1), q.commit_loss, q.perplexity, q.restarted)

    def compute_loss(self, frames: torch.Tensor | np.ndarray, recon_loss: str = "mse",
                     gradient_weight: float = 0.0, foreground_weight: float = 0.0) -> VQLoss:
        """Training loss on uint8 (B, H, W, 3) frames: reconstruction + commitment (+ gradient).

        The gradient term compares horizontal and vertical pixel differences (L1), which
        sharpens edges such as the Breakout ball and bricks without a perceptual network.
        ``foreground_weight`` w > 0 weighs the reconstruction error of foreground pixels (those
        that differ from the batch's per-pixel median frame, i.e. what moves: ball, paddle,
        score) by 1 + w, so that small moving objects are not traded for the static background.
        """
        x = self.preprocess(frames)
        out = self(x)
        if recon_loss == "mse":
            err = (out.recon - x).pow(2)
        elif recon_loss == "l1":
            err = (out.recon - x).abs()
        else:
            raise ValueError(f"recon_loss must be 'mse' or 'l1', got {recon_loss!r}")
        if foreground_weight > 0 and x.shape[0] > 1:
            weights = 1.0 + foreground_weight * foreground_mask(x)
            rec = (err * weights).mean() / weights.mean()
        else:
            rec = err.mean()
        loss = rec + self.config.commitment * out.commit_loss
        if gradient_weight:
            loss = loss + gradient_weight * (
                F.l1_loss(out.recon.diff(dim=-1), x.diff(dim=-1))
                + F.l1_loss(out.recon.diff(dim=-2), x.diff(dim=-2)))
        with torch.no_grad():
            mse = (out.recon.detach().clamp(-0.5, 0.5) - x).pow(2).mean(dim=(1, 2, 3))
            psnr = -10 * torch.log10(mse.clamp_min(1e-7)).mean()
        metrics = {"loss": loss.item(), "recon_loss": rec.item(), "psnr": float(psnr),
                   "commit_loss": out.commit_loss.item(), "perplexity": float(out.perplexity),
                   "restarted_codes": out.restarted}
        return VQLoss(loss, metrics, out)

    @torch.no_grad()
    def encode(self, frames: torch.Tensor | np.ndarray) -> torch.Tensor:
        """uint8 (B, H, W, 3) frames -> int64 (B, K) token ids in [0, codebook_size)."""
        x = self.preprocess(frames)
        if not len(x):  # torch's pixel (un)shuffle mishandles empty batches
            return torch.zeros(0, self.config.tokens_per_frame, dtype=torch.long,
                               device=x.device)
        flat = self.quantizer.project(rearrange(self.encoder(x), "b d h w -> (b h w) d"))
        indices = self.quantizer.nearest(flat)
        return indices.view(x.shape[0], self.config.tokens_per_frame)

    @torch.no_grad()
    def decode(self, tokens: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Int (B, K) token ids -> uint8 (B, H, W, 3) frames."""
        t = torch.as_tensor(np.asarray(tokens) if isinstance(tokens, np.ndarray) else tokens)
        t = t.to(self.device).long()
        k, v = self.config.tokens_per_frame, self.config.codebook_size
        if t.ndim != 2 or t.shape[1] != k:
            raise ValueError(f"tokens have shape {tuple(t.shape)}, expected (B, {k})")
        if t.numel() and (t.min() < 0 or t.max() >= v):
            raise ValueError(f"token ids must lie in [0, {v}), got [{int(t.min())}, "
                             f"{int(t.max())}]; were they made by another tokenizer?")
        if not len(t):
            c = self.config
            return torch.zeros(0, c.image_height, c.image_width, 3, dtype=torch.uint8,
                               device=t.device)
        gh, gw = self.config.grid
        z = rearrange(self.quantizer.embedding[t], "b (h w) d -> b d h w", h=gh, w=gw)
        return self.postprocess(self.decoder(z))

    def sha256(self) -> str:
        """Checksum of the config and every parameter and buffer (the tokenizer's identity).

        Config fields added after tokenizers were first saved count only when set away from
        their default, so a tokenizer saved before them keeps its checksum (and its token
        shards stay valid).
        """
        config = dataclasses.asdict(self.config)
        for name, default in _LATER_FIELDS.items():
            if config[name] == default:
                del config[name]
        h = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
        for name, t in sorted(self.state_dict().items()):
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()

    def tokenizer_id(self) -> str:
        """A readable name: grid, codebook size and the first digits of the checksum."""
        c = self.config
        return f"vqvae-k{c.tokens_per_frame}-v{c.codebook_size}-{self.sha256()[:10]}"


def save_tokenizer(model: VQVAE, path: str | os.PathLike) -> str:
    """Write a frozen tokenizer (config, weights, sha256) atomically; returns the sha256."""
    sha = model.sha256()
    payload = {
        "config": json.dumps(dataclasses.asdict(model.config)),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "sha256": sha,
    }
    with atomic_file(path) as tmp:
        torch.save(payload, tmp)
    return sha


def load_weights(model: VQVAE, state_dict: dict, path: str | os.PathLike) -> None:
    """Load ``state_dict`` into ``model``, refusing weights of another architecture clearly.

    Raises:
        ValueError: the weights do not fit the model built from the stored config, e.g. a file
            written before the fixed-depth trunk (missing ``encoder.pre``, extra levels).
    """
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as e:
        missing = sorted(set(model.state_dict()) - set(state_dict))
        unexpected = sorted(set(state_dict) - set(model.state_dict()))
        raise ValueError(
            f"{path} holds weights that do not fit this VQ-VAE (config "
            f"{dataclasses.asdict(model.config)}; missing {missing[:4]}, unexpected "
            f"{unexpected[:4]}, or shapes differ); it was probably written by an older tokenizer "
            "architecture: retrain it with `embscale tokenizer train`"
        ) from e


def load_tokenizer(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> VQVAE:
    """Load a tokenizer written by :func:`save_tokenizer` (or a training run directory).

    The stored sha256 is checked against the weights, so a corrupted file is refused.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "tokenizer.pt"
    if not path.is_file():
        raise FileNotFoundError(f"no tokenizer at {path}; train one with `embscale tokenizer "
                                "train` (it writes <run>/tokenizer.pt)")
    payload = load_torch_file(path, "tokenizer", map_location)
    if not isinstance(payload, dict) or not {"config", "state_dict"} <= set(payload):
        kind = payload.get("model_kind") if isinstance(payload, dict) else None
        held = f"a {kind} model checkpoint" if kind else "no tokenizer config and weights"
        raise ValueError(f"{path} is not a tokenizer: it holds {held}; pass the tokenizer.pt "
                         "written by `embscale tokenizer train` (or its run directory)")
    model = VQVAE(VQConfig.from_dict(json.loads(payload["config"])))
    load_weights(model, payload["state_dict"], path)
    model.eval()
    if "sha256" in payload and model.sha256() != payload["sha256"]:
        raise ValueError(f"tokenizer {path} fails its checksum (corrupt file); retrain or copy it "
                         "again")
    return model.to(map_location)
