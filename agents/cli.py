"""``embscale eval policy|loss``, ``embscale dyna``, ``embscale play`` and ``embscale dream``.

Examples:
    embscale eval policy --checkpoint runs/bc/checkpoints/last.pt --env embscale/Breakout-v1 \
        --episodes 10 --tokenizer runs/tok/tokenizer.pt --video bc.mp4
    embscale eval loss runs/demo/bc-token-s10k-seed0 runs/demo/bc-token-s100k-seed0 --split test
    embscale dyna --world-model runs/wm/checkpoints/last.pt --tokenizer runs/tok/tokenizer.pt \
        --env embscale/Breakout-v1 --timesteps 4096 --run-dir runs/dyna
    embscale play --world-model runs/wm/checkpoints/last.pt --tokenizer runs/tok/tokenizer.pt
    embscale dream --world-model runs/wm/checkpoints/last.pt --tokenizer runs/tok/tokenizer.pt \
        --episode 0 --out dream.mp4
"""

from __future__ import annotations

import argparse
import logging
import os

from offline_data import argtypes as A
from offline_data.atomic import write_text_atomic
from worldmodels.threads import add_threads_argument, apply_threads


def write_mp4(frames, path: str | os.PathLike, fps: int = 15, scale: int = 4) -> None:
    """Write uint8 frames (T, H, W, 3) as an H.264 MP4, enlarged ``scale`` times, atomically."""
    import tempfile
    from pathlib import Path

    import numpy as np
    from moviepy import ImageSequenceClip

    frames = np.asarray(frames, np.uint8)
    if scale > 1:
        frames = frames.repeat(scale, 1).repeat(scale, 2)
    # H.264 wants even sizes.
    frames = frames[:, : frames.shape[1] // 2 * 2, : frames.shape[2] // 2 * 2]
    clip = ImageSequenceClip(list(frames), fps=fps)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # ffmpeg picks the container from the suffix, so the temporary file keeps ".mp4".
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".mp4", dir=path.parent)
    os.close(fd)
    try:
        clip.write_videofile(tmp, codec="libx264", audio=False, logger=None)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        clip.close()


def _add_wm_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--world-model", required=True, metavar="CKPT",
                   help="WM-Token checkpoint (<run>/checkpoints/last.pt)")
    p.add_argument("--tokenizer", required=True, metavar="PATH",
                   help="the VQ-VAE checkpoint the world model's tokens came from")
    p.add_argument("--tokens", metavar="DIR", default=None,
                   help="token shards for burn-in episodes (default: the model's training data)")
    p.add_argument("--split", default="test", help="shard split to start from (held out)")
    p.add_argument("--burn-in", type=A.positive_int, default=4, help="real frames before imagining")
    p.add_argument("--temperature", type=A.nonnegative_float, default=1.0,
                   help="sampling temperature of image tokens (0: greedy)")
    p.add_argument("--reward", choices=("expected", "argmax"), default="expected",
                   help="imagined reward: expected reward sign, or its most likely value")
    p.add_argument("--seed", type=A.nonnegative_int, default=0, help="random seed (>= 0)")
    p.add_argument("--device", default="auto",
                   help="torch device of the world model and tokenizer: cpu, cuda, cuda:N or "
                        "auto (CUDA when available)")
    _add_mismatch_flag(p)
    add_threads_argument(p)


def _add_mismatch_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--allow-tokenizer-mismatch", action="store_true",
                   help="experts only: go on (with a warning) when the tokenizer or token "
                        "shards are not the ones the model was trained on (their sha256 "
                        "differs); results are then usually meaningless")


def _threaded(func):
    """``func`` run after torch's CPU threads are set from ``--threads``."""
    def run(args) -> int:
        apply_threads(args.threads)
        return func(args)
    return run


def _simulator(args, num_envs: int):
    from worldmodels.simulator import SimulatorConfig, load_simulator  # torch

    cfg = SimulatorConfig(burn_in=args.burn_in, temperature=args.temperature,
                          reward=args.reward)
    return load_simulator(args.world_model, args.tokenizer, args.tokens, args.split, num_envs,
                          cfg, seed=args.seed, device=args.device,
                          allow_tokenizer_mismatch=args.allow_tokenizer_mismatch)


def _eval_policy(args) -> int:
    import numpy as np
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv

    import envs  # gymnasium
    from agents.dyna import confidence_interval  # torch, stable-baselines3
    from agents.policies import load_policy  # torch
    from worldmodels.train_utils import Progress  # torch

    if args.episodes < 1 or args.num_envs < 1:
        raise ValueError("--episodes and --num-envs must be >= 1")
    policy = load_policy(args.checkpoint, args.tokenizer, args.tokens, args.dataset,
                         temperature=args.temperature, seed=args.seed,
                         context_steps=args.context_steps, device=args.device,
                         allow_tokenizer_mismatch=args.allow_tokenizer_mismatch)

    def make():
        return Monitor(envs.make(args.env, max_episode_steps=args.max_steps))

    venv = DummyVecEnv([make] * args.num_envs)
    policy.check_env(venv)
    venv.seed(args.seed)
    successes = []
    # Episodes of one batch of envs end together, so progress counts env steps when episodes
    # are capped (the total is an upper bound: episodes may end sooner), else episodes.
    by_steps = args.max_steps is not None
    progress = Progress(args.episodes * args.max_steps if by_steps else args.episodes,
                        desc="env steps" if by_steps else "episodes",
                        log=logging.getLogger(__name__))

    def on_step(local, _globals):
        if local["done"] and "is_success" in local["info"]:
            successes.append(float(local["info"]["is_success"]))
        if by_steps or local["done"]:
            progress.update(1)

    try:
        returns, lengths = evaluate_policy(policy, venv, n_eval_episodes=args.episodes,
                                           deterministic=args.deterministic,
                                           return_episode_rewards=True, callback=on_step)
    finally:
        progress.close()
    mean, lo, hi = confidence_interval(returns)
    print(f"{args.env}: {len(returns)} episodes, return {mean:.2f} +- {np.std(returns):.2f} "
          f"(95% CI [{lo:.2f}, {hi:.2f}]), mean length {np.mean(lengths):.0f}")
    if successes:
        print(f"success rate {np.mean(successes):.2%} over {len(successes)} episodes")
    if args.video:
        env = envs.make(args.env, max_episode_steps=args.max_steps)
        obs, _ = env.reset(seed=args.seed)
        frames, state, start, done = [obs], None, np.array([True]), False
        while not done:
            action, state = policy.predict(obs[None], state, start, args.deterministic)
            obs, _, term, trunc, _ = env.step(action[0])
            frames.append(obs)
            start, done = np.array([False]), term or trunc
        env.close()
        write_mp4(frames, args.video)
        print(f"wrote {args.video} ({len(frames)} frames)")
    return 0


def _eval_loss(args) -> int:
    import json

    from agents.held_out import held_out_loss  # torch
    from worldmodels.checkpoint import read_model_checkpoint

    for path in args.checkpoints:  # before the header: a typo or a wrong file fails in one line
        read_model_checkpoint(path, "any", map_location="meta")  # no tensor data is read
    rows = []
    width = max(len("checkpoint"), *(len(str(p)) for p in args.checkpoints))  # whole paths
    print(f"{'checkpoint':<{width}} {'task':>8} {'N':>9} {'D':>9} {'windows':>7} "
          f"{args.split + ' loss':>10} {'± s.e.':>7}")
    for path in args.checkpoints:
        r = held_out_loss(path, args.split, stride=args.stride, batch_size=args.batch_size,
                          data=args.data, device=args.device,
                          allow_tokenizer_mismatch=args.allow_tokenizer_mismatch)
        rows.append(r)
        print(f"{str(path):<{width}} {r['task'] or '?':>8} {r['params']:>9,} "
              f"{r['tokens']:>9.3g} {r['windows']:>7} {r['loss']:>10.4f} {r['stderr']:>7.4f}",
              flush=True)
    if args.json:
        write_text_atomic(args.json, json.dumps(rows, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def _dyna(args) -> int:
    import envs  # gymnasium
    from agents.dyna import DynaConfig, evaluate_saved_agent, evaluation_path, run_dyna  # torch

    cfg = DynaConfig(rounds=args.rounds, timesteps_per_round=args.timesteps,
                     horizon=args.horizon, n_steps=args.n_steps,
                     real_steps_per_round=args.real_steps, wm_updates_per_round=args.wm_updates,
                     eval_episodes=args.eval_episodes, eval_max_steps=args.eval_max_steps,
                     real_observations=args.real_observations, seed=args.seed)
    sim = _simulator(args, 1 if args.evaluate_only else args.num_envs)
    make_env = lambda: envs.make(args.env, max_episode_steps=cfg.eval_max_steps)  # noqa: E731
    if args.evaluate_only:
        results = evaluate_saved_agent(sim, make_env, cfg, args.run_dir)
        out = evaluation_path(args.run_dir, args.seed)
    else:
        results = run_dyna(sim, make_env, cfg, args.run_dir)
        out = os.path.join(args.run_dir, "results.json")
    for who in ("ppo", "random"):
        r = results[who]
        print(f"{who:>6}: return {r['mean']:.2f} (95% CI [{r['ci95'][0]:.2f}, "
              f"{r['ci95'][1]:.2f}]) over {len(r['returns'])} real episodes")
    print(f"results in {out}" + ("" if args.evaluate_only else
                                 f", TensorBoard logs in {os.path.join(args.run_dir, 'tb')}"))
    return 0


def _play(args) -> int:
    import numpy as np
    import pygame
    from gymnasium import spaces

    from envs.worldmodel_env import WorldModelEnv  # torch, stable-baselines3

    env = WorldModelEnv(_simulator(args, 1), max_episode_steps=args.horizon)
    if not isinstance(env.action_space, spaces.Discrete):
        raise ValueError(f"play supports Discrete action spaces, this world model acts in "
                         f"{env.action_space}")
    n = int(env.action_space.n)
    # Breakout-style keys; digits pick any action index.
    keys = {pygame.K_SPACE: 1, pygame.K_RIGHT: 2, pygame.K_LEFT: 3}
    keys = {k: v for k, v in keys.items() if v < n}
    keys.update({getattr(pygame, f"K_{i}"): i for i in range(min(n, 10))})
    obs, _ = env.reset(seed=args.seed)
    pygame.init()
    h, w = obs.shape[:2]
    screen = pygame.display.set_mode((w * args.scale, h * args.scale))
    pygame.display.set_caption("embscale play: inside the world model (Esc quits)")
    clock, total, steps, running = pygame.time.Clock(), 0.0, 0, True
    print(f"keys: {', '.join(f'{pygame.key.name(k)}={v}' for k, v in keys.items())}; "
          "no key = action 0")
    while running and (args.max_steps is None or steps < args.max_steps):
        for event in pygame.event.get():
            if event.type == pygame.QUIT or (event.type == pygame.KEYDOWN
                                             and event.key == pygame.K_ESCAPE):
                running = False
        pressed = pygame.key.get_pressed()
        action = next((v for k, v in keys.items() if pressed[k]), 0)
        obs, reward, term, trunc, _ = env.step(action)
        total, steps = total + reward, steps + 1
        if term or trunc:
            print(f"episode over after {steps} steps, imagined return {total:.0f}")
            obs, _ = env.reset()
            total = 0.0
        big = np.ascontiguousarray(obs.repeat(args.scale, 0).repeat(args.scale, 1))
        screen.blit(pygame.surfarray.make_surface(big.swapaxes(0, 1)), (0, 0))
        pygame.display.flip()
        clock.tick(args.fps)
    pygame.quit()
    return 0


def _dream(args) -> int:
    import numpy as np

    sim = _simulator(args, 1)
    episodes = sim.start_episodes
    if not 0 <= args.episode < len(episodes):
        raise ValueError(f"--episode {args.episode} is out of range: split {args.split!r} has "
                         f"{len(episodes)} episodes of at least {sim.config.burn_in} frames")
    ep = episodes[args.episode]
    b = sim.config.burn_in
    steps = min(args.steps, len(ep.frame_tokens) - b)
    if steps < 1:
        raise ValueError(f"episode {args.episode} has no frames after the burn-in of {b}")
    row = np.zeros(1, np.int64)
    imagined = [sim.start_from_tokens(row, ep.frame_tokens[None, :b],
                                      ep.action_tokens[None, :b - 1])[0]]
    for t in range(b - 1, b - 1 + steps):
        action = sim.discretizer.decode(ep.action_tokens[t:t + 1])
        imagined.append(sim.step(action).observations[0])
    import torch

    real = sim.decode_tokens(torch.as_tensor(ep.frame_tokens[b - 1:b + steps]))
    gap = np.full((len(real), real.shape[1], 2, 3), 255, np.uint8)
    video = np.concatenate([real, gap, np.stack(imagined)], axis=2)
    write_mp4(video, args.out, fps=args.fps)
    err = np.abs(real[1:].astype(float) - np.stack(imagined)[1:]).mean()
    print(f"wrote {args.out}: {steps} imagined steps after a burn-in of {b} frames; left real "
          f"(tokenizer reconstruction), right imagined with the same actions; mean abs pixel "
          f"error {err:.1f}")
    return 0


def register(subparsers) -> None:
    """Add ``eval policy``, ``eval loss``, ``dyna``, ``play`` and ``dream`` to ``embscale``."""
    ev = subparsers.add_parser("eval", help="evaluate trained models: in envs, or their loss "
                               "on a whole held-out split")
    ev_sub = ev.add_subparsers(dest="eval_command", metavar="WHAT", required=True)
    p = ev_sub.add_parser("policy", help="roll out a BC-Token or BC-CNN policy in a real env")
    p.add_argument("--checkpoint", required=True, help="BC-Token or BC-CNN checkpoint")
    p.add_argument("--env", required=True, help="gymnasium id, e.g. embscale/Breakout-v1")
    p.add_argument("--episodes", type=A.positive_int, default=10, help="episodes to evaluate")
    p.add_argument("--num-envs", type=A.positive_int, default=4, help="envs stepped together")
    p.add_argument("--max-steps", type=A.positive_int, default=None,
                   help="cut episodes after this many")
    p.add_argument("--tokenizer", default=None, help="VQ-VAE checkpoint (BC-Token only)")
    p.add_argument("--tokens", default=None, help="token shards with the action discretizer "
                   "(BC-Token; default: the training data)")
    p.add_argument("--dataset", default=None, help="Minari dataset with the action discretizer "
                   "(BC-CNN; default: the training data)")
    p.add_argument("--deterministic", action="store_true", help="greedy actions (else sampled)")
    p.add_argument("--temperature", type=A.nonnegative_float, default=1.0,
                   help="sampling temperature")
    p.add_argument("--video", default=None, metavar="MP4", help="write one episode as MP4")
    p.add_argument("--seed", type=A.nonnegative_int, default=0, help="random seed (>= 0)")
    p.add_argument("--context-steps", type=A.positive_int, default=None,
                   help="timesteps of history the policy sees (default: the model's context; "
                        "fewer is cheaper per step)")
    p.add_argument("--device", default="auto",
                   help="torch device of the policy: cpu, cuda, cuda:N or auto (CUDA when "
                        "available)")
    _add_mismatch_flag(p)
    add_threads_argument(p)
    p.set_defaults(func=_threaded(_eval_policy))

    p = ev_sub.add_parser(
        "loss", help="pre-training loss of checkpoints over a whole split of their data",
        description="Score WM-Token, BC-Token or BC-CNN checkpoints on every T-th window of a "
                    "split (each timestep about once), with a standard error over batches of "
                    "consecutive windows. A run's val/loss curve averages a fixed sample of "
                    "windows; this gives final models a less noisy comparison.")
    p.add_argument("checkpoints", nargs="+", metavar="RUN_OR_CHECKPOINT",
                   help="run directories (their checkpoints/last.pt) or checkpoint files")
    p.add_argument("--split", default="test", choices=("train", "val", "test"),
                   help="split of the training data to score")
    p.add_argument("--stride", type=A.positive_int, default=None,
                   help="score every STRIDE-th window (default: the window length)")
    p.add_argument("--batch-size", type=A.positive_int, default=32, help="windows per forward pass")
    p.add_argument("--data", default=None, help="token shard directory or Minari dataset id "
                   "(default: the data each run recorded)")
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:N or auto")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the rows as JSON")
    _add_mismatch_flag(p)
    add_threads_argument(p)
    p.set_defaults(func=_threaded(_eval_loss))

    p = subparsers.add_parser("dyna", help="train PPO inside a world model, evaluate it for real")
    _add_wm_args(p)
    p.add_argument("--env", required=True, help="the real env, e.g. embscale/Breakout-v1")
    p.add_argument("--run-dir", required=True,
                   help="where ppo.zip, results.json, tb/ (and world_model.pt, with --wm-updates) "
                        "go")
    p.add_argument("--num-envs", type=A.positive_int, default=16,
                   help="imagined envs stepped together")
    p.add_argument("--rounds", type=A.positive_int, default=1,
                   help="rounds of imagination (+ real steps)")
    p.add_argument("--timesteps", type=A.positive_int, default=4096,
                   help="imagined steps per round")
    p.add_argument("--horizon", type=A.positive_int, default=50, help="imagined episode length cap")
    p.add_argument("--n-steps", type=A.positive_int, default=64, help="PPO rollout length per env")
    p.add_argument("--real-steps", type=A.nonnegative_int, default=0,
                   help="real steps per round (0: none)")
    p.add_argument("--wm-updates", type=A.nonnegative_int, default=0,
                   help="world-model gradient steps on the real steps per round")
    p.add_argument("--eval-episodes", type=A.positive_int, default=10,
                   help="real evaluation episodes")
    p.add_argument("--eval-max-steps", type=A.positive_int, default=1000,
                   help="cut real episodes here")
    p.add_argument("--real-observations", choices=("reconstructed", "raw"),
                   default="reconstructed",
                   help="what the agent sees in the real env: each frame through the tokenizer "
                        "(encode, decode; the kind of frame it trained on, as IRIS) or the raw "
                        "frame")
    p.add_argument("--evaluate-only", action="store_true",
                   help="train nothing: evaluate the agent saved in --run-dir again (and random "
                        "play), --eval-episodes each from the env seed --seed + 1000; a --seed "
                        "other than the run's gives independent episodes. Writes "
                        "evaluation-seed<SEED>.json there")
    p.set_defaults(func=_threaded(_dyna))

    p = subparsers.add_parser("play", help="play inside a world model at the keyboard (pygame)")
    _add_wm_args(p)
    p.add_argument("--horizon", type=A.positive_int, default=1000,
                   help="imagined episode length cap")
    p.add_argument("--fps", type=A.positive_int, default=15, help="frames per second")
    p.add_argument("--scale", type=A.positive_int, default=6, help="window pixels per frame pixel")
    p.add_argument("--max-steps", type=A.positive_int, default=None,
                   help="stop after this many steps")
    p.set_defaults(func=_threaded(_play))

    p = subparsers.add_parser("dream", help="MP4 of real vs imagined frames, same actions")
    _add_wm_args(p)
    p.add_argument("--episode", type=A.nonnegative_int, default=0,
                   help="index of the held-out episode")
    p.add_argument("--steps", type=A.positive_int, default=60,
                   help="imagined steps after the burn-in")
    p.add_argument("--out", default="dream.mp4", help="MP4 to write")
    p.add_argument("--fps", type=A.positive_int, default=10, help="frames per second of the video")
    p.set_defaults(func=_threaded(_dream))
