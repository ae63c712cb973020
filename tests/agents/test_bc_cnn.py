import json

import gymnasium as gym
import numpy as np
import pytest
import torch

from agents.bc_cnn import BCCNN, BCCNNConfig, resize_frames, save_bc_cnn
from agents.bc_cnn_shapes import stored_frame_bytes
from agents.frame_data import FrameDataSource
from offline_data.datasets import Episode
from offline_data.minari_writer import create_minari_dataset
from worldmodels.checkpoint import load_model
from worldmodels.trainer import TrainConfig, Trainer, seed_everything

DATASET = "embscale/bccnn-test/structured-v0"


def _episode(rng, n=16):
    # a bright 4x4 square sits in one of three columns; the demonstrator's action is its column
    cols = rng.integers(0, 3, n + 1)
    frames = np.zeros((n + 1, 12, 12, 3), np.uint8)
    for t, c in enumerate(cols):
        frames[t, 4:8, 4 * c:4 * c + 4] = 255
    actions = cols[:n].astype(np.int64)
    return Episode(frames, actions, np.ones(n, np.float32), np.eye(n, dtype=bool)[-1],
                   np.zeros(n, bool), {})


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    create_minari_dataset(DATASET, [_episode(rng) for _ in range(60)],
                          observation_space=gym.spaces.Box(0, 255, (12, 12, 3), np.uint8),
                          action_space=gym.spaces.Discrete(3))
    return FrameDataSource(DATASET, seq_len=4)


def test_forward_shapes_and_params_include_cnn(data):
    model = BCCNN(data.model_config(n_layer=1, n_head=2, n_embd=16))
    frames = data.loader("train", 2, seed=0).batch_at(0).frames
    assert frames.shape == (2, 4, 12, 12, 3) and frames.dtype == torch.uint8
    logits = model(frames)
    assert [tuple(lg.shape) for lg in logits] == [(2, 4, 3)]
    cnn = sum(p.numel() for p in model.cnn.parameters())
    assert cnn > 0 and model.num_params() == sum(p.numel() for p in model.parameters())
    assert model.predict_actions(frames).shape == (2, 1)


def test_causal_one_token_per_timestep(data):
    model = BCCNN(data.model_config(n_layer=1, n_head=2, n_embd=16)).eval()
    frames = data.loader("train", 2, seed=0).batch_at(0).frames
    a = model(frames)[0]
    changed = frames.clone()
    changed[:, -1] = 255 - changed[:, -1]
    b = model(changed)[0]
    torch.testing.assert_close(a[:, :-1], b[:, :-1])  # the future does not leak backwards
    assert not torch.allclose(a[:, -1], b[:, -1])


def test_bc_cnn_trains_with_the_shared_trainer(data, tmp_path):
    seed_everything(0)
    model = BCCNN(data.model_config(n_layer=1, n_head=2, n_embd=16))
    cfg = TrainConfig(run_dir=str(tmp_path / "run"), learning_rate=3e-3, warmup_steps=2,
                      micro_batch_size=8, max_steps=40, val_batches=2, tensorboard=False)
    result = Trainer(model, data, cfg, run_config={"model_kind": "bc_cnn",
                                                   "model_config": model.config.to_dict()}).train()
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["tokens"] == 40 * 8 * 4  # D counts one input per timestep
    assert rows[-1]["params"] == model.num_params()
    assert rows[-1]["val/loss"] < 0.5 * rows[0]["train/loss"]
    loaded = load_model(tmp_path / "run" / "checkpoints" / "last.pt", expect="bc_cnn")
    frames = data.loader("val", 2, seed=0).batch_at(0).frames
    torch.testing.assert_close(loaded(frames)[0], model.eval()(frames)[0])
    assert result.steps == 40


def test_ranks_read_the_global_batch(data):
    single = data.loader("train", 4, seed=3).batch_at(5).frames
    ranks = [data.loader("train", 2, seed=3, rank=r, world_size=2).batch_at(5).frames
             for r in range(2)]
    assert torch.equal(torch.stack(ranks, 1).reshape(single.shape), single)


def test_bad_input(data, tmp_path):
    with pytest.raises(ValueError, match="action vocabularies"):
        data.check_model(BCCNN(BCCNNConfig.for_width(1, 1, 8, 4, (5,), image_size=12)))
    with pytest.raises(ValueError, match="block_size"):
        data.check_model(BCCNN(BCCNNConfig.for_width(1, 1, 8, 2, (3,), image_size=12)))
    model = BCCNN(BCCNNConfig.for_width(1, 1, 8, 2, (3,), image_size=12))
    with pytest.raises(ValueError, match="context"):
        model(torch.zeros(1, 3, 12, 12, 3, dtype=torch.uint8))
    with pytest.raises(ValueError, match="image_size"):
        BCCNNConfig(image_size=4)
    save_bc_cnn(model, tmp_path / "m.pt")
    assert load_model(tmp_path / "m.pt", expect="bc_cnn").config == model.config
    with pytest.raises(FileNotFoundError, match="embscale train"):
        load_model(tmp_path / "nope.pt")


def test_convnext_cnn_option_trains_and_round_trips(tmp_path):
    from worldmodels.gpt import GPTConfig

    cfg = BCCNNConfig(gpt=GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=4, vocab_size=0),
                      action_vocab_sizes=(3, 5), image_size=32, cnn_channels=(4, 8),
                      cnn_pool=2, cnn_embd=16, cnn_block="convnext")
    torch.manual_seed(0)
    model = BCCNN(cfg)
    impala = BCCNN(BCCNNConfig(**{**cfg.to_dict(), "cnn_block": "impala"}))
    assert any("dwconv" in k for k in model.state_dict())
    assert model.num_params() != impala.num_params()  # N counts whichever CNN is used
    frames = torch.randint(0, 256, (2, 4, 40, 24, 3), dtype=torch.uint8)  # non-square frames
    logits = model(frames)
    assert [tuple(lg.shape) for lg in logits] == [(2, 4, 3), (2, 4, 5)]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    target = torch.zeros(2 * 4, dtype=torch.long)
    losses = []
    for _ in range(5):
        loss = sum(torch.nn.functional.cross_entropy(lg.reshape(-1, lg.shape[-1]), target)
                   for lg in model(frames))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    save_bc_cnn(model, tmp_path / "m.pt")
    again = load_model(tmp_path / "m.pt", expect="bc_cnn")
    assert again.config.cnn_block == "convnext"
    for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="cnn_block='resnet'"):
        BCCNNConfig(cnn_block="resnet")


def test_train_cli_cnn_block_option(data, tmp_path):
    from scaling import cli

    run = tmp_path / "run"
    assert cli.main(["train", "--task", "bc-cnn", "--size", "s10k", "--data", DATASET,
                     "--seq-len", "4", "--steps", "2", "--micro-batch-size", "4",
                     "--tokens-per-update", "0", "--cnn-block", "convnext",
                     "--run-dir", str(run), "--no-tensorboard"]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["model_config"]["cnn_block"] == "convnext"


def test_frames_are_read_once_per_process_and_again_when_the_files_change(data, caplog):
    import logging
    import os

    from agents import frame_cache

    frame_cache.clear()
    with caplog.at_level(logging.INFO, logger="agents.frame_data"):
        first = data.loader("train", 2, seed=0).arrays
        again = FrameDataSource(DATASET, seq_len=4).loader("train", 2, seed=0).arrays
        assert again is first  # a later run of this process shares the decoded arrays
        assert not first.frames.flags.writeable  # and cannot change them for the others
        assert sum("loaded" in m and "train" in m for m in caplog.messages) == 1
        files = sorted(p for p in data._data_path().rglob("*") if p.is_file())
        st = files[0].stat()
        os.utime(files[0], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # the data changed
        fresh = FrameDataSource(DATASET, seq_len=4).loader("train", 2, seed=0).arrays
    assert fresh is not first
    np.testing.assert_array_equal(fresh.frames, first.frames)
    assert sum("loaded" in m and "train" in m for m in caplog.messages) == 2


def test_frames_resized_once_give_the_per_step_resize(data):
    small = FrameDataSource(DATASET, seq_len=4, image_size=8)
    assert FrameDataSource(DATASET, seq_len=4, image_size=12).image_size is None  # own size
    stored = small.loader("train", 2, seed=0).arrays.frames
    assert stored.dtype == np.float16 and stored.shape[1:] == (8, 8, 3)
    assert stored.nbytes // len(stored) == stored_frame_bytes((12, 12, 3), 8) == 384
    model = BCCNN(small.model_config(n_layer=1, n_head=2, n_embd=16)).eval()
    assert model.config.image_size == 8
    resized = small.loader("train", 2, seed=0).batch_at(3).frames
    raw = data.loader("train", 2, seed=0).batch_at(3).frames  # the same windows, uint8 12x12
    assert resized.dtype == torch.float16 and raw.dtype == torch.uint8
    torch.testing.assert_close(model(resized)[0], model(raw)[0], atol=2e-3, rtol=1e-3)
    # a 2x mean is exact in float16
    pixels = np.random.default_rng(1).integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    exact = pixels.reshape(5, 4, 2, 4, 2, 3).astype(np.float64).mean(axis=(2, 4))
    np.testing.assert_array_equal(resize_frames(pixels, 4).astype(np.float64), exact)


def test_resized_frames_refuse_a_model_of_another_size(data):
    small = FrameDataSource(DATASET, seq_len=4, image_size=8)
    with pytest.raises(ValueError, match="resized to 8"):
        small.model_config(n_layer=1, n_head=2, n_embd=16, image_size=12)
    with pytest.raises(ValueError, match="image_size=12"):
        small.check_model(BCCNN(data.model_config(n_layer=1, n_head=2, n_embd=16)))
    model = BCCNN(data.model_config(n_layer=1, n_head=2, n_embd=16, image_size=8))
    with pytest.raises(ValueError, match="float frames"):
        model(torch.zeros(1, 2, 12, 12, 3, dtype=torch.float16))
    with pytest.raises(ValueError, match="positive frame size"):
        FrameDataSource(DATASET, seq_len=4, image_size=0)
