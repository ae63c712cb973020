"""Fits and the planner for the study: each task's curves in, ``fit.json`` and advice out."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from offline_data.atomic import atomic_file
from offline_data.tokens import TokenShards
from scaling.fitting import curve_points, curves_from_points, fit_curves, methods, write_fit
from scaling.inputs import DEFAULT_LOSS_KEY
from scaling.laws.analysis import FitOptions
from scaling.planner import plan
from scaling.study.paths import tokens_dir
from scaling.tasks import TASKS


def fit_runs(run_dirs: list[Path], out_dir: Path, fit_spec, title: str = "",
             crossings: list[tuple[float, float]] | None = None) -> dict[str, Any]:
    """Fit the runs' curves as ``fit_spec`` says; writes ``out_dir`` and returns ``fit.json``.

    The fitted points are also written beside ``out_dir`` as ``<task>_points.csv`` (the input
    ``embscale fit`` takes), so a fit can be redone or varied from the command line.
    ``crossings``: the budget protocol's (C, loss) crossings, marked in the figure.
    """
    points = curve_points(run_dirs, fit_spec.loss_key, fit_spec.skip_fraction)
    record = Path(out_dir).with_name(Path(out_dir).name + "_points.csv")
    with atomic_file(record) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["N", "D", "L", "run"])
        writer.writeheader()
        writer.writerows(points)
    options = FitOptions(methods=methods(fit_spec.method),
                         parametric_loss=fit_spec.parametric_loss,
                         num_bootstrap=fit_spec.bootstrap)
    # fit.json names the points file as its input, under the key a CSV is read with
    # (embscale fit's default); the key the points were taken from is fit_spec.loss_key.
    result = fit_curves(curves_from_points(points), options, loss_key=DEFAULT_LOSS_KEY,
                        inputs=[record.name])
    return write_fit(result, out_dir, overwrite=True, title=title or None, crossings=crossings)


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
    return float(frames * TASKS[task].inputs_per_step(shards.layout))
