"""The PyTorch ports against plain-numpy forward passes over the original arrays."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from scaling.metrics import I3D, LPIPS, i3d_features, lpips, preprocess_videos
from scaling.metrics import reference as ref
from scaling.metrics.i3d import _max_pool_same, pointwise_conv, tf_resize_matrix, tf_same_pad
from scaling.metrics.weights import original_checkpoint, read_original_arrays
from tests.helpers.metric_weights import require_metric_weights

TOL = 1e-4  # the target: agreement with the original networks to 1e-4


def smooth_video(rng, n, t, h, w):
    """Fixed uint8 clips with structure (moving blobs over noise), not just noise."""
    yy, xx = np.mgrid[0:h, 0:w]
    out = np.empty((n, t, h, w, 3), np.uint8)
    for i in range(n):
        base = rng.integers(0, 60, size=(h, w, 3))
        for j in range(t):
            cy, cx = h * (0.3 + 0.02 * j + 0.1 * i), w * (0.6 - 0.03 * j)
            blob = 190 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (h / 6) ** 2))
            out[i, j] = np.clip(base + blob[..., None] * np.array([1.0, 0.6, 0.2]), 0, 255)
    return out


@pytest.fixture(scope="module")
def i3d_setup():
    require_metric_weights()
    arrays = read_original_arrays(original_checkpoint("i3d"), "i3d")
    return I3D.from_pretrained("cpu"), arrays


@pytest.fixture(scope="module")
def lpips_setup():
    require_metric_weights()
    arrays = read_original_arrays(original_checkpoint("lpips_alexnet"), "lpips_alexnet")
    return LPIPS.from_pretrained("cpu"), arrays


@pytest.mark.parametrize("half", [True, False])
def test_tf_resize_matches_reference(half):
    rng = np.random.default_rng(1)
    v = rng.integers(0, 256, size=(1, 9, 40, 52, 3), dtype=np.uint8)
    got = preprocess_videos(torch.from_numpy(v), half_pixel_centers=half).double().numpy()
    want = ref.i3d_preprocess(v, half_pixel_centers=half)
    assert got.shape == (1, 9, 224, 224, 3)
    assert np.abs(got - want).max() < 1e-5
    assert got.min() >= -1 - 1e-6 and got.max() <= 1 + 1e-6


def test_tf_resize_rules_known_values():
    # 2 -> 4 pixels. TF2 (half-pixel centres): sources -0.25, 0.25, 0.75, 1.25, clamped.
    np.testing.assert_allclose(tf_resize_matrix(2, 4, True) @ [0.0, 1.0], [0, 0.25, 0.75, 1])
    # TF1 legacy rule of the original FVD code: sources 0, 0.5, 1, 1.5.
    np.testing.assert_allclose(tf_resize_matrix(2, 4, False) @ [0.0, 1.0], [0, 0.5, 1, 1])
    # For upsampling the TF2 rule equals torch's bilinear with align_corners=False, no antialias.
    img = torch.rand(1, 3, 64, 48, dtype=torch.float64)
    mine = torch.einsum("yh,bchw,xw->bcyx", torch.from_numpy(tf_resize_matrix(64, 224)), img,
                        torch.from_numpy(tf_resize_matrix(48, 224)))
    theirs = F.interpolate(img, size=(224, 224), mode="bilinear", align_corners=False)
    assert torch.allclose(mine, theirs, atol=1e-12)


@pytest.mark.parametrize("shape,kernel,stride", [
    ((2, 6, 8, 112, 112), (1, 3, 3), (1, 2, 2)),  # TF pads (0, 1): ceil mode, no copy
    ((2, 6, 9, 113, 57), (1, 3, 3), (1, 2, 2)),  # odd sizes: (1, 1)
    ((2, 6, 8, 28, 28), (3, 3, 3), (2, 2, 2)),
    ((2, 6, 4, 14, 14), (2, 2, 2), (2, 2, 2)),
    ((2, 6, 5, 7, 9), (3, 3, 3), (1, 1, 1)),
    ((2, 6, 5, 7, 9), (2, 2, 2), (1, 1, 1)),  # even kernel, stride 1: an explicit padded copy
])
def test_max_pool_equals_tf_same_padding_with_minus_infinity(shape, kernel, stride):
    """The pool's shortcuts (channels-last, ceil mode for TF's extra pixel) change no value."""
    x = torch.randn(shape)
    pads = [p for d in (4, 3, 2) for p in tf_same_pad(shape[d], kernel[d - 2], stride[d - 2])]
    want = F.max_pool3d(F.pad(x, pads, value=float("-inf")), kernel, stride)
    assert torch.equal(_max_pool_same(x, kernel, stride), want)


def test_pointwise_conv_is_a_1x1x1_convolution():
    x, w, b = torch.randn(2, 5, 3, 4, 6), torch.randn(7, 5, 1, 1, 1), torch.randn(7)
    got = pointwise_conv(x, w, b)
    assert got.shape == (2, 7, 3, 4, 6)
    torch.testing.assert_close(got, F.conv3d(x, w, b), rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_i3d_matches_reference(i3d_setup):
    model, arrays = i3d_setup
    v = smooth_video(np.random.default_rng(0), 1, 9, 48, 40)
    with torch.no_grad():
        got = model(preprocess_videos(torch.from_numpy(v))).double().numpy()
    want = ref.i3d_logits(arrays, ref.i3d_preprocess(v))
    assert got.shape == want.shape == (1, 400)
    assert np.abs(got - want).max() < TOL, np.abs(got - want).max()
    assert np.abs(want).max() > 1.0  # real logits, not a degenerate all-zero output
    # Batched API, batch of one, same numbers.
    feats = i3d_features(v, model=model, batch_size=1)
    assert np.abs(feats - want).max() < TOL


def test_i3d_rejects_bad_clips(i3d_setup):
    model, _ = i3d_setup
    with pytest.raises(ValueError, match="at least 9 frames"):
        i3d_features(np.zeros((2, 8, 64, 64, 3), np.uint8), model=model)
    with pytest.raises(ValueError, match=r"\(N, T, H, W, 3\)"):
        i3d_features(np.zeros((2, 16, 64, 64), np.uint8), model=model)
    with pytest.raises(TypeError, match="uint8"):
        i3d_features(np.zeros((2, 16, 64, 64, 3), np.float32), model=model)
    with pytest.raises(ValueError, match="224x224"):
        model(torch.zeros(1, 16, 64, 64, 3))


def test_lpips_matches_reference(lpips_setup):
    model, arrays = lpips_setup
    rng = np.random.default_rng(2)
    a = smooth_video(rng, 1, 6, 64, 64)[0]
    b = np.clip(a.astype(int) + rng.integers(-40, 41, size=a.shape), 0, 255).astype(np.uint8)
    b[1] = a[4]  # one pair of quite different frames
    got = lpips(a, b, model=model, batch_size=4)
    want = ref.lpips_alexnet(arrays, a / 127.5 - 1.0, b / 127.5 - 1.0)
    assert got.shape == (6,)
    assert np.abs(got - want).max() < TOL, np.abs(got - want).max()
    assert (want > 0.01).all()


def test_lpips_properties(lpips_setup):
    model, _ = lpips_setup
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, size=(2, 3, 48, 40, 3), dtype=np.uint8)
    b = rng.integers(0, 256, size=(2, 3, 48, 40, 3), dtype=np.uint8)
    d_ab = lpips(a, b, model=model)
    assert d_ab.shape == (2, 3)
    np.testing.assert_array_equal(lpips(a, a, model=model), 0.0)
    np.testing.assert_allclose(lpips(b, a, model=model), d_ab, rtol=1e-6)
    # Noise against noise is far; a slightly perturbed copy is near.
    near = np.clip(a.astype(int) + 3, 0, 255).astype(np.uint8)
    assert (lpips(a, near, model=model) < d_ab).all()


def test_lpips_rejects_bad_input(lpips_setup):
    model, _ = lpips_setup
    x = np.zeros((2, 64, 64, 3), np.uint8)
    with pytest.raises(ValueError, match="same shape"):
        lpips(x, x[:1], model=model)
    with pytest.raises(ValueError, match="at least 31x31"):
        lpips(x[:, :16, :16], x[:, :16, :16], model=model)
    with pytest.raises(TypeError, match="uint8"):
        lpips(x.astype(float), x.astype(float), model=model)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(i3d_setup, lpips_setup):
    from scaling.metrics import ssim

    rng = np.random.default_rng(6)
    v = smooth_video(rng, 2, 9, 64, 64)
    w = np.clip(v.astype(int) + rng.integers(-20, 21, size=v.shape), 0, 255).astype(np.uint8)
    cpu = i3d_features(v, model=i3d_setup[0])
    gpu = i3d_features(v, model=I3D.from_pretrained("cuda"))
    assert np.abs(cpu - gpu).max() < 1e-3  # TF32/cuDNN kernels differ from CPU ones
    np.testing.assert_allclose(lpips(v, w, model=LPIPS.from_pretrained("cuda")),
                               lpips(v, w, model=lpips_setup[0]), atol=1e-4)
    np.testing.assert_allclose(ssim(v, w, device="cuda"), ssim(v, w, device="cpu"), rtol=1e-9)
