import numpy as np
import pytest
import torch

from offline_data.token_windows import TokenWindowLoader
from tests.helpers.token_shards import AV, K, V, write_shards
from worldmodels.checkpoint import load_model
from worldmodels.gpt import GPTConfig
from worldmodels.token_data import TokenDataSource
from worldmodels.token_model import (
    TokenModel,
    TokenModelConfig,
    save_token_model,
)


@pytest.fixture
def data(tmp_path):
    write_shards(tmp_path / "shards")
    return TokenDataSource(tmp_path / "shards", seq_len=3)


def _model(data, task="wm", **kw):
    return TokenModel(data.model_config(n_layer=1, n_head=2, n_embd=16, task=task, **kw))


@pytest.mark.parametrize("task", ["wm", "bc"])
def test_loss_mask_matches_loader_masks(data, task):
    model = _model(data, task)
    batch = TokenWindowLoader(data.shards, "train", 3, 4, seed=0).batch_at(0)
    mask = (batch.wm_mask if task == "wm" else batch.bc_mask)[0, :-1]
    positions = model._loss_positions[model._loss_positions < batch.tokens.shape[1] - 1]
    assert torch.equal(torch.nonzero(mask).squeeze(1), positions)
    # the loss is the masked next-token cross-entropy computed the plain way
    logits, _ = model.gpt(batch.tokens)
    ce = torch.nn.functional.cross_entropy(logits[:, :-1][mask.expand(4, -1)],
                                           batch.tokens[:, 1:][mask.expand(4, -1)])
    out = model.compute_loss(batch)
    torch.testing.assert_close(out.scaling_loss, ce.detach(), atol=1e-5, rtol=1e-5)


def test_aux_heads_add_to_backprop_loss_only(data):
    model = _model(data, reward_head=True, termination_head=True)
    batch = TokenWindowLoader(data.shards, "train", 3, 4, seed=0).batch_at(0)
    out = model.compute_loss(batch)
    assert set(out.metrics) == {"reward_loss", "termination_loss"}
    expected = out.scaling_loss + out.metrics["reward_loss"] + out.metrics["termination_loss"]
    torch.testing.assert_close(out.loss.detach(), expected)
    # heads are not part of N (the transformer's parameters)
    assert model.num_params() == model.gpt.num_params()


def test_incremental_frame_and_action_sampling_matches_full_forward(data):
    torch.manual_seed(1)
    model = _model(data, reward_head=True).eval()
    tokens = TokenWindowLoader(data.shards, "val", 3, 2, seed=0).batch_at(0).tokens
    cache = model.new_cache(2)
    out = model.forward_with_cache(tokens[:, :K + 1], cache)  # one full step
    gen = torch.Generator().manual_seed(0)
    frame, logits = model.sample_frame(out.logits[:, -1], cache, generator=gen)
    assert frame.shape == (2, K) and int(frame.max()) < V
    action, step_out = model.sample_action(logits, cache, generator=gen)
    assert action.shape == (2, len(AV)) and int(action.max()) < AV[0]
    seq = torch.cat([tokens[:, :K + 1], frame, model.action_to_global(action)], 1)
    full = model.forward_with_cache(seq, model.new_cache(2))
    torch.testing.assert_close(step_out.logits[:, -1], full.logits[:, -1], atol=1e-5, rtol=0)
    torch.testing.assert_close(step_out.reward_logits[:, -1], full.reward_logits[:, -1],
                               atol=1e-5, rtol=0)


def test_greedy_sampling_is_argmax_in_range(data):
    model = _model(data).eval()
    cache = model.new_cache(1)
    logits = torch.zeros(1, V + sum(AV))
    logits[0, V + 1] = 5.0  # an action id outside the image range must never be drawn
    logits[0, 3] = 1.0
    frame, _ = model.sample_frame(logits, cache, temperature=0)
    assert frame[0, 0] == 3


def test_save_load_round_trip(data, tmp_path):
    model = _model(data, task="bc")
    save_token_model(model, tmp_path / "m.pt")
    loaded = load_model(tmp_path / "m.pt", expect="token_model")
    assert loaded.config == model.config
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(FileNotFoundError, match="embscale train"):
        load_model(tmp_path / "missing.pt")


def test_vocab_mismatch_and_long_context_are_rejected(data, tmp_path):
    write_shards(tmp_path / "other", image_vocab=V + 8)
    other = TokenDataSource(tmp_path / "other", seq_len=3)
    with pytest.raises(ValueError, match="layout"):
        other.check_model(_model(data))
    long_ctx = TokenDataSource(tmp_path / "shards", seq_len=5)
    with pytest.raises(ValueError, match="block_size"):
        long_ctx.check_model(_model(data))
    with pytest.raises(ValueError, match="vocab_size"):
        TokenModelConfig(gpt=GPTConfig(vocab_size=7, block_size=15), tokens_per_frame=K,
                         image_vocab=V, action_vocab_sizes=AV)
    with pytest.raises(ValueError, match="task"):
        data.model_config(1, 1, 8, task="rl")


def test_config_dict_round_trip(data):
    cfg = data.model_config(1, 2, 16, task="bc", reward_head=True)
    d = cfg.to_dict()
    assert TokenModelConfig.from_dict(d) == cfg
    assert np.array_equal(d["action_vocab_sizes"], list(AV))
