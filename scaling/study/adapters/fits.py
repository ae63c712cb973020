"""Fits and the planner for the study: each task's curves in, ``fit.json`` and advice out."""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path
from typing import Any

from offline_data.atomic import atomic_file
from offline_data.tokens import TokenShards
from scaling.cli import fit as fit_cli
from scaling.planner import plan
from scaling.study.paths import tokens_dir
from scaling.study.stats import read_metrics


def curve_points(run_dirs: list[Path], loss_key: str, skip_fraction: float) -> list[dict]:
    """(N, D, L, run) points of each run's curve, without its first ``skip_fraction`` of D.

    The first steps (warmup and the initial plateau of tiny models) do not follow a power law
    in D; like Hoffmann et al., the fits use each curve after its start.
    """
    rows = []
    for d in run_dirs:
        recs = read_metrics(d)
        key = loss_key if any(loss_key in r for r in recs) else "train/loss"  # older runs
        recs = [r for r in recs if key in r and math.isfinite(float(r[key]))]
        if not recs:
            continue
        final = max(float(r["tokens"]) for r in recs)
        rows += [{"N": r["params"], "D": r["tokens"], "L": r[key], "run": Path(d).name}
                 for r in recs if float(r["tokens"]) >= skip_fraction * final]
    return rows


def fit_runs(run_dirs: list[Path], out_dir: Path, fit_spec, title: str = "") -> dict[str, Any]:
    """Run ``embscale fit`` on the runs' curves; returns the written ``fit.json`` object."""
    points = Path(out_dir).with_name(Path(out_dir).name + "_points.csv")
    with atomic_file(points) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["N", "D", "L", "run"])
        writer.writeheader()
        writer.writerows(curve_points(run_dirs, fit_spec.loss_key, fit_spec.skip_fraction))
    parser = argparse.ArgumentParser(prog="embscale")
    fit_cli.register(parser.add_subparsers(dest="command"))
    argv = ["fit", str(points), "--out", str(out_dir), "--overwrite",
            "--method", fit_spec.method, "--parametric-loss", fit_spec.parametric_loss,
            "--bootstrap", str(fit_spec.bootstrap)]
    if title:
        argv += ["--title", title]
    args = parser.parse_args(argv)
    args.func(args)
    return json.loads((Path(out_dir) / "fit.json").read_text())


def plan_next(fit_path: Path, flops: float, spec, task: str) -> dict[str, Any]:
    """The planner's advice for ``flops`` (10x the study's largest run), or why there is none."""
    fit = json.loads(Path(fit_path).read_text())
    tokens = dataset_tokens(spec, task)
    try:
        p = plan(fit, flops=flops, dataset_tokens=tokens)
    except ValueError as e:
        return {"flops": flops, "skipped": str(e)}
    return p.to_dict()


def dataset_tokens(spec, task: str) -> float | None:
    """Unique training inputs D of the study's data for ``task`` (None when unknown)."""
    header = tokens_dir(spec) / "header.json"
    if not header.is_file():
        return None
    shards = TokenShards.open(tokens_dir(spec))
    frames = shards.split("train").num_frames
    return float(frames if task == "bc-cnn" else frames * shards.layout.tokens_per_step)
