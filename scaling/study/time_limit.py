"""A wall-clock limit for a whole study: the budget protocol ends its sweep in time.

A study's fixed stages (collecting, training the tokenizer, encoding, evaluating checkpoints) take
what the machine's speed makes them take, while the frontier protocol spends a budget the user
sets. On a slow day the sum passes a time target the budget was chosen for. A :class:`TimeLimit`
(``embscale study --time-limit 29m``, counted from ``--started-at``, the time a wrapper such as
``scripts/main.sh`` started, setup included) caps the protocol's budget after every round:

* the sweep must end by the limit less a *reserve* for the stages after it (fits, loss vs return,
  loss vs quality, report), estimated from this machine's measured data work
  (:func:`later_stages_reserve`);
* the budget the protocol may plan with is what it has spent plus the wall seconds left before
  that end, less :data:`OVERHEAD_ROUNDS` rounds of :data:`ROUND_OVERHEAD_S`, times the workers
  training at once (converted to FLOPs at the study's measured FLOPs per second for a FLOPs
  budget) (:func:`capped_budget`).

The cap only lowers the study's budget, never raises it, so on a machine fast enough for the
budget nothing changes. Extensions it cannot pay for are refused as any budget refusal is
(decision ``budget``), and the report says the time limit lowered the budget. The limit makes
the study's extent depend on the clock, as a seconds budget already does: a study resumed after
an interruption continues the same curves (the round in progress keeps its budgets), but later
rounds are planned with the time the new invocation has left.

Example:
    limit = TimeLimit(seconds=parse_duration("29m"), started_at=time.time())
    end, note = limit.sweep_end(spec.study_dir, now=time.time())
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

RESERVE_RATIO = 0.5
"""Wall seconds kept for the stages after the sweep per second of the study's measured data work.

On the embedded default the later stages took 0.41-0.53 of the seconds its collection, tokenizer
training and encoding took in four fresh-clone studies whose WM-Token trained at 9.8e9-2.2e10 FLOPs
per second (one study each, so no interval)."""

MIN_RESERVE_S = 60.0
"""The least reserve, whatever was measured (a study with a given dataset and tokenizer)."""

ROUND_OVERHEAD_S = 30.0
"""Wall seconds a protocol round adds beyond its training seconds per worker (workers starting,
curves read, a core idle while the round's last run finishes)."""

OVERHEAD_ROUNDS = 2
"""Rounds whose overhead is kept out of the time the cap hands to training."""

_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds in ``text``: a number of seconds or a number with ``s``, ``m``/``min`` or ``h``.

    >>> parse_duration("29m"), parse_duration("1740"), parse_duration("1.5h")
    (1740.0, 1740.0, 5400.0)
    """
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([a-z]*)\s*", str(text))
    if not m or m.group(2) not in _UNITS:
        raise ValueError(f"time limit {text!r} is not a duration; give seconds (1740) or a number "
                         "with s, m or h (29m, 1.5h)")
    seconds = float(m.group(1)) * _UNITS[m.group(2)]
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"time limit {text!r} must be a positive duration")
    return seconds


@dataclass(frozen=True)
class TimeLimit:
    """The whole job's wall-clock limit, counted from when the job started."""

    seconds: float  # the limit
    started_at: float  # epoch seconds when the job started (``time.time()``)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.seconds) and self.seconds > 0):
            raise ValueError(f"time limit {self.seconds!r} s must be a positive number")
        if not math.isfinite(self.started_at) or self.started_at <= 0:
            raise ValueError(f"started_at={self.started_at!r} must be epoch seconds "
                             "(date +%s)")

    @property
    def deadline(self) -> float:
        """Epoch seconds by which the job should have ended."""
        return self.started_at + self.seconds

    def sweep_end(self, study_dir: str | Path, now: float) -> tuple[float, dict[str, float]]:
        """Epoch seconds the sweep should end by, and a note of the plan for the report.

        The note gives the limit, the reserve kept for the later stages and the seconds the
        sweep had when it started (``protocol.json``'s ``time_limit``).
        """
        reserve = later_stages_reserve(study_dir, now - self.started_at)
        end = self.deadline - reserve
        if end - now < OVERHEAD_ROUNDS * ROUND_OVERHEAD_S:
            logger.warning(
                "the time limit of %.0f s leaves the sweep %.0f s (it starts %.0f s into the job "
                "and the later stages need about %.0f s): the protocol trains its first round "
                "only and the job will end after its limit; give a longer --time-limit",
                self.seconds, end - now, now - self.started_at, reserve)
        return end, {"limit_s": self.seconds, "reserve_s": round(reserve, 1),
                     "sweep_s": round(end - now, 1)}


def data_work_seconds(study_dir: str | Path) -> float:
    """Seconds this study measured for its data work: collect, encode and tokenizer training.

    ``data_seconds.json`` and ``tokenizer/summary.json`` in the study directory record them when
    the study collected, encoded or trained them itself; 0 when it did none of these.
    """
    from scaling.study.paths import read_data_seconds  # imports the datasets module

    record = read_data_seconds(study_dir)
    total = sum(float(record.get(k, {}).get("seconds", 0.0)) for k in ("collect", "encode"))
    summary = Path(study_dir) / "tokenizer" / "summary.json"  # a tokenizer the study trained
    if summary.is_file():
        total += float(json.loads(summary.read_text()).get("seconds", 0.0))
    return total


def later_stages_reserve(study_dir: str | Path, elapsed: float) -> float:
    """Wall seconds to keep for the stages after the sweep.

    :data:`RESERVE_RATIO` times the study's measured data work (:func:`data_work_seconds`), or,
    when it measured none, times the job's ``elapsed`` seconds before the sweep; at least
    :data:`MIN_RESERVE_S`.
    """
    work = data_work_seconds(study_dir) or max(elapsed, 0.0)
    return max(MIN_RESERVE_S, RESERVE_RATIO * work)


def capped_budget(budget: float, unit: str, spent: float, seconds: float, sweep_end: float,
                  now: float, workers: int) -> float:
    """The study budget the clock still allows (never above ``budget``).

    Args:
        budget: the study's budget (``unit``).
        unit: ``seconds`` (training seconds) or ``flops``.
        spent: what the runs have spent so far (``unit``).
        seconds: their training seconds so far (converts wall time into FLOPs).
        sweep_end: epoch seconds the sweep should end by.
        now: the current epoch seconds.
        workers: runs trained at a time.

    >>> capped_budget(1000.0, "seconds", 200.0, 200.0, sweep_end=400.0, now=100.0, workers=2)
    680.0
    """
    left = max(sweep_end - now - OVERHEAD_ROUNDS * ROUND_OVERHEAD_S, 0.0) * max(workers, 1)
    if unit == "seconds":
        return min(budget, spent + left)
    if seconds <= 0:  # no throughput measured yet: nothing to convert the time with
        return budget
    return min(budget, spent + left * spent / seconds)
