"""What a behaviour-cloning loss is worth: action-only baselines on the held-out split.

A BC model's held-out loss means little on its own. Two baselines that never look at an
observation put it in context:

* the **marginal**: every action predicted with the training split's action frequencies;
* an **action n-gram**: each action predicted from the k actions before it in its episode
  (counts on the training split, add-0.5 smoothing, unseen histories fall back on the marginal).

BC-Token sees the past actions of its context, so a BC-Token loss above the n-gram's (limited to
the same window, ``context_steps``) means the model has not yet learnt even what the action
history alone tells; below it, the model uses the observations. BC-CNN sees no past actions,
so only the marginal applies to it. Both are mean negative log-likelihoods in nats per action
token (per action dimension), the unit of the training curves.

Example::

    from scaling.study.action_baselines import action_baselines
    b = action_baselines("runs/breakout-default/tokens")
    b["marginal"], b["ngram"][str(b["best_order"])]
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from offline_data.tokens import TokenShards
from worldmodels.run_metrics import finite_or_none

SMOOTHING = 0.5


def _contexts(actions: np.ndarray, starts: np.ndarray, order: int, vocab: int) -> np.ndarray:
    """Code of the ``order`` previous actions of every frame.

    Before an episode's start the history holds the extra symbol ``vocab``.
    """
    n = len(actions)
    index_in_episode = np.arange(n) - np.repeat(starts[:-1], np.diff(starts))
    code = np.zeros(n, dtype=np.int64)
    for lag in range(1, order + 1):
        prev = np.where(index_in_episode >= lag, actions[np.maximum(np.arange(n) - lag, 0)], vocab)
        code = code * (vocab + 1) + prev
    return code


def ngram_nll(train: np.ndarray, train_starts: np.ndarray, held_out: np.ndarray,
              held_out_starts: np.ndarray, vocab: int, order: int) -> float:
    """Mean NLL (nats) on ``held_out`` of an order-``order`` action model counted on ``train``.

    Same arguments as :func:`ngram_nlls`, which gives the NLL of every held-out action.
    """
    return float(np.mean(ngram_nlls(train, train_starts, held_out, held_out_starts, vocab,
                                    order)))


def episode_stderr(nll: np.ndarray, starts: np.ndarray) -> float:
    """Standard error of the mean of ``nll`` with episodes as the independent units.

    Actions of one episode are correlated, so a per-action error would be too small; this is the
    ratio estimator's error over episodes (NaN with fewer than two episodes).
    """
    sums, counts = np.add.reduceat(nll, starts[:-1]), np.diff(starts)
    e = len(counts)
    if e < 2:
        return float("nan")
    mean = nll.mean()
    return float(np.sqrt(np.sum((sums - mean * counts) ** 2) * e / (e - 1)) / len(nll))


def ngram_nlls(train: np.ndarray, train_starts: np.ndarray, held_out: np.ndarray,
               held_out_starts: np.ndarray, vocab: int, order: int) -> np.ndarray:
    """NLL (nats) of each held-out action under an order-``order`` model counted on ``train``.

    Args:
        train: int action ids in ``[0, vocab)`` of one action dimension, (F,).
        train_starts: int64 (E + 1,): first frame of each episode of ``train``, then F.
        held_out: action ids scored, like ``train``.
        held_out_starts: episode starts of ``held_out``.
        vocab: number of action values.
        order: previous actions used (0: the marginal).
    """
    if not _countable(vocab, order):
        raise ValueError(f"an order-{order} model over {vocab} actions has too many histories; "
                         "use a lower order")
    marginal = (np.bincount(train, minlength=vocab) + SMOOTHING) / (len(train) + SMOOTHING * vocab)
    if order == 0:
        return -np.log(marginal[held_out])
    # Sparse counts: every (history, action) pair and every history seen in training.
    ctx = _contexts(train, train_starts, order, vocab)
    ctx_keys, ctx_counts = np.unique(ctx, return_counts=True)
    pair_keys, pair_counts = np.unique(ctx * vocab + train, return_counts=True)
    h_ctx = _contexts(held_out, held_out_starts, order, vocab)
    n_ctx = _lookup(ctx_keys, ctx_counts, h_ctx)
    n_pair = _lookup(pair_keys, pair_counts, h_ctx * vocab + held_out)
    p = np.where(n_ctx > 0, (n_pair + SMOOTHING) / (n_ctx + SMOOTHING * vocab), marginal[held_out])
    return -np.log(p)


def _countable(vocab: int, order: int) -> bool:
    """Whether every (history, action) pair has an int64 code."""
    return (vocab + 1) ** order * vocab < 2**62


def _lookup(keys: np.ndarray, counts: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Counts of ``query`` among sorted ``keys`` (0 where absent)."""
    pos = np.clip(np.searchsorted(keys, query), 0, len(keys) - 1)
    return np.where(keys[pos] == query, counts[pos], 0)


def action_baselines(tokens_path: str | os.PathLike, max_order: int = 8, split: str = "val",
                     context_steps: int | None = None) -> dict[str, Any]:
    """Marginal and n-gram (orders 1..``max_order``) NLLs of the actions in ``split``.

    Each action dimension is modelled on its own history and the NLLs are averaged over the
    dimensions. ``best_order`` is the order with the lowest held-out NLL (a slightly optimistic
    baseline).

    A BC-Token model sees only the actions inside its window of ``context_steps`` timesteps, and
    its held-out loss averages the window's positions: the action at position ``j`` has ``j``
    actions before it. With ``context_steps`` given, ``ngram_in_context`` holds each order's NLL
    under that limit (the mean over ``j`` of the order-``min(k, j)`` NLL), the bar a BC-Token
    loss is comparable with, and ``best_order_in_context`` its best order.

    Returns:
        ``{"marginal", "ngram": {order: nll}, "best_order", "split", "actions"}``, plus
        ``"context_steps"``, ``"ngram_in_context"`` and ``"best_order_in_context"`` when
        ``context_steps`` is given.
    """
    if context_steps is not None and context_steps < 1:
        raise ValueError(f"context_steps must be >= 1 timestep, got {context_steps}")
    shards = TokenShards.open(tokens_path)
    if split not in shards.split_names:
        raise ValueError(f"token shards {tokens_path} have no {split!r} split (have "
                         f"{shards.split_names})")
    tr, ho = shards.split("train"), shards.split(split)
    vocabs = shards.layout.action_vocab_sizes
    a_tr = np.asarray(tr.action_tokens).reshape(len(tr.action_tokens), -1)
    a_ho = np.asarray(ho.action_tokens).reshape(len(ho.action_tokens), -1)
    s_tr, s_ho = np.asarray(tr.episode_starts), np.asarray(ho.episode_starts)

    def per_action(order: int) -> np.ndarray:  # NLL of each held-out frame, dims averaged
        return np.mean([ngram_nlls(a_tr[:, j], s_tr, a_ho[:, j], s_ho, v, order)
                        for j, v in enumerate(vocabs)], axis=0)

    orders = [k for k in range(max_order + 1) if all(_countable(v, k) for v in vocabs)]
    frames = {k: per_action(k) for k in orders}
    nll = {k: float(frames[k].mean()) for k in orders}
    # None (JSON null) where unknown, e.g. a held-out split of one episode
    se = {k: finite_or_none(episode_stderr(frames[k], s_ho)) for k in orders}
    ngram = {str(k): nll[k] for k in orders if k}
    out: dict[str, Any] = {"marginal": nll[0], "marginal_stderr": se[0], "ngram": ngram,
                           "ngram_stderr": {str(k): se[k] for k in orders if k},
                           "best_order": _best(ngram), "split": split, "actions": int(len(a_ho))}
    if context_steps is not None:
        in_context = {str(k): float(np.mean([nll[min(k, j)] for j in range(context_steps)]))
                      for k in orders if k}
        # The mean of correlated estimates: its error is at most the mean of their errors.
        in_context_se = {str(k): finite_or_none(float(np.mean(
            [np.nan if se[min(k, j)] is None else se[min(k, j)] for j in range(context_steps)])))
            for k in orders if k}
        out.update(context_steps=int(context_steps), ngram_in_context=in_context,
                   ngram_in_context_stderr=in_context_se,
                   best_order_in_context=_best(in_context))
    return out


def context_bar(baselines: dict[str, Any]) -> float | None:
    """BC-Token's bar: the best n-gram NLL within its window, or None without ``context_steps``."""
    k = baselines.get("best_order_in_context")
    return baselines["ngram_in_context"][str(k)] if k else None


def context_bar_stderr(baselines: dict[str, Any]) -> float | None:
    """Standard error (an upper bound) of :func:`context_bar`; None when not recorded."""
    k = baselines.get("best_order_in_context")
    return baselines.get("ngram_in_context_stderr", {}).get(str(k)) if k else None


def below_bar(loss: float, loss_se: float | None, bar: float, bar_se: float | None,
              z: float = 2.0) -> bool | None:
    """Whether ``loss`` is below ``bar`` by more than ``z`` combined standard errors.

    Returns True (below), False (above by more than ``z`` errors), or None when the two are
    within ``z`` errors of each other or a standard error is unknown: no claim then.
    """
    if loss_se is None or bar_se is None or not (np.isfinite(loss_se) and np.isfinite(bar_se)):
        return None
    se = float(np.hypot(loss_se, bar_se))
    if bar - loss > z * se:
        return True
    if loss - bar > z * se:
        return False
    return None


def _best(nll: dict[str, float]) -> int | None:
    return int(min(nll, key=nll.get)) if nll else None
