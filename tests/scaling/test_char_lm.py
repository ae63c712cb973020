"""Section 5.1 pieces: character corpus, windows, the three losses."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from scaling.mechanisms.char_lm import (
    CHAR_SIZES,
    CharCorpus,
    CharDataSource,
    build_char_model,
    superclass_map,
)
from scaling.mechanisms.common import difference, estimate


@pytest.fixture()
def corpus(tmp_path):
    text = ("To be, or not to be, that is the question: " * 400)
    path = tmp_path / "t.txt"
    path.write_text(text)
    return CharCorpus(path)


def test_windows_are_contiguous_and_shifted(corpus):
    data = CharDataSource(corpus, context=16)
    loader = data.loader("train", 8, seed=0, rank=0, world_size=1)
    b = loader.batch_at(3)
    assert b.idx.shape == b.targets.shape == (8, 16)
    assert torch.equal(b.idx[:, 1:], b.targets[:, :-1])
    assert torch.equal(loader.batch_at(3).idx, b.idx)  # same index, same batch
    other = data.loader("train", 8, seed=0, rank=1, world_size=2).batch_at(3)
    assert not torch.equal(other.idx, b.idx)  # ranks read distinct windows
    val = list(data.loader("val", 8, 0, 0, 1).epoch_batches())
    assert val and all(v.idx.shape == (8, 16) for v in val)


def test_superclass_map_is_balanced_and_seeded():
    m = superclass_map(65, 2, seed=3)
    assert sorted(m.bincount().tolist()) == [32, 33]
    assert torch.equal(m, superclass_map(65, 2, seed=3))
    assert not torch.equal(m, superclass_map(65, 2, seed=4))


def test_losses_match_their_definitions(corpus):
    torch.manual_seed(0)
    batch = CharDataSource(corpus).loader("train", 4, 0, 0, 1).batch_at(0)
    dense = build_char_model("c4k", corpus.vocab_size, "dense")
    sparse = build_char_model("c4k", corpus.vocab_size, "sparse")
    sparse.load_state_dict(dense.state_dict())
    sup = build_char_model("c4k", corpus.vocab_size, "superclass", superclass_seed=1)
    sup.load_state_dict(dense.state_dict())
    logits, _ = dense.gpt(batch.idx)
    want_dense = F.cross_entropy(logits.reshape(-1, logits.size(-1)), batch.targets.reshape(-1))
    want_sparse = F.cross_entropy(logits[:, -1], batch.targets[:, -1])
    probs = logits[:, -1].softmax(-1)
    classes = sup.classes
    p_class = torch.stack([probs[:, classes == k].sum(-1) for k in range(2)], dim=-1)
    want_sup = -torch.log(p_class[torch.arange(4), classes[batch.targets[:, -1]]]).mean()
    assert math.isclose(dense.compute_loss(batch).loss.item(), want_dense.item(), rel_tol=1e-5)
    assert math.isclose(sparse.compute_loss(batch).loss.item(), want_sparse.item(), rel_tol=1e-5)
    assert math.isclose(sup.compute_loss(batch).loss.item(), want_sup.item(), rel_tol=1e-5)
    # Same parameters under every loss: N does not depend on the loss.
    assert dense.num_params() == sparse.num_params() == sup.num_params()


def test_ladder_spans_4k_to_17M():
    n = {k: build_char_model(k, 65, "dense").num_params() for k in ("c4k", "c17M")}
    assert 3_000 < n["c4k"] < 6_000 and 15e6 < n["c17M"] < 18e6
    assert list(CHAR_SIZES) == sorted(CHAR_SIZES, key=lambda k: CHAR_SIZES[k].n_embd
                                      * CHAR_SIZES[k].n_layer)


def test_bad_inputs(tmp_path, corpus):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        CharCorpus(tmp_path / "missing.txt")
    short = tmp_path / "short.txt"
    short.write_text("abc")
    with pytest.raises(ValueError, match="at least 10,000"):
        CharCorpus(short)
    with pytest.raises(ValueError, match="unknown character-model size"):
        build_char_model("c5", 65, "dense")
    with pytest.raises(ValueError, match="unknown loss"):
        build_char_model("c4k", 65, "focal")
    model = build_char_model("c4k", corpus.vocab_size + 1, "dense")
    with pytest.raises(ValueError, match="vocabulary"):
        CharDataSource(corpus).check_model(model)


def test_estimates_and_differences():
    import numpy as np

    rng = np.random.default_rng(0)
    e = estimate(0.5, rng.normal(0.5, 0.01, 500))
    assert e.low < 0.5 < e.high and e.high - e.low < 0.06
    d = difference(0.6, rng.normal(0.6, 0.02, 500), 0.2, rng.normal(0.2, 0.02, 500))
    assert 0.3 < d.low < d.value < d.high < 0.5


def test_a_file_that_is_not_text_is_named(tmp_path):
    binary = tmp_path / "weights.bin"
    binary.write_bytes(bytes(range(256)) * 64)
    with pytest.raises(ValueError, match=r"weights\.bin is not UTF-8 text"):
        CharCorpus(binary)
