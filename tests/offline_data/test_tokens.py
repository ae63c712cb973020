import dataclasses
import doctest

import numpy as np
import pytest

import offline_data.tokens as tokens_mod
from offline_data.token_windows import TokenWindowLoader, _Permutation
from offline_data.token_writer import merge_token_shards, write_token_shards
from offline_data.tokens import (
    EpisodeTokens,
    TokenHeader,
    TokenLayout,
    TokenShards,
)

K, V, AV = 4, 32, (3, 5)


def _episode(ep: int, n: int) -> EpisodeTokens:
    # frame token 0 = episode id, token 1 = step: lets a test see which frames a window holds
    z = np.zeros((n, K), np.int64)
    z[:, 0] = ep
    z[:, 1] = np.arange(n)
    z[:, 2:] = (np.arange(n)[:, None] * 7 + ep) % V
    a = np.stack([np.arange(n) % AV[0], (np.arange(n) + ep) % AV[1]], axis=1)
    r = (ep * 100 + np.arange(n)).astype(np.float32)
    term = np.zeros(n, bool)
    term[-1] = True
    return EpisodeTokens(z, a, r, term)


def _header(sha="a" * 64) -> TokenHeader:
    return TokenHeader(tokens_per_frame=K, image_vocab=V, action_vocab_sizes=AV,
                       tokenizer_id="test-vq", tokenizer_sha256=sha, dataset_id="embscale/x/y-v0")


LENGTHS = {"train": [7, 3, 12, 5, 9], "val": [6, 4]}


@pytest.fixture
def shard(tmp_path):
    eps = {s: [_episode(i + 10 * (s == "val"), n) for i, n in enumerate(ls)]
           for s, ls in LENGTHS.items()}
    splits = {s: iter(e) for s, e in eps.items()}
    return write_token_shards(tmp_path / "shard", _header(), splits), eps


def test_layout_doctest_and_roundtrip():
    result = doctest.testmod(tokens_mod)
    assert result.failed == 0 and result.attempted > 0
    layout = TokenLayout(K, V, AV)
    z = np.random.randint(0, V, size=(2, 3, K))
    a = np.stack([np.random.randint(0, v, size=(2, 3)) for v in AV], axis=-1)
    g = layout.to_global(z, a)
    assert g.shape == (2, 3 * layout.tokens_per_step)
    steps = g.reshape(2, 3, -1)
    assert (steps[..., :K] < V).all()
    assert ((steps[..., K] >= V) & (steps[..., K] < V + AV[0])).all()
    assert ((steps[..., K + 1] >= V + AV[0]) & (steps[..., K + 1] < layout.vocab_size)).all()
    z2, a2 = layout.from_global(g)
    np.testing.assert_array_equal(z2, z)
    np.testing.assert_array_equal(a2, a)


def test_shard_roundtrip(shard):
    shards, eps = shard
    assert shards.header.splits["train"]["num_frames"] == sum(LENGTHS["train"])
    for name, episodes in eps.items():
        arr = shards.split(name)
        assert arr.frame_tokens.dtype == np.uint16 and arr.action_tokens.dtype == np.uint16
        assert isinstance(arr.frame_tokens, np.memmap)
        np.testing.assert_array_equal(arr.episode_lengths, LENGTHS[name])
        st = arr.episode_starts
        for i, ep in enumerate(episodes):
            np.testing.assert_array_equal(arr.frame_tokens[st[i]:st[i + 1]], ep.frame_tokens)
            np.testing.assert_array_equal(arr.action_tokens[st[i]:st[i + 1]], ep.action_tokens)
            np.testing.assert_array_equal(arr.rewards[st[i]:st[i + 1]], ep.rewards)
            np.testing.assert_array_equal(arr.terminations[st[i]:st[i + 1]], ep.terminations)
    reopened = TokenShards.open(shards.path)
    assert reopened.header == shards.header


def test_merge_parts_equals_single_write(tmp_path, shard):
    shards, eps = shard
    p0 = write_token_shards(tmp_path / "p0", _header(), {"train": eps["train"][:2],
                                                          "val": eps["val"]})
    p1 = write_token_shards(tmp_path / "p1", _header(), {"train": eps["train"][2:]})
    merged = merge_token_shards([p0.path, p1.path], tmp_path / "merged", remove_parts=True)
    assert not (tmp_path / "p0").exists()
    for name in LENGTHS:
        for a, b in zip(merged.split(name), shards.split(name), strict=True):
            np.testing.assert_array_equal(a, b)


def test_different_tokenizer_is_refused(shard):
    shards, _ = shard
    TokenShards.open(shards.path, tokenizer_sha256="a" * 64)
    with pytest.raises(ValueError, match="written by tokenizer 'test-vq'"):
        TokenShards.open(shards.path, tokenizer_sha256="b" * 64)


def test_merge_different_tokenizers_is_refused(tmp_path):
    p0 = write_token_shards(tmp_path / "p0", _header("a" * 64), {"train": [_episode(0, 5)]})
    p1 = write_token_shards(tmp_path / "p1", _header("b" * 64), {"train": [_episode(1, 5)]})
    with pytest.raises(ValueError, match="same tokenizer"):
        merge_token_shards([p0.path, p1.path], tmp_path / "m")


def test_truncated_shard_is_refused(shard):
    shards, _ = shard
    path = shards.path / "train" / "frame_tokens.npy"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 10])
    with pytest.raises(ValueError, match="truncated"):
        TokenShards.open(shards.path).split("train")


def test_bad_header_and_missing_shard(tmp_path, shard):
    with pytest.raises(FileNotFoundError, match="tokenizer encode"):
        TokenShards.open(tmp_path / "nowhere")
    shards, _ = shard
    text = shards.header.to_json().replace('"format_version": 1', '"format_version": 99')
    (shards.path / "header.json").write_text(text)
    with pytest.raises(ValueError, match="format_version"):
        TokenShards.open(shards.path)
    with pytest.raises(ValueError, match="image_vocab"):
        dataclasses.replace(_header(), image_vocab=70000)


def test_out_of_range_tokens_are_refused(tmp_path):
    ep = _episode(0, 5)
    bad = ep._replace(frame_tokens=ep.frame_tokens + V)
    with pytest.raises(ValueError, match="outside"):
        write_token_shards(tmp_path / "s", _header(), {"train": [bad]})
    assert not (tmp_path / "s").exists()  # atomic: nothing half-written


@pytest.mark.parametrize("seq_len", [1, 4])
def test_windows_stay_in_episodes_and_masks_select_targets(shard, seq_len):
    shards, _ = shard
    layout = shards.layout
    loader = TokenWindowLoader(shards, "train", seq_len=seq_len, batch_size=3, seed=1)
    expected = sum(max(n - seq_len + 1, 0) for n in LENGTHS["train"])
    assert loader.num_windows == expected
    seen = set()
    for batch in loader.epoch_batches(0):
        b, length = batch.tokens.shape
        assert length == seq_len * layout.tokens_per_step
        assert batch.tokens.min() >= 0 and batch.tokens.max() < layout.vocab_size
        z, a = layout.from_global(batch.tokens.numpy())
        eps, steps = z[..., 0], z[..., 1]
        assert (eps == eps[:, :1]).all(), "window crossed an episode"
        assert (np.diff(steps, axis=1) == 1).all()
        np.testing.assert_array_equal(batch.rewards.numpy(), eps * 100 + steps)
        # the terminal step can only be the last of a window
        assert not batch.terminations[:, :-1].any()
        seen |= {(int(e), int(s)) for e, s in zip(eps[:, 0], steps[:, 0], strict=True)}
        # masks: position i is marked iff token i+1 is an image (wm) / action (bc) token
        is_image = batch.tokens < layout.image_vocab
        assert (batch.wm_mask[:, :-1] == is_image[:, 1:]).all()
        assert (batch.bc_mask[:, :-1] == ~is_image[:, 1:]).all()
        assert not batch.wm_mask[:, -1].any() and not batch.bc_mask[:, -1].any()
        assert batch.bc_mask.sum() == b * seq_len * layout.d_a
    assert len(seen) == loader.batches_per_epoch * 3


def test_ranks_read_distinct_windows_and_resume(shard):
    shards, _ = shard
    ids = []
    for rank in range(2):
        loader = TokenWindowLoader(shards, "train", seq_len=2, batch_size=2, seed=3, rank=rank,
                                   world_size=2)
        windows = [tuple(b.tokens[:, :2].reshape(-1).tolist()) for b in loader.epoch_batches(0)]
        ids.append({(w[2 * i], w[2 * i + 1]) for w in windows for i in range(2)})
        it = iter(loader)
        first = [next(it) for _ in range(loader.batches_per_epoch + 2)]
        resumed = next(loader.batches(start=loader.batches_per_epoch + 1))
        assert (resumed.tokens == first[-1].tokens).all()
    assert not ids[0] & ids[1]


def test_permutation_is_a_bijection():
    for n in (1, 2, 7, 100, 1023):
        p = _Permutation(n, seed=(0, 1))(np.arange(n))
        assert sorted(p.tolist()) == list(range(n))
    assert not np.array_equal(_Permutation(100, (0, 0))(np.arange(100)),
                              _Permutation(100, (0, 1))(np.arange(100)))


def test_loader_errors(shard):
    shards, _ = shard
    with pytest.raises(ValueError, match="fewer than batch_size"):
        TokenWindowLoader(shards, "val", seq_len=5, batch_size=64, seed=0)
    with pytest.raises(ValueError, match="rank"):
        TokenWindowLoader(shards, "train", seq_len=2, batch_size=1, seed=0, rank=2, world_size=2)
    with pytest.raises(ValueError, match="split 'nope'"):
        TokenWindowLoader(shards, "nope", seq_len=2, batch_size=1, seed=0)
