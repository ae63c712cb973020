import pytest
import torch

from worldmodels.gpt import GPT, GPTConfig, KVCache, TransformerCore, count_params


def _model(**kw):
    cfg = dict(n_layer=2, n_head=2, n_embd=32, block_size=24, vocab_size=50)
    cfg.update(kw)
    return GPT(GPTConfig(**cfg)).eval()


def test_kv_cached_generation_matches_full_forward():
    model = _model()
    idx = torch.randint(0, 50, (3, 24))
    full, _ = model(idx)
    cache = model.new_cache(3)
    outs = []
    # a prefix chunk, then a multi-token chunk after cached keys, then one token at a time
    for lo, hi in [(0, 5), (5, 6), (6, 15)] + [(t, t + 1) for t in range(15, 24)]:
        logits, _ = model(idx[:, lo:hi], cache=cache)
        outs.append(logits)
    assert cache.length == 24
    torch.testing.assert_close(torch.cat(outs, 1), full, atol=1e-5, rtol=0)


def test_cache_crop_then_refeed_is_consistent():
    model = _model()
    idx = torch.randint(0, 50, (2, 10))
    full, _ = model(idx)
    cache = model.new_cache(2)
    model(idx[:, :8], cache=cache)
    cache.crop(6)
    logits, _ = model(idx[:, 6:10], cache=cache)
    torch.testing.assert_close(logits, full[:, 6:10], atol=1e-5, rtol=0)


def test_param_count_includes_embeddings():
    cfg = GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=24, vocab_size=50)
    model = GPT(cfg)
    E, L = 32, 2
    per_block = 12 * E * E + 13 * E  # qkv, proj, mlp weights + biases + 2 layernorms
    expected = L * per_block + 50 * E + 24 * E + 2 * E  # tied wte, wpe, ln_f
    assert model.num_params() == expected == count_params(model)
    assert model.lm_head.weight is model.wte.weight


def test_loss_is_log_vocab_at_init_and_backprops():
    model = _model().train()
    idx = torch.randint(0, 50, (4, 24))
    _, loss = model(idx[:, :-1], idx[:, 1:])
    assert abs(loss.item() - torch.log(torch.tensor(50.0)).item()) < 0.3
    loss.backward()
    assert model.wte.weight.grad is not None


def test_context_longer_than_block_size_is_rejected():
    model = _model()
    with pytest.raises(ValueError, match="block_size"):
        model(torch.zeros(1, 25, dtype=torch.long))
    cache = model.new_cache(1)
    model(torch.zeros(1, 20, dtype=torch.long), cache=cache)
    with pytest.raises(ValueError, match="crop the cache"):
        model(torch.zeros(1, 5, dtype=torch.long), cache=cache)


@pytest.mark.parametrize("field,value", [("n_layer", 0), ("n_embd", 30), ("dropout", 1.5),
                                         ("vocab_size", -1)])
def test_bad_config_names_the_field(field, value):
    cfg = dict(n_layer=1, n_head=4, n_embd=32, block_size=8, vocab_size=10)
    cfg[field] = value
    with pytest.raises(ValueError, match=field):
        GPTConfig(**cfg)


def test_config_round_trip_rejects_unknown_keys():
    cfg = GPTConfig(n_layer=1, n_head=1, n_embd=8, block_size=4, vocab_size=3)
    assert GPTConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown GPTConfig keys"):
        GPTConfig.from_dict({**cfg.to_dict(), "n_inner": 3})


def test_core_accepts_embeddings_and_cache():
    cfg = GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=6, vocab_size=0)
    core = TransformerCore(cfg).eval()
    x = torch.randn(2, 6, 16)
    full = core(x)
    cache = KVCache.empty(cfg, 2)
    parts = [core(x[:, :3], cache), core(x[:, 3:4], cache), core(x[:, 4:], cache)]
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-5, rtol=0)
