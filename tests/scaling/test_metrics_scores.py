"""FVD from features, PSNR and SSIM against known values and independent references."""

import numpy as np
import pytest
import scipy.signal

from scaling.metrics import frechet_distance, fvd, fvd_from_features, psnr, ssim
from scaling.metrics.image import gaussian_window
from tests.helpers.metric_weights import require_metric_weights


def eig_frechet(mu1, s1, mu2, s2):
    """Closed form via the symmetric product sqrt(s1) s2 sqrt(s1) (no sqrtm)."""
    w, v = np.linalg.eigh(s1)
    r1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    tr = np.sqrt(np.clip(np.linalg.eigvalsh(r1 @ s2 @ r1), 0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr)


def test_frechet_diagonal_known_value():
    # Diagonal Gaussians: |mu1 - mu2|^2 + sum (sd1 - sd2)^2.
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    sd1, sd2 = np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 1.0])
    got = frechet_distance(mu1, np.diag(sd1 ** 2), mu2, np.diag(sd2 ** 2))
    assert got == pytest.approx(5.0 + 1.0 + 0.0 + 4.0, abs=1e-9)


def test_frechet_matches_eigen_form_full_and_rank_deficient():
    rng = np.random.default_rng(0)
    for n in (500, 40):  # 40 samples of 64-d features: singular covariances, as with few clips
        a = rng.normal(size=(n, 64)) @ rng.normal(size=(64, 64))
        b = rng.normal(0.3, 1.0, size=(n, 64)) @ rng.normal(size=(64, 64))
        got = fvd_from_features(a, b)
        want = eig_frechet(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
        assert got == pytest.approx(want, rel=1e-6)
        assert fvd_from_features(a, a) == pytest.approx(0.0, abs=1e-6 * np.trace(np.cov(a.T)))
        assert fvd_from_features(a, b) == pytest.approx(fvd_from_features(b, a), rel=1e-6)


def test_frechet_bad_input():
    with pytest.raises(ValueError, match="at least two samples"):
        fvd_from_features(np.zeros((1, 4)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="mismatched Gaussian shapes"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(2), np.eye(2))


@pytest.mark.slow
def test_fvd_and_rollout_quality_end_to_end():
    require_metric_weights()
    from scaling.metrics import I3D, LPIPS, lpips, rollout_quality

    model = I3D.from_pretrained("cpu")
    rng = np.random.default_rng(0)
    real = rng.integers(0, 256, size=(2, 9, 32, 32, 3), dtype=np.uint8)
    gen = (real // 4).astype(np.uint8)
    gen[:, 0] = real[:, 0]  # the context frame is copied from the real clip
    # One I3D pass over four clips (CPU time is scarce); FVD(x, x) = 0 is checked on features.
    q = rollout_quality(real, gen, context_frames=1, i3d=model, device="cpu")
    assert q.fvd > 1.0 and q.num_videos == 2 and q.num_frames == 8
    net = LPIPS.from_pretrained("cpu")
    assert q.lpips == pytest.approx(lpips(real[:, 1:], gen[:, 1:], model=net).mean(), rel=1e-9)
    assert q.psnr == pytest.approx(psnr(real[:, 1:], gen[:, 1:]).mean(), rel=1e-12)
    assert q.ssim == pytest.approx(ssim(real[:, 1:], gen[:, 1:]).mean(), rel=1e-12)
    assert q.ssim < 1.0 and q.lpips > 0.0
    with pytest.raises(ValueError, match="at least 2 per set"):
        fvd(real[:1], real, model=model)
    with pytest.raises(ValueError, match="at least 9 frames"):
        fvd(real[:, :8], real[:, :8], model=model)


def test_rollout_quality_bad_input():
    from scaling.metrics import rollout_quality

    x = np.zeros((2, 9, 32, 32, 3), np.uint8)
    with pytest.raises(ValueError, match="one shape"):
        rollout_quality(x, x[:, :8])
    with pytest.raises(ValueError, match="context_frames"):
        rollout_quality(x, x, context_frames=9)
    with pytest.raises(ValueError, match="compute_fvd=False"):
        rollout_quality(x[:, :8], x[:, :8])


def test_psnr_known_values():
    a = np.zeros((2, 3, 8, 8, 3), np.uint8)
    b = a.copy()
    b[0] += 1  # MSE 1 -> 20 log10(255)
    b[1, :, :4] = 10  # MSE 50 on half of the pixels
    got = psnr(a, b)
    assert got.shape == (2, 3)
    np.testing.assert_allclose(got[0], 20 * np.log10(255.0), rtol=1e-12)
    np.testing.assert_allclose(got[1], 10 * np.log10(255.0 ** 2 / 50.0), rtol=1e-12)
    assert np.isinf(psnr(a, a)).all()
    np.testing.assert_array_equal(psnr(a, b, max_db=45.0), [[45.0] * 3, got[1]])


def scipy_ssim(x, y, data_range=255.0):
    """Wang et al. SSIM, valid region, per channel, averaged: written with scipy.signal."""
    g = gaussian_window()
    win = np.outer(g, g)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    vals = []
    for c in range(3):
        a, b = x[..., c].astype(np.float64), y[..., c].astype(np.float64)
        f = lambda z: scipy.signal.correlate2d(z, win, mode="valid")  # noqa: E731
        ma, mb = f(a), f(b)
        va, vb, cov = f(a * a) - ma ** 2, f(b * b) - mb ** 2, f(a * b) - ma * mb
        s = (2 * ma * mb + c1) * (2 * cov + c2) / ((ma ** 2 + mb ** 2 + c1) * (va + vb + c2))
        vals.append(s.mean())
    return float(np.mean(vals))


def test_ssim_against_scipy_reference():
    rng = np.random.default_rng(4)
    a = rng.integers(0, 256, size=(3, 24, 20, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-30, 31, size=a.shape), 0, 255).astype(np.uint8)
    got = ssim(a, b, device="cpu")
    want = [scipy_ssim(a[i], b[i]) for i in range(3)]
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    assert 0.0 < got.min() and got.max() < 1.0


def test_ssim_known_values():
    a = np.full((16, 16, 3), 100, np.uint8)
    b = np.full((16, 16, 3), 150, np.uint8)
    # Constant images: only the luminance term remains, (2 m1 m2 + C1) / (m1^2 + m2^2 + C1).
    c1 = (0.01 * 255) ** 2
    want = (2 * 100 * 150 + c1) / (100**2 + 150**2 + c1)
    assert float(ssim(a, b)) == pytest.approx(want, rel=1e-12)
    rng = np.random.default_rng(5)
    x = rng.integers(0, 256, size=(2, 4, 32, 32, 3), dtype=np.uint8)
    np.testing.assert_allclose(ssim(x, x), 1.0, rtol=1e-12)
    y = rng.integers(0, 256, size=x.shape, dtype=np.uint8)
    np.testing.assert_allclose(ssim(x, y), ssim(y, x), rtol=1e-12)
    assert ssim(x, y).shape == (2, 4)


def test_image_metrics_bad_input():
    x = np.zeros((2, 32, 32, 3), np.uint8)
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(x[:, :8], x[:, :8])
    with pytest.raises(ValueError, match="same shape"):
        psnr(x, x[:1])
    with pytest.raises(ValueError, match=r"\(\.\.\., H, W, 3\)"):
        psnr(x[..., 0], x[..., 0])
    with pytest.raises(TypeError, match="numpy array or torch tensor"):
        ssim([[0]], [[0]])
