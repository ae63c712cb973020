"""Shape of a VQ-VAE tokenizer: the token grid for a frame size and :class:`VQConfig`.

Kept apart from the networks (``worldmodels.tokenizer``) so that specs and command lines can
check a configuration without building a model.
"""

from __future__ import annotations

import dataclasses
import math


def token_grid(height: int, width: int, tokens_per_frame: int) -> tuple[int, int]:
    """The ``(gh, gw)`` token grid of ``tokens_per_frame`` tokens over a ``height x width`` frame.

    The grid keeps the frame's aspect ratio (``gh * width == gw * height``) and downsamples at
    least 2x, so each token covers a whole patch of pixels.

    >>> token_grid(64, 64, 36), token_grid(144, 240, 540)
    ((6, 6), (18, 30))
    """
    k = int(tokens_per_frame)
    for gh in range(1, k + 1):
        if k % gh == 0:
            gw = k // gh
            if gh * width == gw * height and 2 * gh <= height and 2 * gw <= width:
                return gh, gw
    options = possible_tokens_per_frame(height, width)
    raise ValueError(
        f"tokens_per_frame={tokens_per_frame} cannot tile a {height}x{width} frame: it needs a "
        f"gh x gw grid with gh / gw = {height} / {width} and at most half the resolution; choose "
        f"one of {options[:12]}{' ...' if len(options) > 12 else ''} or resize the frames"
    )


def possible_tokens_per_frame(height: int, width: int) -> list[int]:
    """All tokens-per-frame values :func:`token_grid` accepts for this frame size."""
    g = math.gcd(height, width)
    unit_h, unit_w = height // g, width // g
    return [s * s * unit_h * unit_w for s in range(1, g // 2 + 1)]


@dataclasses.dataclass
class VQConfig:
    """Shape and training-time behaviour of a VQ-VAE tokenizer."""

    image_height: int = 64
    """Frame height in pixels."""
    image_width: int = 64
    """Frame width in pixels."""
    tokens_per_frame: int = 64
    """d_z: tokens per frame (a gh x gw grid with the frame's aspect ratio)."""
    codebook_size: int = 512
    """V_o: number of codebook entries (4096 in the paper)."""
    code_dim: int = 8
    """Dimension of each code vector (small dims keep more codes in use)."""
    channels: int = 16
    """Conv width at half resolution; doubles per further downsampling up to max_channels."""
    max_channels: int = 64
    """Cap on conv width; the resample to the grid and the grid blocks run at this width."""
    num_down: int = 2
    """Stride-2 levels of the trunk, the same for every tokens_per_frame (64x64 -> 16x16)."""
    num_res_blocks: int = 1
    """Residual blocks per resolution level in encoder and decoder (and on the token grid)."""
    ema_decay: float = 0.99
    """Decay of the codebook's exponential moving averages."""
    commitment: float = 0.25
    """Weight of the commitment loss ||z_e - sg(z_q)||^2."""
    dead_code_ratio: float = 0.03
    """A code whose EMA usage falls below this fraction of the mean usage is restarted."""
    normalize_codes: bool = True
    """Match l2-normalised encoder outputs to l2-normalised codes (cosine similarity); with
    a small code_dim this keeps more of the codebook in use (Yu et al. 2022, ViT-VQGAN)."""
    patch_local: bool = False
    """Encode each token from its own patch of pixels only (:class:`PatchEncoder`): a patch
    that does not change keeps its token, so consecutive frames differ only where the picture
    does. The default conv encoder sees neighbouring patches too, and a moving object changes
    the tokens around it. Needs a grid that divides the frame; max_channels sets the per-patch
    MLP's width, and channels does not apply."""

    def __post_init__(self):
        for name in ("image_height", "image_width", "codebook_size", "code_dim", "channels",
                     "max_channels", "num_down"):
            if getattr(self, name) < 1:
                raise ValueError(f"VQConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not 2 <= self.codebook_size <= 65536:
            raise ValueError(f"VQConfig.codebook_size must be in [2, 65536] (uint16 token "
                             f"shards), got {self.codebook_size}")
        if not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"VQConfig.ema_decay must be in (0, 1), got {self.ema_decay}")
        if self.num_res_blocks < 0:
            raise ValueError(f"VQConfig.num_res_blocks must be >= 0, got {self.num_res_blocks}")
        token_grid(self.image_height, self.image_width, self.tokens_per_frame)
        if self.patch_local and (self.image_height % self.grid[0]
                                 or self.image_width % self.grid[1]):
            raise ValueError(f"VQConfig.patch_local needs a token grid that divides the frame; "
                             f"{self.grid[0]}x{self.grid[1]} does not divide "
                             f"{self.image_height}x{self.image_width}: pick tokens_per_frame "
                             "from possible_tokens_per_frame with whole patches, or drop "
                             "patch_local")
        if min(self.image_height, self.image_width) >> self.num_down < 1:
            raise ValueError(f"VQConfig.num_down={self.num_down} halves a {self.image_height}x"
                             f"{self.image_width} frame below one pixel; use fewer levels")

    @property
    def grid(self) -> tuple[int, int]:
        """(gh, gw) token grid."""
        return token_grid(self.image_height, self.image_width, self.tokens_per_frame)

    @property
    def level_sizes(self) -> list[tuple[int, int]]:
        """Feature-map sizes of the trunk, from the frame down ``num_down`` stride-2 levels.

        They depend on the frame size only, not on tokens_per_frame, so every K gets the same
        trunk; only the final resample to the grid (and the grid itself) differs.
        """
        sizes = [(self.image_height, self.image_width)]
        for _ in range(self.num_down):
            sizes.append((sizes[-1][0] // 2, sizes[-1][1] // 2))
        return sizes

    @property
    def fold_factor(self) -> int:
        """Factor r of the space-to-depth from trunk to grid (see :func:`shuffle_factor`)."""
        return shuffle_factor(self.level_sizes[-1], self.grid)

    @property
    def folded_size(self) -> tuple[int, int]:
        """Size of the trunk's map just before space-to-depth: r x the grid (see Encoder)."""
        return self.fold_factor * self.grid[0], self.fold_factor * self.grid[1]

    def width(self, level: int) -> int:
        """Conv width at downsampling level ``level`` (1 = half resolution)."""
        return min(self.channels * 2 ** (level - 1), self.max_channels)

    @classmethod
    def from_dict(cls, d: dict) -> VQConfig:
        """Build from a dict, rejecting unknown keys."""
        unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"unknown VQConfig keys {unknown}")
        return cls(**d)


def shuffle_factor(trunk: tuple[int, int], grid: tuple[int, int]) -> int:
    """The space-to-depth factor r between the trunk's feature map and the token grid.

    ``ceil(trunk / grid)`` in the larger of the two ratios, at least 1: the trunk's map is
    resized to ``r * grid`` (a no-op when it divides exactly) and folded into the grid.

    >>> shuffle_factor((16, 16), (4, 4)), shuffle_factor((16, 16), (6, 6))
    (4, 3)
    >>> shuffle_factor((16, 16), (16, 16)), shuffle_factor((16, 16), (32, 32))
    (1, 1)
    """
    (th, tw), (gh, gw) = trunk, grid
    return max(1, -(-th // gh), -(-tw // gw))
