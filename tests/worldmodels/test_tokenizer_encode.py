import json

import numpy as np
import pytest
import torch

from offline_data.reader import WindowReader
from offline_data.token_windows import TokenWindowLoader
from offline_data.tokens import TokenShards
from scaling.cli import main as embscale
from tests.helpers.tokenizers import TINY_VQ, make_dataset, one_torch_thread
from worldmodels.tokenize_dataset import decode_episode, encode_dataset
from worldmodels.tokenizer import VQVAE, VQConfig, save_tokenizer

DATASET = "embscale/synthetic/random-v0"


@pytest.fixture(autouse=True)
def _one_thread():
    with one_torch_thread():
        yield


def _tokenizer(path, seed=0, size=64):
    torch.manual_seed(seed)
    model = VQVAE(VQConfig(image_height=size, image_width=size, tokens_per_frame=16, **TINY_VQ))
    model.train()
    model.compute_loss(np.random.randint(0, 256, (4, size, size, 3), dtype=np.uint8))
    model.eval()
    save_tokenizer(model, path)
    return model


def test_encode_roundtrip_matches_tokenizer_and_dataset(tmp_path):
    make_dataset(DATASET)
    model = _tokenizer(tmp_path / "tok.pt")
    shards = encode_dataset(tmp_path / "tok.pt", DATASET, tmp_path / "tokens", batch_size=5,
                            progress=False)
    h = shards.header
    assert h.tokenizer_sha256 == model.sha256() and h.tokenizer_id == model.tokenizer_id()
    assert h.tokens_per_frame == 16 and h.image_vocab == 16 and h.action_vocab_sizes == (4,)
    assert h.action_discretizer is not None and h.dataset_id == DATASET
    for split in ("train", "val", "test"):
        reader = WindowReader(DATASET, seq_len=1, split=split)
        arr = shards.split(split)
        assert h.splits[split]["episode_ids"] == reader.episode_ids
        for i, episode_id in enumerate(reader.episode_ids):
            frames, actions, rewards, terms = reader.episode(episode_id)
            lo, hi = arr.episode_starts[i], arr.episode_starts[i + 1]
            assert hi - lo == len(frames)
            np.testing.assert_array_equal(arr.frame_tokens[lo:hi], model.encode(frames).numpy())
            np.testing.assert_array_equal(arr.action_tokens[lo:hi], actions)
            np.testing.assert_array_equal(arr.rewards[lo:hi], rewards)
            np.testing.assert_array_equal(arr.terminations[lo:hi], terms)
            decoded = decode_episode(shards, split, i, model)
            assert decoded.shape == frames.shape and decoded.dtype == np.uint8
            np.testing.assert_array_equal(decoded, model.decode(model.encode(frames)).numpy())
    batch = next(iter(TokenWindowLoader(shards, "train", seq_len=3, batch_size=2, seed=0)))
    assert batch.tokens.shape == (2, 3 * 17) and batch.tokens.max() < 20


def test_ranks_write_parts_that_merge_to_the_single_process_result(tmp_path):
    make_dataset(DATASET)
    _tokenizer(tmp_path / "tok.pt")
    single = encode_dataset(tmp_path / "tok.pt", DATASET, tmp_path / "single", progress=False)
    assert encode_dataset(tmp_path / "tok.pt", DATASET, tmp_path / "multi", rank=1,
                          world_size=2, progress=False) is None
    merged = encode_dataset(tmp_path / "tok.pt", DATASET, tmp_path / "multi", rank=0,
                            world_size=2, progress=False, wait_timeout_s=30)
    assert not (tmp_path / ".multi.parts").exists()
    assert merged.header.splits == single.header.splits
    for split in ("train", "val", "test"):
        for a, b in zip(merged.split(split), single.split(split), strict=True):
            np.testing.assert_array_equal(a, b)


def test_encode_errors(tmp_path):
    make_dataset(DATASET, num_episodes=3, size=32)
    _tokenizer(tmp_path / "tok.pt")
    with pytest.raises(ValueError, match=r"frames of shape \(32, 32, 3\) but the tokenizer was "
                                         r"trained on \(64, 64, 3\)"):
        encode_dataset(tmp_path / "tok.pt", DATASET, tmp_path / "tokens", progress=False)
    assert not (tmp_path / "tokens").exists()
    with pytest.raises(FileNotFoundError, match="embscale tokenizer train"):
        encode_dataset(tmp_path / "nope.pt", DATASET, tmp_path / "tokens", progress=False)
    (tmp_path / "exists").mkdir()
    with pytest.raises(FileExistsError, match="--overwrite"):
        encode_dataset(tmp_path / "tok.pt", DATASET, tmp_path / "exists", progress=False)


def test_shards_of_another_tokenizer_are_refused(tmp_path):
    make_dataset(DATASET)
    _tokenizer(tmp_path / "a.pt", seed=0)
    other = _tokenizer(tmp_path / "b.pt", seed=1)
    shards = encode_dataset(tmp_path / "a.pt", DATASET, tmp_path / "tokens", progress=False)
    with pytest.raises(ValueError, match="not by the given tokenizer"):
        decode_episode(shards, "train", 0, other)
    with pytest.raises(ValueError, match="re-encode the dataset"):
        TokenShards.open(tmp_path / "tokens", tokenizer_sha256=other.sha256())


def test_cli_train_then_encode(tmp_path, capsys):
    make_dataset(DATASET)
    run = tmp_path / "run"
    args = ["tokenizer", "train", "--dataset", DATASET, "--tokens-per-frame", "16",
            "--codebook-size", "16", "--code-dim", "4", "--channels", "8", "--max-channels", "8",
            "--steps", "3", "--batch-size", "4", "--eval-every", "2", "--eval-frames", "4",
            "--out", str(run), "--no-progress"]
    assert embscale(args) == 0
    out = capsys.readouterr().out
    assert "held-out PSNR" in out and "codebook usage" in out and "perplexity" in out
    assert embscale(args) == 2  # the run exists: refused without --resume
    assert "--resume" in capsys.readouterr().err
    assert embscale(args[:-3] + ["--out", str(run), "--resume", "--steps", "4",
                                 "--no-progress"]) == 0
    assert "step 4/4" in capsys.readouterr().out
    assert embscale(["tokenizer", "train", "--dataset", DATASET, "--tokens-per-frame", "50",
                     "--out", str(tmp_path / "bad")]) == 2
    assert "cannot tile a 64x64 frame" in capsys.readouterr().err
    assert embscale(["tokenizer", "encode", "--tokenizer", str(run), "--dataset", DATASET,
                     "--out", str(tmp_path / "tokens"), "--no-progress"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["tokens_per_frame"] == 16 and info["splits"]["train"]["num_episodes"] >= 1
