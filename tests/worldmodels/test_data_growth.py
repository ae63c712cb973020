"""Grown data: train-only supplements join the train split; runs resume on it, on nothing else."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from offline_data.growth import join_data_ids, split_data_ids, supplement_id
from offline_data.tokens import TokenShards
from scaling.training import train_model
from tests.helpers.tokenizers import TINY_VQ, make_dataset, one_torch_thread
from worldmodels.token_growth import grow_token_shards
from worldmodels.tokenize_dataset import encode_dataset
from worldmodels.tokenizer import VQVAE, VQConfig, save_tokenizer

BASE = "embscale/synthetic/grow-v0"
SUP = supplement_id(BASE, 1)
RUN = dict(seq_len=3, micro_batch_size=4, tokens_per_update=0, tensorboard=False,
           val_points_per_decade=5)


@pytest.fixture(autouse=True)
def _one_thread():
    with one_torch_thread():
        yield


@pytest.fixture
def grown(tmp_path):
    make_dataset(BASE, num_episodes=10, steps=12, size=16, seed=0)
    make_dataset(SUP, num_episodes=4, steps=20, size=16, seed=1)
    make_dataset("embscale/synthetic/unrelated-v0", num_episodes=10, steps=12, size=16, seed=2)
    torch.manual_seed(0)
    save_tokenizer(VQVAE(VQConfig(image_height=16, image_width=16, tokens_per_frame=4,
                                  **TINY_VQ)).eval(), tmp_path / "tok.pt")
    encode_dataset(tmp_path / "tok.pt", BASE, tmp_path / "tokens", progress=False)
    return tmp_path


def test_supplement_names_round_trip():
    assert SUP == "embscale/synthetic/grow-grow1-v0"
    assert supplement_id("plain", 2) == "plain-grow2"
    assert split_data_ids(join_data_ids(BASE, [SUP])) == (BASE, [SUP])
    with pytest.raises(ValueError, match="empty dataset id"):
        split_data_ids(f"{BASE}++{SUP}")


def test_grown_shards_add_every_supplement_frame_to_train_only(grown):
    old = TokenShards.open(grown / "tokens")
    # what a run killed while it encoded and merged leaves: its parts and a half-merged directory
    (grown / ".tokens-grow1.supplements-k1ll3dxx" / "part-0" / "train").mkdir(parents=True)
    (grown / ".tokens-grow1.abcd_123.tmp" / "test").mkdir(parents=True)
    (grown / ".tokens-grow1.abcd_123.tmp" / "test" / "frame_tokens.npy").write_bytes(b"half")
    new = grow_token_shards(grown / "tokens", [SUP], grown / "tok.pt", grown / "tokens-grow1",
                            progress=False)
    sup_frames = sum(20 + i for i in range(4))
    assert new.split("train").num_frames == old.split("train").num_frames + sup_frames
    assert new.split("train").num_episodes == old.split("train").num_episodes + 4
    for split in ("val", "test"):  # the held-out episodes are the same
        for a, b in zip(old.split(split), new.split(split), strict=True):
            np.testing.assert_array_equal(a, b)
    n = old.split("train").num_frames  # the old training frames come first, unchanged
    np.testing.assert_array_equal(new.split("train").frame_tokens[:n],
                                  old.split("train").frame_tokens)
    assert new.header.supplements == [SUP] and len(new.header.grown_from) == 1
    assert sorted(p.name for p in grown.glob(".tokens-grow1*")) == [".tokens-grow1.lock"]
    again = grow_token_shards(grown / "tokens", [SUP], grown / "tok.pt", grown / "tokens-grow1")
    assert again.header == new.header  # a complete grown directory is reused


def test_a_token_run_resumes_on_grown_shards_and_refuses_other_data(grown):
    first = train_model("wm-token", "s3k", str(grown / "tokens"), grown / "run", steps=4, **RUN)
    grow_token_shards(grown / "tokens", [SUP], grown / "tok.pt", grown / "tokens-grow1",
                      progress=False)
    more = train_model("wm-token", "s3k", str(grown / "tokens-grow1"), grown / "run", steps=8,
                       **RUN)
    assert (first.steps, more.steps) == (4, 8)  # one curve, continued on more data
    encode_dataset(grown / "tok.pt", "embscale/synthetic/unrelated-v0", grown / "other",
                   progress=False)
    with pytest.raises(ValueError, match="is not the data the run started on"):
        train_model("wm-token", "s3k", str(grown / "other"), grown / "run", steps=12, **RUN)


def test_bc_cnn_reads_supplements_into_train_and_resumes_on_them(grown):
    from agents.frame_data import FrameDataSource

    base = FrameDataSource(BASE, seq_len=3)
    both = FrameDataSource(join_data_ids(BASE, [SUP]), seq_len=3)
    sup_frames = sum(20 + i for i in range(4))
    assert both.num_train_items == base.num_train_items + sup_frames
    assert both.loader("train", 2, 0).arrays.frames.shape[0] == base.num_train_items + sup_frames
    val_a, val_b = base.loader("val", 2, 0).arrays, both.loader("val", 2, 0).arrays
    np.testing.assert_array_equal(val_a.frames, val_b.frames)
    assert both.grown_from() == [base.fingerprint()] and both.fingerprint() != base.fingerprint()
    assert both.describe()["dataset_id"] == BASE and both.describe()["supplements"] == [SUP]
    bc = dict(seq_len=3, micro_batch_size=2, tokens_per_update=0, tensorboard=False)
    first = train_model("bc-cnn", "s10k", BASE, grown / "bc", steps=2, **bc)
    more = train_model("bc-cnn", "s10k", join_data_ids(BASE, [SUP]), grown / "bc", steps=4, **bc)
    assert (first.steps, more.steps) == (2, 4)
    with pytest.raises(ValueError, match="is not the data the run started on"):
        train_model("bc-cnn", "s10k", "embscale/synthetic/unrelated-v0", grown / "bc", steps=6,
                    **bc)
