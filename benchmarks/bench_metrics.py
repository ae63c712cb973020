"""Speed and agreement of the metric ports against the plain-numpy reference passes.

    python benchmarks/bench_metrics.py [--frames 16] [--device cpu]

Prints, for the I3D (FVD features), LPIPS and SSIM: throughput of the PyTorch port, of the
numpy/scipy reference measured in the same run (the baseline), their ratio, and the largest
absolute difference between the two on the same fixed inputs.

Then, for the I3D's two layer shortcuts, every call one forward over ``--clips`` clips makes
(the loss-vs-quality study scores 8 clips per call), timed against the plain PyTorch op on the
same input in the same run: its max pools in channels-last with ceil mode standing in for
TensorFlow's extra padding pixel, against ``max_pool3d`` in NCTHW with that pixel padded on a copy;
its 1x1x1 convolutions as one matrix product, against ``conv3d``. With the largest difference.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.signal
import torch
import torch.nn.functional as F

from scaling.metrics import I3D, LPIPS, i3d_features, lpips, ssim
from scaling.metrics import i3d as i3d_module
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


def i3d_layer_rows(model: I3D, clips: np.ndarray) -> None:
    """Time each pool and 1x1x1 convolution of one forward, shortcut against plain op."""
    calls = {"max pools": [], "1x1x1 convs": []}
    pool, pointwise = i3d_module._max_pool_same, i3d_module.pointwise_conv

    def record_pool(x, kernel, stride):
        calls["max pools"].append((x, kernel, stride))
        return pool(x, kernel, stride)

    def record_pointwise(x, weight, bias):
        calls["1x1x1 convs"].append((x, weight, bias))
        return pointwise(x, weight, bias)

    i3d_module._max_pool_same, i3d_module.pointwise_conv = record_pool, record_pointwise
    try:
        i3d_features(clips, model=model, batch_size=len(clips))
    finally:
        i3d_module._max_pool_same, i3d_module.pointwise_conv = pool, pointwise

    def padded_pool(x, kernel, stride):  # NCTHW, TF's extra pixel as a padded -inf copy
        x, pad = i3d_module._pad_same(x.contiguous(), kernel, stride, value=float("-inf"))
        return F.max_pool3d(x, kernel, stride, padding=pad)

    plain = {"max pools": padded_pool,
             "1x1x1 convs": lambda x, w, b: F.conv3d(x.contiguous(), w, b)}
    fast = {"max pools": pool, "1x1x1 convs": pointwise}
    with torch.no_grad():
        for name, args in calls.items():
            t_fast = t_plain = diff = 0.0
            shortcut, plain_op = fast[name], plain[name]
            for a in args:
                got, t = timed(lambda a=a, f=shortcut: f(*a))
                want, t0 = timed(lambda a=a, f=plain_op: f(*a))
                t_fast, t_plain = t_fast + t, t_plain + t0
                diff = max(diff, float((got - want).abs().max()))
            print(f"I3D {name:11s} ({len(args)} calls, {len(clips)} clips): shortcut "
                  f"{t_fast:.2f} s | plain op {t_plain:.2f} s | speed-up x{t_plain / t_fast:.2f} | "
                  f"max |difference| {diff:.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=16, help="frames per I3D clip")
    parser.add_argument("--clips", type=int, default=8, help="clips per I3D call (layer times)")
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
    i3d_layer_rows(i3d, rng.integers(0, 256, size=(args.clips, args.frames, 64, 64, 3),
                                     dtype=np.uint8))

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
