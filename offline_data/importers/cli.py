"""``embscale data import gameplay|rlds|lerobot``: turn recorded trajectories into Minari datasets.

Example:
    embscale data import gameplay --source logs/ --dataset-id embscale/mygame/human-v0 --rate 10
    embscale data import rlds --source rt1/ --mapping rt1 --dataset-id embscale/rt1/robot-v0
    embscale data import lerobot ~/pusht --dataset-id embscale/pusht/human-v0 --size 96
"""

from __future__ import annotations

import argparse
from typing import Any

from offline_data import argtypes as A
from offline_data.importers.gameplay import GameplayImportConfig, import_gameplay
from offline_data.importers.lerobot import MAX_UPSAMPLING, LeRobotImportConfig, import_lerobot
from offline_data.importers.rlds import MAPPINGS, RLDSMapping, import_rlds


def register_import(sub: Any) -> None:
    """Add ``import`` under ``embscale data``."""
    p = sub.add_parser("import", help="import gameplay logs, RLDS or LeRobot robot episodes",
                       description="Import recorded trajectories as a Minari dataset.")
    fmt = p.add_subparsers(dest="import_format", metavar="FORMAT")
    p.set_defaults(func=lambda args: p.print_help() or 2)

    g = fmt.add_parser("gameplay", help="per-episode video + CSV of timestamped controller actions",
                       description="A directory of <episode>.mp4 (any fps) + <episode>.csv "
                                   "(timestamp column in seconds, one column per input: 0/1 "
                                   "buttons, [-1, 1] axes), resampled by timestamp.")
    g.add_argument("--source", required=True, help="directory with the video/csv pairs")
    g.add_argument("--dataset-id", required=True, help="e.g. embscale/mygame/human-v0")
    g.add_argument("--rate", type=A.positive_float, default=10.0,
                   help="target rate in Hz (default 10)")
    _size(g)
    g.add_argument("--axis-buckets", type=A.positive_int, default=11,
                   help="buckets per axis (default 11)")
    g.add_argument("--time-offset", type=A.finite_float, default=0.0,
                   help="seconds added to CSV timestamps to align them with the video")
    _common(g)
    g.set_defaults(func=_import_gameplay)

    r = fmt.add_parser("rlds", help="RLDS / Open X-Embodiment TFRecord episodes (e.g. RT-1)",
                       description="TFRecord files of RLDS episodes (tf.train.Example or "
                                   "SequenceExample), read without TensorFlow.")
    r.add_argument("--source", required=True, help="a .tfrecord file or a directory of them")
    r.add_argument("--dataset-id", required=True, help="e.g. embscale/rt1/robot-v0")
    r.add_argument("--mapping", default="rt1",
                   help="field mapping: preset name (rt1, bridge) or a JSON file of "
                        "RLDSMapping fields (default rt1)")
    _size(r)
    r.add_argument("--max-episodes", type=A.positive_int, default=None, help="stop after this many")
    r.add_argument("--no-verify-crc", action="store_true", help="skip TFRecord CRC checks")
    _common(r)
    r.set_defaults(func=_import_rlds)

    le = fmt.add_parser("lerobot", help="a local LeRobot dataset (codebase v2.0, v2.1, v3.0)",
                        description="A LeRobot dataset directory (meta/info.json, parquet tables, "
                                    "one mp4 per camera), read without the lerobot package.")
    le.add_argument("path", help="the dataset's root directory (holding meta/, data/, videos/)")
    le.add_argument("--dataset-id", required=True, help="e.g. embscale/pusht/human-v0")
    le.add_argument("--camera", default=None,
                    help="video feature to use as the observation (default: the first one)")
    le.add_argument("--buckets", type=A.positive_int, default=500,
                    help="buckets per action dimension (default 500, as RT-1's arm)")
    le.add_argument("--rate", type=A.positive_float, default=None,
                    help="resample to this rate in Hz (default: the dataset's fps; at most "
                         f"{MAX_UPSAMPLING:g}x it)")
    _size(le)
    _common(le)
    le.set_defaults(func=_import_lerobot)


def _size(p: argparse.ArgumentParser) -> None:
    p.add_argument("--size", default="64",
                   help="frame size: one side of a square (64) or HEIGHTxWIDTH, e.g. 144x240 for "
                        "the paper's 540 tokens per frame (default 64)")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--description", default="", help="stored in the dataset metadata")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset id")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _import_gameplay(args: argparse.Namespace) -> int:
    cfg = GameplayImportConfig(rate=args.rate, size=args.size, axis_buckets=args.axis_buckets,
                               time_offset=args.time_offset)
    ds = import_gameplay(args.source, args.dataset_id, cfg, description=args.description,
                         overwrite=args.overwrite, progress=not args.no_progress)
    print(f"wrote {ds.id}: {ds.total_episodes} episodes, {ds.total_steps} steps")
    return 0


def _import_lerobot(args: argparse.Namespace) -> int:
    cfg = LeRobotImportConfig(camera=args.camera, size=args.size, rate=args.rate,
                              buckets=args.buckets)
    ds = import_lerobot(args.path, args.dataset_id, cfg, description=args.description,
                        overwrite=args.overwrite, progress=not args.no_progress)
    print(f"wrote {ds.id}: {ds.total_episodes} episodes, {ds.total_steps} steps")
    return 0


def _import_rlds(args: argparse.Namespace) -> int:
    from pathlib import Path

    mapping: Any = args.mapping
    if mapping not in MAPPINGS:
        if not Path(mapping).is_file():
            raise FileNotFoundError(f"--mapping {mapping!r} is neither a preset "
                                    f"({sorted(MAPPINGS)}) nor a JSON file")
        mapping = RLDSMapping.from_json(mapping)
    ds = import_rlds(args.source, args.dataset_id, mapping=mapping, size=args.size,
                     max_episodes=args.max_episodes, verify_crc=not args.no_verify_crc,
                     description=args.description, overwrite=args.overwrite,
                     progress=not args.no_progress)
    print(f"wrote {ds.id}: {ds.total_episodes} episodes, {ds.total_steps} steps")
    return 0
