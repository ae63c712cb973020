"""``embscale fit`` and ``embscale plan``: scaling laws from training curves, and plans from them.

Example:
    embscale fit runs/wm-token --out runs/wm-token/fit
    embscale plan --fit runs/wm-token/fit/fit.json --flops 1e18 --dataset-tokens 3.6e12
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path

from offline_data import argtypes as A
from offline_data.atomic import check_parent, check_replaceable
from scaling.planner import MAX_EPOCHS, plan
from worldmodels.run_metrics import LOSS_KEY, MEAN_LOSS_KEY

logger = logging.getLogger(__name__)


def run_fit(args: argparse.Namespace) -> int:
    """Fit the requested laws to the inputs and write ``fit.json``, ``table.md`` and figures."""
    from scaling.fitting import (  # scipy
        FIT_DIR,
        bootstrap_sentence,
        exponent_line,
        fit_curves,
        methods,
        write_fit,
    )
    from scaling.inputs import load_curves  # scipy
    from scaling.laws.analysis import FitOptions  # scipy

    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise FileExistsError(f"{out} already exists; pass --overwrite or another --out")
    if out.exists():  # --overwrite replaces only a fit directory, checked before the work
        check_replaceable(out, **FIT_DIR)
    check_parent(out)
    curves = load_curves(args.inputs, loss_key=args.loss_key, drop_nonfinite=args.drop_nonfinite,
                         min_tokens=args.min_tokens,
                         skip_above_uniform=args.skip_above_uniform)
    logger.info("%d points on %d curves", curves.num_points, curves.num_curves)
    opts = FitOptions(methods=methods(args.method), parametric_loss=args.parametric_loss,
                      num_bootstrap=args.bootstrap, bootstrap_scheme=args.bootstrap_scheme,
                      seed=args.seed, level=args.level,
                      smooth=args.smooth, frontier_points=args.frontier_points, pool=args.pool,
                      extrapolation=not args.no_extrapolation)
    bars = []

    def progress(desc, total):
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc=desc, leave=False, disable=None)
        bars.append(bar)
        return bar.update

    try:
        result = fit_curves(curves, opts, progress=progress, loss_key=args.loss_key,
                            inputs=[Path(p).name for p in args.inputs])
    finally:
        for bar in bars:
            bar.close()
    fit = write_fit(result, out, overwrite=args.overwrite, figures=not args.no_figures,
                    title=args.title)
    for name in ("frontier", "parametric", "isoflop"):
        e = fit[name]
        if e["status"] == "ok":
            print(f"{name:>10}: {exponent_line(e)}")
        elif name in opts.methods:
            print(f"{name:>10}: skipped: {e['reason']}")
    print(bootstrap_sentence(fit))
    print(f"wrote {out}/fit.json, table.md" + ("" if args.no_figures else ", scaling_fit.png"))
    return 0


def run_plan(args: argparse.Namespace) -> int:
    """Print the compute-optimal plan for a budget or a target loss."""
    path = Path(args.fit)
    if path.is_dir():  # the --out directory of `embscale fit`
        if not (path / "fit.json").is_file():
            raise FileNotFoundError(f"directory {path} holds no fit.json; pass the --out "
                                    "directory of 'embscale fit' or its fit.json")
        path = path / "fit.json"
    if not path.is_file():
        raise FileNotFoundError(f"fit file {path} not found; create it with 'embscale fit ... "
                                f"--out DIR' (it is DIR/fit.json)")
    try:
        fit = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not a valid fit.json ({e}); rerun 'embscale fit'") from e
    if not isinstance(fit, dict):
        raise ValueError(f"{path} is not a fit.json (it holds a {type(fit).__name__}); pass the "
                         "fit.json written by 'embscale fit'")
    try:
        p = plan(fit, flops=args.flops, loss=args.loss, dataset_tokens=args.dataset_tokens,
                 source=args.source)
    except (ValueError, KeyError, TypeError) as e:  # name the file the fit came from
        raise ValueError(f"{path}: {e}") from e
    result = p.to_dict()
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"compute        C     = {p.flops:.3g} FLOPs")
    print(f"optimal model  N_opt = {p.N_opt:.3g} parameters ({p.allocation_source} fit)")
    print(f"optimal data   D_opt = {p.D_opt:.3g} tokens")
    if p.loss is not None:
        print(f"predicted loss L     = {p.loss:.4g} ({p.loss_source})")
    pr = p.preset
    print(f"nearest preset       = {pr.name} ({pr.num_params:.3g} params, {pr.n_layer} layers, "
          f"{pr.n_head} heads, {pr.n_embd} embed)")
    if p.dataset_tokens is not None:
        verdict = "supported" if p.supported else "NOT supported"
        print(f"dataset: {p.dataset_tokens:.3g} tokens, D_opt needs {p.epochs:.3g} passes: "
              f"{verdict} in the infinite-data regime (<= {MAX_EPOCHS:g} passes); the regime "
              f"allows up to {p.max_flops_in_regime:.3g} FLOPs at N_opt")
    for caveat in p.caveats:
        print(f"caveat: {caveat}")
    return 0


def _positive(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (v > 0 and math.isfinite(v)):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return v


def register(subparsers) -> None:
    """Add ``fit`` and ``plan`` to the ``embscale`` command."""
    p = subparsers.add_parser("fit", help="fit scaling laws to training curves",
                              description=run_fit.__doc__)
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="run or study directories (metrics.jsonl) or CSV files (N, D or C, L, "
                        "optional run)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--method", choices=("all", "frontier", "parametric", "isoflop"), default="all",
                   help="fits to run; 'all' runs those the data supports (default)")
    p.add_argument("--parametric-loss", choices=("huber", "lsq"), default="huber",
                   help="parametric objective: Huber on log loss (Hoffmann/Epoch, default) or "
                        "least squares with curve_fit (the paper)")
    p.add_argument("--loss-key", default=LOSS_KEY,
                   help=f"metrics.jsonl loss key (default {LOSS_KEY}; e.g. val/loss, or "
                        f"{MEAN_LOSS_KEY}, which a study fits)")
    p.add_argument("--bootstrap", type=A.nonnegative_int, default=1000,
                   help="bootstrap refits (0: no intervals)")
    p.add_argument("--bootstrap-scheme", choices=("runs", "within-run", "points"),
                   default="runs",
                   help="bootstrap resampling: whole runs (default; single-point runs are "
                        "points), points within each run, or all points")
    p.add_argument("--seed", type=A.nonnegative_int, default=0, help="bootstrap seed")
    p.add_argument("--level", type=float, default=0.95, help="confidence level")
    p.add_argument("--smooth", type=A.nonnegative_int, default=0,
                   help="smooth each curve's log loss over this many points before the frontier "
                        "(e.g. 5 for noisy curves)")
    p.add_argument("--frontier-points", choices=("vertex", "grid", "midpoint"),
                   default="vertex",
                   help="frontier regression: every grid point with N_opt interpolated between "
                        "neighbouring sizes (default), every grid point with the best size "
                        "(Hoffmann), or one point per optimal size")
    p.add_argument("--pool", choices=("mean", "min"), default="mean",
                   help="runs of one model size at a compute value: the mean of their log losses "
                        "(default; they are seeds) or the lowest (they differ in schedule, as in "
                        "Hoffmann's cosine sweeps)")
    p.add_argument("--no-extrapolation", action="store_true",
                   help="skip the held-out largest-run check")
    p.add_argument("--min-tokens", type=A.nonnegative_float, default=0.0,
                   help="drop points with fewer training inputs D (e.g. the warmup)")
    p.add_argument("--skip-above-uniform", action="store_true",
                   help="start each run directory's curve after its last loss above a uniform "
                        "guess over what its task scores (read from its config.json), as a "
                        "study's fits do")
    p.add_argument("--drop-nonfinite", action="store_true",
                   help="drop points with NaN or infinite loss instead of failing")
    p.add_argument("--title", default=None, help="figure title")
    p.add_argument("--no-figures", action="store_true", help="write fit.json and table.md only")
    p.set_defaults(func=run_fit)

    q = subparsers.add_parser("plan", help="compute-optimal model and data size from a fit",
                              description=run_plan.__doc__)
    q.add_argument("--fit", required=True,
                   help="fit.json written by 'embscale fit', or the --out directory holding it")
    g = q.add_mutually_exclusive_group(required=True)
    g.add_argument("--flops", type=_positive, help="compute budget C (FLOPs)")
    g.add_argument("--loss", type=_positive, help="target loss")
    q.add_argument("--dataset-tokens", type=_positive, default=None,
                   help=f"unique training inputs in the dataset (checks <= {MAX_EPOCHS:g} passes)")
    q.add_argument("--source", choices=("auto", "frontier", "parametric", "isoflop"),
                   default="auto", help="allocation law (auto: frontier, else parametric)")
    q.add_argument("--json", action="store_true", help="print JSON")
    q.set_defaults(func=run_plan)
