"""``embscale dyna``: train PPO inside a world model, evaluate it in the real env.

Example:
    embscale dyna --world-model runs/wm/checkpoints/last.pt --tokenizer runs/tok/tokenizer.pt \
        --env embscale/Breakout-v1 --timesteps 4096 --run-dir runs/dyna
"""

from __future__ import annotations

import os

from agents.cli_common import (
    add_size_argument,
    add_wm_args,
    env_kwargs,
    simulator_from_args,
    threaded,
)
from offline_data import argtypes as A


def _dyna(args) -> int:
    import envs  # gymnasium
    from agents.dyna import DynaConfig, evaluate_saved_agent, run_dyna  # torch
    from agents.dyna_runs import check_run_dir, evaluation_path

    cfg = DynaConfig(rounds=args.rounds, timesteps_per_round=args.timesteps,
                     horizon=args.horizon, n_steps=args.n_steps,
                     real_steps_per_round=args.real_steps, wm_updates_per_round=args.wm_updates,
                     eval_episodes=args.eval_episodes, eval_max_steps=args.eval_max_steps,
                     real_observations=args.real_observations, seed=args.seed)
    if args.evaluate_only and args.overwrite:
        raise ValueError("--overwrite replaces a run by training a new one; --evaluate-only "
                         "trains nothing: drop one of them")
    if not args.evaluate_only:  # before the world model loads
        check_run_dir(args.run_dir, args.overwrite, (args.world_model, args.tokenizer))
    sim = simulator_from_args(args, 1 if args.evaluate_only else args.num_envs)
    make_env = lambda: envs.make(args.env, max_episode_steps=cfg.eval_max_steps,  # noqa: E731
                                 **env_kwargs(args))
    if args.evaluate_only:
        results = evaluate_saved_agent(sim, make_env, cfg, args.run_dir)
        out = evaluation_path(args.run_dir, args.seed)
    else:
        results = run_dyna(sim, make_env, cfg, args.run_dir, overwrite=args.overwrite,
                           provenance={"world_model": os.path.abspath(args.world_model),
                                       "tokenizer": os.path.abspath(args.tokenizer),
                                       "tokenizer_sha256": sim.tokenizer.sha256()})
        out = os.path.join(args.run_dir, "results.json")
    for who in ("ppo", "random"):
        r = results[who]
        print(f"{who:>6}: return {r['mean']:.2f} (95% CI [{r['ci95'][0]:.2f}, "
              f"{r['ci95'][1]:.2f}]) over {len(r['returns'])} real episodes")
    print(f"results in {out}" + ("" if args.evaluate_only else
                                 f", TensorBoard logs in {os.path.join(args.run_dir, 'tb')}"))
    return 0


def register_dyna(subparsers) -> None:
    """Add the ``dyna`` command."""
    p = subparsers.add_parser("dyna", help="train PPO inside a world model, evaluate it for real")
    add_wm_args(p)
    p.add_argument("--env", required=True, help="the real env, e.g. embscale/Breakout-v1")
    add_size_argument(p)
    p.add_argument("--run-dir", required=True,
                   help="where ppo.zip, results.json, tb/ (and world_model.pt, with --wm-updates) "
                        "go")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a dyna run already in --run-dir (and its evaluations)")
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
    p.set_defaults(func=threaded(_dyna))
