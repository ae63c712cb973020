"""The stages of a study (see ``scaling.study.runner``).

Each stage is resumable and skips finished work.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

from offline_data.atomic import write_text_atomic
from offline_data.datasets import (
    datasets_root,
    list_dataset_ids,
)
from offline_data.tokens import HEADER_NAME
from scaling.study.action_baselines import action_baselines
from scaling.study.adapters.datasets import collect_default_dataset, dataset_summary
from scaling.study.adapters.fits import fit_runs, plan_next
from scaling.study.adapters.sizes import known_sizes, size_params, study_layout
from scaling.study.adapters.tokenizer import encode_dataset, tokenizer_finished, train_tokenizer
from scaling.study.growth import record_data_seconds
from scaling.study.jobs import emit_jobs
from scaling.study.loss_vs_quality import run_quality_study
from scaling.study.loss_vs_return import run_return_study
from scaling.study.paths import (
    dataset_exists,
    fit_dir,
    grown_data,
    tokenizer_path,
    tokens_dir,
)
from scaling.study.report_page import read_json
from scaling.study.spec import StudySpec, TaskSweep
from scaling.study.spec_checks import check_tokenizer_checkpoint
from scaling.study.sweep import RunSpec, collect_results, prepare_runs, run_status, run_sweep
from scaling.study.sweep_pool import WorkerPool
from scaling.tasks import TASKS
from worldmodels.run_metrics import read_metrics

logger = logging.getLogger(__name__)

POLICY_TASKS = tuple(name for name, task in TASKS.items() if task.policy)
"""The tasks whose models act (loss vs return)."""
WORLD_MODEL_TASKS = tuple(name for name, task in TASKS.items() if task.world_model)
"""The tasks whose models imagine frames (loss vs rollout quality)."""
FIT_NAMES = ("frontier", "parametric", "loss_prediction", "isoflop")
"""The fits of ``fit.json``, each recorded as skipped when a task's fit cannot run."""


# ----- validation -----

def check_dataset(spec: StudySpec) -> None:
    """A missing dataset is an error unless the spec says to collect it."""
    if dataset_exists(spec.dataset.id) or spec.dataset.collect:
        return

    known = ", ".join(list_dataset_ids()) or "none"
    raise FileNotFoundError(
        f"the study's dataset {spec.dataset.id!r} is not stored under {datasets_root()} (local "
        f"datasets: {known}). Fix: create it (`embscale data collect` / `embscale data import`), "
        "set MINARI_DATASETS_PATH to where it lives, or set dataset.collect = true to build the "
        "embedded default")


def check_sizes(spec: StudySpec) -> None:
    """Every size name must be a preset of its task."""
    for t in spec.tasks:
        known = known_sizes(t.task)
        bad = [s for s in t.sizes if s not in known]
        if bad:
            raise ValueError(f"tasks[{t.task}] names unknown size(s) {bad}; known sizes for "
                             f"{t.task}: {', '.join(known)}")


def check_budget(task: TaskSweep, params: dict[str, int], tokens_per_param: float) -> list[str]:
    """Refuse a budget with which no model of the ladder can pass its compute optimum.

    A model of N parameters is taken to reach its compute-optimal point after about
    ``tokens_per_param * N`` inputs (Chinchilla's ~20; set ``optimum_tokens_per_param`` in the
    spec for another prior). Frontier fits need curves that run past their optimum, so a budget
    that stops every model before it is refused, naming the budget that would do.

    Returns:
        The sizes that do pass their optimum (a warning is logged if that is only the smallest).
    """
    passing = []
    for size, n in params.items():
        d_run = task.tokens if task.tokens is not None else task.flops / (6.0 * n)
        if d_run >= tokens_per_param * n:
            passing.append(size)
    if not passing:
        smallest = min(params, key=params.get)
        n = params[smallest]
        if task.tokens is not None:
            need = f"tokens >= {tokens_per_param * n:.3g}"
            have = f"tokens = {task.tokens:.3g}"
        else:
            need = f"flops >= {6.0 * tokens_per_param * n * n:.3g}"
            have = f"flops = {task.flops:.3g}"
        raise ValueError(
            f"tasks[{task.task}]: the budget {have} stops every model before its compute-optimal "
            f"point (~{tokens_per_param:g} inputs per parameter), so no curve passes its optimum "
            f"and the frontier cannot be fitted. The smallest size {smallest} (N={n:,}) needs "
            f"{need}; raise the budget to at least that, or add smaller sizes")
    if len(passing) < 2:
        logger.warning("tasks[%s]: only %s passes its compute optimum with this budget; the "
                       "frontier fit may be censored (the parametric fit still works)",
                       task.task, passing)
    return passing


def check_budgets(spec: StudySpec) -> dict[str, list[str]]:
    """:func:`check_budget` for every task of the spec; the sizes that pass, per task."""
    layout = study_layout(spec)
    passing = {}
    for t in spec.tasks:
        # The prior is in tokens; a BC-CNN input is one timestep, d_z + d_a tokens to a token model.
        steps_per_input = layout.tokens_per_step // TASKS[t.task].inputs_per_step(layout)
        prior = spec.optimum_tokens_per_param / steps_per_input
        passing[t.task] = check_budget(t, {s: size_params(t.task, s, spec) for s in t.sizes},
                                       prior)
    return passing


def validate_spec(spec: StudySpec) -> None:
    """Check the spec against the world: dataset, tokenizer checkpoint, size names, budgets."""
    check_dataset(spec)
    check_tokenizer_checkpoint(spec)
    check_sizes(spec)
    if spec.protocol == "fixed":  # the frontier protocol extends runs past their optimum
        check_budgets(spec)


# ----- dataset -----

def ensure_dataset(spec: StudySpec, progress: bool = True) -> dict[str, Any]:
    """Collect the dataset if the spec asks for it and it is missing; write ``dataset.json``."""
    out = spec.study_dir / "dataset.json"
    collected = None
    if not dataset_exists(spec.dataset.id):
        check_dataset(spec)
        start = time.time()
        collect_default_dataset(spec.dataset, progress=progress)
        collected = time.time() - start
    summary = dataset_summary(spec.dataset.id)
    if collected is not None:  # what growing the data would cost
        record_data_seconds(spec, "collect", summary["frames"], collected)
    write_text_atomic(out, json.dumps(summary, indent=2))
    return summary


# ----- tokenizer -----

def ensure_tokens(spec: StudySpec, progress: bool = True) -> dict[str, Any]:
    """Train the tokenizer (unless given) and encode the dataset into token shards."""
    needs_tokens = (any(TASKS[t.task].reads_tokens for t in spec.tasks)
                    or spec.loss_vs_quality.enabled)
    path = tokenizer_path(spec)
    if spec.tokenizer.checkpoint:
        if not path.is_file():
            raise FileNotFoundError(f"tokenizer.checkpoint {path} does not exist; train one with "
                                    "`embscale tokenizer train` or drop the key to train here")
    elif needs_tokens and not tokenizer_finished(path.parent, spec.tokenizer.steps):
        train_tokenizer(spec, path.parent, progress=progress)
    if needs_tokens and not (tokens_dir(spec) / HEADER_NAME).is_file():
        start = time.time()
        encode_dataset(spec, path, tokens_dir(spec), progress=progress)
        record_data_seconds(spec, "encode", dataset_summary(spec.dataset.id)["frames"],
                            time.time() - start)
    summary = {"tokenizer": str(path), "tokens": str(tokens_dir(spec))}
    metrics = path.parent / "summary.json"
    if metrics.is_file():
        summary["summary"] = json.loads(metrics.read_text())
    return summary


# ----- sweep -----

def plan_runs(spec: StudySpec) -> list[RunSpec]:
    """One ``RunSpec`` per task, size and seed of the spec."""
    runs, grown = [], grown_data(spec)
    for t in spec.tasks:
        data = grown.get(t.task) or (str(tokens_dir(spec)) if TASKS[t.task].reads_tokens
                                     else spec.dataset.id)
        for size in t.sizes:
            for seed in t.seeds:
                name = t.run_name(size, seed)
                runs.append(RunSpec(
                    name=name, task=t.task, size=size, seed=seed,
                    out_dir=str(spec.study_dir / name), data=data, tokens=t.tokens, flops=t.flops,
                    checkpoints=t.checkpoints, preset=t.preset, device=spec.device,
                    params=size_params(t.task, size, spec), overrides=dict(t.overrides),
                    shared=spec.shared_config()))
    return runs


def run_study_sweep(spec: StudySpec, allow_mixed: bool = False, progress: bool = True,
                    time_limit=None) -> dict[str, str]:
    """Train every run of the study (finished runs are skipped, interrupted ones resumed).

    ``time_limit`` (a :class:`scaling.study.time_limit.TimeLimit`) caps the frontier protocol's
    budget so that the whole job ends within it.
    """
    nproc = spec.gpus_per_run
    if spec.device != "cpu" and nproc == 0:
        import torch

        nproc = max(1, torch.cuda.device_count())
    nproc = max(1, nproc) if spec.device != "cpu" else 1
    if spec.protocol == "frontier":
        from scaling.study.budget_rounds import run_study_protocol  # torch

        if spec.device == "cpu":  # small runs share long-lived worker processes, every round
            with WorkerPool(spec.parallel, progress=progress) as pool:
                return run_study_protocol(
                    spec, plan_runs(spec), lambda runs: pool.run(runs, allow_mixed=allow_mixed),
                    world_size=nproc, progress=progress, time_limit=time_limit)

        def sweep(runs):
            return run_sweep(runs, parallel=spec.parallel, allow_mixed=allow_mixed,
                             progress=progress, nproc_per_node=nproc)
        return run_study_protocol(spec, plan_runs(spec), sweep, world_size=nproc,
                                  progress=progress, time_limit=time_limit)
    if time_limit is not None:
        logger.warning("the time limit applies to the frontier protocol; protocol=fixed trains "
                       "every run to its budget")
    return run_sweep(plan_runs(spec), parallel=spec.parallel, allow_mixed=allow_mixed,
                     progress=progress, nproc_per_node=nproc)


class _RoundEmitted(Exception):
    """Raised by the job-emitting sweep to leave the protocol until the jobs have run."""


def emit_study_jobs(spec: StudySpec, out: str | Path, fmt: str, gpus: int,
                    allow_mixed: bool = False) -> tuple[Path | None, int]:
    """Write the study's unfinished training runs as cluster jobs (``jobs.emit_jobs``).

    A fixed study emits all its runs at once. Under the frontier protocol, only the current
    round is known: the first call emits the first round; once those jobs have run, the next
    call reads their curves, plans the next round (``protocol.json``, as ``embscale study``
    would) and emits the runs it extends. Repeat until it reports that the protocol is done.

    Returns:
        ``(path, round)``: the job file and the protocol round it holds (0 for a fixed study),
        or ``(None, rounds)`` when the protocol has finished after ``rounds`` rounds.
    """
    if spec.protocol != "frontier":
        return emit_jobs(plan_runs(spec), out, fmt=fmt, nproc_per_node=gpus,
                         allow_mixed=allow_mixed), 0
    from scaling.study.budget_rounds import PROTOCOL_FILE, run_study_protocol  # torch

    if any(TASKS[t.task].reads_tokens for t in spec.tasks) and not (
            tokens_dir(spec) / HEADER_NAME).is_file():
        raise ValueError(f"the frontier protocol plans its rounds from the token shards, but "
                         f"{tokens_dir(spec)} holds none; run `embscale study --stages "
                         f"dataset,tokenizer` for this study first")
    written: list[Path] = []

    def sweep(runs: list[RunSpec]) -> None:
        prepare_runs(runs, allow_mixed=allow_mixed)
        if any(run_status(r) != "finished" for r in runs):
            written.append(emit_jobs(runs, out, fmt=fmt, nproc_per_node=gpus,
                                     allow_mixed=allow_mixed))
            raise _RoundEmitted

    try:
        run_study_protocol(spec, plan_runs(spec), sweep, world_size=gpus)
    except _RoundEmitted:
        state = read_json(spec.study_dir / PROTOCOL_FILE)
        return written[0], len(state.get("rounds", [])) + 1
    return None, len(read_json(spec.study_dir / PROTOCOL_FILE).get("rounds", []))


# ----- fits -----

def fit_tasks(spec: StudySpec) -> dict[str, Any]:
    """Fit scaling laws to each task's curves and ask the planner about 10x more compute."""
    from scaling.study.budget_rounds import PROTOCOL_FILE, protocol_crossings  # torch

    runs = plan_runs(spec)
    out: dict[str, Any] = {}
    crossings = protocol_crossings(read_json(spec.study_dir / PROTOCOL_FILE))
    # protocol runs skip the start of their first-round budget, however far they were extended
    first = ({r.name: r.budget_tokens for r in runs} if spec.protocol == "frontier" else None)
    for t in spec.tasks:
        dirs = collect_results(runs, t.task)
        d = fit_dir(spec, t.task)
        if len(dirs) < 2:
            why = f"only {len(dirs)} finished run(s); a fit needs two sizes"
            out[t.task] = {name: {"status": "skipped", "reason": why} for name in FIT_NAMES}
            write_text_atomic(d / "fit.json", json.dumps(out[t.task]))
            continue
        try:
            fit = fit_runs(dirs, d, spec.fit, title=t.task, crossings=crossings.get(t.task),
                           reference=first)
        except ValueError as e:  # no law fits these curves: report why, keep the study going
            logger.warning("%s: %s", t.task, e)
            fit = {name: {"status": "skipped", "reason": str(e)} for name in FIT_NAMES}
            fit["error"] = str(e)
            write_text_atomic(d / "fit.json", json.dumps(fit, indent=2))
        max_c = max(_final_flops(p) for p in dirs)
        fit["advice"] = plan_next(d / "fit.json", 10.0 * max_c, spec, t.task)
        write_text_atomic(d / "advice.json", json.dumps(fit["advice"], indent=2))
        out[t.task] = fit
    write_action_baselines(spec)
    return out


def write_action_baselines(spec: StudySpec) -> dict[str, Any] | None:
    """Held-out losses of action-only predictors beside the BC fits.

    Writes ``fits/action_baselines.json`` (``scaling.study.action_baselines``); None when the
    study has no BC task or no token shards.
    """
    if not any(TASKS[t.task].policy for t in spec.tasks):
        return None
    if not (tokens_dir(spec) / HEADER_NAME).is_file():
        return None
    # BC-Token's context (timesteps per window) bounds the action history it can use.
    context = None
    for run in plan_runs(spec):
        token_policy = TASKS[run.task].policy and TASKS[run.task].reads_tokens
        cfg = read_json(Path(run.run_dir) / "config.json") if token_policy else None
        if cfg:
            context = int(cfg["data"]["seq_len"])
            break
    baselines = action_baselines(tokens_dir(spec), context_steps=context)
    baselines["bc_held_out"] = _bc_held_out(spec, baselines["split"])
    write_text_atomic(spec.study_dir / "fits" / "action_baselines.json",
                      json.dumps(baselines, indent=2))
    return baselines


def _bc_held_out(spec: StudySpec, split: str) -> dict[str, Any]:
    """Each BC task's lowest-val-loss run scored on the whole ``split``, with a standard error.

    The bar test of the report needs the BC loss's own error (``agents.held_out``), not the
    trainer's sampled ``val/loss``.
    """
    from agents.held_out import held_out_loss  # torch

    out: dict[str, Any] = {}
    runs = plan_runs(spec)
    for task in POLICY_TASKS:
        best, best_val = None, math.inf
        for d in collect_results(runs, task):
            vals = [float(r["val/loss"]) for r in read_metrics(d) if "val/loss" in r]
            if vals and math.isfinite(vals[-1]) and vals[-1] < best_val:
                best, best_val = d, vals[-1]
        if best is not None:
            try:
                res = held_out_loss(best, split=split)
                # one batch gives no standard error: null in JSON, not NaN
                out[task] = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                             for k, v in res.items()}
            except (FileNotFoundError, ValueError) as e:
                # e.g. no checkpoint kept: the report then draws no conclusion from the bar
                logger.warning("%s: no held-out loss for the bar test: %s", task, e)
    return out


def _final_flops(run_dir: Path) -> float:
    recs = read_metrics(run_dir)
    return float(recs[-1]["flops"]) if recs else math.nan


# ----- correlation studies -----

def return_study(spec: StudySpec, progress: bool = True,
                 out_dir: Path | None = None) -> dict[str, Any]:
    """Loss vs return over the BC runs' checkpoints, into ``out_dir`` (None: the study's)."""
    runs = plan_runs(spec)
    dirs = [d for t in POLICY_TASKS for d in collect_results(runs, t)]
    counts = [t.checkpoints for t in spec.tasks if t.task in POLICY_TASKS]
    out_dir = out_dir or spec.study_dir / "loss_vs_return"
    return run_return_study(dirs, out_dir, spec.loss_vs_return,
                            checkpoints_per_run=max([*counts, 1]),
                            tokenizer=tokenizer_path(spec), progress=progress,
                            device=spec.device, parallel=spec.parallel)


def quality_study(spec: StudySpec, progress: bool = True,
                  out_dir: Path | None = None) -> dict[str, Any]:
    """Loss vs rollout quality of the WM runs' checkpoints, into ``out_dir`` (None: the study's)."""
    runs = plan_runs(spec)
    dirs = [d for t in WORLD_MODEL_TASKS for d in collect_results(runs, t)]
    counts = [t.checkpoints for t in spec.tasks if t.task in WORLD_MODEL_TASKS]
    return run_quality_study(dirs, tokenizer_path(spec), spec.dataset.id,
                             out_dir or spec.study_dir / "loss_vs_quality", spec.loss_vs_quality,
                             checkpoints_per_run=max(counts, default=TaskSweep.checkpoints),
                             progress=progress,
                             device=spec.device, parallel=spec.parallel)
