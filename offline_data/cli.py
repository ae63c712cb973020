"""``embscale data``: collect, import, record and inspect Minari datasets.

Example:
    embscale data collect --env embscale/Breakout-v1 --policy scripted --skill 0.7,1 \
        --episodes 50 --dataset-id embscale/breakout/mine-v0
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from offline_data import argtypes as A
from offline_data.collect_streams import collect_streams
from offline_data.datasets import datasets_root, list_dataset_ids
from offline_data.defaults import build_default_datasets, collect_default
from offline_data.frame_size import env_size
from offline_data.info import dataset_info, summary_table, verify_episodes


def register(subparsers: Any) -> None:
    """Add ``embscale data ...`` to the ``embscale`` parser."""
    data = subparsers.add_parser("data", help="collect, import, record and inspect datasets",
                                 description="Minari datasets of image trajectories.")
    sub = data.add_subparsers(dest="data_command", metavar="ACTION")
    data.set_defaults(func=lambda args: data.print_help() or 2)

    p = sub.add_parser("collect", help="roll out a policy in an env and save a Minari dataset",
                       description="Roll out a policy (scripted, random, SB3 model or "
                                   "module:factory) and write a Minari dataset atomically.")
    p.add_argument("--env", help="gymnasium id, e.g. embscale/Breakout-v1")
    p.add_argument("--policy", default="random",
                   help="'random', 'scripted' (the env's demonstrator), 'sb3:ALGO:PATH' (a "
                        "stable-baselines3 zip; loading it unpickles and so RUNS code stored in "
                        "it: only zips you trust), 'sb3-weights:ALGO:PATH' (reads only its "
                        "weights: safe for any zip) or 'module:factory' (imports and runs that "
                        "Python module: only code you trust) (default: random)")
    p.add_argument("--episodes", type=A.positive_int, default=10,
                   help="episodes to collect (default 10)")
    p.add_argument("--dataset-id", help="Minari id, e.g. embscale/breakout/scripted-v1")
    p.add_argument("--skill", default=None,
                   help="demonstrator skill in [0, 1]: one value or LOW,HIGH drawn per episode")
    p.add_argument("--max-steps", type=A.positive_int, default=None,
                   help="cap per episode (truncation)")
    p.add_argument("--max-total-steps", type=A.positive_int, default=None,
                   help="stop after the episode that reaches this many steps in total")
    p.add_argument("--buckets", type=A.positive_int, default=None,
                   help="buckets per continuous action dimension (11 joystick, 500 RT-1 arm); "
                        "required for continuous actions")
    p.add_argument("--size", default=None,
                   help="frame size: one side of a square (64) or HEIGHTxWIDTH (72x120); the env "
                        "kwarg 'size'")
    p.add_argument("--seed", type=A.nonnegative_int, default=0,
                   help="seed of the first reset and the policy")
    p.add_argument("--streams", type=A.positive_int, default=1,
                   help="env processes playing episodes at once; stream k plays with a seed "
                        "derived from (seed, k), so the count is part of the dataset (default 1)")
    p.add_argument("--deterministic", action="store_true", help="predict(deterministic=True)")
    p.add_argument("--description", default="", help="stored in the dataset metadata")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset id")
    p.add_argument("--default", choices=["breakout", "fetch"], default=None,
                   help="collect an embedded default dataset with its preset settings")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_collect, collect_parser=p)

    p = sub.add_parser("defaults", help="build the embedded default datasets",
                       description="Build embscale/breakout/scripted-v2 and "
                                   "embscale/fetch-pick-place/scripted-v0 (existing ones are "
                                   "reused unless --overwrite).")
    p.add_argument("--only", nargs="+", choices=["breakout", "fetch"],
                   default=["breakout", "fetch"], help="which defaults to build")
    p.add_argument("--overwrite", action="store_true", help="collect again even if present")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=_defaults)

    p = sub.add_parser("info", help="episodes, frames, action spec, disk size, returns",
                       description="Summarise a local Minari dataset.")
    p.add_argument("dataset_id", help="e.g. embscale/breakout/scripted-v1")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--no-verify", action="store_true",
                   help="summarise the metadata only, without reading every episode")
    p.set_defaults(func=_info)

    p = sub.add_parser("list", help="list local datasets", description="List local datasets.")
    p.set_defaults(func=_list)

    _register_import(sub)
    _register_record(sub)


def _register_import(sub: Any) -> None:
    try:
        from offline_data.importers.cli import register_import  # optional part of a distribution
    except ImportError:  # importers not shipped in this distribution
        return
    register_import(sub)


def _register_record(sub: Any) -> None:
    try:
        from offline_data.record import register_record  # optional part of a distribution
    except ImportError:
        return
    register_record(sub)


def parse_skill(text: str | None) -> float | tuple[float, float] | None:
    """``"0.7"`` -> 0.7, ``"0,1"`` -> (0.0, 1.0), None -> None."""
    if text is None:
        return None
    try:
        parts = [float(x) for x in text.split(",")]
    except ValueError as e:
        raise ValueError(f"--skill {text!r} must be a number or LOW,HIGH such as 0,1") from e
    if not all(0.0 <= p <= 1.0 for p in parts) or (len(parts) == 2 and parts[0] > parts[1]):
        raise ValueError(f"--skill {text!r} is outside [0, 1] (or LOW > HIGH); skills are "
                         "fractions such as 0.7 or 0,1")
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 2:
        return (parts[0], parts[1])
    raise ValueError(f"--skill {text!r} must be a number or LOW,HIGH such as 0,1")


def _collect(args: argparse.Namespace) -> int:
    if args.default:
        kept = ("default", "overwrite", "no_progress", "help")
        ignored = [a.option_strings[0] for a in args.collect_parser._actions
                   if a.dest not in kept and getattr(args, a.dest, a.default) != a.default]
        if ignored:
            raise ValueError(f"--default {args.default} collects with its preset settings, so "
                             f"{', '.join(ignored)} would be ignored; drop them, or collect "
                             "with --env and --dataset-id instead")
        ds = collect_default(args.default, overwrite=args.overwrite,
                             progress=not args.no_progress)
        print(f"wrote {ds.id}: {ds.total_episodes} episodes, {ds.total_steps} steps")
        return 0
    if not args.env or not args.dataset_id:
        raise ValueError("data collect needs --env and --dataset-id (or --default breakout|fetch)")
    env_kwargs = {"size": env_size(args.size)} if args.size else {}
    kwargs = {}
    skill = parse_skill(args.skill)
    if skill is not None and (args.policy == "random" or args.policy.startswith("sb3")):
        raise ValueError(f"--skill sets a demonstrator's skill; --policy {args.policy} has none, "
                         "so drop --skill (or use --policy scripted or a module:factory that "
                         "takes skill)")
    if skill is not None:
        kwargs["skill"] = skill
    common = dict(seed=args.seed, max_steps_per_episode=args.max_steps,
                  max_total_steps=args.max_total_steps, buckets=args.buckets,
                  deterministic=args.deterministic, description=args.description,
                  overwrite=args.overwrite, progress=not args.no_progress)
    ds = collect_streams(args.env, args.policy, args.episodes, args.dataset_id,
                         streams=args.streams, policy_kwargs=kwargs, env_kwargs=env_kwargs,
                         **common)
    print(f"wrote {ds.id}: {ds.total_episodes} episodes, {ds.total_steps} steps")
    return 0


def _defaults(args: argparse.Namespace) -> int:
    built = build_default_datasets(args.only, overwrite=args.overwrite,
                                   progress=not args.no_progress)
    for ds in built.values():
        print(dataset_info(ds.id).format())
        print()
    return 0


def _info(args: argparse.Namespace) -> int:
    info = dataset_info(args.dataset_id)
    if not args.no_verify:
        verify_episodes(args.dataset_id)
    print(json.dumps(info.to_dict(), indent=2) if args.json else info.format())
    return 0


def _list(args: argparse.Namespace) -> int:
    ids = list_dataset_ids()
    print(summary_table(ids) if ids else f"no datasets under {datasets_root()}")
    return 0
