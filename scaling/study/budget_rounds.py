"""The frontier-seeking protocol as a sweep mode: rounds of ``run_sweep``, extending runs.

Each round trains every unfinished run (a finished run whose budget was raised is resumed from
its last checkpoint and continues the same curve), reads every run's loss-vs-FLOPs curve, and asks
:func:`scaling.study.budget_protocol.plan_round` for the next budgets. The state (every run's
budget and
each round's decisions) is written atomically to ``<study>/protocol.json`` *before* the runs it
extends are started, so a study killed during an extension and started again resumes those runs
with the same budgets and continues the same curves.

A run is extended by rewriting its ``run_spec.json`` with the new token budget (nothing else may
differ) and removing its ``done.json``; the trainer resumes a run with a larger budget because the
budget is not part of what a checkpoint must match.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from offline_data.atomic import write_text_atomic
from offline_data.tokens import HEADER_NAME, TokenShards
from scaling.study.budget_costs import RunCurve, grid_floor_tokens, next_grid_tokens, spent
from scaling.study.budget_protocol import COLLECTS, ProtocolConfig, check_study_budget
from scaling.study.budget_tasks import growth_charge, growth_pays, plan_tasks
from scaling.study.paths import PROTOCOL_FILE, tokens_dir
from scaling.study.sweep import DONE_FILE, RUN_SPEC_FILE, RunSpec, _diff
from scaling.study.time_limit import TimeLimit, capped_budget
from scaling.tasks import TASKS
from worldmodels import presets
from worldmodels.run_metrics import LOSS_KEY, MEAN_LOSS_KEY, metrics_path, read_metrics
from worldmodels.train_config import TrainConfig, accumulation

logger = logging.getLogger(__name__)

BUDGET_FIELDS = ("tokens", "flops")


def read_curve(run: RunSpec, loss_key: str, train_items: float | None = None,
               items_per_frame: int = 1) -> RunCurve | None:
    """The run's curve of ``loss_key`` from its ``metrics.jsonl`` (None before its first point)."""
    recs = read_metrics(run.run_dir) if metrics_path(run.run_dir).is_file() else []
    recs = [r for r in recs if math.isfinite(float(r.get(loss_key, r.get(LOSS_KEY, "nan"))))]
    if not recs:
        return None
    last = recs[-1]
    return RunCurve(name=run.name, size=run.size, params=int(last["params"]),
                    flops=[float(r["flops"]) for r in recs],
                    loss=[float(r.get(loss_key, r.get(LOSS_KEY))) for r in recs],
                    tokens=float(last["tokens"]),
                    inputs_per_update=int(round(last["tokens"] / last["step"])), seed=run.seed,
                    train_items=train_items, items_per_frame=items_per_frame,
                    seconds=training_seconds(recs))


def training_seconds(recs: Sequence[dict]) -> float:
    """Seconds of training steps behind ``metrics.jsonl`` records (tokens / tokens_per_s)."""
    return float(sum((b["tokens"] - a["tokens"]) / b["tokens_per_s"]
                     for a, b in zip([{"tokens": 0}, *recs[:-1]], recs, strict=True)
                     if b.get("tokens_per_s")))


def protocol_crossings(state: dict | None) -> dict[str, list[tuple[float, float]]]:
    """Per task, the (C, loss) crossings of neighbouring sizes in the last round of a protocol."""
    out: dict[str, list[tuple[float, float]]] = {}
    for task, plan in ((state or {}).get("final") or {}).items():
        out[task] = [(float(p["crossing_flops"]), float(p["crossing_loss"]))
                     for p in plan.get("pairs", []) if p.get("status") == "crossing"
                     and p.get("crossing_flops") is not None
                     and p.get("crossing_loss") is not None]
    return out


def with_budget(run: RunSpec, tokens: float) -> RunSpec:
    """A copy of ``run`` with a token budget of ``tokens`` (no FLOPs budget)."""
    return RunSpec.from_dict({**run.to_dict(), "tokens": float(tokens), "flops": None})


def sync_run_dir(run: RunSpec) -> None:
    """Record a raised budget in the run directory: the run counts as unfinished again.

    ``done.json`` is removed before ``run_spec.json`` is rewritten, so a kill between the two
    leaves an unfinished run that the next round resumes with the same budget.
    """
    path = run.run_dir / RUN_SPEC_FILE
    if not path.is_file():
        return
    old = RunSpec.load(path)
    if (old.tokens, old.flops, old.data) == (run.tokens, run.flops, run.data):
        return
    # The protocol changes budgets, and data when the study grew it (the trainer resumes only
    # on data that grew from the run's own: offline_data.growth).
    ours = (*BUDGET_FIELDS, "data")
    diffs = _diff({k: v for k, v in old.config_dict().items() if k not in ours},
                  {k: v for k, v in run.config_dict().items() if k not in ours})
    if diffs:
        raise ValueError(f"{run.run_dir} was trained with another spec ({'; '.join(diffs[:6])}); "
                         "the protocol only changes budgets. Restore the spec or use a new study")
    done = run.run_dir / DONE_FILE
    if done.is_file() and float(json.loads(done.read_text()).get("tokens", 0)) < (run.tokens or 0):
        done.unlink()
    write_text_atomic(path, json.dumps(run.to_dict(), indent=2))


def run_protocol(runs: Sequence[RunSpec], cfg: ProtocolConfig, state_path: Path,
                 sweep: Callable[[list[RunSpec]], Any], inputs_per_update: dict[str, int],
                 loss_key: str = MEAN_LOSS_KEY,
                 data: dict[str, tuple[float | None, int]] | None = None,
                 max_rounds: int = 50,
                 shares: dict[str, float] | None = None,
                 grow: Callable[[int, int, list[dict]], Any] | None = None,
                 workers: int = 1, sweep_end: float | None = None,
                 clock: Callable[[], float] = time.time,
                 time_note: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train ``runs`` in rounds until no pair of neighbouring sizes asks for more compute.

    Args:
        runs: the sweep at its initial budgets (tokens or FLOPs per run).
        cfg: the protocol's budget and rules.
        state_path: ``protocol.json`` (read to resume, written after every round).
        sweep: trains a list of runs (e.g. ``run_sweep`` with the study's settings).
        inputs_per_update: D per optimizer step of each run (initial budgets are placed on the
            validation grid with it).
        loss_key: the metrics key compared.
        data: per task ``(training inputs, inputs per frame)`` for the data-pass limit.
        max_rounds: a safety stop.
        shares: per task, the fraction of the budget kept for it (see :func:`plan_tasks`);
            None: the tasks draw on the whole budget in order.
        grow: a collecting study's ``grow(frames_needed, k, history)``
            (``scaling.study.growth``): called when extensions the budget can pay for would
            pass the data-pass limit; it returns the runs' new data and limits, or None. Its
            ``estimate(frames_needed, history)``, when it has one, gives the wall seconds a
            growth would take (None: unknown), so that a seconds budget pays for it first.
        workers: runs trained at a time. Under a seconds budget a growth's wall seconds times
            ``workers`` are charged to the budget (every worker waits while the study grows).
        sweep_end: epoch seconds by which the sweep should end (a study's time limit,
            :mod:`scaling.study.time_limit`): after every round the budget is capped at what
            the time left allows; None: no limit.
        clock: the time (``time.time``; tests give their own).
        time_note: what the caller says about the time limit (kept in ``state["time_limit"]``
            for the report, with ``capped``: the rounds whose budget it lowered).

    Returns:
        The state written to ``state_path``: ``budgets``, ``rounds`` (each round's plan per task)
        and ``final`` (the last plan per task).
    """
    data = dict(data or {})
    state = json.loads(state_path.read_text()) if state_path.is_file() else {}
    budgets: dict[str, float] = state.get("budgets") or {}
    notes = state.setdefault("notes", [])
    growth = state.setdefault("growth", [])
    if time_note:
        state.setdefault("time_limit", {}).update(time_note)

    cap = math.inf  # what the time limit allows this round (math.inf: no limit)

    def charged() -> float:
        """What growing the data has taken from the budget so far."""
        took = sum(h.get("collect_seconds", 0.0) + h.get("encode_seconds", 0.0) for h in growth)
        return growth_charge(took, cfg, workers)

    def within(extra: float = 0.0) -> ProtocolConfig:
        """``cfg`` less growing the data's cost (and ``extra``), within the time limit's cap."""
        budget = min(cfg.budget - charged(), cap) - extra
        return dataclasses.replace(cfg, budget=max(budget, 1e-300))
    if state.get("data"):  # a resumed study continues on the data it grew
        runs = _with_data(runs, state["data"])
        data.update({t: (float(v[0]), int(v[1])) for t, v in state["limits"].items()})
    for r in runs:
        if r.name not in budgets:
            per = inputs_per_update[r.name]
            budgets[r.name] = next_grid_tokens(r.budget_tokens, per, cfg.val_points_per_decade)
            items = data.get(r.task, (None, 1))[0]
            if items and budgets[r.name] > cfg.max_passes * items:
                # the first round stays in the infinite-data regime too
                capped = grid_floor_tokens(cfg.max_passes * items, per,
                                           cfg.val_points_per_decade, per)
                notes.append(f"{r.name}: first-round budget {budgets[r.name]:.3g} inputs would "
                             f"pass {cfg.max_passes:g} passes over the {items:.3g} training "
                             f"inputs; capped at {capped:.3g}")
                logger.warning("budget protocol: %s", notes[-1])
                budgets[r.name] = capped
    first = sum(6.0 * r.num_params * budgets[r.name] for r in runs)
    if cfg.unit == "flops" and not state.get("rounds"):
        check_study_budget(first, cfg)
    state.update(budgets=budgets, unit=cfg.unit, budget=cfg.budget)
    state.setdefault("rounds", [])
    write_text_atomic(state_path, json.dumps(state, indent=2))
    for _ in range(max_rounds):
        current = [with_budget(r, budgets[r.name]) for r in runs]
        for r in current:
            sync_run_dir(r)
        sweep(current)
        curves = _read_curves(current, loss_key, data)
        if sweep_end is not None:
            cap = _time_cap(state, curves, cfg, sweep_end, clock(), workers)
        plans = plan_tasks(curves, within(), shares)
        request = max((p.data_request or 0 for p in plans.values()), default=0)
        if grow is not None and cfg.collect and request:
            estimate = getattr(grow, "estimate", None)
            seconds = estimate(request, list(growth)) if estimate else None
            cost = growth_charge(seconds or 0.0, cfg, workers)
            pays = growth_pays(curves, plans, request, within(cost), shares)
            why = "cap" if pays else "budget"
            if not pays and cost and growth_pays(curves, plans, request, within(), shares):
                why = "cost"  # the extensions fit the budget, but not with the growth's cost
            grown = grow(request, len(growth) + 1, list(growth)) if pays else None
            if grown is None:
                refused = state.setdefault("growth_refused", [])
                if not refused or refused[-1]["round"] != len(state["rounds"]) + 1:
                    refused.append({"round": len(state["rounds"]) + 1, "asked": int(request),
                                    "why": why})
                    if why == "cost":
                        refused[-1].update(seconds=round(seconds, 1), cost=round(cost, 1),
                                           workers=workers)
                if not pays:
                    _unpaid(plans, UNPAID if why == "budget" else UNPAID_COST.format(
                        seconds=seconds, cost=cost, workers=workers))
            else:
                growth.append({"round": len(state["rounds"]) + 1, **grown.record})
                runs = _with_data(runs, grown.data)
                current = [with_budget(r, budgets[r.name]) for r in runs]
                data.update(grown.limits)
                state.update(data=grown.data, limits={t: list(v) for t, v in data.items()})
                state["growth_charge"] = charged()  # not the time limit's cut
                plans = plan_tasks(_read_curves(current, loss_key, data), within(), shares)
        first_cost = sum(p.spent for p in plans.values())
        if cfg.unit == "seconds" and not state["rounds"] and first_cost > cfg.budget:
            # a seconds budget is known only once the first round has run (its runs are kept)
            raise ValueError(
                f"the study budget {cfg.budget:.3g} seconds is below the cost of one round, "
                f"{first_cost:.3g} seconds of training (every run of the ladder at its initial "
                f"budget, now trained and kept); set the budget to at least {first_cost:.3g} "
                "seconds and run the study again, or lower the initial budgets or drop sizes")
        planned = {t: p.to_dict() for t, p in plans.items()}
        if not (state["rounds"] and planned == state["rounds"][-1]):  # a rerun of a finished
            state["rounds"].append(planned)  # protocol plans its last round again: kept once
        state["final"] = state["rounds"][-1]
        for plan in plans.values():
            for name, d in plan.decisions.items():
                if d.extend:
                    budgets[name] = d.tokens
            if plan.data_request and cfg.collect:
                logger.warning("budget protocol: a run needs %d training frames to stay within "
                               "%g passes; raise dataset.grow (or dataset.episodes / "
                               "max_total_steps and start a new study)", plan.data_request,
                               cfg.max_passes)
            elif plan.data_request:
                logger.warning("budget protocol: runs stop at %g passes over the fixed data; "
                               "%d training frames (inputs, for non-frame data) would be needed",
                               cfg.max_passes, plan.data_request)
        state["budgets"] = budgets
        write_text_atomic(state_path, json.dumps(state, indent=2))
        used = study_spent(state)
        told = f"{used:.4g} of {cfg.budget:.4g} {cfg.unit} spent ({used / cfg.budget:.0%})"
        if cap < cfg.budget:
            told += f"; the time limit allows {cap:.4g}"
        if all(p.done for p in plans.values()):
            logger.info("budget protocol: done after round %d, %s", len(state["rounds"]), told)
            return state
        logger.info("budget protocol: round %d, %s; extends %s", len(state["rounds"]), told,
                    ", ".join(n for p in plans.values() for n, d in p.decisions.items()
                              if d.extend))
    raise RuntimeError(f"the budget protocol did not finish in {max_rounds} rounds; see "
                       f"{state_path}")


def _time_cap(state: dict[str, Any], curves: dict[str, list[RunCurve]], cfg: ProtocolConfig,
              sweep_end: float, now: float, workers: int) -> float:
    """The budget the time limit allows after this round; noted in ``state["time_limit"]``."""
    runs = [r for cs in curves.values() for r in cs]
    cap = capped_budget(cfg.budget, cfg.unit, spent(runs, cfg.unit), spent(runs, "seconds"),
                        sweep_end, now, workers)
    note = state.setdefault("time_limit", {})
    note["seconds_left"] = round(sweep_end - now, 1)
    rnd = len(state["rounds"]) + 1  # the round about to be planned (a rerun plans it again)
    capped = [c for c in note.get("capped", []) if c["round"] != rnd]
    note["capped"] = capped + ([{"round": rnd, "budget": cap}] if cap < cfg.budget else [])
    return cap


def study_spent(state: dict[str, Any]) -> float:
    """What a protocol state's last round has spent of the study budget, growth included."""
    charge = float(state.get("growth_charge") or 0.0)  # growing the data (seconds budgets)
    return sum(p.get("spent", 0.0) for p in state["final"].values()) + charge


def _with_data(runs: Sequence[RunSpec], data: dict[str, str]) -> list[RunSpec]:
    """``runs`` reading their task's data in ``data`` (the others unchanged)."""
    return [RunSpec.from_dict({**r.to_dict(), "data": data.get(r.task, r.data)}) for r in runs]


def _read_curves(runs: list[RunSpec], loss_key: str,
                 data: dict[str, tuple[float | None, int]]) -> dict[str, list[RunCurve]]:
    curves: dict[str, list[RunCurve]] = {}
    for r in runs:
        items, per_frame = data.get(r.task, (None, 1))
        c = read_curve(r, loss_key, items, per_frame)
        if c is None:
            raise RuntimeError(f"run {r.name} finished without a logged point; read "
                               f"{r.run_dir / 'train.log'}")
        curves.setdefault(r.task, []).append(c)
    return curves


UNPAID = ("none collected: on the grown data the runs the data limit stops elsewhere would ask "
          "again and keep their tasks' shares, and the budget left could not pay for this one")
"""What a data-limited run's decision says when growth would not have paid for its extension."""

UNPAID_COST = ("none collected: collecting and encoding them would take about {seconds:.0f} s, "
               "{cost:.0f} s of the budget with {workers} workers waiting, and the budget left "
               "after that could not pay for this one")
"""The same when the extension fits the budget, but not together with the growth's own cost."""


def _unpaid(plans: dict[str, Any], why: str) -> None:
    for p in plans.values():
        p.data_request = None  # nothing is asked for any more
        for d in p.decisions.values():
            if d.reason == "data limit" and d.detail.endswith(COLLECTS):
                d.detail = d.detail[: -len(COLLECTS)] + why


# ----- the study's sweep mode (StudySpec.protocol = "frontier") -----

def planned_tokens_per_step(run: RunSpec, world_size: int = 1) -> int:
    """D per optimizer step the trainer will use for ``run`` (``worldmodels.train_config``)."""
    p = presets.get_task_preset(run.preset) if run.preset else presets.preset_for(run.task,
                                                                                   run.size)
    o = run.overrides
    task = TASKS[run.task]
    layout = TokenShards.open(run.data).layout if task.reads_tokens else None
    per_window = int(o.get("seq_len", p.seq_len)) * task.inputs_per_step(layout)
    return accumulation(int(o.get("micro_batch_size", p.micro_batch_size)), world_size,
                        per_window, int(o.get("tokens_per_update", p.update_tokens(run.size))))[1]


def study_data_limits(spec) -> dict[str, tuple[float | None, int]]:
    """Per task of ``spec``: (distinct training inputs, inputs per frame) of its data."""
    from scaling.study.adapters.fits import dataset_tokens  # scipy

    out: dict[str, tuple[float | None, int]] = {}
    per_frame = 1
    if (tokens_dir(spec) / HEADER_NAME).is_file():
        per_frame = TokenShards.open(tokens_dir(spec)).layout.tokens_per_step
    for t in spec.tasks:
        out[t.task] = (dataset_tokens(spec, t.task), per_frame if TASKS[t.task].reads_tokens else 1)
    return out


def run_study_protocol(spec, runs: list[RunSpec], sweep: Callable[[list[RunSpec]], Any],
                       world_size: int = 1, progress: bool = True,
                       time_limit: TimeLimit | None = None) -> dict[str, str]:
    """Train the study's ladders under the protocol; ``protocol.json`` in the study directory.

    Args:
        spec: the study.
        runs: its runs (``scaling.study.steps.plan_runs``), at their first-round budgets.
        sweep: trains a list of runs (resuming started ones).
        world_size: processes per run (for the tokens of one optimizer step).
        progress: show the progress of collecting and encoding grown data.
        time_limit: the job's wall-clock limit (:mod:`scaling.study.time_limit`), or None.
    """
    end, note = time_limit.sweep_end(spec.study_dir, time.time()) if time_limit else (None, None)
    per_step = {r.name: planned_tokens_per_step(r, world_size) for r in runs}
    budget = spec.study_budget
    if not budget:
        if spec.study_budget_unit != "flops":
            raise ValueError("study_budget is 0; a seconds budget must be given "
                             "(study_budget = ...)")
        budget = 10.0 * sum(r.cost for r in runs)
    ppd = {int(r.overrides.get("val_points_per_decade", TrainConfig.val_points_per_decade))
           for r in runs}
    if len(ppd) != 1:
        raise ValueError(f"tasks[].overrides set different val_points_per_decade {sorted(ppd)}; "
                         "the budget protocol needs one validation grid")
    grows = spec.dataset.collect and spec.dataset.grow > 0
    cfg = ProtocolConfig(budget=budget, unit=spec.study_budget_unit, collect=grows,
                         val_points_per_decade=ppd.pop(), frontier_goal=spec.frontier_goal)
    shares = {t.task: t.budget_share for t in spec.tasks if t.budget_share is not None}
    if shares:  # tasks without a share split what the others leave
        rest = [t.task for t in spec.tasks if t.budget_share is None]
        shares.update({t: max(1.0 - sum(shares.values()), 0.0) / len(rest) for t in rest})
    limits = study_data_limits(spec)
    grow = None
    if grows:
        from scaling.study.growth import study_grower

        grow = study_grower(spec, limits, progress=progress)
    state = run_protocol(runs, cfg, spec.study_dir / PROTOCOL_FILE, sweep, per_step,
                         loss_key=spec.fit.loss_key, data=limits, shares=shares or None,
                         grow=grow, workers=spec.parallel, sweep_end=end, time_note=note)
    return {r.name: "finished" for r in runs if r.name in state["budgets"]}
