"""All four rollout-quality metrics of a world model's generated clips in one call."""

from __future__ import annotations

import math
from typing import NamedTuple

from scaling.metrics.i3d import I3D, MIN_FRAMES
from scaling.metrics.image import lpips, psnr, ssim
from scaling.metrics.lpips_net import LPIPS
from scaling.metrics.video import as_uint8_tensor, default_device, fvd

PSNR_CAP_DB = 100.0  # per-frame PSNR of identical frames (inf) counts as this in the mean


class RolloutQuality(NamedTuple):
    """Quality of generated clips against the real ones (paper Section 5 / Appendix D)."""

    fvd: float  # Fréchet Video Distance over whole clips (lower is better); nan if not computed
    lpips: float  # mean per-frame LPIPS over generated frames (lower is better)
    psnr: float  # mean per-frame PSNR in dB, capped at PSNR_CAP_DB (higher is better)
    ssim: float  # mean per-frame SSIM (higher is better)
    num_videos: int  # clips compared
    num_frames: int  # generated frames per clip that entered the per-frame means


def rollout_quality(
    real,
    generated,
    context_frames: int = 1,
    compute_fvd: bool = True,
    i3d: I3D | None = None,
    lpips_model: LPIPS | None = None,
    device=None,
    batch_size: int = 8,
) -> RolloutQuality:
    """FVD, LPIPS, PSNR and SSIM of generated clips against the real clips they continue.

    FVD compares the two sets of whole clips (context frames included, as is usual); the
    per-frame metrics pair ``generated[i, t]`` with ``real[i, t]`` and average over clips and
    over the frames after the ``context_frames`` the model was given.

    Args:
        real: uint8 (N, T, H, W, 3) held-out clips.
        generated: uint8 (N, T, H, W, 3), the model's rollouts from the same first frames and
            actions.
        context_frames: leading frames that were copied from ``real`` (excluded from the
            per-frame means).
        compute_fvd: FVD needs N >= 2 and T >= 9; pass False to skip it (``fvd`` is nan).
        i3d: a loaded ``I3D`` to reuse.
        lpips_model: a loaded ``LPIPS`` to reuse.
        device: where to run models not given; CUDA when available by default.
        batch_size: clips per I3D pass.
    """
    real, generated = as_uint8_tensor(real, "real"), as_uint8_tensor(generated, "generated")
    if real.shape != generated.shape or real.ndim != 5:
        raise ValueError(f"real and generated must both be (N, T, H, W, 3) of one shape, got "
                         f"{tuple(real.shape)} and {tuple(generated.shape)}")
    if not 0 <= context_frames < real.shape[1]:
        raise ValueError(f"context_frames must be in [0, T={real.shape[1]}), got {context_frames}")
    if compute_fvd and (real.shape[0] < 2 or real.shape[1] < MIN_FRAMES):
        raise ValueError(f"FVD needs at least 2 clips of at least {MIN_FRAMES} frames, got "
                         f"{real.shape[0]} of {real.shape[1]}; generate more/longer rollouts or "
                         "pass compute_fvd=False")
    device = device or default_device()
    a, b = real[:, context_frames:], generated[:, context_frames:]
    lp = lpips(a, b, model=lpips_model or LPIPS.from_pretrained(device))
    ps = psnr(a, b, max_db=PSNR_CAP_DB)
    ss = ssim(a, b, device=device)
    fv = (fvd(real, generated, model=i3d or I3D.from_pretrained(device), batch_size=batch_size)
          if compute_fvd else math.nan)
    return RolloutQuality(fvd=float(fv), lpips=float(lp.mean()), psnr=float(ps.mean()),
                          ssim=float(ss.mean()), num_videos=int(real.shape[0]),
                          num_frames=int(a.shape[1]))
