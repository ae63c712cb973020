"""Speed and agreement of the metric ports against the plain-numpy reference passes.

    python benchmarks/bench_metrics.py [--frames 16] [--device cpu]

Prints, for the I3D (FVD features), LPIPS and SSIM: throughput of the PyTorch port, of the
numpy/scipy reference measured in the same run (the baseline), their ratio, and the largest
absolute difference between the two on the same fixed inputs.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.signal
import torch

from scaling.metrics import I3D, LPIPS, i3d_features, lpips, ssim
from scaling.metrics import reference as ref
from scaling.metrics.image import gaussian_window
from scaling.metrics.weights import ensure_metric_weights, original_checkpoint, read_original_arrays


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def scipy_ssim(x, y):
    win = np.outer(gaussian_window(), gaussian_window())
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    vals = []
    for c in range(3):
        a, b = x[..., c].astype(np.float64), y[..., c].astype(np.float64)
        f = lambda z: scipy.signal.correlate2d(z, win, mode="valid")  # noqa: E731
        ma, mb = f(a), f(b)
        va, vb, cov = f(a * a) - ma**2, f(b * b) - mb**2, f(a * b) - ma * mb
        vals.append(((2 * ma * mb + c1) * (2 * cov + c2) /
                     ((ma**2 + mb**2 + c1) * (va + vb + c2))).mean())
    return float(np.mean(vals))


def row(name, unit, n, t_port, t_ref, diff):
    print(f"{name:6s} port {n / t_port:9.2f} {unit}/s | reference {n / t_ref:9.2f} {unit}/s | "
          f"speed-up x{t_ref / t_port:6.1f} | max |port - reference| {diff:.2e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=16, help="frames per I3D clip")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    ensure_metric_weights()
    rng = np.random.default_rng(0)
    print(f"device {args.device}, torch threads {torch.get_num_threads()}")

    clip = rng.integers(0, 256, size=(1, args.frames, 64, 64, 3), dtype=np.uint8)
    i3d = I3D.from_pretrained(args.device)
    i3d_features(clip, model=i3d)  # warm-up
    port, t_port = timed(lambda: i3d_features(clip, model=i3d))
    arrays = read_original_arrays(original_checkpoint("i3d"), "i3d")
    want, t_ref = timed(lambda: ref.i3d_logits(arrays, ref.i3d_preprocess(clip)))
    row("I3D", "clips", 1, t_port, t_ref, np.abs(port - want).max())

    a = rng.integers(0, 256, size=(32, 64, 64, 3), dtype=np.uint8)
    b = rng.integers(0, 256, size=(32, 64, 64, 3), dtype=np.uint8)
    net = LPIPS.from_pretrained(args.device)
    lpips(a[:2], b[:2], model=net)
    port, t_port = timed(lambda: lpips(a, b, model=net))
    arrays = read_original_arrays(original_checkpoint("lpips_alexnet"), "lpips_alexnet")
    want, t_ref = timed(lambda: ref.lpips_alexnet(arrays, a / 127.5 - 1, b / 127.5 - 1))
    row("LPIPS", "pairs", len(a), t_port, t_ref, np.abs(port - want).max())

    port, t_port = timed(lambda: ssim(a, b, device=args.device))
    want, t_ref = timed(lambda: np.array([scipy_ssim(x, y) for x, y in zip(a, b, strict=True)]))
    row("SSIM", "pairs", len(a), t_port, t_ref, np.abs(port - want).max())


if __name__ == "__main__":
    main()
