"""Online return of a BC policy trained for a few CPU minutes, against random play, same run.

Run: ``.venv/bin/python benchmarks/bench_policy.py`` (collects the embedded Breakout dataset if
it is missing, trains a BC-CNN of size s100k on one thread, then evaluates). Pass
``--checkpoint RUN_DIR`` (repeatable) to evaluate already-trained BC-CNN or BC-Token runs instead;
BC-Token runs need ``--tokenizer``.

Every policy (ours, the uniformly random policy, and the dataset's scripted demonstrators at
their lowest and highest skill for reference) plays the same number of episodes in
``embscale/Breakout-v0`` through stable-baselines3's ``evaluate_policy`` (BC actions sampled
from the policy's distribution: the greedy action rarely serves the ball); the table gives the
mean return with a 95% confidence interval over episodes. The target is a BC policy whose
interval lies above the random policy's.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch


def _evaluate(policy, env_id: str, episodes: int, num_envs: int, max_steps: int, seed: int):
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv

    import envs

    venv = DummyVecEnv([lambda: Monitor(envs.make(env_id, max_episode_steps=max_steps))]
                       * num_envs)
    venv.seed(seed)
    try:
        returns, _ = evaluate_policy(policy, venv, n_eval_episodes=episodes,
                                     deterministic=False, return_episode_rewards=True)
    finally:
        venv.close()
    return np.asarray(returns, np.float64)


class _Random:
    """Uniformly random actions with SB3's ``predict`` signature."""

    def __init__(self, n: int, seed: int):
        self.n, self.rng = n, np.random.default_rng(seed)

    def predict(self, observation, state=None, episode_start=None, deterministic=False):
        return self.rng.integers(self.n, size=len(observation)), state


class _Scripted:
    """The dataset's RAM-reading demonstrator; it reads RAM from the envs of the vector env."""

    def __init__(self, skill: float, seed: int):
        from agents.demonstrators import ScriptedBreakoutPolicy

        self.player, self.venv = ScriptedBreakoutPolicy(skill=skill, seed=seed), None

    def predict(self, observation, state=None, episode_start=None, deterministic=False):
        rams = np.stack([e.unwrapped.get_ram() for e in self.venv.envs])
        return self.player.act(rams, episode_start), state


def _evaluate_scripted(skill, args) -> np.ndarray:
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv

    import envs

    policy = _Scripted(skill, args.seed)
    venv = DummyVecEnv([lambda: Monitor(envs.make(args.env, max_episode_steps=args.max_steps))]
                       * args.num_envs)
    venv.seed(args.seed)
    policy.venv = venv
    try:
        returns, _ = evaluate_policy(policy, venv, n_eval_episodes=args.episodes,
                                     return_episode_rewards=True)
    finally:
        venv.close()
    return np.asarray(returns, np.float64)


def _train(args) -> tuple[Path, float]:
    from offline_data.defaults import BREAKOUT_DATASET_ID, collect_default
    from scaling.cli import main
    from scaling.study.steps import dataset_exists

    if args.dataset == BREAKOUT_DATASET_ID and not dataset_exists(args.dataset):
        collect_default("breakout", progress=True)
    run = Path(args.run_dir)
    start = time.process_time()
    code = main(["train", "--task", "bc-cnn", "--size", args.size, "--data", args.dataset,
                 "--run-dir", str(run), "--tokens", str(args.frames), "--threads", "1",
                 "--no-tensorboard", "--seed", str(args.seed)])
    if code != 0:
        raise SystemExit(f"training failed with exit code {code}")
    return run, time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", action="append", default=[],
                        help="BC run directory or checkpoint to evaluate (repeatable); "
                             "default: train one")
    parser.add_argument("--tokenizer", help="VQ-VAE checkpoint (BC-Token checkpoints)")
    parser.add_argument("--dataset", default="embscale/breakout/scripted-v2")
    parser.add_argument("--size", default="s100k", help="BC-CNN size to train")
    parser.add_argument("--frames", type=float, default=2e5, help="training budget in frames")
    parser.add_argument("--run-dir", default="runs/bench-policy/bc-cnn")
    parser.add_argument("--env", default="embscale/Breakout-v1")
    parser.add_argument("--episodes", type=int, default=24)
    parser.add_argument("--num-envs", type=int, default=8)
    parser.add_argument("--max-steps", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)

    from agents.dyna import confidence_interval
    from agents.policies import load_policy

    trained = []
    if not args.checkpoint:
        run, cpu_s = _train(args)
        print(f"trained BC-CNN {args.size} on {args.frames:.3g} frames in {cpu_s / 60:.1f} "
              "CPU minutes (one thread)")
        trained.append(str(run))
    rows = []
    for ckpt in args.checkpoint or trained:
        policy = load_policy(ckpt, tokenizer=args.tokenizer, seed=args.seed)
        rows.append((f"{policy.name} {Path(ckpt).name}",
                     _evaluate(policy, args.env, args.episodes, args.num_envs, args.max_steps,
                               args.seed)))
    rows.append(("random", _evaluate(_Random(4, args.seed), args.env, args.episodes,
                                     args.num_envs, args.max_steps, args.seed)))
    for skill in (0.7, 1.0):
        rows.append((f"scripted demonstrator, skill {skill}", _evaluate_scripted(skill, args)))

    _, _, random_hi = confidence_interval(rows[-3][1])
    print(f"\n{args.episodes} episodes each in {args.env} (cut at {args.max_steps} steps); "
          "95% confidence intervals over episodes")
    print("| policy | mean return | 95% CI | above random |\n|---|---|---|---|")
    for name, returns in rows:
        mean, lo, hi = confidence_interval(returns)
        above = "yes" if lo > random_hi else "no"
        print(f"| {name} | {mean:.2f} | [{lo:.2f}, {hi:.2f}] | "
              f"{'—' if name == 'random' or name.startswith('scripted') else above} |")


if __name__ == "__main__":
    main()
