"""Fits and the planner for the study: each task's curves in, ``fit.json`` and advice out."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from offline_data.atomic import atomic_file
from offline_data.tokens import HEADER_NAME, TokenShards
from scaling.fitting import curve_points, curves_from_points, fit_curves, methods, write_fit
from scaling.laws.analysis import FitOptions
from scaling.planner import plan
from scaling.study.paths import grown_train_inputs, tokens_dir
from scaling.tasks import TASKS


def fit_runs(run_dirs: list[Path], out_dir: Path, fit_spec, title: str = "",
             crossings: list[tuple[float, float]] | None = None,
             reference: dict[str, float] | None = None) -> dict[str, Any]:
    """Fit the runs' curves as ``fit_spec`` says; writes ``out_dir`` and returns ``fit.json``.

    The fitted points are also written beside ``out_dir`` as ``<task>_points.csv`` (the input
    ``embscale fit`` takes), so a fit can be redone or varied from the command line.
    ``crossings``: the budget protocol's (C, loss) crossings, marked in the figure.
    ``reference``: per run, the D its skipped start is measured against (see ``curve_points``)
    for the envelope (frontier, loss prediction, IsoFLOP); the parametric fit then keeps each
    curve after ``skip_fraction`` of its final D, written as ``<task>_law_points.csv``. With
    ``fit_spec.skip_above_uniform`` every curve starts after its last loss above a uniform guess.
    """
    above = fit_spec.skip_above_uniform
    points = curve_points(run_dirs, fit_spec.loss_key, fit_spec.skip_fraction, reference,
                          skip_above_uniform=above)
    record = _write_points(Path(out_dir).with_name(Path(out_dir).name + "_points.csv"), points)
    law = None
    if reference:
        law_points = curve_points(run_dirs, fit_spec.loss_key, fit_spec.skip_fraction,
                                  skip_above_uniform=above)
        _write_points(Path(out_dir).with_name(Path(out_dir).name + "_law_points.csv"),
                      law_points)
        law = curves_from_points(law_points)
    options = FitOptions(methods=methods(fit_spec.method),
                         parametric_loss=fit_spec.parametric_loss,
                         num_bootstrap=fit_spec.bootstrap,
                         bootstrap_scheme=fit_spec.bootstrap_scheme)
    # fit.json names the points file as its input and the metrics key its losses came from
    result = fit_curves(curves_from_points(points), options, loss_key=fit_spec.loss_key,
                        inputs=[record.name], law_curves=law)
    return write_fit(result, out_dir, overwrite=True, title=title or None, crossings=crossings)


def _write_points(path: Path, points: list[dict[str, Any]]) -> Path:
    """The (N, D, L, run) points as the CSV ``embscale fit`` reads (atomic)."""
    with atomic_file(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["N", "D", "L", "run"])
        writer.writeheader()
        writer.writerows(points)
    return path


def plan_next(fit_path: Path, flops: float, spec, task: str) -> dict[str, Any]:
    """The planner's advice for ``flops`` (10x the study's largest run), or why there is none.

    Its data check counts the data the runs trained on: grown, once the study grew it.
    """
    fit = json.loads(Path(fit_path).read_text())
    tokens = grown_train_inputs(spec).get(task) or dataset_tokens(spec, task)
    try:
        p = plan(fit, flops=flops, dataset_tokens=tokens)
    except ValueError as e:
        return {"flops": flops, "skipped": str(e)}
    return p.to_dict()


def dataset_tokens(spec, task: str) -> float | None:
    """Unique training inputs D of the study's data for ``task`` (None when unknown).

    Token tasks count the training split of the study's token shards (None before the
    tokenizer stage wrote them). Frame tasks (BC-CNN) read the dataset itself, one input per
    timestep, so they count the timesteps of its training split that their windows reach, as
    ``agents.frame_data.FrameDataSource`` does (episodes shorter than a window are skipped);
    None when the dataset is not on disk. A study without token shards therefore still knows
    BC-CNN's data-pass limit.
    """
    if not TASKS[task].reads_tokens:
        return _frame_task_steps(spec, task)
    header = tokens_dir(spec) / HEADER_NAME
    if not header.is_file():
        return None
    shards = TokenShards.open(tokens_dir(spec))
    frames = shards.split("train").num_frames
    return float(frames * TASKS[task].inputs_per_step(shards.layout))


def _frame_task_steps(spec, task: str) -> float | None:
    """Timesteps of the dataset's training split that ``task``'s windows reach."""
    from offline_data.reader import WindowReader
    from scaling.study.adapters.sizes import study_seq_len

    ts = spec.task(task)
    seq_len = study_seq_len(spec, task, ts.sizes[0]) if ts and ts.sizes else 1
    try:
        return float(WindowReader(spec.dataset.id, seq_len, split="train").num_steps)
    except FileNotFoundError:
        return None
