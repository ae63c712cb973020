"""The report's view of neighbouring sizes: runs' facts, pairs, equal-input gaps, the frontier.

Part of the "Budget protocol" section (:mod:`scaling.study.report_protocol`). Besides what the
protocol recorded for each pair of neighbouring sizes (crossing or not, margin, compute asked
for), it compares the two sizes at equal inputs D, read from the runs' ``metrics.jsonl`` with the
protocol's own curve reader and smoothing: at equal compute the smaller size has seen
N_large / N_small times the inputs, so a pair whose larger size is not lower at equal inputs
cannot have crossed, and says why more compute of the same kind is slow to change that.

Example:
    sizes = task_sizes(study_dir, plan, "bc-cnn", "train/loss_mean")   # size name -> Size
    rows = pair_rows(plan, sizes)
    text = equal_inputs_sentence("bc-cnn", plan, sizes)
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from scaling.study.budget_curves import Size, equal_inputs_gap
from scaling.study.budget_protocol import ProtocolConfig
from scaling.study.budget_rounds import read_curve, training_seconds
from scaling.study.report_page import fmt, read_json, skipped_reason, task_title
from worldmodels.run_metrics import metrics_path, read_metrics


def _size_seed(study_dir: Path, name: str, task: str) -> tuple[str, int | None, dict]:
    spec = read_json(Path(study_dir) / name / "run_spec.json") or {}
    size, seed = spec.get("size"), spec.get("seed")
    if size is None:
        stem, _, k = name.rpartition("-seed")
        size = stem.removeprefix(f"{task}-") if stem else name
        seed = int(k) if k.isdigit() else None
    return size, seed, spec


def run_facts(study_dir: Path, name: str, task: str) -> dict[str, Any]:
    """Size, seed, N, passes over the data and training seconds of one run of the study.

    Size and seed come from the run's ``run_spec.json`` (or its name, ``<task>-<size>-seed<k>``),
    N, passes (``epoch``) and seconds (tokens / tokens_per_s, as the protocol measures them) from
    its ``metrics.jsonl``; None where the run has not recorded them.
    """
    run_dir = Path(study_dir) / name
    size, seed, spec = _size_seed(study_dir, name, task)
    recs = read_metrics(run_dir) if metrics_path(run_dir).is_file() else []
    recs = [r for r in recs if "tokens" in r]
    last = recs[-1] if recs else {}
    return {"size": size, "seed": seed, "params": last.get("params", spec.get("params")),
            "passes": last.get("epoch"),
            "seconds": training_seconds(recs) if any("tokens_per_s" in r for r in recs) else None}


def task_sizes(study_dir: Path, plan: dict, task: str, loss_key: str) -> dict[str, Size]:
    """Each size's pooled, smoothed curve of ``loss_key``, as the protocol read it.

    The runs are ``plan``'s; ``loss_key`` is the study's ``fit.loss_key``.
    """
    by_size: dict[str, list] = {}
    for name in plan.get("decisions", {}):
        size, seed, _ = _size_seed(study_dir, name, task)
        run = SimpleNamespace(name=name, size=size, seed=seed or 0,
                              run_dir=Path(study_dir) / name)
        curve = read_curve(run, loss_key)
        if curve is not None:
            by_size.setdefault(size, []).append(curve)
    return {size: Size(runs, ProtocolConfig.late_fraction) for size, runs in by_size.items()}


def _equal_inputs(p: dict, sizes: dict[str, Size]) -> tuple[float, float] | None:
    small, large = sizes.get(p["small"]), sizes.get(p["large"])
    return equal_inputs_gap(small, large) if small and large else None


def pair_rows(plan: dict, sizes: dict[str, Size] | None = None) -> list[list[str]]:
    """Neighbouring sizes: status, crossing compute and loss, noise margin, compute asked for.

    With ``sizes``, a column gives how far the larger size is below the smaller at equal
    inputs, where their common inputs end (negative: above).
    """
    rows = [["Pair (smaller, larger)", "status", "crossing C (FLOPs)", "crossing loss",
             "noise margin", "C asked for"]]
    if sizes is not None:
        rows[0].append("larger below smaller at equal D (at D)")
    for p in plan.get("pairs", []):
        row = [f"{p['small']}, {p['large']}", p["status"], fmt(p.get("crossing_flops")),
               fmt(p.get("crossing_loss")), fmt(p.get("margin")), fmt(p.get("target_flops"))]
        if sizes is not None:
            eq = _equal_inputs(p, sizes)
            row.append("n/a" if eq is None else f"{eq[1]:+.3f} (D {fmt(eq[0])})")
        rows.append(row)
    return rows


def equal_inputs_sentence(task: str, plan: dict, sizes: dict[str, Size]) -> str | None:
    """Why open pairs have not crossed, when at equal inputs their larger size is not lower.

    None when every open pair's larger size is already lower at equal inputs by more than the
    pair's noise margin (or no pair is open).
    """
    level = []
    for p in plan.get("pairs", []):
        eq = _equal_inputs(p, sizes)
        if p["status"] != "crossing" and eq is not None and eq[1] <= (p.get("margin") or 0.0):
            level.append(f"{p['small']}/{p['large']} ({eq[1]:+.3f} at D {fmt(eq[0])}, margin "
                         f"{fmt(p.get('margin'))})")
    if not level:
        return None
    return (f"{task_title(task)}: at equal inputs D the larger size is not below the smaller "
            f"by more than the pair's noise margin in {', '.join(level)}. At equal compute the "
            "smaller size has seen N_large / N_small times the inputs, so while the sizes learn "
            "alike from the same inputs the smaller stays ahead: such a pair crosses only where "
            "the larger size is below at equal inputs by more than the smaller gains from its "
            "N_large / N_small times more inputs.")


def frontier_from_crossings(plan: dict) -> list[tuple[str, float | None, float | None]]:
    """Sizes on the efficient frontier as the crossings of neighbouring sizes show it.

    A size is on it from the compute where it crossed below its smaller neighbour (the smallest
    size: from the start) to where its larger neighbour crossed below it, when every smaller pair
    has crossed and that range is not empty. Returns ``(size, from C, to C)``, None for open ends.
    """
    pairs = plan.get("pairs", [])
    if not pairs:
        return []
    sizes = [pairs[0]["small"]] + [p["large"] for p in pairs]
    cross = [p["crossing_flops"] if p["status"] == "crossing" else None for p in pairs]
    out = []
    for k, size in enumerate(sizes):
        if any(c is None for c in cross[:k]):
            break  # a smaller pair never crossed: this size was never seen below it
        enter = cross[k - 1] if k else None
        leave = cross[k] if k < len(cross) else None
        if enter is not None and leave is not None and leave <= enter:
            continue
        out.append((size, enter, leave))
    return out


def _size_names(ns: list[float], params: dict[str, float]) -> list[str]:
    names = []
    for n in ns:
        match = [s for s, p in params.items() if abs(p - n) <= 1e-6 * max(p, n)]
        names.append(match[0] if match else f"N={fmt(n)}")
    return names


def frontier_sentence(task: str, plan: dict, fit: dict | None, params: dict[str, float]) -> str:
    """Which sizes are on the efficient frontier: from the frontier fit and from the crossings."""
    parts = []
    fr = (fit or {}).get("frontier")
    if fr and skipped_reason(fr) is None and fr.get("optimal_N"):
        parts.append("the frontier fit finds " + ", ".join(_size_names(fr["optimal_N"], params))
                     + " optimal where a smaller and a larger size bracket the optimum (so "
                     "never the smallest or the largest size)")
    elif fr and skipped_reason(fr) is not None:
        parts.append(f"the frontier fit was skipped ({skipped_reason(fr)})")
    elif fr:
        parts.append("the frontier fit does not list its optimal sizes (fit.json from an "
                     "older fit)")
    seen = frontier_from_crossings(plan)
    if seen:
        spans = [f"{s} ({'start' if a is None else 'C ' + fmt(a)} to "
                 f"{'end' if b is None else 'C ' + fmt(b)})" for s, a, b in seen]
        parts.append("the protocol's crossings of neighbouring sizes (as far as the curves "
                     "reach) put " + ", ".join(spans) + " on it")
    else:
        parts.append("the protocol saw no sizes to compare")
    return f"{task_title(task)} efficient frontier: " + "; ".join(parts) + "."
