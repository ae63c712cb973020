"""The report's "Budget protocol" section: what the frontier-seeking protocol did.

Read from ``<study>/protocol.json`` (written by :func:`scaling.study.budget_rounds.run_protocol`)
and each run's ``metrics.jsonl``: the study's budget and what was spent, per task every run's
final budget, passes over its data, training seconds and the protocol's last decision about it,
the pairs of neighbouring sizes (crossing or not, and compared at equal inputs) and the sizes on
the efficient frontier (both from :mod:`scaling.study.report_pairs`), C = 6ND beside measured
seconds, and the protocol's notes. ``protocol.json`` is copied into the report directory, so the
report carries the protocol's log.

Example:
    r = Report(study_dir / "report", "Scaling study")
    protocol_section(r, study_dir)  # adds nothing when the study has no protocol.json
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from offline_data.atomic import write_text_atomic
from scaling.study.budget_rounds import PROTOCOL_FILE, study_spent
from scaling.study.budget_tasks import YIELDS
from scaling.study.report_page import Report, fmt, read_json, task_title
from scaling.study.report_pairs import (
    equal_inputs_sentence,
    frontier_sentence,
    pair_rows,
    run_facts,
    task_sizes,
)
from worldmodels.run_metrics import MEAN_LOSS_KEY


def _extensions(state: dict, task: str, name: str) -> int:
    return sum(bool(((rnd.get(task) or {}).get("decisions") or {}).get(name, {}).get("extend"))
               for rnd in state.get("rounds", []))


def run_rows(state: dict, study_dir: Path, task: str) -> tuple[list[list[str]], dict[str, Any]]:
    """The task's table of runs, and its totals (``flops``, ``seconds``, ``params`` per size).

    One row per run (smallest N first): size, seed, N, its final budget D and C = 6ND, passes over
    its training data, training seconds, rounds that extended it and the protocol's last decision
    (reason and the sentence that explains it).
    """
    plan = state["final"][task]
    budgets = state.get("budgets", {})
    rows = [["Run", "size", "seed", "N", "D (inputs)", "C = 6ND (FLOPs)", "passes",
             "training s", "extensions", "decision", "why"]]
    facts = {name: run_facts(study_dir, name, task) for name in plan["decisions"]}
    totals: dict[str, Any] = {"flops": 0.0, "seconds": 0.0, "params": {}, "runs": 0,
                              "missing_seconds": 0}
    order = sorted(plan["decisions"], key=lambda n: (facts[n]["params"] or 0,
                                                    facts[n]["seed"] or 0, n))
    for name in order:
        d, f = plan["decisions"][name], facts[name]
        tokens = budgets.get(name, d["tokens"])
        flops = 6.0 * f["params"] * tokens if f["params"] else None
        totals["runs"] += 1
        totals["flops"] += flops or 0.0
        if f["seconds"] is None:
            totals["missing_seconds"] += 1
        else:
            totals["seconds"] += f["seconds"]
        if f["params"]:
            totals["params"][f["size"]] = float(f["params"])
        rows.append([name, str(f["size"]), fmt(f["seed"]), fmt(f["params"]), fmt(tokens),
                     fmt(flops), fmt(f["passes"]), fmt(f["seconds"]),
                     str(_extensions(state, task, name)), d["reason"], d["detail"]])
    return rows, totals


def compute_rows(totals: dict[str, dict]) -> tuple[list[list[str]], str]:
    """C = 6ND beside measured training seconds per task, and a sentence on their ratio."""
    all_c = sum(t["flops"] for t in totals.values())
    all_s = sum(t["seconds"] for t in totals.values())
    rows = [["Task", "runs", "C = 6ND (FLOPs)", "training s", "C per second", "share of C",
             "share of seconds"]]
    rate = {}
    for task, t in totals.items():
        known = t["missing_seconds"] == 0 and t["seconds"] > 0
        if known:
            rate[task] = t["flops"] / t["seconds"]
        rows.append([task_title(task), str(t["runs"]), fmt(t["flops"]),
                     fmt(t["seconds"]) if known else "n/a", fmt(rate.get(task)),
                     f"{t['flops'] / all_c:.0%}" if all_c else "n/a",
                     f"{t['seconds'] / all_s:.0%}" if known and all_s else "n/a"])
    text = ("C = 6ND counts six FLOPs per parameter and input; it leaves out what a parameter "
            "costs beyond that, such as a convolution's weights applied at every position of a "
            "frame (BC-CNN), so equal C is not equal cost.")
    if len(rate) >= 2:
        hi, lo = max(rate, key=rate.get), min(rate, key=rate.get)
        hi_t, lo_t = task_title(hi), task_title(lo)
        text += (f" Per second of training, {hi_t} reaches {fmt(rate[hi])} FLOPs of C and "
                 f"{lo_t} {fmt(rate[lo])} (a ratio of {rate[hi] / rate[lo]:.3g}): the same "
                 f"C costs {lo_t} that many times the seconds, so compare the tasks' "
                 "budgets in seconds as well.")
    elif len(rate) == 1:
        (task, v), = rate.items()
        text += f" {task_title(task)} reaches {fmt(v)} FLOPs of C per second of training."
    missing = [task_title(k) for k, t in totals.items() if t["missing_seconds"]]
    if missing:
        text += (f" Training seconds are unknown for some runs of {', '.join(missing)} (no "
                 "tokens_per_s in their metrics).")
    return rows, text


_LEFT = re.compile(r", but only \S+ of the study's \S+ are left")
"""The part of a budget refusal that changes from round to round (what the budget has left)."""


def protocol_notes(state: dict) -> list[str]:
    """The protocol's notes, budget refusals and data limits of every round, once each.

    A note is given with the round it first appeared in. A refusal that comes back in later
    rounds, differing only in what the budget had left, is listed once with those rounds named
    (``round 3 (again in rounds 6, 7)``), so the list reads as what happened, not as a log.
    """
    order: list[tuple[str, str]] = []  # (key, first text) in order of first appearance
    rounds: dict[str, list[int]] = {}
    for text in state.get("notes", []):
        if text in rounds:
            continue
        order.append((text, f"before round 1: {text}"))
        rounds[text] = [0]
    for k, rnd in enumerate(state.get("rounds", []), 1):
        for task, plan in rnd.items():
            lines = list(plan.get("notes", []))
            lines += [f"{name}: {d['reason']}: {d['detail']}"
                      for name, d in plan.get("decisions", {}).items()
                      if d["reason"] in ("budget", "data limit")]
            if plan.get("data_request"):
                lines.append(f"the runs need {plan['data_request']:,} training frames to stay "
                             "within the data-pass limit")
            for line in lines:
                text = f"{task_title(task)}: {line}"
                key = _LEFT.sub("", text)
                if key not in rounds:
                    order.append((key, f"round {k}, {text}"))
                    rounds[key] = [k]
                elif rounds[key][-1] != k:
                    rounds[key].append(k)
    out = []
    for key, text in order:
        again = rounds[key][1:]
        if again:
            head, rest = text.split(", ", 1)
            word = "round" if len(again) == 1 else "rounds"
            text = f"{head} (again in {word} {', '.join(map(str, again))}), {rest}"
        out.append(text)
    return out


def data_limit_note(study_dir: Path, task: str, unit: str = "training frames") -> str | None:
    """"not identified: data limit" with the frames needed, when a run of ``task`` hit the limit.

    The protocol stops a run at 4 passes over its data; a fit of the curves it left uncrossed
    says so rather than blaming the budget or the model.
    """
    state = read_json(Path(study_dir) / PROTOCOL_FILE) or {}
    final = (state.get("final") or {}).get(task) or {}
    limited = {n: d for n, d in final.get("decisions", {}).items() if d["reason"] == "data limit"}
    frames = [d.get("frames_needed") or 0 for d in limited.values()]
    frames.append(final.get("data_request") or 0)
    if not limited and not final.get("data_request"):
        return None
    runs = ", ".join(sorted(limited)) or "a run"
    return (f"not identified: data limit ({runs} stopped at the data-pass limit; "
            f"{max(frames):,} {unit} would be needed)")


def protocol_section(r: Report, study_dir: Path, fits_dir: Path | None = None,
                     loss_key: str = MEAN_LOSS_KEY) -> bool:
    """Add the "Budget protocol" section when ``<study_dir>/protocol.json`` exists.

    ``loss_key`` is the metrics key the protocol compared (the study's ``fit.loss_key``).
    Copies ``protocol.json`` into the report directory. Returns True when the section was added.
    """
    study_dir = Path(study_dir)
    src = study_dir / PROTOCOL_FILE
    state = read_json(src)
    if not state:
        return False
    write_text_atomic(r.out_dir / PROTOCOL_FILE, src.read_text())
    if not state.get("final"):
        r.add("h2", "Budget protocol")
        r.add("p", f"The protocol has started but no round has finished; its budgets so far are "
              f"in `{PROTOCOL_FILE}` beside this page.")
        return True
    fits_dir = Path(fits_dir) if fits_dir is not None else study_dir / "fits"
    final = state["final"]
    unit, budget = state.get("unit", "flops"), state.get("budget")
    charge = float(state.get("growth_charge") or 0.0)  # growing the data (seconds budgets)
    spent = study_spent(state)
    planned = sum(p.get("planned", 0.0) for p in final.values())
    done = all(p.get("done") for p in final.values())
    r.add("h2", "Budget protocol")
    text = (f"The runs were trained under the frontier-seeking protocol: rounds of training, "
            f"after each of which runs were extended until neighbouring sizes crossed (a larger "
            f"size's smoothed curve below the smaller's by more than the pair's noise margin), "
            f"plateaued, or the budget or data ran out. Study budget {fmt(budget)} {unit}; spent "
            f"{fmt(spent)} {unit}"
            + (f" ({spent / budget:.0%})" if budget and math.isfinite(spent) else "")
            + (f", {fmt(charge)} of them charged for growing the data (its collect and encode "
               "seconds times the workers that waited)" if charge else "")
            + f" in {len(state.get('rounds', []))} round(s). ")
    refused = sum(d.get("reason") == "budget" for p in final.values()
                  for d in p.get("decisions", {}).values())
    if not done:
        text += f"The protocol has not finished: the last round planned {fmt(planned)} {unit} more."
    elif refused:
        text += (f"The protocol stopped: the budget could not pay for the extensions {refused} "
                 "run(s) still asked for (decision `budget` below).")
    else:
        text += "The protocol finished: no run asks for more compute."
    text += time_limit_text(state)
    yielded = [task_title(t) for t, p in final.items()
               if any(YIELDS in (d.get("detail") or "") for d in p.get("decisions", {}).values())]
    if yielded:
        text += (f" {' and '.join(yielded)} had enough sizes on the frontier and yielded "
                 "the budget share to the tasks with fewer (its refusals below say so).")
    text += f" Its log is `{PROTOCOL_FILE}` beside this page."
    r.add("p", text)
    growth_part(r, state)
    totals = {}
    for task, plan in final.items():
        r.add("h3", task_title(task))
        rows, totals[task] = run_rows(state, study_dir, task)
        r.add("table", "Runs: final budgets and the protocol's last decision", rows)
        if plan.get("pairs"):
            sizes = task_sizes(study_dir, plan, task, loss_key)
            r.add("table", "Neighbouring sizes", pair_rows(plan, sizes))
            if (text := equal_inputs_sentence(task, plan, sizes)) is not None:
                r.add("p", text)
        fit = read_json(fits_dir / task / "fit.json")
        r.add("p", frontier_sentence(task, plan, fit, totals[task]["params"]))
    rows, text = compute_rows(totals)
    r.add("table", "Compute and wall time per task", rows)
    r.add("p", text)
    notes = protocol_notes(state)
    if notes:
        r.add("p", "Notes of the protocol (data limits, budget refusals):")
        r.add("list", rows=[[n] for n in notes])
    return True


_CAP_BY = {"grow": "`dataset.grow` times the dataset's frames",
           "memory": "fewer than `dataset.grow` times the dataset's frames: BC-CNN's workers "
                     "share one mapped copy of its training frames, and this is what half of "
                     "the machine's memory holds"}
"""What set the cap on collected frames (``cap_by`` of a growth record)."""


def time_limit_text(state: dict) -> str:
    """What the job's time limit did to the budget (``scaling.study.time_limit``); "" if none."""
    note = state.get("time_limit")
    if not note or "limit_s" not in note:
        return ""
    unit = state.get("unit", "flops")
    text = (f" The job ran under a time limit of {note['limit_s']:,.0f} s from its start; "
            f"{note['reserve_s']:,.0f} s were kept for the stages after the sweep, which left it "
            f"{note['sweep_s']:,.0f} s when it started.")
    capped = note.get("capped") or []
    if not capped:
        return text + " The limit never lowered the budget."
    rounds = ", ".join(str(c["round"]) for c in capped)
    return (text + f" The limit lowered the budget for round(s) {rounds}, last to "
            f"{fmt(capped[-1]['budget'])} {unit}: a refusal for the budget there is one for the "
            "time left.")


def growth_part(r: Report, state: dict) -> None:
    """The data the study collected when runs reached their data-pass limit (if any)."""
    grown, refused = state.get("growth") or [], state.get("growth_refused") or []
    if not grown and not refused:
        return
    if grown:
        rows = [["Round", "supplement", "frames (episodes)", "frames asked for",
                 "training frames", "collect s", "encode s"]]
        rows += [[str(g["round"]), f"`{g['supplement']}`", f"{g['frames']:,} ({g['episodes']})",
                  f"{g['asked']:,}", f"{g['train_frames_before']:,} → {g['train_frames']:,}",
                  fmt(g["collect_seconds"]), fmt(g["encode_seconds"])] for g in grown]
        r.add("table", "Training data grown by the study (train-only supplements; the "
              "validation and test episodes stay the dataset's own)", rows)
    cap_by = grown[0].get("cap_by", "grow") if grown else "grow"
    text = ("When an extension the budget could pay for would have passed the data-pass limit, "
            "the study collected a train-only supplement by the dataset's recipe with a seed of "
            "its own, as many frames as the runs needed (total training frames asked for above) "
            f"up to the {grown[0]['cap']:,} frames the study may collect ({_CAP_BY[cap_by]})"
            if grown else "The study may grow its data (`dataset.grow`)")
    text += "."
    for f in refused:
        if f.get("why") == "cost":
            text += (f" In round {f['round']} the runs asked for {f['asked']:,} training frames, "
                     f"but none were collected: collecting and encoding them would have taken "
                     f"about {fmt(f['seconds'])} s, {fmt(f['cost'])} s of the seconds budget with "
                     f"{f['workers']} workers waiting, and the budget left after that could not "
                     "have paid for the extensions that asked.")
            continue
        if f.get("why") == "budget":
            text += (f" In round {f['round']} the runs asked for {f['asked']:,} training frames, "
                     "but none were collected: on that data the runs the data limit stopped in "
                     "other tasks would have asked again and kept their shares, and the budget "
                     "left could not have paid for the extensions that asked.")
            continue
        text += (f" In round {f['round']} the runs asked for {f['asked']:,} training frames, "
                 "more than the study may collect (`dataset.grow` times the dataset's frames, "
                 "and with BC-CNN, whose workers share one mapped copy of its training frames, "
                 "what half of the machine's memory holds); they stopped at the data-pass "
                 "limit.")
    r.add("p", text)

