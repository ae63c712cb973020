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

import logging

from agents.cli_common import (
    add_mismatch_flag,
    add_size_argument,
    add_wm_args,
    env_kwargs,
    simulator_from_args,
    threaded,
    write_mp4,
)
from agents.cli_dyna import register_dyna
from offline_data import argtypes as A
from offline_data.atomic import check_output_file, write_text_atomic
from worldmodels.run_metrics import finite_or_none
from worldmodels.threads import add_threads_argument


def _eval_policy(args) -> int:
    if args.video:  # before the episodes are played
        check_output_file(args.video, "--video", ".mp4")
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
        return Monitor(envs.make(args.env, max_episode_steps=args.max_steps, **env_kwargs(args)))

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
        env = envs.make(args.env, max_episode_steps=args.max_steps, **env_kwargs(args))
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
    if args.json:  # before the checkpoints are scored
        check_output_file(args.json, "--json", ".json")
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
        # strict JSON: a standard error unknown from one batch is null, not NaN
        write_text_atomic(args.json, json.dumps(finite_or_none(rows), indent=2,
                                                allow_nan=False) + "\n")
        print(f"wrote {args.json}")
    return 0


def _play(args) -> int:
    import numpy as np
    import pygame
    from gymnasium import spaces

    from envs.worldmodel_env import WorldModelEnv  # torch, stable-baselines3

    env = WorldModelEnv(simulator_from_args(args, 1), max_episode_steps=args.horizon)
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
    check_output_file(args.out, "--out", ".mp4")  # before the world model dreams
    import numpy as np

    sim = simulator_from_args(args, 1)
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
    add_size_argument(p)
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
    add_mismatch_flag(p)
    add_threads_argument(p)
    p.set_defaults(func=threaded(_eval_policy))

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
    add_mismatch_flag(p)
    add_threads_argument(p)
    p.set_defaults(func=threaded(_eval_loss))

    register_dyna(subparsers)

    p = subparsers.add_parser("play", help="play inside a world model at the keyboard (pygame)")
    add_wm_args(p)
    p.add_argument("--horizon", type=A.positive_int, default=1000,
                   help="imagined episode length cap")
    p.add_argument("--fps", type=A.positive_int, default=15, help="frames per second")
    p.add_argument("--scale", type=A.positive_int, default=6, help="window pixels per frame pixel")
    p.add_argument("--max-steps", type=A.positive_int, default=None,
                   help="stop after this many steps")
    p.set_defaults(func=threaded(_play))

    p = subparsers.add_parser("dream", help="MP4 of real vs imagined frames, same actions")
    add_wm_args(p)
    p.add_argument("--episode", type=A.nonnegative_int, default=0,
                   help="index of the held-out episode")
    p.add_argument("--steps", type=A.positive_int, default=60,
                   help="imagined steps after the burn-in")
    p.add_argument("--out", default="dream.mp4", help="MP4 to write")
    p.add_argument("--fps", type=A.positive_int, default=10, help="frames per second of the video")
    p.set_defaults(func=threaded(_dream))
