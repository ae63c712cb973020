"""Action-only BC baselines: the n-gram counts against a plain reimplementation, and on shards."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import pytest

from offline_data.token_writer import write_token_shards
from offline_data.tokens import EpisodeTokens, TokenHeader
from scaling.study.action_baselines import SMOOTHING, action_baselines, ngram_nll


def reference_nll(train, train_starts, held, held_starts, vocab, order):
    """Dictionary n-gram with the same smoothing, start symbol and marginal back-off."""
    def histories(a, starts):
        for e in range(len(starts) - 1):
            ep = list(a[starts[e]:starts[e + 1]])
            padded = [vocab] * order + ep
            for t, x in enumerate(ep):
                yield tuple(padded[t:t + order]), x

    marg = np.bincount(train, minlength=vocab) + SMOOTHING
    marg = marg / marg.sum()
    counts = defaultdict(lambda: np.zeros(vocab))
    for h, x in histories(train, train_starts):
        counts[h][x] += 1
    nll = []
    for h, x in histories(held, held_starts):
        if order and h in counts:
            c = counts[h]
            nll.append(-math.log((c[x] + SMOOTHING) / (c.sum() + SMOOTHING * vocab)))
        else:
            nll.append(-math.log(marg[x]))
    return float(np.mean(nll))


@pytest.mark.parametrize("order", [0, 1, 2, 3])
def test_ngram_matches_a_dictionary_implementation(order):
    rng = np.random.default_rng(order)
    train = rng.integers(0, 4, 300)
    held = rng.integers(0, 4, 120)
    train_starts = np.array([0, 40, 41, 200, 300])  # includes a one-frame episode
    held_starts = np.array([0, 70, 120])
    got = ngram_nll(train, train_starts, held, held_starts, 4, order)
    assert got == pytest.approx(reference_nll(train, train_starts, held, held_starts, 4, order),
                                abs=1e-12)


def test_a_cyclic_player_is_predictable_from_its_last_action_only():
    cycle = np.tile([0, 1, 2], 50)
    starts = np.array([0, 75, 150])
    marginal = ngram_nll(cycle, starts, cycle, starts, 3, 0)
    first_order = ngram_nll(cycle, starts, cycle, starts, 3, 1)
    assert marginal == pytest.approx(math.log(3), abs=1e-3)
    assert first_order < 0.1 < marginal


def _shards(path):
    rng = np.random.default_rng(0)

    def ep(n):
        a0 = np.tile([0, 1, 2, 1], n // 4 + 1)[:n]  # dimension 0: a fixed rhythm
        a1 = rng.integers(0, 2, n)  # dimension 1: coin flips
        return EpisodeTokens(rng.integers(0, 8, (n, 4)), np.stack([a0, a1], 1),
                             np.zeros(n, np.float32), np.zeros(n, bool))

    header = TokenHeader(tokens_per_frame=4, image_vocab=8, action_vocab_sizes=(3, 2),
                         tokenizer_id="synthetic", tokenizer_sha256="0" * 64,
                         dataset_id="embscale/synthetic/rhythm-v0")
    splits = {"train": [ep(40) for _ in range(10)], "val": [ep(40) for _ in range(3)]}
    write_token_shards(path, header, {k: iter(v) for k, v in splits.items()})
    return path


def test_baselines_average_the_action_dimensions(tmp_path):
    b = action_baselines(_shards(tmp_path / "tok"), max_order=3)
    assert b["actions"] == 120 and b["split"] == "val"
    # Dimension 0 is predictable after two actions, dimension 1 never: the mean tends to ln(2)/2.
    assert b["marginal"] == pytest.approx((1.0397 + math.log(2)) / 2, abs=0.03)
    assert b["ngram"]["3"] < b["ngram"]["1"] < b["marginal"]
    assert b["ngram"]["3"] == pytest.approx(math.log(2) / 2, abs=0.06)
    assert b["best_order"] in (2, 3)


def test_missing_split_is_named(tmp_path):
    with pytest.raises(ValueError, match="no 'test' split"):
        action_baselines(_shards(tmp_path / "tok"), split="test")


def test_windowed_ngram_averages_the_window_positions(tmp_path):
    path = _shards(tmp_path / "tok")
    b = action_baselines(path, max_order=3, context_steps=4)
    full = {0: b["marginal"], **{int(k): v for k, v in b["ngram"].items()}}
    # Positions 0..3 of a 4-step window see 0, 1, 2 and 3 earlier actions.
    assert b["ngram_in_context"]["3"] == pytest.approx(np.mean([full[0], full[1], full[2],
                                                                full[3]]))
    assert b["ngram_in_context"]["1"] == pytest.approx(np.mean([full[0]] + [full[1]] * 3))
    assert b["context_steps"] == 4 and b["best_order_in_context"] in (2, 3)
    assert "ngram_in_context" not in action_baselines(path, max_order=2)
    with pytest.raises(ValueError, match="context_steps must be >= 1"):
        action_baselines(path, context_steps=0)


def test_episode_stderr_and_the_bar_test():
    from scaling.study.action_baselines import below_bar, episode_stderr

    nll = np.array([1.0, 1.0, 3.0, 3.0, 2.0, 2.0])
    starts = np.array([0, 2, 4, 6])
    # episode means 1, 3, 2 with 2 actions each: the mean's error over 3 episodes
    expected = math.sqrt(((2 - 4) ** 2 + (6 - 4) ** 2 + 0) * 3 / 2) / 6
    assert episode_stderr(nll, starts) == pytest.approx(expected)
    assert math.isnan(episode_stderr(nll, np.array([0, 6])))
    assert below_bar(0.904, 0.002, 0.912, 0.002) is True
    assert below_bar(0.904, 0.01, 0.912, 0.01) is None  # within two errors: no claim
    assert below_bar(0.95, 0.002, 0.912, 0.002) is False
    assert below_bar(0.904, None, 0.912, 0.002) is None
