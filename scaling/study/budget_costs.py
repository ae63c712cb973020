"""What the budget protocol's runs cost: each run's curve and budgets on the trainer's log grid.

A run's cost is counted in FLOPs (C = 6ND) or in wall-clock seconds of training, estimated from
its measured throughput; budgets are rounded to a validation step of the trainer's log grid, so
an extended run logs exactly the points of a run given the larger budget from the start.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from worldmodels.train_utils import is_val_step, next_val_step


@dataclass
class RunCurve:
    """One run's loss-vs-FLOPs curve so far and the facts the protocol needs about it."""

    name: str  # run name (run directory name)
    size: str  # size name; runs of one size with different seeds are pooled
    params: int  # N
    flops: list[float]  # C = 6ND of each logged point
    loss: list[float]  # the loss at each point (train/loss_mean: averaged between points)
    tokens: float  # D trained so far
    inputs_per_update: int  # D per optimizer step (budgets are rounded to whole log-grid steps)
    seed: int = 0  # training seed
    train_items: float | None = None  # distinct training inputs (D units); None: unlimited
    items_per_frame: int = 1  # inputs per frame (d_z + d_a for token models, 1 for BC-CNN)
    seconds: float | None = None  # training seconds so far (needed for a seconds budget)

    def __post_init__(self) -> None:
        if len(self.flops) != len(self.loss):
            raise ValueError(f"run {self.name}: {len(self.flops)} flops but {len(self.loss)} "
                             "losses; give one loss per logged point")
        if self.params <= 0 or self.inputs_per_update <= 0:
            raise ValueError(f"run {self.name}: params={self.params} and inputs_per_update="
                             f"{self.inputs_per_update} must be positive")



def next_grid_tokens(tokens: float, inputs_per_update: int, val_points_per_decade: int) -> float:
    """The smallest budget >= ``tokens`` that ends on a validation step of the trainer's grid."""
    step = next_val_step(math.ceil(tokens / inputs_per_update - 1e-9), val_points_per_decade)
    return float(step * inputs_per_update)


def grid_floor_tokens(limit: float, inputs_per_update: int, val_points_per_decade: int,
                      floor: float = 0.0) -> float:
    """The largest budget <= ``limit`` on a validation step (``floor`` if none is above it)."""
    capped = math.floor(limit / inputs_per_update) * inputs_per_update
    while capped > floor and not is_val_step(int(capped // inputs_per_update),
                                             val_points_per_decade):
        capped -= inputs_per_update
    return float(max(capped, floor))


def run_cost(run: RunCurve, tokens: float, unit: str) -> float:
    """Cost of training ``run`` from its current tokens to ``tokens``, in ``unit``."""
    extra = max(0.0, tokens - run.tokens)
    if unit == "flops":
        return 6.0 * run.params * extra
    if not run.seconds or not run.tokens:
        raise ValueError(f"run {run.name} has no measured seconds; a seconds budget needs each "
                         "run's training time (RunCurve.seconds)")
    return extra * run.seconds / run.tokens


def spent(runs: list[RunCurve], unit: str) -> float:
    """Budget used so far by ``runs``."""
    if unit == "flops":
        return float(sum(6.0 * r.params * r.tokens for r in runs))
    return float(sum(r.seconds or 0.0 for r in runs))
