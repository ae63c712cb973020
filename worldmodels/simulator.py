"""Turn a trained WM-Token model and its VQ-VAE tokenizer into a batched simulator.

The result follows ``envs.simulator.Simulator``, so ``envs.worldmodel_env`` can wrap it as a
gymnasium Env, a gymnasium VectorEnv or an SB3 VecEnv. As in IRIS and DIAMOND, an imagined episode
starts from a burn-in of a few real frames of a held-out episode (or from given observations); each
step then feeds the action tokens, reads the reward-sign and termination heads at the last action
token, generates the next frame's d_z image tokens one by one with the KV cache, and decodes them
to an RGB frame with the tokenizer.

Example:
    >>> sim = TokenWorldModelSimulator(model, tokenizer, discretizer, num_envs=16,
    ...                                start_episodes=episodes_from_shards(shards, "test"))
    ... # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass, replace

import numpy as np
import torch

from envs.simulator import SimulatorStep
from offline_data.action_spaces import space_for_discretizer
from offline_data.discretize import ActionDiscretizer, discretizer_from_spec
from offline_data.tokens import EpisodeTokens, TokenLayout, TokenShards
from worldmodels.checkpoint import model_from_checkpoint, read_model_checkpoint
from worldmodels.decode_attention import KernelConfig, check_config
from worldmodels.decode_math import sample_frame
from worldmodels.decode_step import ATTENTIONS, DECODE_MODES, DecodeStep
from worldmodels.row_cache import RowKVCache, place_rows, rebuild, row_forward, slide
from worldmodels.run_state import check_tokenizer_match, recorded_tokenizer
from worldmodels.token_model import TokenModel
from worldmodels.tokenizer import load_tokenizer
from worldmodels.train_utils import resolve_device

logger = logging.getLogger(__name__)


@dataclass
class SimulatorConfig:
    """How the world model imagines."""

    burn_in: int = 4
    """real frames (timesteps) fed before imagination starts, when starting from held-out data"""
    temperature: float = 1.0
    """softmax temperature for image tokens; 0 samples greedily"""
    top_k: int | None = None
    """sample image tokens among the k most likely only (None: all)"""
    context_steps: int | None = None
    """timesteps of context (None: as many as the model's block size holds)"""
    slide_keep: float = 0.5
    """fraction of the context window kept when the window slides"""
    use_cache: bool = True
    """decode with the KV cache; False recomputes the whole context at every token (baseline)"""
    decode: str = "auto"
    """cached decoding of one token: 'compile' or 'cuda-graph' (a fixed-shape step, compiled or
    captured), 'eager' (the same step uncompiled), 'rows' (variable-shape ``row_forward``);
    'auto': a CUDA graph on GPU, on CPU eager then compiled once it has decoded enough tokens"""
    decode_attention: str | None = None
    """how a decoded token attends (``DecodeStep``'s ``attention``): 'sdpa', 'reductions' (fused
    by the compiler) or 'triton' (a split-K kernel that reads only each row's columns; CUDA,
    needs the triton package); None: 'reductions' when compiled or captured, else 'sdpa'"""
    decode_widths: int | None = None
    """fixed widths of the cache a decoded token may attend over (``DecodeStep``'s ``widths``;
    None: 4 for a CUDA graph attending with reductions, else 1, the whole capacity)"""
    decode_kernel: tuple[int, int, int] | None = None
    """launch of the 'triton' attention's kernel: (columns per block, warps, pipelining stages),
    ``decode_attention.KernelConfig``; None: its ``DEFAULT_CONFIG``"""
    cache_dtype: str = "float32"
    """KV cache dtype: 'float32', or 'bfloat16' (model run under bf16 autocast; large batches)"""
    reward: str = "expected"
    """'expected': reward = P(+1) - P(-1) from the reward-sign head (a dense signal for sparse
    rewards); 'argmax': the most likely sign in {-1, 0, 1} (IRIS)"""

    def __post_init__(self) -> None:
        if self.burn_in < 1:
            raise ValueError(f"SimulatorConfig.burn_in must be >= 1, got {self.burn_in}")
        if self.temperature < 0:
            raise ValueError(f"SimulatorConfig.temperature must be >= 0, got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"SimulatorConfig.top_k must be >= 1 or None, got {self.top_k}")
        if self.context_steps is not None and self.context_steps < 2:
            raise ValueError(f"SimulatorConfig.context_steps must be >= 2, got "
                             f"{self.context_steps}")
        if self.reward not in ("expected", "argmax"):
            raise ValueError(f"SimulatorConfig.reward must be 'expected' or 'argmax', got "
                             f"{self.reward!r}")
        if self.decode not in ("rows", *DECODE_MODES):
            raise ValueError(f"SimulatorConfig.decode must be 'rows' or one of {DECODE_MODES}, "
                             f"got {self.decode!r}")
        if self.decode_attention not in (None, *ATTENTIONS):
            raise ValueError(f"SimulatorConfig.decode_attention must be one of {ATTENTIONS} or "
                             f"None, got {self.decode_attention!r}")
        if self.decode_widths is not None and self.decode_widths < 1:
            raise ValueError(f"SimulatorConfig.decode_widths must be >= 1 or None, got "
                             f"{self.decode_widths}")
        if self.decode_kernel is not None:
            if self.decode_attention != "triton":
                raise ValueError("SimulatorConfig.decode_kernel is the launch of the 'triton' "
                                 "attention; set decode_attention='triton' or drop it")
            self.decode_kernel = check_config(KernelConfig(*self.decode_kernel))
        if self.cache_dtype not in ("float32", "bfloat16"):
            raise ValueError(f"SimulatorConfig.cache_dtype must be 'float32' or 'bfloat16', got "
                             f"{self.cache_dtype!r}")
        if not 0.0 < self.slide_keep < 1.0:
            raise ValueError(f"SimulatorConfig.slide_keep must be in (0, 1), got {self.slide_keep}")


def episodes_from_shards(shards: TokenShards, split: str = "test", min_length: int = 1
                         ) -> list[EpisodeTokens]:
    """Held-out episodes of a token shard (frame and action tokens) to start imagination from."""
    arrays = shards.split(split)
    starts = np.asarray(arrays.episode_starts)
    episodes = []
    for lo, hi in zip(starts[:-1], starts[1:], strict=True):
        if hi - lo >= min_length:
            episodes.append(EpisodeTokens(np.asarray(arrays.frame_tokens[lo:hi], np.int64),
                                          np.asarray(arrays.action_tokens[lo:hi], np.int64),
                                          np.asarray(arrays.rewards[lo:hi]),
                                          np.asarray(arrays.terminations[lo:hi])))
    return episodes


class TokenWorldModelSimulator:
    """A batch of imagined episodes driven by a WM-Token model (see ``envs.simulator``).

    Args:
        model: a trained ``TokenModel`` with ``task='wm'`` (reward/termination heads optional:
            without them rewards are 0 and episodes only end at the env's horizon).
        tokenizer: the frozen VQ-VAE the model's tokens come from (``encode``/``decode``).
        discretizer: the dataset's action discretizer (maps env actions to action tokens).
        num_envs: rows stepped together.
        start_episodes: held-out episodes to draw burn-in frames from (``episodes_from_shards``);
            without them every reset needs start observations.
        config: sampling, burn-in and context settings.
        seed: seed of the start choice and of token sampling.
    """

    def __init__(self, model: TokenModel, tokenizer, discretizer: ActionDiscretizer,
                 num_envs: int = 1, start_episodes: list[EpisodeTokens] | None = None,
                 config: SimulatorConfig | None = None, seed: int | None = None):
        if not isinstance(model, TokenModel) or model.config.task != "wm":
            kind = model.config.task if isinstance(model, TokenModel) else type(model).__name__
            raise ValueError(f"the simulator needs a WM-Token world model, got a {kind!r} model; "
                             "pass a checkpoint trained with `embscale train --task wm-token`")
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.config = config or SimulatorConfig()
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.discretizer = discretizer
        mc = model.config
        self.layout = TokenLayout(mc.tokens_per_frame, mc.image_vocab, mc.action_vocab_sizes)
        if tuple(discretizer.vocab_sizes) != self.layout.action_vocab_sizes:
            raise ValueError(
                f"the discretizer's vocab sizes {discretizer.vocab_sizes} do not match the world "
                f"model's action vocab {self.layout.action_vocab_sizes}; use the dataset the model "
                "was trained on")
        self.num_envs = int(num_envs)
        self.action_space = space_for_discretizer(discretizer)
        self.device = model.gpt.wte.weight.device
        probe = self.decode_tokens(torch.zeros(1, self.layout.tokens_per_frame, dtype=torch.long,
                                               device=self.device))
        self.observation_shape = tuple(probe.shape[1:])
        self.context_steps = self.config.context_steps or mc.context_steps
        if self.context_steps < 2 or self.context_steps > mc.context_steps:
            raise ValueError(f"context_steps must be in [2, {mc.context_steps}] for this model "
                             f"(block_size {mc.gpt.block_size}), got {self.context_steps}")
        # burn-in fits the context; a copy, so the caller's config is left as given
        if self.config.burn_in > self.context_steps - 1:
            warnings.warn(f"burn-in {self.config.burn_in} is longer than the model's context "
                          f"allows; using {self.context_steps - 1} frames", stacklevel=2)
        self.config = replace(self.config, burn_in=min(self.config.burn_in,
                                                       self.context_steps - 1))
        self.start_episodes = [e for e in (start_episodes or [])
                               if len(e.frame_tokens) >= self.config.burn_in]
        if start_episodes and not self.start_episodes:
            raise ValueError(f"no start episode has the {self.config.burn_in} frames burn-in needs;"
                             " lower SimulatorConfig.burn_in or pass longer episodes")
        self.has_reward = model.reward_head is not None
        self.has_termination = model.termination_head is not None
        if not (self.has_reward and self.has_termination):
            warnings.warn("the world model has no reward and/or termination head: imagined rewards "
                          "are 0 and episodes end only at the horizon", stacklevel=2)
        step = self.layout.tokens_per_step
        amp = getattr(torch, self.config.cache_dtype)
        self.cache = RowKVCache(model.gpt, self.num_envs, self.context_steps * step, dtype=amp)
        # cache_enabled=False: autocast's weight-cast cache must not outlive a CUDA graph capture
        self._amp = torch.autocast(self.device.type, dtype=amp, enabled=amp != torch.float32,
                                   cache_enabled=False)
        self.decoder = (DecodeStep(model.gpt, self.cache, self.config.decode, self._amp,
                                   attention=self.config.decode_attention,
                                   widths=self.config.decode_widths,
                                   kernel=self.config.decode_kernel)
                        if self.config.use_cache and self.config.decode != "rows" else None)
        self.generator = torch.Generator(device=self.device)
        self.rng = np.random.default_rng()
        self.seed(seed)

    # ----- Simulator protocol -----

    def seed(self, seed: int | None) -> None:
        """Reseed the start choice and token sampling."""
        self.rng = np.random.default_rng(seed)
        self.generator.manual_seed(int(self.rng.integers(2**62)) if seed is None else seed)

    @torch.no_grad()
    def reset(self, env_indices: np.ndarray, observations: np.ndarray | None = None) -> np.ndarray:
        """Start rows anew from burn-in frames of held-out episodes or from given observations."""
        rows = torch.as_tensor(np.asarray(env_indices, np.int64), device=self.device)
        n = len(rows)
        if observations is not None:
            obs = np.asarray(observations)
            if obs.shape != (n, *self.observation_shape):
                raise ValueError(f"start observations have shape {obs.shape}, expected "
                                 f"{(n, *self.observation_shape)}")
            z = self.encode_frames(obs)  # n, K
            with self._amp:
                place_rows(self.model.gpt, self.cache, rows, z)
            return self.decode_tokens(z)
        if not self.start_episodes:
            raise ValueError("this simulator has no start episodes: pass start observations to "
                             "reset (options={'observation': ...}) or build it with "
                             "start_episodes=episodes_from_shards(shards, 'test')")
        b = self.config.burn_in
        frames, actions = [], []
        for _ in range(n):
            ep = self.start_episodes[self.rng.integers(len(self.start_episodes))]
            s = int(self.rng.integers(len(ep.frame_tokens) - b + 1))
            frames.append(ep.frame_tokens[s:s + b])
            actions.append(ep.action_tokens[s:s + b - 1])
        return self.start_from_tokens(env_indices, np.stack(frames), np.stack(actions))

    @torch.no_grad()
    def start_from_tokens(self, env_indices: np.ndarray, frame_tokens: np.ndarray,
                          action_tokens: np.ndarray) -> np.ndarray:
        """Start rows from a burn-in given as tokens; returns the decoded last frames.

        Args:
            env_indices: int (n,) rows to start.
            frame_tokens: int (n, b, d_z) image ids of b real frames.
            action_tokens: int (n, b - 1, d_a) local ids of the actions taken between them.
        """
        rows = torch.as_tensor(np.asarray(env_indices, np.int64), device=self.device)
        z = np.asarray(frame_tokens, np.int64)
        a = np.asarray(action_tokens, np.int64)
        n, b = z.shape[:2]
        if b > self.context_steps - 1 or a.shape != (n, b - 1, self.layout.d_a):
            raise ValueError(f"burn-in of {b} frames with actions {a.shape} does not fit: at most "
                             f"{self.context_steps - 1} frames and (n, frames - 1, "
                             f"{self.layout.d_a}) actions")
        pad = np.zeros((n, 1, self.layout.d_a), np.int64)  # placeholder for the agent's action
        ids = self.layout.to_global(z, np.concatenate([a, pad], 1))[:, :-self.layout.d_a]
        with self._amp:
            place_rows(self.model.gpt, self.cache, rows, torch.as_tensor(ids, device=self.device))
        return self.decode_tokens(torch.as_tensor(z[:, -1], device=self.device))

    @torch.no_grad()
    def step(self, actions: np.ndarray) -> SimulatorStep:
        """Imagine one step of every row; returns next frames, rewards and terminations."""
        a = torch.as_tensor(self.discretizer.encode(actions), device=self.device)
        a = a + torch.as_tensor(self.layout.action_offsets, device=self.device)  # B, A global
        z, rewards, terminated = self.imagine_tokens(a)
        return SimulatorStep(self.decode_tokens(z), rewards, terminated)

    # ----- token-level imagination -----

    @torch.no_grad()
    def imagine_tokens(self, action_ids: torch.Tensor
                       ) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
        """Feed global action ids (B, d_a); generate the next frame's tokens (B, d_z).

        Returns:
            frame tokens int64 (B, d_z), rewards float32 (B,) (the reward sign: its expectation
            in [-1, 1] or its most likely value in {-1, 0, 1}) and terminations bool (B,).
        """
        K, A = self.layout.tokens_per_frame, self.layout.d_a
        if self.cache.length + A + K > self.cache.capacity:
            keep_steps = max(1, min(self.context_steps - 1,
                                    int(self.context_steps * self.config.slide_keep)))
            with self._amp:
                slide(self.model.gpt, self.cache, keep_steps * (K + A) - A)
        B, greedy = action_ids.shape[0], self.config.temperature == 0
        # uniforms for every image token and id, drawn before decoding: every path samples the
        # same ids from them
        u = None if greedy else torch.rand(B, K, self.layout.image_vocab, generator=self.generator,
                                           device=self.device)
        sampling = (self.layout.image_vocab, K, self.config.temperature, self.config.top_k)
        if self.decoder is not None:  # the whole step in one call (compiled on a CPU)
            z, hidden = self.decoder.frame(action_ids, u, *sampling)
        else:
            hidden = self._feed(action_ids)[:, -1]  # B, E at the step's last action token
            z = sample_frame(hidden, lambda k, ids: self._feed(ids[:, None])[:, -1],
                             self.model.gpt.lm_head, u, *sampling)
        rewards = np.zeros(self.num_envs, np.float32)
        terminated = np.zeros(self.num_envs, bool)
        if self.has_reward:
            logits = self.model.reward_head(hidden).float()  # B, 3: sign -1, 0, +1
            if self.config.reward == "argmax":
                rewards = (logits.argmax(-1) - 1).float().cpu().numpy()
            else:
                p = torch.softmax(logits, -1)
                rewards = (p[:, 2] - p[:, 0]).cpu().numpy()
        if self.has_termination:
            terminated = (self.model.termination_head(hidden).argmax(-1) == 1).cpu().numpy()
        return z, rewards, terminated

    def _feed(self, ids: torch.Tensor) -> torch.Tensor:
        """Append ids (B, L); hidden states (B, L, E), over the cache or by recomputing the context.

        The variable-shape ``row_forward`` paths; the fixed-shape decoder feeds its own tokens.
        """
        gpt, cache = self.model.gpt, self.cache
        with self._amp:
            if self.config.use_cache:
                return row_forward(gpt, cache, ids)
            t, L = cache.length, ids.shape[1]
            cache.tokens[:, t:t + L] = ids
            return row_forward(gpt, cache, cache.tokens[:, :t + L].clone(), col0=0)[:, -L:]

    @torch.no_grad()
    def refresh_cache(self) -> None:
        """Re-encode every row's context with the model's current weights.

        After the weights change (dyna's world-model updates), the keys and values cached for
        episodes in progress are the old weights'; recomputed, those episodes go on as the new
        model alone would have imagined them from the same tokens.
        """
        if self.config.use_cache:
            with self._amp:
                rebuild(self.model.gpt, self.cache,
                        [self.cache.row_tokens(b) for b in range(self.num_envs)])

    def encode_frames(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 frames (B, H, W, 3) -> image token ids int64 (B, d_z) for this model."""
        z = torch.as_tensor(self.tokenizer.encode(frames), device=self.device).long()
        if z.shape[1] != self.layout.tokens_per_frame:
            raise ValueError(f"the tokenizer gives {z.shape[1]} tokens per frame but the world "
                             f"model expects {self.layout.tokens_per_frame}; pass the tokenizer "
                             "it was trained with")
        return z

    def decode_tokens(self, tokens: torch.Tensor) -> np.ndarray:
        """Image token ids (B, d_z) -> uint8 frames (B, H, W, 3) with the tokenizer."""
        frames = self.tokenizer.decode(tokens)
        if isinstance(frames, torch.Tensor):
            frames = frames.cpu().numpy()
        return np.asarray(frames, np.uint8)


    def reconstruct_frames(self, frames: np.ndarray) -> np.ndarray:
        """uint8 frames (B, H, W, 3) -> their tokenizer reconstructions (encode, then decode)."""
        return self.decode_tokens(self.encode_frames(frames))


def load_simulator(checkpoint: str | os.PathLike, tokenizer: str | os.PathLike,
                   tokens: str | os.PathLike | None = None, split: str = "test",
                   num_envs: int = 1, config: SimulatorConfig | None = None,
                   seed: int | None = None, device: str = "cpu",
                   allow_tokenizer_mismatch: bool = False) -> TokenWorldModelSimulator:
    """Build a simulator from a WM-Token checkpoint, its tokenizer and its token shards.

    Args:
        checkpoint: a trainer checkpoint (or ``save_token_model`` file) of a WM-Token model.
        tokenizer: the VQ-VAE checkpoint the shards were encoded with.
        tokens: token shard directory for burn-in episodes and the action discretizer
            (default: the data the model was trained on, from the checkpoint's run config).
        split: shard split whose episodes start imagination (held-out: ``test`` or ``val``).
        num_envs: rows stepped together.
        config: sampling, burn-in and context settings.
        seed: seed of the start choice and token sampling.
        device: torch device of the model and tokenizer (``auto``: CUDA when available).
        allow_tokenizer_mismatch: warn instead of refusing a tokenizer (or shards) other than
            the one the model was trained on (experts only).
    """
    device = resolve_device(device)
    ckpt = read_model_checkpoint(checkpoint, expect="world model")
    model = model_from_checkpoint(ckpt).to(device).eval()
    if tokens is None:
        tokens = ckpt.get("run_config", {}).get("data", {}).get("path")
        if tokens is None:
            raise ValueError(f"{checkpoint} does not record its token shards; pass them with "
                             "--tokens DIR")

    vq = load_tokenizer(tokenizer, map_location=device)
    check_tokenizer_match(recorded_tokenizer(ckpt), vq.sha256(), str(checkpoint),
                          f"tokenizer {tokenizer}", allow_tokenizer_mismatch)
    shards = TokenShards.open(tokens, tokenizer_sha256=None if allow_tokenizer_mismatch
                              else vq.sha256())
    if shards.header.action_discretizer is None:
        raise ValueError(f"token shard {tokens} records no action discretizer; re-encode it from "
                         "a dataset made by `embscale data collect`")
    discretizer = discretizer_from_spec(shards.header.action_discretizer)
    cfg = config or SimulatorConfig()
    episodes = episodes_from_shards(shards, split)  # it keeps those its clamped burn-in fits
    return TokenWorldModelSimulator(model, vq, discretizer, num_envs, episodes, cfg, seed)
