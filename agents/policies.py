"""Pretrained BC-Token and BC-CNN models as policies with stable-baselines3's ``predict``.

``predict(observation, state=None, episode_start=None, deterministic=False)`` takes a batch of
uint8 frames (one per vector-env row), returns actions in the env's own action space (discrete
tokens decoded by the dataset's discretizer) and the new ``state``: the context window of past
frames (and, for BC-Token, the actions taken) that the caller hands back at the next step, as SB3
does for recurrent policies. ``episode_start`` clears a row's context. ``deterministic`` picks the
most likely action; otherwise actions are sampled. So ``evaluate_policy`` runs them unchanged.

Example:
    >>> policy = load_policy("runs/bc/s1M/checkpoints/last.pt", tokenizer="runs/tok/tokenizer.pt")
    ... # doctest: +SKIP
    >>> mean, std = evaluate_policy(policy, env, n_eval_episodes=10)  # doctest: +SKIP
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from agents.bc_cnn import BCCNN
from offline_data.action_spaces import check_action_space, space_for_discretizer
from offline_data.datasets import dataset_discretizer, load_dataset
from offline_data.discretize import ActionDiscretizer, discretizer_from_spec
from offline_data.tokens import TokenShards
from worldmodels.checkpoint import model_from_checkpoint, read_model_checkpoint
from worldmodels.row_cache import RowKVCache, rebuild, row_forward
from worldmodels.run_state import check_tokenizer_match
from worldmodels.token_model import TokenModel
from worldmodels.tokenizer import load_tokenizer
from worldmodels.train_utils import resolve_device


class _BasePolicy:
    """Shared checks: observation batching, env compatibility, seeding."""

    observation_space: spaces.Box
    action_space: spaces.Space
    discretizer: ActionDiscretizer
    name = "policy"

    def __init__(self, seed: int | None):
        self.generator = torch.Generator()
        self.seed(seed)

    def seed(self, seed: int | None) -> None:
        """Seed action sampling."""
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(int(seed))

    def check_env(self, env: Any) -> None:
        """Raise ``ValueError`` unless ``env``'s spaces are those the policy was trained on."""
        obs_space = getattr(env, "single_observation_space", None) or env.observation_space
        act_space = getattr(env, "single_action_space", None) or env.action_space
        if tuple(obs_space.shape or ()) != self.observation_space.shape:
            raise ValueError(
                f"the env's observations have shape {obs_space.shape} but the {self.name} was "
                f"trained on frames of shape {self.observation_space.shape}; make the env render "
                f"frames of that size (envs.make(ID, size=...); on the command line --size "
                f"{self.observation_space.shape[0]}x{self.observation_space.shape[1]})")
        check_action_space(self.discretizer, act_space, self.name)

    def _batch(self, observation: Any) -> tuple[np.ndarray, bool]:
        obs = np.asarray(observation)
        shape = self.observation_space.shape
        single = obs.shape == shape
        if single:
            obs = obs[None]
        if obs.ndim != 4 or obs.shape[1:] != shape:
            raise ValueError(f"observations have shape {obs.shape}, the {self.name} expects "
                             f"uint8 frames {shape} or a batch (B, *{shape})")
        return obs.astype(np.uint8, copy=False), single

    @staticmethod
    def _starts(episode_start: Any, n: int) -> np.ndarray:
        if episode_start is None:
            return np.zeros(n, bool)
        starts = np.asarray(episode_start, bool).reshape(-1)
        if starts.size not in (1, n):
            raise ValueError(f"episode_start has {starts.size} entries for {n} observations; pass "
                             f"one bool per env (the vector env's last dones) or one for all")
        return np.broadcast_to(starts, (n,))

    def _pick(self, logits: torch.Tensor, deterministic: bool, temperature: float) -> torch.Tensor:
        if deterministic or temperature == 0:
            return logits.argmax(-1)
        probs = torch.softmax(logits.float() / temperature, -1)
        # sampled on the CPU: one generator, the same draws on every device
        return torch.multinomial(probs.cpu(), 1, generator=self.generator)[:, 0].to(probs.device)


class TokenPolicy(_BasePolicy):
    """A BC-Token model as a policy: frames are tokenized, action tokens generated per dimension.

    ``state`` is int64 (B, context_steps, d_z + d_a): global token ids of the last steps (frame
    tokens, then the action tokens chosen), -1 where a row has no history yet.
    """

    name = "BC-Token policy"

    def __init__(self, model: TokenModel, tokenizer, discretizer: ActionDiscretizer,
                 context_steps: int | None = None, temperature: float = 1.0,
                 seed: int | None = None):
        if not isinstance(model, TokenModel) or model.config.task != "bc":
            raise ValueError("TokenPolicy needs a BC-Token model (task 'bc'); a world model "
                             "belongs in worldmodels.simulator")
        mc = model.config
        if tuple(discretizer.vocab_sizes) != tuple(mc.action_vocab_sizes):
            raise ValueError(f"the discretizer's vocab sizes {discretizer.vocab_sizes} do not "
                             f"match the model's {mc.action_vocab_sizes}")
        self.model, self.tokenizer, self.discretizer = model.eval(), tokenizer, discretizer
        self.context_steps = min(context_steps or mc.context_steps, mc.context_steps)
        self.temperature = float(temperature)
        cfg = tokenizer.config
        self.observation_space = spaces.Box(0, 255, (cfg.image_height, cfg.image_width, 3),
                                            np.uint8)
        self.action_space = space_for_discretizer(discretizer)
        self.device = model.gpt.wte.weight.device
        super().__init__(seed)

    @torch.no_grad()
    def predict(self, observation, state=None, episode_start=None, deterministic=False):
        """Actions for a batch of frames; see the module docstring for ``state``."""
        obs, single = self._batch(observation)
        B, K, A = len(obs), self.model.config.tokens_per_frame, len(self.discretizer.vocab_sizes)
        if state is None:
            state = np.full((B, self.context_steps, K + A), -1, np.int64)
        state = np.array(state, np.int64)  # a copy: the caller's array is left as it was
        if state.shape != (B, self.context_steps, K + A):
            raise ValueError(f"state has shape {state.shape}, expected "
                             f"{(B, self.context_steps, K + A)}; pass the state predict returned")
        state[self._starts(episode_start, B)] = -1
        state[:, :-1] = state[:, 1:]
        state[:, -1, :K] = self.tokenizer.encode(obs).cpu().numpy()
        state[:, -1, K:] = -1
        seqs = []
        for row in state:
            steps = row[row[:, 0] >= 0].reshape(-1)
            seqs.append(torch.as_tensor(steps[:len(steps) - A], device=self.device))
        # Rows with the same history length share one forward with no padding, so attention
        # takes the fused causal path (padding needs an explicit mask, several times slower).
        lengths = np.array([len(q) for q in seqs])
        local_ids = np.zeros((B, A), np.int64)
        for n in np.unique(lengths):
            rows = np.flatnonzero(lengths == n)
            local_ids[rows] = self._actions([seqs[i] for i in rows], deterministic)
        state[:, -1, K:] = local_ids + np.asarray(self.model.action_offsets)
        actions = self.discretizer.decode(local_ids)
        return (actions[0] if single else actions), state

    def _actions(self, seqs: list[torch.Tensor], deterministic: bool) -> np.ndarray:
        """Local action ids (n, d_a) after token sequences of equal length, one head at a time."""
        gpt, K = self.model.gpt, self.model.config.tokens_per_frame
        A = len(self.discretizer.vocab_sizes)
        cache = RowKVCache(gpt, len(seqs), self.context_steps * (K + A))
        hidden = rebuild(gpt, cache, seqs)[:, -1]
        local = []
        for j, (lo, size) in enumerate(zip(self.model.action_offsets,
                                           self.model.config.action_vocab_sizes, strict=True)):
            logits = gpt.lm_head(hidden)[:, lo:lo + size]
            tok = self._pick(logits, deterministic, self.temperature)
            local.append(tok)
            if j < A - 1:
                hidden = row_forward(gpt, cache, (tok + lo)[:, None])[:, -1]
        return torch.stack(local, 1).cpu().numpy()


class CNNPolicy(_BasePolicy):
    """A BC-CNN model as a policy: a causal window of past frames, one head per action dimension.

    ``state`` is ``(embeddings, lengths)``: float32 (B, context_steps, n_embd), the CNN embeddings
    of the most recent frames (last = newest), and int64 (B,) how many of them belong to the
    current episode. Each frame goes through the CNN once, when it arrives.
    """

    name = "BC-CNN policy"

    def __init__(self, model: BCCNN, discretizer: ActionDiscretizer, frame_shape: tuple | None,
                 context_steps: int | None = None, temperature: float = 1.0,
                 seed: int | None = None):
        if not isinstance(model, BCCNN):
            raise ValueError(f"CNNPolicy needs a BC-CNN model, got {type(model).__name__}")
        mc = model.config
        if tuple(discretizer.vocab_sizes) != tuple(mc.action_vocab_sizes):
            raise ValueError(f"the discretizer's vocab sizes {discretizer.vocab_sizes} do not "
                             f"match the model's {mc.action_vocab_sizes}")
        self.model, self.discretizer = model.eval(), discretizer
        self.context_steps = min(context_steps or mc.gpt.block_size, mc.gpt.block_size)
        self.temperature = float(temperature)
        shape = tuple(frame_shape or (mc.image_size, mc.image_size, 3))
        self.observation_space = spaces.Box(0, 255, shape, np.uint8)
        self.action_space = space_for_discretizer(discretizer)
        self.device = next(model.parameters()).device
        super().__init__(seed)

    @torch.no_grad()
    def predict(self, observation, state=None, episode_start=None, deterministic=False):
        """Actions for a batch of frames; see the class docstring for ``state``."""
        obs, single = self._batch(observation)
        B, C, E = len(obs), self.context_steps, self.model.config.gpt.n_embd
        if state is None:
            state = (np.zeros((B, C, E), np.float32), np.zeros(B, np.int64))
        embeddings, lengths = (np.array(s) for s in state)
        if embeddings.shape != (B, C, E) or lengths.shape != (B,):
            raise ValueError("state does not match this batch of observations; pass the state "
                             "predict returned (or None at the start)")
        lengths[self._starts(episode_start, B)] = 0
        embeddings[:, :-1] = embeddings[:, 1:]
        new = self.model.embed(torch.as_tensor(obs, device=self.device)[:, None])
        embeddings[:, -1] = new[:, 0].float().cpu().numpy()
        lengths = np.minimum(lengths + 1, C)
        local = np.zeros((B, len(self.discretizer.vocab_sizes)), np.int64)
        for n in np.unique(lengths):  # rows with the same history length share one forward
            rows = np.flatnonzero(lengths == n)
            x = torch.as_tensor(embeddings[rows, C - n:], device=self.device)
            out = [self._pick(lg[:, -1], deterministic, self.temperature)
                   for lg in self.model.logits_from_embeddings(x)]
            local[rows] = torch.stack(out, 1).cpu().numpy()
        actions = self.discretizer.decode(local)
        return (actions[0] if single else actions), (embeddings, lengths)


def load_policy(checkpoint: str | os.PathLike, tokenizer: str | os.PathLike | None = None,
                tokens: str | os.PathLike | None = None, dataset: str | None = None,
                temperature: float = 1.0, seed: int | None = None,
                device: str = "cpu", context_steps: int | None = None,
                allow_tokenizer_mismatch: bool = False) -> TokenPolicy | CNNPolicy:
    """Load a BC-Token or BC-CNN checkpoint as a policy.

    Args:
        checkpoint: trainer checkpoint (``<run>/checkpoints/last.pt``) or saved model.
        tokenizer: the VQ-VAE checkpoint (BC-Token only).
        tokens: token shards holding the action discretizer (BC-Token; default: the training
            data recorded in the checkpoint).
        dataset: Minari dataset id holding the action discretizer (BC-CNN; default: the training
            data recorded in the checkpoint).
        temperature: softmax temperature of sampled actions.
        seed: seed of action sampling.
        device: torch device (``auto``: CUDA when available).
        context_steps: timesteps of history the policy sees (default and maximum: the model's).
        allow_tokenizer_mismatch: warn instead of refusing a tokenizer other than the one the
            model was trained on (experts only).
    """
    device = resolve_device(device)
    ckpt = read_model_checkpoint(checkpoint, expect="policy")
    kind = ckpt.get("model_kind")
    data = ckpt.get("run_config", {}).get("data", {})
    if kind == "bc_cnn":
        model = model_from_checkpoint(ckpt, str(checkpoint))
        dataset = dataset or data.get("dataset_id")
        if dataset is None:
            raise ValueError(f"{checkpoint} does not record its dataset; pass --dataset ID")
        discretizer = dataset_discretizer(load_dataset(dataset))
        shape = data.get("frame_shape")
        return CNNPolicy(model.to(device), discretizer, tuple(shape) if shape else None,
                         context_steps=context_steps, temperature=temperature, seed=seed)
    if kind != "token_model":
        raise ValueError(f"{checkpoint} holds a {kind!r} model, not a BC-Token or BC-CNN policy")
    if tokenizer is None:
        raise ValueError("a BC-Token policy needs the tokenizer its tokens came from; pass "
                         "--tokenizer PATH")

    model = model_from_checkpoint(ckpt, str(checkpoint))
    vq = load_tokenizer(tokenizer, map_location=device)
    check_tokenizer_match(data.get("tokenizer_sha256"), vq.sha256(), str(checkpoint),
                          f"tokenizer {tokenizer}", allow_tokenizer_mismatch)
    tokens = tokens or data.get("path")
    if tokens is None:
        raise ValueError(f"{checkpoint} does not record its token shards; pass --tokens DIR")
    spec = TokenShards.open(tokens, tokenizer_sha256=None if allow_tokenizer_mismatch
                            else vq.sha256()).header.action_discretizer
    if spec is None:
        raise ValueError(f"token shard {tokens} records no action discretizer; re-encode it")
    return TokenPolicy(model.to(device), vq, discretizer_from_spec(spec),
                       context_steps=context_steps, temperature=temperature, seed=seed)
