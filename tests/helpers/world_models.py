"""A small but real world model for env tests: random-init VQ-VAE + WM-Token transformer."""

from __future__ import annotations

import numpy as np
import torch
from gymnasium import spaces

from offline_data.discretize import discretizer_for_space
from offline_data.tokens import EpisodeTokens, TokenLayout
from worldmodels.simulator import SimulatorConfig, TokenWorldModelSimulator
from worldmodels.token_model import TokenModel, TokenModelConfig
from worldmodels.tokenizer import VQVAE, VQConfig

FRAME = 64
TOKENS = 16
CODES = 32


def tiny_tokenizer() -> VQVAE:
    torch.manual_seed(0)
    cfg = VQConfig(image_height=FRAME, image_width=FRAME, tokens_per_frame=TOKENS,
                   codebook_size=CODES, code_dim=8, channels=8, max_channels=16, num_res_blocks=0)
    return VQVAE(cfg).eval()


def tiny_model(task: str = "wm", seq_len: int = 4, actions: int = 4) -> TokenModel:
    torch.manual_seed(0)
    layout = TokenLayout(TOKENS, CODES, (actions,))
    heads = task == "wm"
    cfg = TokenModelConfig.for_layout(layout, n_layer=1, n_head=2, n_embd=32, seq_len=seq_len,
                                      task=task, reward_head=heads, termination_head=heads)
    return TokenModel(cfg).eval()


def tiny_episodes(vq: VQVAE, n: int = 3, length: int = 8, actions: int = 4) -> list[EpisodeTokens]:
    rng = np.random.default_rng(0)
    episodes = []
    for _ in range(n):
        frames = rng.integers(0, 256, (length, FRAME, FRAME, 3), dtype=np.uint8)
        episodes.append(EpisodeTokens(vq.encode(frames).numpy(),
                                      rng.integers(0, actions, (length, 1)),
                                      np.zeros(length, np.float32), np.zeros(length, bool)))
    return episodes


def tiny_simulator(num_envs: int = 1, seed: int = 0, **config) -> TokenWorldModelSimulator:
    vq = tiny_tokenizer()
    discretizer = discretizer_for_space(spaces.Discrete(4))
    return TokenWorldModelSimulator(tiny_model(), vq, discretizer, num_envs, tiny_episodes(vq),
                                    SimulatorConfig(burn_in=2, **config), seed=seed)
