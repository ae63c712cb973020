"""The ``embscale`` command line: one command, one subcommand per task.

Example:
    embscale --help
    embscale data collect --env embscale/Breakout-v0 --policy scripted --episodes 20

Each subcommand lives next to the code it drives, in a module with a ``register(subparsers)``
function that adds its parser and sets ``func`` (called with the parsed namespace). Heavy imports
happen inside ``func``, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from scaling.cli.errors import OneLineParser, run_command
from worldmodels.threads import quiet_openmp

quiet_openmp()  # before any command imports torch: idle OpenMP threads sleep, never spin

import agents.demonstrators  # noqa: E402, F401  (registers `--policy scripted` for the embedded envs)

# (module, purpose) in the order shown by --help. A module that is not installed is skipped,
# so optional parts can be left out of a distribution.
COMMAND_MODULES: tuple[str, ...] = (
    "offline_data.cli",  # data collect | import | record | info
    "worldmodels.tokenizer_cli",  # tokenizer train | encode
    "scaling.cli.train",  # train (scaling: it builds BC-CNN from agents and token models)
    "scaling.cli.fit",  # fit, plan
    "agents.cli",  # eval policy, dyna, play, dream
    "scaling.cli.study",  # study
    "scaling.cli.reproduce",  # reproduce
)


def build_parser() -> argparse.ArgumentParser:
    """Build the ``embscale`` parser from every available command module."""
    parser = OneLineParser(
        prog="embscale",
        description=(
            "Pre-train agents and world models on offline trajectories and measure how they "
            "scale (Pearce et al., ICML 2025)."
        ),
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    parser.add_argument("-q", "--quiet", action="store_true", help="log warnings only")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an error instead of one line")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:
                continue
            raise
        module.register(subparsers)
    return parser


def configure_logging(verbose: bool = False, quiet: bool = False) -> None:
    """Send library logs to stderr at INFO (DEBUG with ``verbose``, WARNING with ``quiet``)."""
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S", stream=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``embscale`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.verbose, args.quiet)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    # Every error prints as one line naming the culprit and the fix (scaling.cli.errors).
    return run_command(args.func, args, debug=args.debug or args.verbose)

