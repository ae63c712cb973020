"""Dyna-style RL: stable-baselines3 PPO trained on rollouts imagined by a world model.

Each round trains PPO for ``timesteps_per_round`` imagined steps in the world-model ``VecEnv``
(burn-in starts from held-out real frames); optionally it then collects ``real_steps_per_round``
steps in the real env with the current agent and fine-tunes the world model on them for
``wm_updates_per_round`` gradient steps (their episodes also become burn-in starts). The agent is
evaluated in the real env, beside a uniform-random policy, with 95% confidence intervals over
episodes. TensorBoard logs go to ``<run_dir>/tb``, the agent to ``<run_dir>/ppo.zip``, the results
to ``<run_dir>/results.json``, and a world model updated on real steps to
``<run_dir>/world_model.pt``.

Example:
    embscale dyna --world-model runs/wm/checkpoints/last.pt --tokenizer runs/tok/tokenizer.pt
        --env embscale/Breakout-v1 --timesteps 20000 --run-dir runs/dyna
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import VecMonitor

from agents.dyna_runs import check_run_dir, clear_derived, evaluation_path
from envs.reconstruction import ReconstructedObservation
from envs.worldmodel_env import WorldModelVecEnv
from offline_data.action_spaces import check_action_space
from offline_data.atomic import atomic_file, write_text_atomic
from offline_data.token_windows import TokenBatch
from offline_data.tokens import EpisodeTokens
from worldmodels.simulator import TokenWorldModelSimulator
from worldmodels.token_model import save_token_model
from worldmodels.train_utils import Progress

logger = logging.getLogger(__name__)


@dataclass
class DynaConfig:
    """Dyna-style PPO inside a world model."""

    rounds: int = 1
    """rounds of (imagined PPO training, then optional real steps and world-model updates)"""
    timesteps_per_round: int = 4096
    """imagined env steps PPO trains on per round"""
    horizon: int = 50
    """imagined episodes are truncated after this many steps"""
    n_steps: int = 64
    """PPO rollout length per imagined env"""
    batch_size: int = 256
    """PPO minibatch size"""
    n_epochs: int = 4
    """PPO epochs per rollout"""
    learning_rate: float = 3e-4
    """PPO learning rate"""
    ent_coef: float = 0.01
    """PPO entropy bonus"""
    real_steps_per_round: int = 0
    """real env steps collected with the agent after each round (0: imagination only)"""
    wm_updates_per_round: int = 0
    """world-model gradient steps on the real steps after each round"""
    wm_learning_rate: float = 1e-4
    """learning rate of the world-model updates"""
    eval_episodes: int = 10
    """real-env episodes to evaluate the agent (and the random baseline) on"""
    eval_max_steps: int = 1000
    """real-env evaluation episodes are cut after this many steps"""
    real_observations: str = "reconstructed"
    """what the agent sees in the real env: ``reconstructed`` (each frame through the
    tokenizer, encode then decode: the kind of frame it trained on, as IRIS does) or ``raw``"""
    seed: int = 0
    """seed of PPO, the simulator and the real env"""

    def __post_init__(self) -> None:
        for name in ("rounds", "timesteps_per_round", "horizon", "n_steps", "batch_size",
                     "n_epochs", "eval_episodes", "eval_max_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"DynaConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("real_steps_per_round", "wm_updates_per_round"):
            if getattr(self, name) < 0:
                raise ValueError(f"DynaConfig.{name} must be >= 0, got {getattr(self, name)}")
        if self.real_observations not in ("reconstructed", "raw"):
            raise ValueError(f"DynaConfig.real_observations must be 'reconstructed' or 'raw', "
                             f"got {self.real_observations!r}")
        if self.wm_updates_per_round and not self.real_steps_per_round:
            raise ValueError("wm_updates_per_round (--wm-updates) needs real_steps_per_round "
                             "(--real-steps) > 0: the world model is updated on real steps")


def confidence_interval(values: list[float] | np.ndarray) -> tuple[float, float, float]:
    """Mean and 95% normal-approximation confidence interval over episodes.

    >>> confidence_interval([1.0, 3.0])
    (2.0, 0.04, 3.96)
    """
    v = np.asarray(values, np.float64)
    mean = float(v.mean())
    half = 1.96 * float(v.std(ddof=1)) / math.sqrt(len(v)) if len(v) > 1 else float("nan")
    return round(mean, 6), round(mean - half, 6), round(mean + half, 6)


class _Progress(BaseCallback):
    """Progress over imagined steps: a tqdm bar on a terminal, else a log line every 10%."""

    def __init__(self, total: int):
        super().__init__()
        self.total, self.bar, self.done, self.next_log = total, None, 0, 0.1
        self.t0 = 0.0

    def _on_training_start(self) -> None:
        from tqdm import tqdm

        self.t0 = time.perf_counter()
        if sys.stderr.isatty():
            self.bar = tqdm(total=self.total, desc="imagined steps", unit="step")

    def _on_step(self) -> bool:
        n = self.training_env.num_envs
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.done >= self.next_log * self.total:
            self.next_log += 0.1
            episodes = [e["r"] for e in self.model.ep_info_buffer]
            ret = f", imagined return {np.mean(episodes):.2f}" if episodes else ""
            rate = self.done / max(time.perf_counter() - self.t0, 1e-9)
            logger.info("imagined steps %d/%d (%.0f steps/s%s)", self.done, self.total, rate,
                        ret)
        return True

    def _on_training_end(self) -> None:
        if self.bar is not None:
            self.bar.close()


class _RandomPolicy:
    """Uniform random actions with SB3's predict signature (the baseline)."""

    def __init__(self, space: gym.Space, seed: int):
        self.space = space
        self.space.seed(seed)

    def predict(self, observation, state=None, episode_start=None, deterministic=False):
        n = len(observation)
        return np.stack([self.space.sample() for _ in range(n)]), state


def evaluate_real(policy, make_env: Callable[[], gym.Env], episodes: int, seed: int,
                  deterministic: bool = False, label: str = "policy") -> dict:
    """Episode returns of ``policy`` in the real env: mean, 95% CI and the raw returns.

    With a discrete action space, ``action_counts`` gives how often each action was taken over
    all the episodes' steps (what the policy does, e.g. whether it ever fires in Breakout).
    Progress over episodes (named ``label``) shows as a bar on a terminal, else as log lines.
    """
    env = Monitor(make_env())
    env.reset(seed=seed)
    progress = Progress(episodes, desc=f"real episodes ({label})", log=logger)
    discrete = isinstance(env.action_space, gym.spaces.Discrete)
    counts = np.zeros(int(env.action_space.n) if discrete else 0, np.int64)

    def count(locals_: dict, globals_: dict) -> None:  # before this step's episode is counted
        progress.update(int(np.sum(locals_["episode_counts"])) - progress.done)
        if discrete:
            counts[int(np.asarray(locals_["actions"]).reshape(-1)[locals_["i"]])] += 1

    returns, lengths = evaluate_policy(policy, env, n_eval_episodes=episodes,
                                       deterministic=deterministic, return_episode_rewards=True,
                                       callback=count)
    progress.update(episodes - progress.done)
    progress.close()
    env.close()
    mean, lo, hi = confidence_interval(returns)
    out = {"mean": mean, "ci95": [lo, hi], "returns": [float(r) for r in returns],
           "lengths": [int(n) for n in lengths]}
    if discrete:
        out["action_counts"] = counts.tolist()
    return out


def _collect_real(agent: PPO, make_env, steps: int, simulator: TokenWorldModelSimulator,
                  seed: int, view: Callable[[np.ndarray], np.ndarray] | None = None
                  ) -> list[EpisodeTokens]:
    """Play ``steps`` real steps with the agent; episodes as frame/action tokens.

    The agent acts on ``view`` of each frame (a batch of one) when given; the episodes keep the
    env's own frames, which the world model learns from.
    """
    env = make_env()
    obs, _ = env.reset(seed=seed)
    episodes, frames, actions, rewards, terms = [], [obs], [], [], []
    for t in range(steps):
        seen = obs if view is None else view(obs[None])[0]
        action, _ = agent.predict(seen, deterministic=False)
        obs, r, term, trunc, _ = env.step(action)
        actions.append(action)
        rewards.append(r)
        terms.append(term)
        if term or trunc or t == steps - 1:
            z = simulator.encode_frames(np.stack(frames)).cpu().numpy()
            a = simulator.discretizer.encode(np.stack(actions))
            episodes.append(EpisodeTokens(z, a, np.asarray(rewards, np.float32),
                                          np.asarray(terms, bool)))
            obs, _ = env.reset()
            frames, actions, rewards, terms = [obs], [], [], []
        else:
            frames.append(obs)
    env.close()
    return episodes


def update_world_model(simulator: TokenWorldModelSimulator, episodes: list[EpisodeTokens],
                       steps: int, learning_rate: float, seed: int) -> list[float]:
    """Fine-tune the simulator's world model on real episodes; returns the losses.

    The simulator's cache is then re-encoded with the new weights, so imagined episodes that
    PPO has in progress continue under the updated model, not on the old model's keys.
    """
    model, layout = simulator.model, simulator.layout
    T = simulator.context_steps
    windows = [(e, s) for e in episodes for s in range(max(1, len(e.frame_tokens) - T + 1))
               if len(e.frame_tokens) >= 2]
    if not windows:
        return []
    rng = np.random.default_rng(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=learning_rate)
    model.train()
    losses = []
    for _ in range(steps):
        picks = [windows[i] for i in rng.integers(len(windows), size=min(16, len(windows)))]
        n = min(T, min(len(e.frame_tokens) - s for e, s in picks))
        toks = np.stack([layout.to_global(e.frame_tokens[s:s + n], e.action_tokens[s:s + n])
                         for e, s in picks])
        wm, bc = layout.target_masks(n)
        dev = simulator.device
        batch = TokenBatch(
            torch.as_tensor(toks, device=dev),
            torch.as_tensor(np.stack([e.rewards[s:s + n] for e, s in picks]), device=dev),
            torch.as_tensor(np.stack([e.terminations[s:s + n] for e, s in picks]), device=dev),
            torch.as_tensor(np.broadcast_to(wm, toks.shape).copy(), device=dev),
            torch.as_tensor(np.broadcast_to(bc, toks.shape).copy(), device=dev))
        out = model.compute_loss(batch)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(float(out.loss.detach()))
    model.eval()
    simulator.refresh_cache()  # imagined episodes in progress go on under the new weights
    return losses


def _check_real_env(simulator: TokenWorldModelSimulator,
                    make_env: Callable[[], gym.Env]) -> gym.Space:
    """The real env's action space, after checking that its frames and actions fit the model."""
    probe = make_env()
    if tuple(probe.observation_space.shape) != tuple(simulator.observation_shape):
        raise ValueError(f"the env's observations have shape {probe.observation_space.shape} but "
                         f"the world model makes frames of {simulator.observation_shape}; make "
                         "the env with the frame size the world model was trained on")
    check_action_space(simulator.discretizer, probe.action_space, "world model")
    probe.close()
    return probe.action_space


def run_dyna(simulator: TokenWorldModelSimulator, make_env: Callable[[], gym.Env],
             config: DynaConfig, run_dir: str | os.PathLike, overwrite: bool = False,
             provenance: dict | None = None) -> dict:
    """Train PPO inside the world model, evaluate it in the real env; returns the results.

    An existing run in ``run_dir`` is refused unless ``overwrite`` (:func:`check_run_dir`); it
    is replaced only once the env and the PPO settings pass their checks. ``provenance`` (the
    world model and tokenizer used, whose files must then lie outside ``run_dir``) is recorded in
    results.json.
    """
    run_dir = Path(run_dir)
    inputs = [v for k, v in (provenance or {}).items() if k in ("world_model", "tokenizer")]
    check_run_dir(run_dir, overwrite, inputs)
    space = _check_real_env(simulator, make_env)
    run_dir.mkdir(parents=True, exist_ok=True)
    venv = VecMonitor(WorldModelVecEnv(simulator, max_episode_steps=config.horizon))
    venv.seed(config.seed)
    batch_size = min(config.batch_size, config.n_steps * venv.num_envs)
    if batch_size < 2:  # PPO normalises advantages over a minibatch
        raise ValueError(f"PPO needs at least 2 imagined steps per update, got n_steps="
                         f"{config.n_steps} x {venv.num_envs} env(s) (batch_size "
                         f"{config.batch_size}); raise --n-steps or --num-envs")
    clear_derived(run_dir, keep_world_model=bool(config.wm_updates_per_round))  # checks passed
    agent = PPO("CnnPolicy", venv, n_steps=config.n_steps, batch_size=batch_size,
                n_epochs=config.n_epochs, learning_rate=config.learning_rate,
                ent_coef=config.ent_coef, seed=config.seed, verbose=0,
                tensorboard_log=str(run_dir / "tb"), device=simulator.device)
    view = _agent_view(simulator, config)
    history = []
    for r in range(config.rounds):
        agent.learn(config.timesteps_per_round, callback=_Progress(config.timesteps_per_round),
                    reset_num_timesteps=False, tb_log_name="ppo")
        record = {"round": r, "imagined_steps": int(agent.num_timesteps)}
        if config.real_steps_per_round:
            episodes = _collect_real(agent, make_env, config.real_steps_per_round, simulator,
                                     config.seed + r, view)
            simulator.start_episodes += [e for e in episodes
                                         if len(e.frame_tokens) >= simulator.config.burn_in]
            losses = update_world_model(simulator, episodes, config.wm_updates_per_round,
                                        config.wm_learning_rate, config.seed + r)
            record.update(real_steps=config.real_steps_per_round,
                          wm_loss=float(np.mean(losses)) if losses else None)
        history.append(record)
        logger.info("round %d: %s", r, record)
    with atomic_file(run_dir / "ppo.zip") as tmp, open(tmp, "wb") as f:  # a kill keeps the old
        agent.save(f)
    if config.wm_updates_per_round:  # the world model as the real steps left it
        save_token_model(simulator.model, run_dir / "world_model.pt")
    results = {"config": asdict(config), **(provenance or {}), "rounds": history,
               **evaluate_agent(agent, simulator, make_env, config, space)}
    write_text_atomic(run_dir / "results.json", json.dumps(results, indent=2) + "\n")
    return results


def _agent_view(simulator: TokenWorldModelSimulator,
                config: DynaConfig) -> Callable[[np.ndarray], np.ndarray] | None:
    """What the agent sees of real frames: their reconstructions, or (None) the frames."""
    return simulator.reconstruct_frames if config.real_observations == "reconstructed" else None


def evaluate_agent(agent: PPO, simulator: TokenWorldModelSimulator,
                   make_env: Callable[[], gym.Env], config: DynaConfig,
                   action_space: gym.Space) -> dict:
    """``agent`` and uniform-random play in the real env, ``config.eval_episodes`` each.

    Random play samples ``action_space``. Both play episodes from the env seed
    ``config.seed + 1000``; the agent sees what ``config.real_observations`` says (the
    tokenizer's reconstructions, or the raw frames).
    """
    view = _agent_view(simulator, config)

    def make_agent_env() -> gym.Env:
        env = make_env()
        return env if view is None else ReconstructedObservation(env, view)

    return {
        "ppo": evaluate_real(agent, make_agent_env, config.eval_episodes, config.seed + 1000,
                             label="PPO"),
        "random": evaluate_real(_RandomPolicy(action_space, config.seed), make_env,
                                config.eval_episodes, config.seed + 1000, label="random"),
    }


def evaluate_saved_agent(simulator: TokenWorldModelSimulator, make_env: Callable[[], gym.Env],
                         config: DynaConfig, run_dir: str | os.PathLike) -> dict:
    """Evaluate the agent a finished ``run_dyna`` saved in ``run_dir`` again, without training.

    Another ``config.seed`` gives episodes independent of the run's own evaluation (the env,
    the agent's sampling and the random baseline are all seeded from it). The results go to
    ``<run_dir>/evaluation-seed<seed>.json``, beside the run's ``results.json``.
    """
    path = Path(run_dir) / "ppo.zip"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: evaluate the run directory of a finished "
                                "`embscale dyna` (it saves the agent as ppo.zip), or train one "
                                "first")
    space = _check_real_env(simulator, make_env)
    agent = PPO.load(path, device=simulator.device)
    agent.set_random_seed(config.seed)
    results = {"config": {"eval_episodes": config.eval_episodes,
                          "eval_max_steps": config.eval_max_steps,
                          "real_observations": config.real_observations, "seed": config.seed},
               **evaluate_agent(agent, simulator, make_env, config, space)}
    write_text_atomic(evaluation_path(run_dir, config.seed), json.dumps(results, indent=2) + "\n")
    return results
