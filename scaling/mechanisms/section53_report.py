"""Section 5.3's report: the table of coefficients, Figure 16, and what they support.

A coefficient enters the correlation and the slope only when its fit is identified: a fit with a
parameter at its bound (e.g. the irreducible loss E at 0) is listed, marked and left out, as
everywhere in the project (``scaling.laws.identification``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from offline_data.atomic import write_text_atomic
from scaling.plots import save_figure
from worldmodels.train_config import INFINITE_DATA_PASSES

PAPER_R = 0.61


def identified(row: dict) -> bool:
    """A row's coefficient counts: it was fitted and its fit is not at its bounds."""
    return math.isfinite(row["a"]) and not row.get("not_identified")


def _ci(r: dict) -> str:
    lo, hi = r["a_ci"]
    return "—" if not math.isfinite(lo) else f"[{lo:.2f}, {hi:.2f}]"


def _a(r: dict) -> str:
    return "—" if not math.isfinite(r["a"]) else f"{r['a']:.2f}"


def _status(r: dict) -> str:
    if not math.isfinite(r["a"]):
        return "no fit"
    return "no (below)" if r.get("not_identified") else "yes"


def figure(rows: list[dict], result: dict, path: Path) -> None:
    """Figure 16: a against d_z per repeat, and the repeats fitted together.

    Fits that are not identified are drawn hollow, their intervals faint.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4.2), constrained_layout=True)

    def point(x, r, marker, color):
        lo, hi = r["a_ci"]
        face = color if identified(r) else "none"
        ax.plot(x, r["a"], marker, color=color, mfc=face, ms=6)
        if math.isfinite(lo) and math.isfinite(hi):
            # the interval as it is: a percentile bootstrap interval need not contain the value
            ax.plot([x] * 2, [lo, hi], "_-", color=color, ms=8, alpha=1 if identified(r) else 0.4)

    for r in rows:
        if math.isfinite(r["a"]):
            point(r["tokens_per_frame"], r, "o", "C0" if r["method"] == "frontier" else "C1")
    for r in result.get("pooled", []):
        if math.isfinite(r["a"]):
            point(r["tokens_per_frame"] * 1.08, r, "D", "k")  # beside the repeats' points
    R = result["R"]
    ax.set(xscale="log", xlabel="tokens per frame $d_z$",
           ylabel="optimal model-size coefficient $a$",
           title="$N_{opt} \\propto C^a$ vs compression"
           + (f" (R on ln $d_z$ = {R:.2f})" if math.isfinite(R) else ""))
    ax.plot([], [], "o", color="C0", label="frontier fit")
    ax.plot([], [], "o", color="C1", label="parametric fit (no overlap)")
    if result.get("pooled"):
        ax.plot([], [], "D", color="k", label="repeats together (whole-run interval)")
    ax.plot([], [], "o", color="0.4", mfc="none", label="not identified (at its bounds)")
    ax.legend(fontsize=8)
    save_figure(fig, path)


def verdict(slope, values: int) -> str:
    """What the slope of a on ln d_z shows, from identified fits at ``values`` distinct d_z."""
    if slope is None:
        return "not tested: fewer than 3 identified fits at two or more values of d_z"
    if slope.low <= 0 <= slope.high:
        return "not significant: the interval of the slope includes 0"
    direction = "a rises with d_z" if slope.low > 0 else "a falls with d_z"
    if values < 3:
        return (f"{direction} between the two values of d_z with a fit, interval excludes no "
                "effect; a trend over d_z is not tested (fits at 3 values at least are needed)")
    if slope.low > 0:
        return "reproduced: a rises with d_z, interval excludes no effect"
    return "opposite direction, interval excludes no effect"


def pooled_lines(pooled: list[dict], repeats: int) -> list[str]:
    """The table of the fits of every repeat's runs together (none with one repeat)."""
    if not pooled:
        return []
    lines = [f"The {repeats} repeats of each ladder fitted together: the runs of one size pooled "
             "as seeds, and every refit drawing whole runs from all of them, so these intervals "
             "hold the spread between repeats, which the table above (points resampled within "
             "each repeat's fixed runs) leaves out.", "",
             "| d_z | runs | method | a | 95% CI (whole runs) | failed refits | identified |",
             "|---|---|---|---|---|---|---|"]
    for r in pooled:
        failed = ("—" if r.get("failed_refits") is None
                  else f"{r['failed_refits']} of {r['refits']}")
        lines.append(f"| {r['tokens_per_frame']} | {r['runs']} | {r['method']} | {_a(r)} | "
                     f"{_ci(r)} | {failed} | {_status(r)} |")
    lines.append("")
    for r in pooled:
        if r.get("reason"):
            lines += [f"No fit of the repeats together at d_z = {r['tokens_per_frame']}: "
                      f"{r['reason']}", ""]
        elif r.get("not_identified"):
            lines += [f"Repeats together at d_z = {r['tokens_per_frame']}: not identified, "
                      f"{'; '.join(r['not_identified'])}.", ""]
        elif r.get("caveats"):
            lines += [f"Repeats together at d_z = {r['tokens_per_frame']}: identified, but "
                      f"{'; '.join(r['caveats'])}.", ""]
    return lines


def _trend_line(result: dict, rows: list[dict], verdict_text: str) -> str:
    n_ok = sum(identified(r) for r in rows)
    s = result.get("slope_per_log_dz")
    if not math.isfinite(result["R"]):
        return (f"No correlation of a with ln d_z: {n_ok} of {len(rows)} fits are identified "
                f"(the others are listed below), so there is nothing to correlate "
                f"(paper: R = {PAPER_R}). Slope of a per ln(d_z): {verdict_text}.")
    return (f"Correlation of a with ln d_z over the {n_ok} identified fits: R = "
            f"{result['R']:.2f} (paper: {PAPER_R}). Slope of a per ln(d_z): "
            f"{s.fmt(3) if s else '—'}: {verdict_text}.")


def write_report(cfg, result: dict, out: Path, command: str) -> None:
    """``report.md`` and ``results.json`` in ``out``."""
    rows = result["rows"]
    s = result.get("slope_per_log_dz")
    verdict_text = verdict(s, len({r["tokens_per_frame"] for r in rows if identified(r)}))
    lines = ["# Section 5.3: tokens per frame vs the optimal model-size coefficient", "",
             "One VQ-VAE per tokens-per-frame value, a WM-Token ladder per tokenizer under the "
             f"frontier-seeking budget protocol (every size starts at {cfg.flops:.3g} FLOPs; "
             f"runs are extended until neighbouring sizes cross, within {cfg.study_flops:.3g} "
             "FLOPs per ladder and 4 passes over the data), a frontier fit per (tokenizer, "
             "repeat) (parametric where curves do not overlap), 95% bootstrap intervals. Only "
             "identified fits (no parameter at its bounds) enter the correlation and the slope.",
             "", f"Regenerate: `{command}`", "",
             "| d_z | repeat | method | a | 95% CI | identified | tokenizer PSNR (dB) | "
             "most passes over data |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        psnr, passes = r["tokenizer_psnr"], r.get("passes")
        lines.append(f"| {r['tokens_per_frame']} | {r['seed']} | {r['method']} | {_a(r)} | "
                     f"{_ci(r)} | {_status(r)} | {'—' if psnr is None else f'{psnr:.1f}'} | "
                     f"{'—' if passes is None else f'{passes:.1f}'} |")
    lines += ["", _trend_line(result, rows, verdict_text), ""]
    for r in rows:
        where = f"d_z = {r['tokens_per_frame']}, repeat {r['seed']}"
        if r["method"] == "none" and r.get("reason"):
            lines += [f"No fit at {where}: {r['reason']}", ""]
        elif r.get("not_identified"):
            lines += [f"{where}: not identified, {'; '.join(r['not_identified'])}.", ""]
        elif r.get("caveats"):
            lines += [f"{where}: identified, but {'; '.join(r['caveats'])}.", ""]
        if r.get("data_limit"):
            lines += [f"{where}: {r['data_limit']}", ""]
    lines += pooled_lines(result.get("pooled", []), len(cfg.seeds))
    many = sorted({r["tokens_per_frame"] for r in rows
                   if (r.get("passes") or 0) > INFINITE_DATA_PASSES})
    if many:
        lines += [f"At d_z = {', '.join(map(str, many))} the smallest models make more than "
                  f"{INFINITE_DATA_PASSES:g} "
                  "passes over the data at this compute, beyond the infinite-data regime the "
                  "paper's fits assume; more episodes (`--dataset` of a larger collection) "
                  "remove that caveat.", ""]
    lines += ["![Figure 16](figure16.png)", ""]
    write_text_atomic(out / "report.md", "\n".join(lines))
    payload = {**result, "verdict": verdict_text}
    if s is not None:
        payload["slope_per_log_dz"] = s.to_json()
    write_text_atomic(out / "results.json", json.dumps(payload, indent=2, default=str))
