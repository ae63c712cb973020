"""Sentences on the allocation exponent ``a`` (N_opt ∝ C^a) for the study report.

Two comparisons the paper draws: whether a task's frontier and parametric fits agree on ``a``
(each value inside the other's bootstrap interval), and how far BC-CNN's ``a`` lies from
BC-Token's (the paper found 0.66 against 0.32). The interval of that difference comes from the
bootstrap refits ``fit.json`` keeps (``<fit>.bootstrap.samples.a``): the two tasks were
bootstrapped independently, so every refit of one task is paired with every refit of the other
and the percentile interval of those differences is taken.

Example:
    sentence = difference_sentence({"bc-token": fit_token, "bc-cnn": fit_cnn})
"""

from __future__ import annotations

import numpy as np

from scaling.laws.identification import (
    MIN_FRONTIER_SIZES,
    entry_caveats,
    entry_issues,
    frontier_sizes,
)
from scaling.study.report_page import TASK_TITLES, fmt, skipped_reason

PAPER_A = {"bc-token": 0.32, "bc-cnn": 0.66}
"""The paper's ``a`` of the two BC tasks (its Table 1): BC-Token's from the parametric fit (the
paper gives no frontier fit for it), BC-CNN's from the frontier fit."""

MAX_PAIRS = 4_000_000  # above this many refit pairs, a seeded random subset of pairs is used

MAX_A_WIDTH = 0.3
"""Widest bootstrap interval (95% in a study) of the frontier ``a`` that still counts as
identified."""


def _title(task: str) -> str:
    return TASK_TITLES.get(task, task)


def _level(fit: dict) -> float:
    return float((fit.get("bootstrap") or {}).get("level")
                 or (fit.get("options") or {}).get("level") or 0.95)


def _interval(entry: dict, key: str = "a") -> list[float] | None:
    ci = (entry.get("ci") or {}).get(key)
    return ci if ci and len(ci) == 2 and all(isinstance(v, (int, float)) for v in ci) else None


def _no_interval(entry: dict) -> str:
    if entry.get("ci_error"):
        return f"no interval ({entry['ci_error']})"
    return "no interval (fitted without bootstrap)"


def agreement_sentence(fit: dict | None, reasons: bool = True) -> str:
    """Whether the frontier ``a`` and the parametric ``a`` each lie in the other's interval.

    With ``reasons=False`` a skipped fit is named without its reason ("reasons below"), for a
    page that lists the reasons once, elsewhere. An identified parametric fit's caveats (see
    ``scaling.laws.identification.bound_caveats``) follow.
    """
    text = _agreement(fit, reasons)
    pa = (fit or {}).get("parametric") or {}
    if pa.get("status") == "ok" and (caveats := entry_caveats(pa)):
        text += f" The parametric fit is identified, but {'; '.join(caveats)}."
    return text


def _agreement(fit: dict | None, reasons: bool) -> str:
    if not fit:
        return "no fit, so the frontier and parametric a cannot be compared."
    fr, pa = fit.get("frontier"), fit.get("parametric")
    skipped = [(name, skipped_reason(e)) for name, e in (("frontier", fr), ("parametric", pa))
               if skipped_reason(e)]
    if skipped and not reasons:
        names = " and ".join(name for name, _ in skipped)
        return (f"the {names} fit{'s were' if len(skipped) > 1 else ' was'} skipped (reasons "
                "below), so the frontier and parametric a cannot be compared.")
    if skipped:
        return ("; ".join(f"the {name} fit was skipped ({why})" for name, why in skipped)
                + ", so the frontier and parametric a cannot be compared.")
    level = f"{_level(fit):.0%}"
    fr_ci, pa_ci = _interval(fr), _interval(pa)
    text = (f"frontier a = {fmt(fr['a'])}" + (f" [{fmt(fr_ci[0])}, {fmt(fr_ci[1])}]" if fr_ci
                                              else "")
            + f", parametric a = {fmt(pa['a'])}"
            + (f" [{fmt(pa_ci[0])}, {fmt(pa_ci[1])}]" if pa_ci else "") + ": ")
    inside = []
    for this, value, other, ci, entry in (("parametric", pa["a"], "frontier", fr_ci, fr),
                                          ("frontier", fr["a"], "parametric", pa_ci, pa)):
        if ci is None:
            inside.append(None)
            text += f"the {other} fit has {_no_interval(entry)}; "
            continue
        inside.append(ci[0] <= value <= ci[1])
        text += (f"the {this} a lies {'inside' if inside[-1] else 'outside'} the {other} fit's "
                 f"{level} interval; ")
    issues = pa.get("not_identified") or []
    fr_issues = entry_issues("frontier", fr)
    if issues and fr_issues:
        text += (f"but neither fit is identified (parametric: {'; '.join(issues)}; frontier: "
                 f"{'; '.join(fr_issues)}), so neither a is a check on the other.")
    elif issues:  # a law with a parameter at its bound says nothing about a
        text += (f"but the parametric fit is not identified ({'; '.join(issues)}), so its a is "
                 "no check on the frontier's.")
    elif fr_issues:
        text += (f"but the frontier fit is not identified ({'; '.join(fr_issues)}), so its a is "
                 "no check on the parametric's.")
    elif inside == [True, True]:
        text += "the two methods agree."
    elif inside == [False, False]:
        text += "the two methods disagree beyond both intervals."
    elif None in inside:
        text += "agreement is judged only where an interval exists."
    else:
        text += _one_direction(fit, fr_ci, pa_ci, inside)
    return text


def _one_direction(fit: dict, fr_ci: list[float], pa_ci: list[float], inside: list) -> str:
    """Why one value lies inside the other's interval but not the reverse."""
    miss = "frontier" if inside[0] is False else "parametric"  # the interval that misses
    hold = "parametric" if miss == "frontier" else "frontier"
    widths = {"frontier": fr_ci[1] - fr_ci[0], "parametric": pa_ci[1] - pa_ci[0]}
    text = (f"the methods agree only in one direction: the {miss} interval ({fmt(widths[miss])} "
            f"wide) misses the {hold} a, while the {hold} interval ({fmt(widths[hold])} wide) "
            f"holds the {miss} a")
    if (fit.get("bootstrap") or {}).get("scheme") == "within-run":
        text += (", and with points resampled within fixed runs an interval holds only the noise "
                 "along each curve, not the spread between repeated studies (a whole-run "
                 "bootstrap needs several runs per size)")
    return text + "."


def isoflop_sentence(fit: dict | None, reasons: bool = True) -> str | None:
    """Where the IsoFLOP ``a`` (Hoffmann Method 2) lies against the other two fits' intervals.

    None when the fit did not run (an older ``fit.json``, or a method choice without it); a
    skipped fit gives its reason (with ``reasons=False``, "reasons below", for a page that lists
    them once), an ``a`` at or below 0 its "not identified".
    """
    iso = (fit or {}).get("isoflop")
    if not iso:
        return None
    if why := skipped_reason(iso):
        return f"IsoFLOP fit (Method 2): skipped ({why if reasons else 'reasons below'})."
    ci = _interval(iso)
    text = f"IsoFLOP fit (Method 2): a = {fmt(iso['a'])}" + (
        f" [{fmt(ci[0])}, {fmt(ci[1])}]" if ci else f" ({_no_interval(iso)})")
    where = []
    for name in ("frontier", "parametric"):
        other = fit.get(name) or {}
        other_ci = None if skipped_reason(other) else _interval(other)
        if other_ci is not None:
            inside = other_ci[0] <= iso["a"] <= other_ci[1]
            where.append(f"{'inside' if inside else 'outside'} the {name} fit's")
    if where:  # "outside the frontier fit's interval, inside the parametric fit's"
        text += f", {where[0]} interval" + "".join(f", {w}" for w in where[1:])
    if issues := entry_issues("isoflop", iso):
        text += f"; not identified: {'; '.join(issues)}"
    return text + "."


def frontier_identified(fit: dict | None, reasons: bool = True) -> tuple[bool, str]:
    """Whether the frontier fit identifies ``a``, and why (a clause for the report).

    Identified: no issue of ``scaling.laws.identification.frontier_issues`` (at least
    :data:`MIN_FRONTIER_SIZES` sizes on the efficient frontier, ``a`` in (0, 1), an interval of
    nonzero width) and a bootstrap interval of ``a`` no wider than :data:`MAX_A_WIDTH`; the
    clause gives the sizes, the width and every issue. With ``reasons=False`` a skipped fit is
    said to be skipped without its reason (given elsewhere on the page).
    """
    entry = (fit or {}).get("frontier")
    why = skipped_reason(entry) if entry else "no frontier fit"
    if why:
        return False, ("not identified: the frontier fit was skipped"
                       + (f" ({why})" if reasons else ""))
    sizes = frontier_sizes(entry)
    issues = entry_issues("frontier", entry)
    ci = _interval(entry)
    width = None if ci is None else float(ci[1] - ci[0])
    parts = [f"{sizes} size{'s' if sizes != 1 else ''} on the efficient frontier (at least "
             f"{MIN_FRONTIER_SIZES} needed)",
             (f"the {_level(fit):.0%} interval of a is {fmt(width)} wide (at most "
              f"{MAX_A_WIDTH:g})"
              if width is not None else _no_interval(entry))]
    parts += [i for i in issues if "on the efficient frontier" not in i]  # sizes: said above
    ok = not issues and width is not None and width <= MAX_A_WIDTH
    return ok, ("identified: " if ok else "not identified: ") + "; ".join(parts)


def a_samples(entry: dict | None) -> np.ndarray:
    """The finite bootstrap refits of ``a`` stored in a fit entry (empty when none are)."""
    values = (((entry or {}).get("bootstrap") or {}).get("samples") or {}).get("a") or []
    out = np.array([v for v in values if v is not None], dtype=np.float64)
    return out[np.isfinite(out)]


def difference_interval(x, y, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile interval of ``X - Y`` for two independent bootstraps' refits ``x`` and ``y``.

    Every refit of ``x`` is paired with every refit of ``y`` (the distribution of the difference
    of independent draws); above :data:`MAX_PAIRS` pairs a seeded random subset is drawn.
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.size < 2 or y.size < 2:
        raise ValueError(f"a difference interval needs at least 2 refits of each side, got "
                         f"{x.size} and {y.size}")
    if x.size * y.size <= MAX_PAIRS:
        diff = np.subtract.outer(x, y).ravel()
    else:
        rng = np.random.default_rng(seed)
        diff = x[rng.integers(0, x.size, MAX_PAIRS)] - y[rng.integers(0, y.size, MAX_PAIRS)]
    lo, hi = 50 * (1 - level), 50 * (1 + level)
    return float(np.percentile(diff, lo)), float(np.percentile(diff, hi))


def _has_a(fit: dict | None, method: str) -> bool:
    entry = (fit or {}).get(method)
    return bool(entry) and skipped_reason(entry) is None and "a" in entry


def _why_no_a(task: str, fit: dict | None) -> str:
    if not fit:
        return f"{_title(task)} has no fit"
    reasons = [f"{m}: {skipped_reason(fit.get(m)) or 'no a'}" for m in ("frontier", "parametric")]
    return f"{_title(task)} has no fitted a ({'; '.join(reasons)})"


def difference_sentence(fits: dict[str, dict | None]) -> str | None:
    """BC-CNN a − BC-Token a with a 95% interval; None when the study has neither BC task."""
    tok, cnn = "bc-token", "bc-cnn"
    if tok not in fits and cnn not in fits:
        return None
    head = (f"{_title(cnn)} a − {_title(tok)} a (the paper found {PAPER_A[cnn]:.2f} against "
            f"{PAPER_A[tok]:.2f}, a difference of {PAPER_A[cnn] - PAPER_A[tok]:.2f})")
    absent = [t for t in (tok, cnn) if t not in fits]
    if absent:
        return f"{head}: not available, the study has no {_title(absent[0])} task."
    method = next((m for m in ("frontier", "parametric")
                   if _has_a(fits[tok], m) and _has_a(fits[cnn], m)), None)
    if method is None:
        why = [_why_no_a(t, fits[t]) for t in (tok, cnn)
               if not (_has_a(fits[t], "frontier") or _has_a(fits[t], "parametric"))]
        why = why or ["the two tasks have no fit in common (one has only a frontier a, the "
                      "other only a parametric a)"]
        return f"{head}: not available, {'; '.join(why)}."
    used = (f"the {method} a of both tasks" if method == "frontier" else
            "the parametric a of both tasks (the frontier fit is missing for "
            + " and ".join(_title(t) for t in (tok, cnn) if not _has_a(fits[t], "frontier"))
            + ")")
    d = float(fits[cnn][method]["a"]) - float(fits[tok][method]["a"])
    caveat = _unidentified_a(fits, (tok, cnn), method)
    xs, ys = a_samples(fits[cnn][method]), a_samples(fits[tok][method])
    if xs.size < 2 or ys.size < 2:
        short = [t for t, s in ((cnn, xs), (tok, ys)) if s.size < 2]
        why = [f"{_title(t)}'s refits failed ({fits[t][method]['ci_error']})"
               if fits[t][method].get("ci_error") else
               f"the fit.json of {_title(t)} holds no bootstrap refits of a (refit with "
               "bootstrap to get one)" for t in short]
        return f"{head} = {fmt(d)} from {used}; no interval: {'; '.join(why)}{caveat}."
    lo, hi = difference_interval(xs, ys)
    text = (f"{head} = {fmt(d)} [{fmt(lo)}, {fmt(hi)}] from {used}: 95% percentile interval of "
            f"the differences of the two tasks' independent bootstrap refits ({xs.size} and "
            f"{ys.size})")
    if caveat:  # no verdict from an a that a fit does not identify
        return f"{text}{caveat}."
    where = ("excludes 0, so the tasks' exponents differ" if lo > 0 or hi < 0 else
             "includes 0, so the data do not tell the exponents apart")
    paper = PAPER_A[cnn] - PAPER_A[tok]
    noted = "".join(f" {_title(t)}'s parametric fit is identified, but {'; '.join(c)}."
                    for t in (tok, cnn) if method == "parametric"
                    and (c := entry_caveats(fits[t][method])))
    return (f"{text}. The interval {where}, and it "
            f"{'includes' if lo <= paper <= hi else 'excludes'} the paper's {paper:.2f}.{noted}")


def _unidentified_a(fits: dict, tasks: tuple[str, str], method: str) -> str:
    """A clause naming the tasks whose ``method`` a is not identified (empty when both are)."""
    issues = []
    for t in tasks:
        if why := entry_issues(method, fits[t][method]):
            issues.append(f"{_title(t)}'s {method} fit is not identified ({'; '.join(why)})")
    if not issues:
        return ""
    return "; but " + "; ".join(issues) + ", so the difference is no finding"


__all__ = ["MAX_A_WIDTH", "MAX_PAIRS", "MIN_FRONTIER_SIZES", "PAPER_A", "a_samples",
           "agreement_sentence", "difference_interval", "difference_sentence", "isoflop_sentence",
           "frontier_identified"]
