import doctest

import numpy as np
import pytest
import torch

from tests.helpers.tokenizers import one_torch_thread
from worldmodels.tokenizer import (
    VQVAE,
    VQConfig,
    load_tokenizer,
    possible_tokens_per_frame,
    save_tokenizer,
    token_grid,
)


@pytest.fixture(autouse=True)
def _one_thread():
    with one_torch_thread():
        yield


TINY = dict(codebook_size=32, code_dim=8, channels=8, max_channels=16)


def _frames(n=3, h=64, w=64):
    return np.random.randint(0, 256, size=(n, h, w, 3), dtype=np.uint8)


def test_doctests():
    import worldmodels.tokenizer_config as config_mod

    result = doctest.testmod(config_mod)
    assert result.failed == 0 and result.attempted > 0


@pytest.mark.parametrize("k", [16, 36, 64, 100, 256])
def test_encode_decode_shapes_and_id_range(k):
    model = VQVAE(VQConfig(tokens_per_frame=k, **TINY))
    frames = _frames()
    model.train()
    model.compute_loss(frames)  # initialises the codebook on encoder outputs
    model.eval()
    ids = model.encode(frames)
    assert ids.shape == (3, k) and ids.dtype == torch.int64
    assert ids.min() >= 0 and ids.max() < 32
    recon = model.decode(ids)
    assert recon.shape == (3, 64, 64, 3) and recon.dtype == torch.uint8
    # the quantizer's forward pass and encode() agree
    out = model(model.preprocess(frames))
    assert torch.equal(out.indices, ids)


def test_540_tokens_on_larger_frames():
    cfg = VQConfig(image_height=72, image_width=120, tokens_per_frame=540, **TINY)
    assert cfg.grid == (18, 30)
    model = VQVAE(cfg).eval()
    ids = model.encode(_frames(2, 72, 120))
    assert ids.shape == (2, 540)
    assert model.decode(ids).shape == (2, 72, 120, 3)
    assert 540 in possible_tokens_per_frame(144, 240)


@pytest.mark.parametrize("k", [50, 3, 4096])
def test_impossible_tokens_per_frame(k):
    with pytest.raises(ValueError, match=f"tokens_per_frame={k} cannot tile a 64x64 frame"):
        VQConfig(tokens_per_frame=k)
    with pytest.raises(ValueError, match="cannot tile"):
        token_grid(72, 120, 64)


def test_frame_size_mismatch_and_bad_tokens():
    model = VQVAE(VQConfig(tokens_per_frame=16, **TINY)).eval()
    with pytest.raises(ValueError, match=r"expects \(B, 64, 64, 3\).*resize the frames"):
        model.encode(_frames(2, 96, 96))
    with pytest.raises(ValueError, match=r"expected \(B, 16\)"):
        model.decode(torch.zeros(2, 64, dtype=torch.long))
    with pytest.raises(ValueError, match=r"must lie in \[0, 32\)"):
        model.decode(torch.full((2, 16), 32))


def test_training_reduces_loss_and_keeps_codes_alive():
    torch.manual_seed(0)
    model = VQVAE(VQConfig(tokens_per_frame=16, **TINY))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    # simple structured frames: coloured rectangles on black
    frames = np.zeros((16, 64, 64, 3), np.uint8)
    for i in range(16):
        frames[i, 8 * (i % 4):8 * (i % 4) + 16, 4 * i:4 * i + 12] = (40 * (i % 6), 200, 90)
    first = None
    # 80 steps: past the ~70 steps after which codes left unused are restarted, which is what
    # brings a codebook that collapsed onto the black background back into use
    for _ in range(80):
        out = model.compute_loss(frames)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        first = first or out.metrics["recon_loss"]
    assert out.metrics["recon_loss"] < 0.5 * first
    model.eval()
    assert len(torch.unique(model.encode(frames))) > 1


def test_save_load_roundtrip_and_checksum(tmp_path):
    model = VQVAE(VQConfig(tokens_per_frame=16, **TINY))
    model.train()
    model.compute_loss(_frames())
    sha = save_tokenizer(model, tmp_path / "tok.pt")
    loaded = load_tokenizer(tmp_path / "tok.pt")
    assert loaded.sha256() == sha == model.sha256()
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    model.eval()
    frames = _frames()
    assert torch.equal(model.encode(frames), loaded.encode(frames))
    assert model.tokenizer_id().startswith("vqvae-k16-v32-")
    other = VQVAE(VQConfig(tokens_per_frame=16, **TINY))
    assert other.sha256() != sha
    with pytest.raises(FileNotFoundError, match="embscale tokenizer train"):
        load_tokenizer(tmp_path / "missing.pt")


@pytest.mark.parametrize("normalize", [True, False])
def test_code_normalisation_option(normalize):
    model = VQVAE(VQConfig(tokens_per_frame=16, normalize_codes=normalize, **TINY))
    model.train()
    for _ in range(2):
        model.compute_loss(_frames())
    norms = model.quantizer.embedding.norm(dim=1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5) == normalize
    model.eval()
    ids = model.encode(_frames())
    assert ids.shape == (3, 16) and ids.max() < 32


def test_trunk_is_the_same_for_every_k():
    """Only the resample to the grid differs across K: same stride-2 levels and shapes."""
    shapes = {}
    for k in (16, 36, 64, 100, 256, 1024):
        model = VQVAE(VQConfig(tokens_per_frame=k, **TINY))
        assert len(model.encoder.down) == len(model.decoder.up) == model.config.num_down == 2
        assert model.config.level_sizes == [(64, 64), (32, 32), (16, 16)]
        shapes[k] = {name: tuple(p.shape) for name, p in model.named_parameters()
                     if not name.startswith(("encoder.squeeze", "decoder.expand"))}
    assert all(s == shapes[64] for s in shapes.values())
    # 16x16 folds into 4x4 patches of 4x4 for 16 tokens; 36 tokens resize to 18x18 first; 256
    # tokens are the trunk's map itself
    enc = {k: VQVAE(VQConfig(tokens_per_frame=k, **TINY)).encoder for k in (16, 36, 256)}
    assert not enc[16].resized and enc[16].folded == (16, 16)
    assert enc[36].resized and enc[36].folded == (18, 18)
    assert not enc[256].resized and isinstance(enc[256].squeeze, torch.nn.Identity)


def test_bad_num_down():
    with pytest.raises(ValueError, match="num_down must be >= 1, got 0"):
        VQConfig(num_down=0)
    with pytest.raises(ValueError, match="num_down=7 halves a 64x64 frame below one pixel"):
        VQConfig(num_down=7)


def test_loading_weights_of_another_architecture_is_refused(tmp_path):
    model = VQVAE(VQConfig(tokens_per_frame=16, **TINY))
    save_tokenizer(model, tmp_path / "tok.pt")
    payload = torch.load(tmp_path / "tok.pt", weights_only=True)
    # what a checkpoint of the old K-dependent encoder looks like: an extra level, no pre conv
    payload["state_dict"]["encoder.down.2.weight"] = torch.zeros(16, 16, 4, 4)
    del payload["state_dict"]["encoder.pre.weight"]
    torch.save(payload, tmp_path / "old.pt")
    with pytest.raises(ValueError, match=r"older tokenizer architecture.*embscale tokenizer train"):
        load_tokenizer(tmp_path / "old.pt")


def test_foreground_mask_and_weighted_loss():
    from worldmodels.tokenizer import foreground_mask

    torch.manual_seed(0)
    frames = np.zeros((6, 64, 64, 3), np.uint8)
    frames[:, 10:20, :, 0] = 200  # a static band: background
    for i in range(6):
        frames[i, 40:42, 8 * i:8 * i + 2] = 255  # a moving 2x2 "ball"
    x = torch.as_tensor(frames).permute(0, 3, 1, 2).float() / 255 - 0.5
    mask = foreground_mask(x)
    assert mask.shape == (6, 1, 64, 64)
    for i in range(6):  # exactly the ball's 4 pixels are foreground in each frame
        assert mask[i, 0].sum() == 4 and mask[i, 0, 40:42, 8 * i:8 * i + 2].all()
    vq = VQVAE(VQConfig(tokens_per_frame=16, codebook_size=16))
    plain = vq.compute_loss(frames).metrics["recon_loss"]
    weighted = vq.compute_loss(frames, foreground_weight=50.0).metrics["recon_loss"]
    assert weighted != pytest.approx(plain, rel=1e-3)  # the ball's error now counts more
    with pytest.raises(ValueError, match="foreground_weight"):
        from worldmodels.tokenizer_train import TokenizerTrainConfig

        TokenizerTrainConfig(dataset_id="x/y-v0", foreground_weight=-1.0)


def test_patch_local_tokens_change_only_where_the_picture_does():
    """A patch-local tokenizer keeps every token whose patch is unchanged; the conv encoder
    (whose receptive field spans neighbouring patches) does not."""
    torch.manual_seed(0)
    frames = _frames(16)
    moved = frames.copy()
    moved[:, 20:22, 36:38] = (200, 72, 72)  # a 2x2 "ball" inside the 8x8 patch at row 2, col 4
    changed = np.zeros((8, 8), bool)
    changed[2, 4] = True
    for local in (True, False):
        model = VQVAE(VQConfig(tokens_per_frame=64, patch_local=local,
                               **{**TINY, "codebook_size": 256}))
        model.train()
        model.compute_loss(np.concatenate([frames, moved]))  # codebook on encoder outputs
        model.eval()
        diff = (model.encode(frames) != model.encode(moved)).view(16, 8, 8)
        if local:
            assert not diff[:, ~torch.as_tensor(changed)].any()
            assert diff[:, 2, 4].float().mean() > 0.5
        else:
            assert diff[:, ~torch.as_tensor(changed)].any()
    recon = model.decode(model.encode(frames))
    assert recon.shape == frames.shape


def test_patch_local_needs_whole_patches():
    with pytest.raises(ValueError, match="patch_local needs a token grid that divides"):
        VQConfig(tokens_per_frame=36, patch_local=True)  # 6x6 grid on 64x64 frames
    assert VQConfig(tokens_per_frame=256, patch_local=True).grid == (16, 16)


def test_checksum_of_tokenizers_saved_before_patch_local_is_unchanged():
    """Adding the patch_local field must not invalidate tokenizers (and token shards) saved
    before it: their checksum hashed the config without that key."""
    import dataclasses
    import hashlib
    import json

    model = VQVAE(VQConfig(tokens_per_frame=16, **TINY))
    old = dataclasses.asdict(model.config)
    del old["patch_local"]
    h = hashlib.sha256(json.dumps(old, sort_keys=True).encode())
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    assert model.sha256() == h.hexdigest()
    local = VQVAE(VQConfig(tokens_per_frame=16, patch_local=True, **TINY))
    assert local.sha256() != model.sha256()


@pytest.mark.parametrize("local", [False, True])
def test_empty_batches_encode_and_decode_to_empty_arrays(local):
    model = VQVAE(VQConfig(tokens_per_frame=16, patch_local=local, **TINY)).eval()
    ids = model.encode(np.zeros((0, 64, 64, 3), np.uint8))
    assert ids.shape == (0, 16) and ids.dtype == torch.int64
    frames = model.decode(ids)
    assert frames.shape == (0, 64, 64, 3) and frames.dtype == torch.uint8
