"""How the tasks of a study share its one budget in a round of the frontier-seeking protocol.

:func:`plan_tasks` makes one :class:`scaling.study.budget_protocol.RoundPlan` per task: without
shares the tasks draw on the budget in order; with shares each keeps its part, what a task does
not need goes to the others, and a study whose shares pay for nothing pools what is left. A task
whose frontier already has ``frontier_goal`` sizes yields to the tasks with fewer.
:func:`growth_pays` says whether collecting more data would be used by the runs that asked;
:func:`growth_charge` is what growing the data took from a seconds budget.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from scaling.study.budget_costs import RunCurve, spent
from scaling.study.budget_protocol import ProtocolConfig, plan_round, refusal_cost


def growth_pays(curves: dict[str, list[RunCurve]], plans: dict[str, Any], frames: int,
                cfg: ProtocolConfig, shares: dict[str, float] | None = None) -> bool:
    """True when the plan on data grown to ``frames`` training frames extends a run that asked.

    A run's request is judged affordable against the budget as the tasks stand, and growth
    lifts the data limit of every task that reads the data: a task whose runs that limit had
    stopped then asks for more again and may keep its share (:func:`plan_tasks` says when),
    which another task's request may have been counting on. The study collects only when the
    plan on the grown data still extends one of the runs that asked.
    """
    asked = {n for p in plans.values() for n, d in p.decisions.items()
             if d.reason == "data limit" and d.frames_needed}
    grown = {t: [dataclasses.replace(c, train_items=max(c.train_items, frames * c.items_per_frame))
                 if c.train_items else c for c in cs] for t, cs in curves.items()}
    after = plan_tasks(grown, cfg, shares)
    return any(d.extend for p in after.values() for n, d in p.decisions.items() if n in asked)


def growth_charge(seconds: float, cfg: ProtocolConfig, workers: int) -> float:
    """What ``seconds`` of growing the data (wall clock) take from the study's budget.

    A seconds budget counts training seconds summed over runs; while the study collects and
    encodes, every one of its ``workers`` waits, so each wall second costs ``workers`` seconds of
    the budget. A FLOPs budget counts C = 6ND of training only: growth takes nothing from it.
    """
    return float(seconds) * max(int(workers), 1) if cfg.unit == "seconds" else 0.0


def _refused(plan) -> bool:
    return any(d.reason == "budget" for d in plan.decisions.values())


def frontier_sizes(plan) -> int:
    """Sizes the plan's crossings put on the frontier with a larger size beside them.

    A size that crossed below its smaller neighbour is the efficient one from that crossing on,
    and with a larger neighbour to bracket it the frontier fit counts it (the report's "sizes
    on the efficient frontier").
    """
    won = {p.large for p in plan.pairs if p.status == "crossing"}
    return sum(1 for p in plan.pairs if p.small in won)


def _identified(plans: dict[str, Any], cfg: ProtocolConfig) -> set[str]:
    """Tasks with ``cfg.frontier_goal`` sizes on their frontier, when some task has fewer."""
    if not cfg.frontier_goal:
        return set()
    met = {t for t, p in plans.items() if frontier_sizes(p) >= cfg.frontier_goal}
    return met if len(met) < len(plans) else set()


def plan_tasks(curves: dict[str, list[RunCurve]], cfg: ProtocolConfig,
               shares: dict[str, float] | None = None) -> dict[str, Any]:
    """One plan per task, every task drawing on the one study budget.

    Without ``shares`` the tasks draw on the whole budget in order (the first task's extensions
    are granted first in every round). With ``shares`` (task -> fraction of the budget; they sum
    to at most 1) each task first plans within its own share, so a cheap task's extensions in an
    early round cannot take the budget a costlier task needs later; then the shares of tasks that
    ask for nothing more (less what they spent) are offered, in task order, to the tasks whose
    extensions their own share could not pay for. A task that still asks for more keeps its
    whole share, whether or not it used it this round, unless even its cheapest refused extension
    costs more than the whole study has left: no share could pay for it, so what that task has
    not spent is offered to the others too. When no task's share pays for any extension, the
    study would end with budget left: the tasks then draw on what is left in order, as without
    shares. A task that was paid beyond its share in an earlier round holds what it spent, so
    the shares of the others shrink by the excess and the study never plans past its budget.

    A task whose crossings already put ``cfg.frontier_goal`` sizes on its frontier (enough for
    the frontier fit to be identified) yields while another task has fewer: its share goes to
    the others, and it extends only from what they leave, after them (its refusals say so).
    """
    total = {t: spent(cs, cfg.unit) for t, cs in curves.items()}
    met = _identified({t: plan_round(cs, dataclasses.replace(cfg, budget=1e300))
                       for t, cs in curves.items()}, cfg)
    order = [t for t in curves if t not in met] + [t for t in curves if t in met]
    if not shares:
        return _noted(_in_order(curves, cfg, total, {}, order), met, cfg)
    plans = {}
    share = {t: 0.0 if t in met else shares.get(t, 0.0) * cfg.budget for t in curves}
    # a task paid beyond its share (from a share another task released in an earlier round)
    # holds what it spent: the others' shares shrink by that, or the study would spend it twice
    own = {t: min(share[t], cfg.budget - sum(max(share[o], total[o]) for o in curves if o != t))
           for t in curves}
    for task, cs in curves.items():
        plans[task] = plan_round(cs, dataclasses.replace(cfg, budget=max(own[task], 1e-300)))

    free = cfg.budget - sum(total[t] + plans[t].planned for t in plans)
    stuck = {t for t, p in plans.items() if _refused(p) and min(
        d.cost for d in p.decisions.values() if d.reason == "budget") > free}

    def held(t):  # a task that still asks for more (and could be paid) keeps its whole share
        done = (plans[t].done and not _refused(plans[t])) or t in stuck
        return total[t] + plans[t].planned if done else max(own[t], total[t] + plans[t].planned)

    for task in order:  # yielding tasks last: what no task needs pays for what it can
        plan = plans[task]
        if not _refused(plan):
            continue
        left = cfg.budget - sum(held(t) for t in plans if t != task) - total[task] - plan.planned
        if left <= 0:
            continue
        plans[task] = plan_round(curves[task], dataclasses.replace(
            cfg, budget=total[task] + plan.planned + left))
    if all(p.done for p in plans.values()) and any(_refused(p) for p in plans.values()):
        # no share pays for anything: the study would end with budget left, so pool it
        plans = _in_order(curves, cfg, total, {t: p for t, p in plans.items() if not _refused(p)},
                          order)
    return _noted(plans, met, cfg)


def _in_order(curves, cfg: ProtocolConfig, total: dict, plans: dict,
              order: list[str]) -> dict[str, Any]:
    """Plan the tasks not in ``plans`` in ``order``, each drawing on what the budget has left."""
    planned = sum(p.planned for p in plans.values())
    for task in order:
        if task not in plans:
            others = sum(v for t, v in total.items() if t != task)
            sub = dataclasses.replace(cfg, budget=max(cfg.budget - others - planned, 1e-300))
            plans[task] = plan_round(curves[task], sub)
            planned += plans[task].planned
    return {t: plans[t] for t in curves}


YIELDS = "the task yields"
"""How a refusal of a task that yielded its share (:func:`plan_tasks`) says so."""


def _noted(plans: dict[str, Any], met: set[str], cfg: ProtocolConfig) -> dict[str, Any]:
    """Say in each yielding task's refusals that its share went to the others (see plan_tasks)."""
    for task in met:
        why = (f"{YIELDS}: {frontier_sizes(plans[task])} sizes on its frontier (goal "
               f"{cfg.frontier_goal}), so its share went to the tasks with fewer, which left "
               "too little")
        for d in plans[task].decisions.values():
            if d.reason == "budget":
                d.detail = refusal_cost(d.detail) + f", but {why}"
    return plans
