"""Fréchet Video Distance (Unterthiner et al. 2018) with the Kinetics-400 I3D.

``fvd(real, fake)`` resizes both sets of uint8 clips to 224x224 with TensorFlow's bilinear
rule, scales them to [-1, 1], takes the I3D logits averaged over time as 400-d features, fits a
Gaussian to each set and returns the Fréchet distance between the two Gaussians.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import scipy.linalg
import torch

from scaling.metrics.i3d import I3D, check_clip_shape, preprocess_videos

logger = logging.getLogger(__name__)


def default_device() -> torch.device:
    """CUDA when available, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def as_uint8_tensor(x, name: str) -> torch.Tensor:
    """Accept a uint8 numpy array or tensor; refuse anything else with a clear message."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a numpy array or torch tensor, got {type(x).__name__}")
    if x.dtype != torch.uint8:
        raise TypeError(f"{name} must be uint8 RGB (0-255), got dtype {x.dtype}; convert with "
                        "(x * 255).round().clip(0, 255).astype(np.uint8) if it is float in [0, 1]")
    return x


@torch.no_grad()
def i3d_features(
    videos,
    model: I3D | None = None,
    device: str | torch.device | None = None,
    batch_size: int = 8,
    half_pixel_centers: bool = True,
) -> np.ndarray:
    """FVD features: I3D logits averaged over time.

    Args:
        videos: uint8 (N, T, H, W, 3), T >= 9; numpy array or tensor.
        model: a loaded ``I3D`` (loaded from the cache when None).
        device: where to run; defaults to the model's device, else CUDA when available.
        batch_size: clips per forward pass.
        half_pixel_centers: resize rule, see ``preprocess_videos``.

    Returns:
        float64 (N, 400).
    """
    videos = as_uint8_tensor(videos, "videos")
    check_clip_shape(tuple(videos.shape))
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if model is None:
        model = I3D.from_pretrained(device or default_device())
    device = next(model.parameters()).device
    out = []
    for start in range(0, videos.shape[0], batch_size):
        clip = videos[start:start + batch_size].to(device)
        out.append(model(preprocess_videos(clip, half_pixel_centers)).double().cpu())
    return torch.cat(out).numpy()


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and unbiased covariance (D, D) of features (N, D), in float64."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"need features of shape (N >= 2, D), got {features.shape}; "
                         "a Gaussian needs at least two samples (FVD usually uses 256 or more)")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray,
                     sigma2: np.ndarray) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2).

    ``|mu1 - mu2|^2 + tr(sigma1) + tr(sigma2) - 2 tr((sigma1 sigma2)^(1/2))``, in float64.
    With fewer samples than dimensions the covariances are singular and ``sqrtm`` of their
    product can come out non-finite or with spurious imaginary parts: we then retry with a
    small ridge on both diagonals, and drop imaginary parts only when they are negligible.

    >>> round(frechet_distance(np.zeros(2), np.eye(2), np.ones(2), 4 * np.eye(2)), 6)
    4.0
    """
    mu1, mu2 = (np.atleast_1d(np.asarray(m, np.float64)) for m in (mu1, mu2))
    s1, s2 = (np.atleast_2d(np.asarray(s, np.float64)) for s in (sigma1, sigma2))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise ValueError(f"mismatched Gaussian shapes: mu {mu1.shape} vs {mu2.shape}, "
                         f"sigma {s1.shape} vs {s2.shape}")
    diff = mu1 - mu2
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():
        eps = 1e-6 * max(np.trace(s1), np.trace(s2), 1.0) / s1.shape[0]
        warnings.warn(f"sqrtm of the covariance product is singular; adding {eps:.3g} to the "
                      "diagonals (use more clips for a stable FVD)", stacklevel=2)
        offset = np.eye(s1.shape[0]) * eps
        covmean = scipy.linalg.sqrtm((s1 + offset) @ (s2 + offset))
    if np.iscomplexobj(covmean):
        imag = np.abs(np.diagonal(covmean).imag).max()
        scale = max(np.abs(covmean.real).max(), 1e-12)
        if imag > 1e-3 * scale:
            raise ValueError(f"sqrtm of the covariance product has a large imaginary part "
                             f"({imag:.3g}); the features are degenerate (constant or too few "
                             "clips?)")
        covmean = covmean.real
    value = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean))
    # Rounding can leave tiny negative values for identical sets; a distance is >= 0.
    return max(value, 0.0)


def fvd_from_features(real: np.ndarray, fake: np.ndarray) -> float:
    """Fréchet distance between two feature sets (N, D) and (M, D)."""
    return frechet_distance(*gaussian_stats(real), *gaussian_stats(fake))


def fvd(
    real_videos,
    fake_videos,
    model: I3D | None = None,
    device: str | torch.device | None = None,
    batch_size: int = 8,
    half_pixel_centers: bool = True,
) -> float:
    """Fréchet Video Distance between two sets of clips.

    Args:
        real_videos: uint8 (N, T, H, W, 3), N >= 2, T >= 9 (16 is customary).
        fake_videos: uint8 (M, T', H', W', 3), same requirements.
        model: a loaded ``I3D`` to reuse (loaded from the cache when None).
        device: where to run when ``model`` is None; CUDA when available by default.
        batch_size: clips per I3D forward pass.
        half_pixel_centers: resize rule, see ``preprocess_videos``.

    Returns:
        FVD (lower is better; 0 for identical sets).
    """
    real_videos = as_uint8_tensor(real_videos, "real_videos")
    fake_videos = as_uint8_tensor(fake_videos, "fake_videos")
    for name, v in (("real_videos", real_videos), ("fake_videos", fake_videos)):
        check_clip_shape(tuple(v.shape))
        if v.shape[0] < 2:
            raise ValueError(f"{name} holds {v.shape[0]} clip(s); FVD needs at least 2 per set "
                             "(256 or more for stable values)")
    if model is None:
        model = I3D.from_pretrained(device or default_device())
    kw = dict(model=model, batch_size=batch_size, half_pixel_centers=half_pixel_centers)
    return fvd_from_features(i3d_features(real_videos, **kw), i3d_features(fake_videos, **kw))
