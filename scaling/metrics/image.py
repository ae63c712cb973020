"""Per-frame image metrics: LPIPS (AlexNet), PSNR and SSIM on uint8 RGB frames.

All take two uint8 arrays of the same shape ``(..., H, W, 3)`` (single frames, batches of
frames or whole clips ``(N, T, H, W, 3)``) and return one float64 value per image, shaped like
the leading dimensions. They run batched on CPU or CUDA without gradients.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from scaling.metrics.lpips_net import LPIPS, MIN_SIZE
from scaling.metrics.video import as_uint8_tensor, default_device

SSIM_FILTER_SIZE = 11  # Gaussian window, pixels (Wang et al. 2004; tf.image.ssim)
SSIM_FILTER_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03


def _pair(a, b, min_size: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    a, b = as_uint8_tensor(a, "a"), as_uint8_tensor(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape, got {tuple(a.shape)} and "
                         f"{tuple(b.shape)}")
    if a.ndim < 3 or a.shape[-1] != 3:
        raise ValueError(f"images must have shape (..., H, W, 3), got {tuple(a.shape)}")
    if min(a.shape[-3], a.shape[-2]) < min_size:
        raise ValueError(f"images must be at least {min_size}x{min_size} pixels for this metric, "
                         f"got {a.shape[-3]}x{a.shape[-2]}; upsample them first")
    return a, b


def _to_nchw(x: torch.Tensor, device, dtype) -> torch.Tensor:
    return x.reshape(-1, *x.shape[-3:]).to(device).permute(0, 3, 1, 2).to(dtype)


@torch.no_grad()
def lpips(a, b, model: LPIPS | None = None, device=None, batch_size: int = 256) -> np.ndarray:
    """LPIPS (AlexNet, v0.1) distance per pair of images.

    Args:
        a: uint8 (..., H, W, 3), H and W >= 31.
        b: uint8, same shape as ``a``.
        model: a loaded ``LPIPS`` to reuse (loaded from the cache when None).
        device: where to run when ``model`` is None; CUDA when available by default.
        batch_size: image pairs per forward pass.

    Returns:
        float64 array shaped like the leading dimensions ``...``; 0 for identical images.
    """
    a, b = _pair(a, b, MIN_SIZE)
    if model is None:
        model = LPIPS.from_pretrained(device or default_device())
    dev = next(model.parameters()).device
    lead = a.shape[:-3]
    fa, fb = a.reshape(-1, *a.shape[-3:]), b.reshape(-1, *b.shape[-3:])
    out = []
    for s in range(0, fa.shape[0], batch_size):
        xa = _to_nchw(fa[s:s + batch_size], dev, torch.float32) / 127.5 - 1.0
        xb = _to_nchw(fb[s:s + batch_size], dev, torch.float32) / 127.5 - 1.0
        out.append(model(xa, xb).double().cpu())
    return torch.cat(out).reshape(lead).numpy()


@torch.no_grad()
def psnr(a, b, data_range: float = 255.0, max_db: float | None = None) -> np.ndarray:
    """Peak signal-to-noise ratio in dB per pair of images, ``10 log10(range^2 / MSE)``.

    Identical images give ``inf`` unless ``max_db`` caps the values (useful before averaging
    over frames, some of which a world model may reproduce exactly).

    >>> x = np.zeros((4, 4, 3), np.uint8)
    >>> round(float(psnr(x, x + 1)), 4)
    48.1308
    """
    a, b = _pair(a, b)
    mse = (a.double() - b.double()).pow(2).mean(dim=(-3, -2, -1))
    with np.errstate(divide="ignore"):
        out = 10.0 * np.log10(data_range ** 2 / mse.numpy())
    return out if max_db is None else np.minimum(out, max_db)


def gaussian_window(size: int = SSIM_FILTER_SIZE, sigma: float = SSIM_FILTER_SIGMA) -> np.ndarray:
    """Normalised 1-D Gaussian, centred between the middle taps like ``tf.image.ssim``."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(x ** 2) / (2.0 * sigma ** 2))
    return g / g.sum()


@torch.no_grad()
def ssim(a, b, data_range: float = 255.0, device=None, batch_size: int = 1024) -> np.ndarray:
    """Structural similarity (Wang et al. 2004) per pair of images, as ``tf.image.ssim``.

    An 11x11 Gaussian window (sigma 1.5) over the "valid" region, K1 = 0.01, K2 = 0.03,
    each RGB channel separately, then averaged over positions and channels.

    Args:
        a: uint8 (..., H, W, 3), H and W >= 11.
        b: uint8, same shape as ``a``.
        data_range: dynamic range of the pixel values.
        device: where to compute; CUDA when available by default.
        batch_size: images per step.

    Returns:
        float64 array shaped like the leading dimensions; 1 for identical images.
    """
    a, b = _pair(a, b, SSIM_FILTER_SIZE)
    dev = torch.device(device) if device is not None else default_device()
    g = torch.as_tensor(gaussian_window(), dtype=torch.float64, device=dev)
    gy, gx = g.view(1, 1, -1, 1), g.view(1, 1, 1, -1)

    def blur(x: torch.Tensor) -> torch.Tensor:  # (B*3, 1, H, W) -> valid region
        return F.conv2d(F.conv2d(x, gy), gx)

    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    lead = a.shape[:-3]
    fa, fb = a.reshape(-1, *a.shape[-3:]), b.reshape(-1, *b.shape[-3:])
    out = []
    for s in range(0, fa.shape[0], batch_size):
        x = _to_nchw(fa[s:s + batch_size], dev, torch.float64)
        y = _to_nchw(fb[s:s + batch_size], dev, torch.float64)
        n = x.shape[0]
        x, y = x.reshape(-1, 1, *x.shape[-2:]), y.reshape(-1, 1, *y.shape[-2:])
        mx, my = blur(x), blur(y)
        vx, vy, cxy = blur(x * x) - mx ** 2, blur(y * y) - my ** 2, blur(x * y) - mx * my
        lum = (2 * mx * my + c1) / (mx ** 2 + my ** 2 + c1)
        cs = (2 * cxy + c2) / (vx + vy + c2)
        out.append((lum * cs).reshape(n, -1).mean(dim=1).cpu())
    return torch.cat(out).reshape(lead).numpy()
