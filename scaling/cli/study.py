"""``embscale study``: a whole scaling study in one command.

Example:
    embscale study                                  # the embedded default (CPU, ~30 min)
    embscale study --quick                          # a miniature study (a few minutes)
    embscale study --time-limit 29m                 # the default, ending within 29 minutes
    embscale study --spec my_study.toml             # your own dataset and ladders
    embscale study --preset paper-wm-token-256 --emit-jobs torchrun --jobs-out jobs.sh

With no arguments it collects the Breakout dataset, trains the tokenizer, sweeps WM-Token,
BC-Token (five sizes each) and BC-CNN (four), fits the scaling laws, runs the loss-vs-return and
loss-vs-quality studies and writes ``runs/breakout-default/report/report.{md,html}``. Started
again after an interruption, it skips everything already done.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from offline_data import argtypes as A
from offline_data.atomic import check_output_dir
from scaling.study.presets import PRESETS, get_preset
from scaling.study.spec import load_spec, spec_from_dict
from scaling.study.time_limit import TimeLimit, parse_duration


def _spec_from_args(args: argparse.Namespace):
    chosen = [x for x in (args.spec, args.preset, "quick" if args.quick else None) if x]
    if len(chosen) > 1:
        raise ValueError(f"give at most one of --spec, --preset, --quick (got {chosen})")
    spec = load_spec(args.spec) if args.spec else get_preset(
        "quick" if args.quick else (args.preset or "default"))
    d = spec.to_dict()
    if args.name:
        d["name"] = args.name
    if args.runs_dir:
        d["runs_dir"] = args.runs_dir
    if args.parallel:
        d["parallel"] = args.parallel
    if args.device:
        d["device"] = args.device
    if args.dataset:
        d["dataset"] = {**d["dataset"], "id": args.dataset, "collect": False}
    return spec_from_dict(d)


def _stages(text: str, valid: tuple[str, ...]) -> tuple[str, ...]:
    """The stages ``--stages`` names, refused when it names none or an unknown one."""
    stages = tuple(s.strip() for s in text.split(",") if s.strip())
    unknown = [s for s in stages if s not in valid]
    if unknown or not stages:
        what = f"names unknown stage(s) {unknown}" if unknown else "names no stage"
        raise ValueError(f"--stages {text!r} {what}; give a comma-separated subset of: "
                         f"{','.join(valid)} (or leave --stages out to run them all)")
    return stages


def run(args: argparse.Namespace) -> int:
    """Run, resume or plan a study."""
    from scaling.study.runner import STAGES, check_study_dir, run_study  # torch, scipy, gym
    from scaling.study.steps import emit_study_jobs, validate_spec  # scipy, gymnasium

    if args.list_presets:
        for name in PRESETS:
            print(f"{name:22s} {get_preset(name).description}")
        return 0
    spec = _spec_from_args(args)
    if args.print_spec:
        print(json.dumps(dataclasses.asdict(spec), indent=2))
        return 0
    check_output_dir(spec.runs_dir, "--runs-dir" if args.runs_dir else "runs_dir")
    check_output_dir(spec.study_dir, "study directory")
    if args.jobs_out is not None and not args.emit_jobs:
        raise ValueError("--jobs-out names the file of --emit-jobs; add --emit-jobs "
                         "jsonl|torchrun|slurm, or drop --jobs-out")
    if args.emit_jobs:
        for flag in ("time_limit", "started_at"):
            if getattr(args, flag) is not None:
                raise ValueError(f"--{flag.replace('_', '-')} applies to a study run on this "
                                 "machine; emitted jobs run elsewhere, so drop it with "
                                 "--emit-jobs")
        if args.jobs_out is not None:
            if Path(args.jobs_out).is_dir():
                raise ValueError(f"--jobs-out {args.jobs_out} is a directory; give a file path "
                                 "for the job list (e.g. jobs.sh)")
            check_output_dir(Path(args.jobs_out).parent, f"--jobs-out {args.jobs_out}: folder")
    else:
        stages = STAGES if args.stages is None else _stages(args.stages, STAGES)
        limit = None
        if args.time_limit is not None:
            limit = TimeLimit(parse_duration(args.time_limit), args.started_at or time.time())
        elif args.started_at is not None:
            raise ValueError("--started-at counts a --time-limit from the job's start; give "
                             "--time-limit too (e.g. --time-limit 29m)")
    if args.emit_jobs:
        check_study_dir(spec, args.allow_mixed)  # a damaged study.json, another spec's runs
        validate_spec(spec)  # (run_study checks both itself, before its first line)
        suffix = "sh" if args.emit_jobs == "torchrun" else args.emit_jobs
        out = args.jobs_out or str(spec.study_dir / f"jobs.{suffix}")
        path, rnd = emit_study_jobs(spec, out, args.emit_jobs, args.gpus, args.allow_mixed)
        fits = "`embscale study --stages fit,loss_vs_return,loss_vs_quality,report ...`"
        if path is None:
            print(f"the budget protocol of {spec.name} has finished after {rnd} rounds; now run "
                  f"{fits}")
        elif rnd:
            print(f"wrote round {rnd} of the budget protocol of {spec.name} to {path}; run the "
                  "data and tokenizer stages first (`embscale study --stages dataset,tokenizer "
                  "...`), then the jobs, then this command again for the next round, until it "
                  f"says the protocol has finished; then {fits}")
        else:
            print(f"wrote the training runs of {spec.name} to {path}; run the data and "
                  "tokenizer stages first (`embscale study --stages dataset,tokenizer ...`), "
                  f"then the jobs, then {fits}")
        return 0
    out = run_study(spec, stages=stages, allow_mixed=args.allow_mixed,
                    progress=not args.no_progress,
                    echo=lambda line: print(line, flush=True), time_limit=limit)
    report = out.get("report")
    if report:
        print(f"report: {report['markdown']}\n        {report['html']}")
    if fits := out.get("fit") or {}:
        from scaling.fitting import exponent_line  # scipy, only once there is a fit
    for task, fit in fits.items():
        for name in ("frontier", "parametric"):
            e = fit.get(name, {}) if isinstance(fit, dict) else {}
            if e.get("status") == "ok":
                print(f"{task:>9} {name:>10}: {exponent_line(e)}")
    ret = out.get("loss_vs_return")
    if ret:
        s = ret["summary"].get("all", {})
        if "correlation" in s:
            c = s["correlation"]
            print(f"loss vs return: Pearson r = {c['pearson']:.3f} "
                  f"[{c['pearson_ci'][0]:.3f}, {c['pearson_ci'][1]:.3f}] over {s['n']} checkpoints")
    q = out.get("loss_vs_quality")
    if q:
        c = q["correlation"].get("fvd", {})
        if "pearson" in c:
            print(f"loss vs FVD: Pearson r = {c['pearson']:.3f} "
                  f"[{c['pearson_ci'][0]:.3f}, {c['pearson_ci'][1]:.3f}]")
    return 0


def register(subparsers) -> None:
    """Add ``study`` to the ``embscale`` command."""
    p = subparsers.add_parser(
        "study", help="run a whole scaling study (default: the embedded Breakout study)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--spec", help="study spec file (.json or .toml), see docs/studies.md; a spec "
                                  "is trusted input: its dataset.policy may name an SB3 zip "
                                  "(sb3:ALGO:PATH unpickles it, running code stored in it) or a "
                                  "module:factory (imported and run); sb3-weights:ALGO:PATH "
                                  "reads only weights")

    p.add_argument("--preset", help=f"named study: {', '.join(PRESETS)} (--list-presets)")
    p.add_argument("--quick", action="store_true", help="the miniature study (same as "
                   "--preset quick)")
    p.add_argument("--name", help="study name (results in RUNS_DIR/NAME)")
    p.add_argument("--runs-dir", help="parent directory of studies (default: runs)")
    p.add_argument("--dataset", help="train on this Minari dataset id instead of the spec's")
    p.add_argument("--parallel", type=A.positive_int,
                   help="training runs at a time on this machine")
    p.add_argument("--device", choices=("cpu", "cuda", "auto"), help="training device")
    p.add_argument("--stages", help="comma-separated subset of: dataset, tokenizer, sweep, fit, "
                   "loss_vs_return, loss_vs_quality, report")
    p.add_argument("--allow-mixed", action="store_true",
                   help="keep existing runs made with a different spec instead of refusing")
    p.add_argument("--emit-jobs", choices=("jsonl", "torchrun", "slurm"),
                   help="write the training runs as a job list for a cluster instead of running")
    p.add_argument("--jobs-out", help="file for --emit-jobs (default: in the study directory)")
    p.add_argument("--gpus", type=A.positive_int, default=8, help="GPUs per run in emitted jobs")
    p.add_argument("--time-limit", metavar="DURATION",
                   help="end the whole job within this wall-clock time (1740, 29m, 1.5h): the "
                   "frontier protocol's budget is lowered when the machine is too slow for it")
    p.add_argument("--started-at", type=A.positive_float, metavar="EPOCH_SECONDS",
                   help="when the job started (date +%%s), if before this command: the time "
                   "limit counts from it (default: now)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("--list-presets", action="store_true", help="list the presets and exit")
    p.add_argument("--print-spec", action="store_true", help="print the resolved spec and exit")
    p.set_defaults(func=run)

