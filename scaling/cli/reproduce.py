"""``embscale reproduce``: the paper's Section 5 mechanism experiments at small scale.

Example:
    embscale reproduce section-5.1 --text tinyshakespeare.txt --quick
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from offline_data import argtypes as A
from offline_data.atomic import check_output_dir
from scaling.study.presets import default_study


def register(subparsers) -> None:
    """Add ``reproduce section-5.1|section-5.2|section-5.3``."""
    p = subparsers.add_parser(
        "reproduce", help="reproduce the paper's Section 5 experiments at small scale",
        description="Reproduce the paper's mechanism experiments (Section 5): resumable sweeps, "
                    "a report with figures and our coefficients beside the paper's.")
    sub = p.add_subparsers(dest="experiment", metavar="EXPERIMENT", required=True)

    s51 = sub.add_parser("section-5.1", help="dense vs sparse vs super-classed character LMs",
                         formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    s51.add_argument("--text", required=True, help="plain-text file to model (tiny-shakespeare)")
    s51.add_argument("--out", default="runs/section-5.1", help="output directory")
    s51.add_argument("--sizes", nargs="+", default=None,
                     help="character-model sizes (c4k c15k c40k c110k c300k c1M c6M c17M)")
    s51.add_argument("--tokens", type=A.positive_float, default=None, help="characters D per run")
    s51.add_argument("--bootstrap", type=A.nonnegative_int, default=None,
                     help="bootstrap refits per fit")
    s51.add_argument("--workers", type=A.nonnegative_int, default=0,
                     help="parallel runs (0: one per core)")
    s51.add_argument("--device", default="auto", help="auto, cpu or cuda")
    s51.add_argument("--seed", type=A.nonnegative_int, default=0, help="seed")
    s51.add_argument("--quick", action="store_true", help="a CI-sized version (3 tiny sizes)")
    s51.set_defaults(func=_section51)

    for name, helptext, fn in (
        ("section-5.2", "compute per action: BC-Token vs BC-CNN at equal N", _section52),
        ("section-5.3", "tokens per frame vs the optimal model-size coefficient", _section53),
    ):
        sp = sub.add_parser(name, help=helptext,
                            formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        sp.add_argument("--out", default=f"runs/{name}", help="output directory")
        sp.add_argument("--quick", action="store_true", help="a CI-sized version")
        sp.add_argument("--workers", type=A.nonnegative_int, default=0,
                        help="parallel runs (0: one per core)")
        sp.add_argument("--seed", type=A.nonnegative_int, default=0, help="seed")
        sp.set_defaults(func=fn)
        if name == "section-5.2":
            sp.add_argument("--runs", nargs="+", default=None,
                            help="existing BC-Token and BC-CNN run directories (e.g. a study's "
                                 "runs); without it, a small sweep is trained")
            sp.add_argument("--dataset", default=default_study().dataset.id,
                            help="Minari dataset for the sweep (without --runs); the default is "
                                 "collected when missing (with --quick a miniature one under "
                                 "its own id), any other must exist (`embscale data list`)")
        else:
            sp.add_argument("--dataset", default="embscale/fetch-pick-place/scripted-v0",
                            help="robot Minari dataset; the default is collected when missing "
                                 "(with --quick a miniature one under its own id), any other "
                                 "must exist (`embscale data list`)")
            sp.add_argument("--sizes", nargs="+", default=None,
                            help="WM-Token sizes (default: s10k s30k s100k s300k; on a GPU the "
                                 "paper's rt1-0.08M rt1-0.2M rt1-0.28M rt1-0.54M rt1-0.99M)")
            sp.add_argument("--flops", type=A.positive_float, default=None,
                            help="first-round compute C per run, the same for every size "
                                 "(default 1e11); the budget protocol extends runs")
            sp.add_argument("--study-flops", type=A.positive_float, default=None,
                            help="the budget protocol's FLOPs per ladder (default 2e12)")
            sp.add_argument("--tokens-per-update", type=A.positive_int, default=None,
                            help="tokens per optimizer step (default 2048; the paper's Table 7 "
                                 "used 34000)")
            sp.add_argument("--device", default="cpu", help="cpu, cuda or auto")


def _command() -> str:
    return "embscale " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def _section51(args) -> int:
    from scaling.mechanisms.section51 import QUICK, Section51Config, run  # torch, scipy

    kw = dict(QUICK) if args.quick else {}
    if args.sizes:
        kw["sizes"] = tuple(args.sizes)
    if args.tokens:
        kw["tokens"] = args.tokens
    if args.bootstrap is not None:
        kw["num_bootstrap"] = args.bootstrap
    if not Path(args.text).is_file():
        raise FileNotFoundError(f"--text {args.text} does not exist; pass a plain-text file")
    check_output_dir(args.out, "--out")
    from worldmodels.train_utils import resolve_device  # torch

    resolve_device(args.device)  # an unknown or absent device, before the sweep starts
    cfg = Section51Config(text=args.text, out=args.out, seed=args.seed, workers=args.workers,
                          device=args.device, **kw)
    head = run(cfg, command=_command())
    _print_headline("Section 5.1: optimal model-size coefficient a (N_opt ∝ C^a)", head)
    return 0


def _section52(args) -> int:
    check_output_dir(args.out, "--out")
    from scaling.mechanisms.section52 import run_cli  # scipy

    head = run_cli(args, command=_command())
    _print_headline("Section 5.2: compute per action, BC-Token vs BC-CNN", head)
    return 0


def _section53(args) -> int:
    check_output_dir(args.out, "--out")
    from scaling.mechanisms.section53 import run_cli  # scipy

    head = run_cli(args, command=_command())
    _print_headline("Section 5.3: tokens per frame vs optimal model-size coefficient", head)
    return 0


def _print_headline(title: str, head: dict) -> None:
    print(title)
    for key, value in head.items():
        if isinstance(value, dict):
            for k, v in value.items():
                print(f"  {key} {k}: {v}")
        else:
            print(f"  {key}: {value}")
