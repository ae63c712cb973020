"""Fitting as a library call: curves and options in, a typed :class:`FitResult` out.

``embscale fit``, the study's fit stage and the Section 5 reproductions all call
:func:`fit_curves`; :func:`write_fit` writes what ``embscale fit --out DIR`` writes (``fit.json``,
``table.md``, ``scaling_fit.png``). Curves come from :func:`scaling.inputs.load_curves` (files)
or :func:`curves_from_runs` (run directories already chosen by the caller), never through a
temporary CSV.

Example::

    from scaling.fitting import curves_from_runs, fit_curves, write_fit
    from scaling.laws.analysis import FitOptions

    curves = curves_from_runs(run_dirs, loss_key="train/loss", skip_fraction=0.1)
    result = fit_curves(curves, FitOptions(num_bootstrap=200))
    write_fit(result, "runs/my-study/fits/wm-token", overwrite=True, title="wm-token")
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from offline_data.atomic import atomic_dir, check_replaceable
from scaling.inputs import run_config, uniform_loss, untrained_start
from scaling.laws.analysis import METHODS, Analysis, FitOptions, analyze
from scaling.laws.data import Curves, make_curves
from scaling.laws.identification import entry_caveats
from scaling.laws.uncertainty import coarse_runs_note
from scaling.plots import figure5
from worldmodels.run_metrics import LOSS_KEY, read_metrics

FIT_DIR = {"marker": "fit.json", "allowed": ("table.md", "*.png", "advice.json", ".*.tmp"),
           "what": "fit directory"}
"""What ``--overwrite`` may replace: a directory holding fit.json and only the fit's own files
(and the planner's advice.json that a study writes beside them)."""

Progress = Callable[[str, int], Callable[[int], Any]]


@dataclass
class FitResult:
    """The fits of one set of curves, and where the curves came from.

    Attributes:
        analysis: every fitted law, its intervals and the reasons for skipped fits.
        loss_key: the metrics key the curves' losses were read from (recorded in ``fit.json``).
        inputs: names of the inputs the curves were read from (recorded in ``fit.json``).
    """

    analysis: Analysis
    loss_key: str = LOSS_KEY
    inputs: list[str] = field(default_factory=list)

    @property
    def options(self) -> FitOptions:
        """The options the laws were fitted with."""
        return self.analysis.options

    def to_json(self) -> dict[str, Any]:
        """The ``fit.json`` object."""
        fit = self.analysis.to_json()
        fit["data"].update(loss_key=self.loss_key, inputs=list(self.inputs))
        return fit


def methods(choice: str) -> tuple[str, ...]:
    """``FitOptions.methods`` for a method choice (``all`` or one of the methods)."""
    return METHODS if choice == "all" else (choice,)


def fit_curves(curves: Curves, options: FitOptions | None = None, *,
               progress: Progress | None = None, loss_key: str = LOSS_KEY,
               inputs: Sequence[str] = (), law_curves: Curves | None = None) -> FitResult:
    """Fit the scaling laws ``options`` asks for to ``curves``.

    Args:
        curves: the training curves (:func:`scaling.inputs.load_curves`, :func:`curves_from_runs`
            or :func:`scaling.laws.data.make_curves`).
        options: which fits, bootstrap size, seed and level (default :class:`FitOptions`).
        progress: ``progress(description, total)`` returning an ``update(n)`` callable, called
            for each bootstrap (e.g. a tqdm bar).
        loss_key: the metrics key of the losses, recorded in ``fit.json``.
        inputs: names of the inputs, recorded in ``fit.json``.
        law_curves: other points for the parametric fit (see
            :func:`scaling.laws.analysis.analyze`).

    Raises:
        scaling.laws.data.FitError: no law can be fitted to these curves.
    """
    analysis = analyze(curves, options or FitOptions(), progress=progress, law_curves=law_curves)
    return FitResult(analysis=analysis, loss_key=loss_key, inputs=list(inputs))


def write_fit(result: FitResult, out: str | os.PathLike, *, overwrite: bool = False,
              figures: bool = True, title: str | None = None,
              crossings: list[tuple[float, float]] | None = None) -> dict[str, Any]:
    """Write ``fit.json``, ``table.md`` and (with ``figures``) ``scaling_fit.png`` into ``out``.

    The directory is written whole or not at all. Returns the ``fit.json`` object.
    ``crossings`` (C, loss) are marked on the training curves (the budget protocol's crossings).

    Raises:
        FileExistsError: ``out`` exists and ``overwrite`` is false.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; pass --overwrite or another --out")
    fit = result.to_json()
    if out.exists():  # --overwrite replaces only a fit directory, checked before writing
        check_replaceable(out, **FIT_DIR)
    with atomic_dir(out, overwrite=overwrite, **FIT_DIR) as tmp:
        (tmp / "fit.json").write_text(json.dumps(fit, indent=2, allow_nan=False) + "\n")
        (tmp / "table.md").write_text(table_markdown(fit))
        if figures:
            figure5(result.analysis, tmp / "scaling_fit.png", title=title, crossings=crossings)
    return fit


def curve_points(run_dirs: Sequence[str | os.PathLike], loss_key: str,
                 skip_fraction: float,
                 reference: dict[str, float] | None = None,
                 skip_above_uniform: bool = False) -> list[dict[str, Any]]:
    """(N, D, L, run) points of each run's curve, without its first ``skip_fraction`` of D.

    The first steps (warmup and the initial plateau of tiny models) do not follow a power law
    in D; like Hoffmann et al., the fits use each curve after its start. Points logged during
    the learning-rate warmup (``train.warmup_steps`` in the run's ``config.json``) are left out
    whatever the fraction: there the loss follows the warmup's ramp, not N and D, and at the
    lowest compute of a study the leader among sizes in those first updates changes from one
    compute value to the next (it once put three sizes "on the frontier" with a falling a). A
    run that never logged ``loss_key`` is read at ``train/loss`` (older runs).

    ``reference`` (run directory name -> D) measures the skipped start against that D instead of
    the run's final D: a run extended by the budget protocol keeps the start its first budget
    gave it, so extending a run never removes points from the low-compute end of its curve.

    ``skip_above_uniform`` also starts each curve after its last point whose loss is above a
    uniform guess (:func:`uniform_loss`): until then the model has not left its untrained start
    for good (a large model's first updates overshoot, 2-4 nats against BC's ln 4 = 1.39), and
    those points, which no law in N and D describes, would otherwise decide the fit. It cuts the
    curve's start only, never a point after it, so it does not select points by their loss.
    """
    rows = []
    for d in run_dirs:
        recs = read_metrics(d)
        key = loss_key if any(loss_key in r for r in recs) else LOSS_KEY  # older runs
        recs = [r for r in recs if r.get(key) is not None and math.isfinite(float(r[key]))]
        if not recs:
            continue
        final = (reference or {}).get(Path(d).name) or max(float(r["tokens"]) for r in recs)
        config = run_config(d)
        warmup = _warmup(config)
        recs = [r for r in recs if float(r["tokens"]) >= skip_fraction * final
                and int(r.get("step", warmup + 1)) > warmup]
        if skip_above_uniform:
            recs = recs[untrained_start([r[key] for r in recs], uniform_loss(config)):]
        rows += [{"N": r["params"], "D": r["tokens"], "L": r[key], "run": Path(d).name}
                 for r in recs]
    return rows


def _warmup(config: dict[str, Any]) -> int:
    """The run's learning-rate warmup in optimizer steps, from its ``config.json`` (0 without)."""
    return int((config.get("train") or {}).get("warmup_steps") or 0)


def curves_from_runs(run_dirs: Sequence[str | os.PathLike], loss_key: str,
                     skip_fraction: float = 0.0) -> Curves:
    """The runs' curves (see :func:`curve_points`), one curve per run directory."""
    return curves_from_points(curve_points(run_dirs, loss_key, skip_fraction))


def curves_from_points(rows: Sequence[dict[str, Any]]) -> Curves:
    """Curves from :func:`curve_points` rows (``N``, ``D``, ``L``, ``run``).

    Raises:
        ValueError: too few points or model sizes to fit (see ``make_curves``).
    """
    return make_curves([float(r["N"]) for r in rows], [float(r["D"]) for r in rows],
                       [float(r["L"]) for r in rows], [r["run"] for r in rows],
                       labels=[f"{r['run']} at D={r['D']}" for r in rows])


def _fmt(x: float) -> str:
    return f"{x:.3g}" if abs(x) >= 1e4 or abs(x) < 1e-2 else f"{x:.3f}"


def _cell(entry: dict, key: str) -> str:
    if entry.get("status") != "ok":
        return "N/A"
    ci = entry.get("ci", {}).get(key)
    s = _fmt(entry[key])
    return f"{s} [{_fmt(ci[0])}, {_fmt(ci[1])}]" if ci else s


SCHEME_WORDS = {"runs": "whole runs (curves) resampled with replacement",
                "within-run": "points resampled within each run (the set of runs fixed)",
                "points": "points resampled with replacement (one point per run)"}


def exponent_line(entry: dict) -> str:
    """``a = 0.533 [0.492, 0.539], b = 0.467`` of a fitted law, with why it is not identified.

    >>> exponent_line({"a": -0.07, "b": 1.07, "ci": {}, "not_identified": ["a <= 0"]})
    'a = -0.070, b = 1.070 (not identified: a <= 0)'
    """
    ci = (entry.get("ci") or {}).get("a")
    text = (f"a = {entry['a']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
            + f", b = {entry['b']:.3f}")
    if issues := entry.get("not_identified"):
        return text + f" (not identified: {'; '.join(issues)})"
    caveats = entry_caveats(entry)
    return text + (f" (identified, but {'; '.join(caveats)})" if caveats else "")


def bootstrap_sentence(fit: dict) -> str:
    """How the intervals of a ``fit.json`` were made: level, refits, scheme, failed refits."""
    opts = fit.get("options", {})
    b = fit.get("bootstrap") or {"scheme": "within-run" if opts.get("num_bootstrap") else "none",
                                 "num": opts.get("num_bootstrap", 0), "num_failed": {}}
    if not b.get("num"):
        return "No bootstrap intervals (--bootstrap 0)."
    failed = ", ".join(f"{k} {v}" for k, v in b.get("num_failed", {}).items()) or "none"
    text = (f"Values with {opts.get('level', 0.95):.0%} percentile bootstrap intervals "
            f"({b['num']} refits per fit; {SCHEME_WORDS.get(b['scheme'], b['scheme'])}; "
            f"failed refits, left out: {failed}")
    if b.get("no_interval"):
        text += f"; no interval: {', '.join(b['no_interval'])}"
    coarse = coarse_runs_note(b["scheme"], int((fit.get("data") or {}).get("num_curves") or 0))
    return text + ")." + (f" Note: {coarse}." if coarse else "")


def table_markdown(fit: dict, title: str = "Fitted scaling coefficients") -> str:
    """The paper's Table 1 layout (frontier and parametric side by side), then every coefficient."""
    fr, pa = fit["frontier"], fit["parametric"]
    lines = [f"# {title}", "", bootstrap_sentence(fit) + " N/A: skipped (reason below).", "",
             "| Frontier fit N_opt ∝ C^a | Frontier fit D_opt ∝ C^b | "
             "Parametric fit N_opt ∝ C^a | Parametric fit D_opt ∝ C^b |",
             "|---|---|---|---|",
             f"| {_cell(fr, 'a')} | {_cell(fr, 'b')} | {_cell(pa, 'a')} | {_cell(pa, 'b')} |", ""]
    rows = [("frontier", ("a", "a0", "b", "b0")),
            ("parametric", ("E", "A", "B", "alpha", "beta", "a", "b", "a0", "b0")),
            ("loss_prediction", ("c0", "c", "E")), ("isoflop", ("a", "a0", "b", "b0"))]
    lines += ["## All coefficients", "", "| fit | coefficient | value | interval |",
              "|---|---|---|---|"]
    for name, keys in rows:
        entry = fit[name]
        label = name + (f" ({entry['loss']})" if name == "parametric" and "loss" in entry else "")
        if entry.get("status") != "ok":
            continue
        for k in keys:
            ci = entry.get("ci", {}).get(k)
            interval = f"[{_fmt(ci[0])}, {_fmt(ci[1])}]" if ci else ""
            lines.append(f"| {label} | {k} | {_fmt(entry[k])} | {interval} |")
    details = []
    if fr.get("status") == "ok" and "rule" in fr:
        how = {"mean": "mean log loss", "min": "lowest loss"}.get(fr.get("pool"))
        pool = f", runs of one size pooled by their {how}" if how else ""
        details.append(f"- **frontier**: rule `{fr['rule']}`{pool}, {fr['num_models']} sizes "
                       f"optimal at bracketed compute"
                       + (f"; not identified: {'; '.join(fr['not_identified'])}"
                          if fr.get("not_identified") else ""))
    iso = fit.get("isoflop", {})
    if iso.get("status") == "ok" and "budgets_used" in iso:
        used_c = iso["budgets_used"]
        if iso["shared_budgets"]:
            kind, used = "designed (clustered final FLOPs)", ", ".join(_fmt(c) for c in used_c)
        else:  # a dense interpolated grid: its range says as much as its list
            kind, used = "log-spaced interpolated", f"{_fmt(min(used_c))} to {_fmt(max(used_c))}"
        details.append(f"- **isoflop**: {kind} budgets; used {used} "
                       f"({len(used_c)} of {len(iso['budgets_considered'])} "
                       f"considered, the rest censored)"
                       + (f"; not identified: {'; '.join(iso['not_identified'])}"
                          if iso.get("not_identified") else ""))
    if pa.get("status") == "ok" and pa.get("not_identified"):
        details.append(f"- **parametric**: not identified, coefficients set by the optimiser's "
                       f"bounds rather than the data: {'; '.join(pa['not_identified'])}")
    if pa.get("status") == "ok" and (caveats := entry_caveats(pa)):
        details.append(f"- **parametric**: identified, but {'; '.join(caveats)}")
    lp = fit.get("loss_prediction", {})
    if lp.get("status") == "ok" and lp.get("not_identified"):
        details.append(f"- **loss_prediction**: not identified, set by the fit's bounds rather "
                       f"than the data: {'; '.join(lp['not_identified'])}")
    if details:
        lines += ["", "## Method details", ""] + details
    skipped = [(k, fit[k]["reason"]) for k in ("frontier", "parametric", "loss_prediction",
                                                "isoflop", "extrapolation")
               if fit[k].get("status") == "skipped"]
    if skipped:
        lines += ["", "## Skipped", ""] + [f"- **{k}**: {r}" for k, r in skipped]
    no_ci = [(k, fit[k]["ci_error"]) for k in ("frontier", "parametric", "loss_prediction",
                                                 "isoflop") if fit[k].get("ci_error")]
    if no_ci:
        lines += ["", "## Without intervals", ""] + [f"- **{k}**: {r}" for k, r in no_ci]
    ex = fit["extrapolation"]
    if ex.get("status") == "ok":
        others = [n for n in ex.get("held_out_runs", []) if n != ex["held_out"]]
        seeds = (f", and without the other {len(others)} run(s) of its size"
                 if others else "")
        lines += ["", "## Extrapolation check", "",
                  f"Refit without `{ex['held_out']}` (N = {_fmt(ex['N'])}, reaching "
                  f"C = {_fmt(ex['C_max'])}; the rest reach {_fmt(ex['C_max_fitted'])}){seeds}.",
                  ""]
        if "loss_prediction_L_rel_error" in ex:
            lines.append(f"- loss prediction at its last point: "
                         f"{_fmt(ex['loss_prediction_L_final'])} vs actual {_fmt(ex['L_final'])}"
                         f" ({ex['loss_prediction_L_rel_error']:+.2%})")
        if "parametric_L_rel_error" in ex:
            lines.append(f"- parametric law at its last point: {_fmt(ex['parametric_L_final'])}"
                         f" vs actual {_fmt(ex['L_final'])} ({ex['parametric_L_rel_error']:+.2%})")
        cp = ex.get("closest_point", {})
        if "N_ratio" in cp:
            lines.append(f"- point closest to the extrapolated L_opt (C = {_fmt(cp['C'])}): "
                         f"N / N_opt = {cp['N_ratio']:.3g}, D / D_opt = {cp['D_ratio']:.3g} "
                         f"({cp['source']} law)")
    return "\n".join(lines) + "\n"
