"""Frontier-seeking budgets: train every size of a ladder past its compute-optimal point.

The paper trains "models until they have passed their compute-efficient FLOPs budget". With a
constant learning rate a finished run is extended at no waste by resuming it with a larger budget,
so a study proceeds in rounds: train every run, look at the loss-vs-FLOPs curves, extend some
runs, repeat. :func:`plan_round` makes one round's decisions from the curves so far:

- For every pair of neighbouring sizes (sorted by N) it compares the smoothed curves where both
  have compute. The pair is *crossed* when the larger model's curve goes below the smaller's and,
  where their common compute ends, is lower by more than ``noise_sigmas`` (default 2) times the
  pair's noise (a gap that opens early and closes again is not a crossing), once the larger
  model has trained ``min_crossing_steps`` optimizer steps there (a gap seen in its first updates
  is an early transient, not yet a crossing).
- A pair not yet crossed asks for more compute: while the smaller model's curve ends before the
  larger's, the smaller is extended to the larger's final compute; once it covers it, both are
  extended to a target compute: the crossing extrapolated from the trend of the gap between the
  curves, kept within ``growth`` and ``max_growth`` times the pair's largest compute (the larger
  model is extended only where it has not reached that target). A size whose curve is too short
  to compare (fewer than two points) is extended to its neighbour's compute.
- A pair stops when it has crossed, when the smaller model has *plateaued* (a line fitted to its
  points over the last two doublings of its compute falls by less than ``noise_sigmas`` standard
  errors per doubling, after at least ``min_plateau_steps`` optimizer steps; the larger is then
  extended only until its curve covers the smaller's), when the study's budget is spent, or when
  a run would pass ``max_passes`` (4) over its training data.

Noise: a curve's noise is the scatter of its points around a smooth version of itself (each point
against the mean of its two neighbours on each side in compute order, over the part of the curve
after its first ``1 - late_fraction`` of log-compute; a difference of a point and the mean of four
independent neighbours has variance 1.25 sigma^2), measured robustly (the median absolute
deviation), so that a steep stretch the curve still holds is not taken for noise. When a size has
several seeds, the spread of the seeds' final smoothed losses is used when it is larger. The
curves are compared as 5-point moving means, so a pair's margin is
``noise_sigmas * sqrt((sigma_small^2 + sigma_large^2) / 5)`` (the noise of the gap between two
such means).

Budgets: the study's budget is one number, in FLOPs (C = 6ND summed over every run) or in
wall-clock seconds of training (extension costs estimated from each run's measured throughput).
Extensions are granted while they fit, the size that has reached the least compute first: a pair
compares its curves only as far as both reach, so when the budget cannot pay for both of its
extensions, the one that lets the pair compare further (the run that lags behind) is paid, not
the one that would run ahead alone. An extension that does not fit is reported (reason
``budget``, with its cost), never silently dropped. Every budget is rounded up to a validation
step of the trainer's log grid, so an extended run logs exactly the points (losses, validations
and checkpoints) of a run given the larger budget from the start.

Example:
    plan = plan_round(curves, ProtocolConfig(budget=2e13))
    for name, d in plan.decisions.items():
        print(name, d.tokens, d.reason, d.detail)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from scaling.study.budget_costs import (
    RunCurve,
    grid_floor_tokens,
    next_grid_tokens,
    run_cost,
    spent,
)
from scaling.study.budget_curves import SMOOTH_POINTS, Size
from worldmodels.train_config import INFINITE_DATA_PASSES, TrainConfig

REASONS = ("extended", "crossing", "plateau", "budget", "data limit", "waiting")
"""Why a run got its next budget: ``extended`` (it needs more compute), ``crossing`` (every pair
it belongs to has crossed), ``plateau`` (its pair stopped on a plateau), ``budget`` (the study's
budget cannot pay for the extension it needs), ``data limit`` (the extension would pass the
data-pass limit) and ``waiting`` (not asked to move this round; a neighbour is catching up)."""


@dataclass
class ProtocolConfig:
    """The study's budget and the protocol's rules."""

    budget: float  # the whole study's budget, in ``unit``
    unit: str = "flops"  # flops (sum of 6ND over every run) | seconds (training wall time)
    growth: float = 2.0  # smallest extension: the pair's largest compute times this
    max_growth: float = 4.0  # largest extension in one round
    noise_sigmas: float = 2.0  # a crossing counts when the gap beyond it exceeds this many sigma
    max_passes: float = INFINITE_DATA_PASSES  # passes over the training data a run may make
    collect: bool = False  # the study grows its data (ask for more instead of stopping)
    # the trainer's validation grid, where budgets are placed
    val_points_per_decade: int = TrainConfig.val_points_per_decade
    late_fraction: float = 0.5  # part of a curve (in log compute, from its end) the noise uses
    min_plateau_steps: int = 1000  # optimizer steps before a flat curve may count as a plateau
    min_crossing_steps: int = 100  # larger model's steps where the overlap ends, for a crossing
    # sizes on a task's frontier after which it yields its budget share to tasks with fewer
    # (scaling.study.budget_tasks.plan_tasks; 0: never)
    frontier_goal: int = 3

    def __post_init__(self) -> None:
        if self.unit not in ("flops", "seconds"):
            raise ValueError(f"budget unit {self.unit!r}; choose flops or seconds")
        if not (math.isfinite(self.budget) and self.budget > 0):
            raise ValueError(f"study budget {self.budget!r} must be a positive number of "
                             f"{self.unit}")
        if not 1.0 < self.growth <= self.max_growth:
            raise ValueError(f"growth={self.growth} and max_growth={self.max_growth} must "
                             "satisfy 1 < growth <= max_growth")
        if self.frontier_goal < 0:
            raise ValueError(f"frontier_goal={self.frontier_goal} must be >= 0 (0: never yield)")
        if self.noise_sigmas < 0 or self.max_passes <= 0:
            raise ValueError(f"noise_sigmas={self.noise_sigmas} must be >= 0 and max_passes="
                             f"{self.max_passes} > 0")


@dataclass
class RunDecision:
    """The protocol's decision for one run."""

    name: str
    tokens: float  # the run's budget for the next round (its tokens so far when it stops)
    extend: bool  # True when the run trains further next round
    reason: str  # one of REASONS
    detail: str  # a sentence for the report
    frames_needed: int | None = None  # training frames the run would need (data limit)
    cost: float | None = None  # what the refused extension would cost (reason ``budget``)


@dataclass
class PairResult:
    """What the protocol saw for two neighbouring sizes."""

    small: str  # size name of the smaller model
    large: str  # size name of the larger model
    status: str  # crossing | plateau | open (not crossed yet) | no overlap
    margin: float  # noise margin of the pair (loss units)
    crossing_flops: float | None = None  # compute where the larger model's curve crosses below
    crossing_loss: float | None = None  # loss there
    target_flops: float | None = None  # compute asked for this round (open pairs)


@dataclass
class RoundPlan:
    """One round's decisions: per run, per pair, and the study's account."""

    decisions: dict[str, RunDecision]
    pairs: list[PairResult]
    spent: float  # budget used so far (``unit``)
    planned: float  # cost of this round's granted extensions
    budget: float
    unit: str
    data_request: int | None = None  # training frames to collect (collecting studies)
    notes: list[str] = field(default_factory=list)

    @property
    def done(self) -> bool:
        """True when no run is extended: the protocol has finished."""
        return not any(d.extend for d in self.decisions.values())

    def to_dict(self) -> dict:
        """JSON-able form (``protocol.json``)."""
        return {"decisions": {k: asdict(v) for k, v in self.decisions.items()},
                "pairs": [asdict(p) for p in self.pairs], "spent": self.spent,
                "planned": self.planned, "budget": self.budget, "unit": self.unit,
                "data_request": self.data_request, "notes": list(self.notes), "done": self.done}


# ----- one pair -----

def compare_pair(small: Size, large: Size, cfg: ProtocolConfig) -> PairResult:
    """Crossing, plateau or the compute to ask for, for two neighbouring sizes."""
    # the gap of two 5-point means: its noise is sqrt((s1^2 + s2^2) / 5)
    margin = cfg.noise_sigmas * math.sqrt((small.sigma ** 2 + large.sigma ** 2) / SMOOTH_POINTS)
    result = PairResult(small.name, large.name, "open", margin)
    lo, hi = max(small.lo, large.lo), min(small.hi, large.hi)
    if hi > lo:
        grid = np.linspace(lo, hi, 64)
        gap = small.at(grid) - large.at(grid)  # > 0 where the larger model is lower
        # crossed: the larger model is lower by more than the margin where the overlap ends (a
        # gap that opened early and closed again was noise or an early transient, not a crossing)
        # the larger model's optimizer steps where the overlap ends (its steps scale with C)
        young = large.steps * math.exp(hi - large.hi) < cfg.min_crossing_steps
        if gap[-1] > max(margin, 1e-12) and not young:
            j = gap.size - 1
            below = np.flatnonzero(gap[: j + 1] <= 0)
            if below.size:
                i = below[-1]
                t = gap[i] / (gap[i] - gap[i + 1]) if gap[i] != gap[i + 1] else 0.0
                x = grid[i] + t * (grid[i + 1] - grid[i])
            else:  # crossed before both curves have compute: at or below the overlap's start
                x = grid[0]
            result.status = "crossing"
            result.crossing_flops = float(math.exp(x))
            result.crossing_loss = float(large.at(np.array([x]))[0])
            return result
        tail = grid >= grid[-1] - (grid[-1] - grid[0]) / 3.0
        slope = (float(np.polyfit(grid[tail], gap[tail], 1)[0])
                 if tail.sum() >= 2 and grid[-1] > grid[0] else 0.0)
    else:
        result.status, gap, slope = "no overlap", np.array([-math.inf]), 0.0
    if small.plateaued(cfg.noise_sigmas, cfg.min_plateau_steps):
        result.status = "plateau"
        if large.hi < small.hi - 1e-9:  # the larger model's curve must cover the smaller's
            result.target_flops = float(math.exp(small.hi))
        return result
    if small.hi < large.hi - 1e-9:  # the smaller model catches up with the larger's compute
        result.target_flops = float(math.exp(large.hi))
        return result
    top = max(small.hi, large.hi)
    want = top + math.log(cfg.growth)
    if slope > 0 and math.isfinite(gap[-1]):  # extrapolate the gap to the margin
        want = top + (margin - gap[-1]) / slope
    want = min(max(want, top + math.log(cfg.growth)), top + math.log(cfg.max_growth))
    result.target_flops = float(math.exp(want))
    return result


# ----- budgets -----

def check_study_budget(first_round: float, cfg: ProtocolConfig) -> None:
    """Refuse a budget too small for the first round (every run at its initial budget)."""
    if cfg.budget < first_round:
        raise ValueError(
            f"the study budget {cfg.budget:.3g} {cfg.unit} is below the cost of one round, "
            f"{first_round:.3g} {cfg.unit} (every run of the ladder at its initial budget); set "
            f"the budget to at least {first_round:.3g} {cfg.unit}, or lower the initial budgets "
            "or drop sizes")


def _data_limit(run: RunCurve, cfg: ProtocolConfig) -> float:
    return math.inf if not run.train_items else cfg.max_passes * float(run.train_items)


def plan_round(curves: list[RunCurve], cfg: ProtocolConfig) -> RoundPlan:
    """Decide every run's next budget from the curves so far (see the module docstring)."""
    if not curves:
        raise ValueError("plan_round needs at least one run curve")
    by_size: dict[str, list[RunCurve]] = {}
    for r in curves:
        by_size.setdefault(r.size, []).append(r)
    sizes = sorted((Size(rs, cfg.late_fraction) for rs in by_size.values()),
                   key=lambda s: s.params)
    pairs: list[PairResult] = []
    want: dict[str, tuple[float, str]] = {}  # size -> (target compute, why)
    stop: dict[str, str] = {}  # size -> reason when no pair asks for more
    for small, large in zip(sizes, sizes[1:], strict=False):
        if not (small.valid and large.valid):
            p = PairResult(small.name, large.name, "no overlap", 0.0)
            pairs.append(p)
            _ask_for_points(small, large, p, want, cfg)
            continue
        p = compare_pair(small, large, cfg)
        pairs.append(p)
        if p.status in ("crossing", "plateau"):
            for s in (small, large):
                stop.setdefault(s.name, p.status)
            if p.status == "plateau":
                stop[small.name] = "plateau"
            if p.status == "crossing" or p.target_flops is None:
                continue
        why = (f"{small.name} plateaued; {large.name} covers its compute"
               if p.status == "plateau" else f"{small.name}/{large.name} not crossed yet")
        for s in ((large,) if p.status == "plateau" else (small, large)):
            _ask(want, s.name, s.hi, p.target_flops, why)
    return _grant(curves, sizes, pairs, want, stop, cfg)


def _ask(want: dict, size: str, reached_log: float, target: float, why: str) -> None:
    """Ask for ``target`` FLOPs for ``size`` unless it has them or a pair already asks more.

    ``reached_log`` is the log compute the size has reached.
    """
    if reached_log < math.log(target) - 1e-9 and want.get(size, (0.0, ""))[0] < target:
        want[size] = (target, why)


def _reached(size: Size) -> float:
    """The compute every run of a size has reached (its seeds' smallest final C = 6ND)."""
    return min(6.0 * r.params * r.tokens for r in size.runs)


def _ask_for_points(small: Size, large: Size, p: PairResult, want: dict, cfg) -> None:
    """A pair with a curve too short to compare: extend that size to its neighbour's compute.

    A size whose runs logged fewer than two points (a large model's first budget of a few
    updates) is never compared, so no pair would ever ask for it; without this its neighbours
    would wait on it for good. Where both curves are too short, both grow by ``cfg.growth``.
    """
    short = [s for s in (small, large) if not s.valid]
    if len(short) == 2:
        target = max(_reached(small), _reached(large)) * cfg.growth
    else:
        other = large if short[0] is small else small
        target = max(math.exp(other.hi), _reached(other))
    p.target_flops = target
    for s in short:
        _ask(want, s.name, math.log(_reached(s)), target,
             f"{s.name} has too few points to compare with {(large if s is small else small).name}")


def _grant(curves, sizes, pairs, want, stop, cfg) -> RoundPlan:
    total = spent(curves, cfg.unit)
    plan = RoundPlan({}, pairs, total, 0.0, cfg.budget, cfg.unit)
    frames: list[int] = []
    # the size that lags in compute first (see the module docstring), smaller first on a tie
    for s in sorted(sizes, key=lambda s: (_reached(s), s.params)):
        for run in sorted(s.runs, key=lambda r: r.seed):
            if s.name not in want:
                reason = stop.get(s.name, "waiting")
                plan.decisions[run.name] = RunDecision(run.name, run.tokens, False, reason,
                                                       _stop_detail(reason, s.name, pairs,
                                                                    cfg.noise_sigmas))
                continue
            target_c, why = want[s.name]
            tokens = next_grid_tokens(target_c / (6.0 * run.params), run.inputs_per_update,
                                      cfg.val_points_per_decade)
            plan.decisions[run.name] = _decide(run, tokens, why, cfg, plan, frames)
    order = [run.name for s in sizes for run in sorted(s.runs, key=lambda r: r.seed)]
    plan.decisions = {name: plan.decisions[name] for name in order}  # reported by size
    if frames:
        plan.data_request = max(frames)
    return plan


COLLECTS = "the study collects them"
"""How a data-limited run's decision ends when it asks a collecting study for frames."""


_BUT_ONLY = ", but only "  # a budget refusal's detail: what it would cost, then what is left


def refusal_cost(detail: str) -> str:
    """A budget refusal's detail up to what it would cost, without what the budget had left."""
    return detail.split(_BUT_ONLY)[0]


def _decide(run, tokens, why, cfg, plan, frames) -> RunDecision:
    limit = _data_limit(run, cfg)
    frames_needed = None
    if tokens > limit:
        frames_needed = math.ceil(tokens / cfg.max_passes / run.items_per_frame)
        capped = grid_floor_tokens(limit, run.inputs_per_update, cfg.val_points_per_decade,
                                   run.tokens)
        # A collecting study asks for data only for a run the limit stops outright and only
        # for an extension the budget can pay for: a run that can still grow to the limit
        # does so first, and its pair may cross on the way.
        affordable = run_cost(run, tokens, cfg.unit) <= cfg.budget - plan.spent - plan.planned
        if not cfg.collect or (capped <= run.tokens and affordable):
            frames.append(frames_needed)
        if not cfg.collect:
            what = "not identified: data limit (the dataset is fixed)"
        elif capped > run.tokens:
            what = "extended to the limit first"
        elif affordable:
            what = COLLECTS
        else:
            what = "none collected, since the budget cannot pay for the extension"
        msg = (f"{why}: {tokens:.3g} inputs would pass {cfg.max_passes:g} passes over the "
               f"{run.train_items:.3g} training inputs; {frames_needed:,} training frames "
               f"needed: {what}")
        if capped <= run.tokens:
            return RunDecision(run.name, run.tokens, False, "data limit", msg, frames_needed)
        plan.notes.append(f"{run.name}: extended only to the data limit ({capped:.3g}); {msg}")
        tokens = float(capped)
    cost = run_cost(run, tokens, cfg.unit)
    left = cfg.budget - plan.spent - plan.planned
    if cost > left:
        return RunDecision(run.name, run.tokens, False, "budget",
                           f"{why}: extending to {tokens:.3g} inputs would cost {cost:.3g} "
                           f"{cfg.unit}{_BUT_ONLY}{max(left, 0.0):.3g} of the study's "
                           f"{cfg.budget:.3g} are left", frames_needed, cost)
    plan.planned += cost
    return RunDecision(run.name, tokens, True, "extended",
                       f"{why}: extended from {run.tokens:.3g} to {tokens:.3g} inputs "
                       f"(+{cost:.3g} {cfg.unit})", frames_needed)


def _stop_detail(reason: str, size: str, pairs: list[PairResult], noise_sigmas: float) -> str:
    mine = [p for p in pairs if size in (p.small, p.large)]
    parts = []
    for p in mine:
        if p.status == "crossing":
            parts.append(f"{p.large} crosses below {p.small} at C={p.crossing_flops:.3g} "
                         f"(margin {p.margin:.3g})")
        elif p.status == "plateau":
            parts.append(f"{p.small} plateaued (over its last two doublings of compute its "
                         f"loss fell by less than {noise_sigmas:g} standard errors per "
                         f"doubling) with {p.large} not below it")
        else:
            parts.append(f"{p.small}/{p.large}: {p.status}")
    return f"{reason}: " + ("; ".join(parts) if parts else "no neighbouring size")


def crossings(plan: RoundPlan) -> list[PairResult]:
    """The pairs whose crossing was seen beyond the noise margin."""
    return [p for p in plan.pairs if p.status == "crossing"]
