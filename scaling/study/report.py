"""Assemble a study's report from the outputs of its stages (``runs/<study>/report/``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from offline_data.atomic import write_text_atomic
from scaling.fitting import bootstrap_sentence
from scaling.study.action_baselines import below_bar, context_bar, context_bar_stderr
from scaling.study.loss_vs_quality import cluster_note
from scaling.study.paths import PROTOCOL_FILE
from scaling.study.report_exponents import (
    agreement_sentence,
    difference_sentence,
    frontier_identified,
    isoflop_sentence,
)
from scaling.study.report_page import (
    TASK_TITLES,
    Report,
    coefficient_table,
    compact_json,
    fit_figure_caption,
    fmt,
    read_json,
    skipped_reason,
)
from scaling.study.report_protocol import data_limit_note, protocol_section
from scaling.study.spec import StudySpec
from scaling.study.steps import fit_dir, plan_runs
from scaling.study.sweep import run_status
from worldmodels.run_metrics import read_metrics


def _corr_cell(c: dict | None, key: str) -> str:
    if not c or key not in c:
        return "n/a"
    lo, hi = c[f"{key}_ci"]
    return f"{c[key]:.3f} [{fmt(lo)}, {fmt(hi)}]"


def _dataset_section(r: Report, ds: dict | None) -> None:
    r.add("h2", "Dataset")
    if not ds:
        r.add("p", "*(no dataset summary: the dataset stage has not run)*")
        return
    rows = [["Property", "Value"], ["Minari id", f"`{ds['id']}`"],
            ["Episodes", fmt(ds["episodes"])], ["Frames (timesteps)", fmt(ds["frames"])],
            ["Observation", "x".join(map(str, ds["observation_shape"])) + " uint8 RGB"],
            ["Action space", ds["action_space"]],
            ["Action vocab per dimension", str(ds["action_vocab_sizes"])]]
    for key, label in (("episode_steps", "Episode length (steps)"), ("returns", "Episode return"),
                       ("skills", "Demonstrator skill")):
        s = ds.get(key)
        if s:
            rows.append([label, f"mean {fmt(s['mean'])}, range {fmt(s['min'])} – {fmt(s['max'])}"])
    r.add("table", "", rows)


def _tokenizer_section(r: Report, study_dir: Path, spec: StudySpec) -> None:
    r.add("h2", "Tokenizer")
    tok_dir = Path(spec.tokenizer.checkpoint).parent if spec.tokenizer.checkpoint else \
        study_dir / "tokenizer"
    summary = read_json(tok_dir / "summary.json")
    text = (f"VQ-VAE with d_z = {spec.tokenizer.tokens_per_frame} tokens per frame and "
            f"V_o = {spec.tokenizer.codebook_size} codes.")
    if summary and "val/psnr" in summary:
        text += (f" {fmt(summary['params'])} parameters, {summary['step']:,} steps in "
                 f"{summary['seconds']:.0f} s. Held-out PSNR {summary['val/psnr']:.2f} dB over "
                 f"{summary['val_frames']} frames")
        if summary.get("val/psnr_foreground") is not None:
            text += (f"; {summary['val/psnr_foreground']:.2f} dB over the "
                     f"{100 * summary['val/foreground_fraction']:.1f}% of pixels that move (a "
                     f"foreground PSNR far below the frame's means small objects are lost)")
        text += (f". {summary['val/codes_used']} of {spec.tokenizer.codebook_size} codes in use, "
                 f"perplexity {summary['val/perplexity']:.1f}.")
    r.add("p", text)
    for name in ("reconstructions.png", "recon.png", "reconstruction.png"):
        if (tok_dir / name).is_file():
            r.media(tok_dir / name, "img", "Held-out frames (top) and their reconstructions",
                    name="tokenizer_" + name)
            break


def _runs_table(spec: StudySpec) -> list[list[str]]:
    rows = [["Run", "N", "D (inputs)", "C (FLOPs)", "final train loss", "final val loss",
             "passes", "status"]]
    for run in plan_runs(spec):
        try:
            recs = read_metrics(run.run_dir)
        except FileNotFoundError:
            recs = []
        last = recs[-1] if recs else {}
        val = next((x["val/loss"] for x in reversed(recs) if "val/loss" in x), None)
        rows.append([run.name, fmt(last.get("params", run.params)), fmt(last.get("tokens")),
                     fmt(last.get("flops")), fmt(last.get("train/loss")), fmt(val),
                     fmt(last.get("epoch")), run_status(run)])
    return rows


def _lowest_val_loss(spec: StudySpec, task: str) -> float | None:
    vals = []
    for run in plan_runs(spec):
        if run.task != task:
            continue
        try:
            vals += [x["val/loss"] for x in read_metrics(run.run_dir) if "val/loss" in x]
        except FileNotFoundError:
            continue
    return min(vals) if vals else None


def _action_bars(b: dict) -> dict[str, tuple[str, float, float | None]]:
    """Each BC task's action-only bar from ``action_baselines.json``: (name, loss, stderr).

    BC-Token sees the past actions inside its window, so the n-gram limited to that window is its
    bar; BC-CNN sees no past actions, so the marginal is its bar.
    """
    bars = {}
    if (bar := context_bar(b)) is not None:
        bars["bc-token"] = ("that windowed n-gram", bar, context_bar_stderr(b))
    bars["bc-cnn"] = ("the marginal", b["marginal"], b.get("marginal_stderr"))
    return bars


def _bar_verdict(task: str, b: dict, name: str, bar: float, bar_se: float | None) -> str | None:
    """The bar test of one BC task: its held-out loss and the bar, each with its error."""
    held = (b.get("bc_held_out") or {}).get(task)
    if not held:
        return None
    loss, se = held["loss"], held.get("stderr")
    verdict = below_bar(loss, se, bar, bar_se)
    text = {True: "below it by more than two standard errors, so the model uses what the frames "
                  "tell",
            False: "above it by more than two standard errors, so the model does not yet beat "
                   "a predictor that ignores the frames",
            None: "within two standard errors of it (or an error is unknown), so the test "
                  "cannot tell them apart"}[verdict]
    return (f" {TASK_TITLES.get(task, task)}'s best run scores {fmt(loss)} ± {fmt(se)} on the "
            f"whole {b['split']} split against {name}'s {fmt(bar)} ± {fmt(bar_se)}: {text}.")


def _baselines_paragraph(r: Report, spec: StudySpec) -> None:
    """Action-only baselines beside the BC tasks' lowest held-out losses."""
    b = read_json(spec.study_dir / "fits" / "action_baselines.json")
    if not b:
        return
    text = (f"Action-only baselines on the held-out split ({b['actions']} actions; nats per "
            f"action, the unit of the BC curves): the training split's action frequencies (the "
            f"marginal) score {fmt(b['marginal'])}")
    order = b.get("best_order")
    if order:
        text += (f"; predicting each action from the {order} before it in its episode (an "
                 f"action {order + 1}-gram) scores {fmt(b['ngram'][str(order)])}")
    bars = _action_bars(b)
    if "bc-token" in bars:
        text += (f", and {fmt(bars['bc-token'][1])} when it may look back only as far as "
                 f"BC-Token's window of {b['context_steps']} timesteps (the action at window "
                 "position j has j actions before it)")
    text += ". BC-Token sees the past actions in its window, BC-CNN none."
    for task, (name, ref, ref_se) in bars.items():
        verdict = _bar_verdict(task, b, name, ref, ref_se)
        low = _lowest_val_loss(spec, task)
        if verdict is None and low is not None:
            verdict = (f" {TASK_TITLES.get(task, task)}'s lowest sampled val/loss is {fmt(low)} "
                       f"against {name}'s {fmt(ref)}; without a standard error of both losses "
                       "the report draws no conclusion from the comparison.")
        text += verdict or ""
    r.add("p", text)


def _points_sentence(fit) -> str:
    """Which points of each curve the fits use (``fit.skip_fraction``, ``skip_above_uniform``)."""
    above = (" and after its last loss above a uniform guess over what the task scores (a "
             "model that has not yet left its untrained start)" if fit.skip_above_uniform else "")
    return (f"Each curve is fitted after its first {fit.skip_fraction:.0%} of inputs and its "
            f"learning-rate warmup{above}.")


def _fits_section(r: Report, spec: StudySpec) -> None:
    fits = {t.task: read_json(fit_dir(spec, t.task) / "fit.json") or {} for t in spec.tasks}
    r.add("h2", "Scaling coefficients (paper Table 1)")

    r.add("p", "Compute-optimal allocation `N_opt ∝ C^a`, `D_opt ∝ C^b` from the frontier fit "
          "(Hoffmann Method 1) and the parametric fit `L = E + A/N^α + B/D^β` (Method 3), with "
          "bootstrap 95% intervals in brackets. N/A: the fit was skipped (reasons below). The "
          "paper favours the frontier fit where curves overlap. Below the table, each task's "
          "IsoFLOP fit (Method 2: a parabola in log N at each compute budget) is placed "
          "against both intervals. " + _points_sentence(spec.fit))
    for task, fit in fits.items():
        if fit and fit.get("options"):
            r.add("p", f"{TASK_TITLES.get(task, task)}: {bootstrap_sentence(fit)}")
    r.add("table", "", coefficient_table(fits))
    for task, fit in fits.items():  # the reasons of skipped fits follow once, in the list below
        iso = isoflop_sentence(fit, reasons=False)
        r.add("p", f"{TASK_TITLES.get(task, task)}: {agreement_sentence(fit, reasons=False)} "
                   f"Frontier fit {frontier_identified(fit, reasons=False)[1]}."
                   + (f" {iso}" if iso else ""))
    if diff := difference_sentence(fits):
        r.add("p", diff)
    notes = []
    for task, fit in fits.items():
        if fit and fit.get("error"):  # no law could be fitted: one reason for all of them
            notes.append([f"{TASK_TITLES.get(task, task)}: {fit['error']}"])
            continue
        limit = data_limit_note(spec.study_dir, task)
        extra = ("isoflop",) if fit and "isoflop" in fit else ()  # older fit.json: none
        for name in ("frontier", "parametric", "loss_prediction", *extra):
            why = skipped_reason(fit.get(name)) if fit else "fit did not run"
            if why:
                why = f"{limit}. {why}" if limit and name == "frontier" else why
                notes.append([f"{TASK_TITLES.get(task, task)} {name}: {why}"])
            elif fit.get(name, {}).get("ci_error"):
                notes.append([f"{TASK_TITLES.get(task, task)} {name}: no interval, "
                              f"{fit[name]['ci_error']}"])
        lp = fit.get("loss_prediction") if fit else None
        if lp and skipped_reason(lp) is None:
            bounds = lp.get("not_identified")
            notes.append([f"{TASK_TITLES.get(task, task)} loss prediction: L_opt(C) = "
                          f"{fmt(lp['c0'])} C^-{fmt(lp['c'])} + {fmt(lp['E'])}"
                          + (f"; not identified: {'; '.join(bounds)}" if bounds else "")])
    if notes:
        r.add("list", rows=notes)
    _baselines_paragraph(r, spec)
    r.add("h2", "Training curves and frontiers (paper Figures 1 and 5)")
    final = (read_json(spec.study_dir / PROTOCOL_FILE) or {}).get("final") or {}
    for task in fits:
        crossed = any(p.get("status") == "crossing" for p in (final.get(task) or {}).get(
            "pairs", []))
        r.media(fit_dir(spec, task) / "scaling_fit.png", "img",
                fit_figure_caption(TASK_TITLES.get(task, task), fits[task], crossed),
                name=f"{task}_scaling_fit.png")
    r.add("h2", "Planner: the next 10x of compute")
    rows = [["Task", "C (FLOPs)", "N_opt", "D_opt", "predicted loss", "nearest preset",
             "passes over data", "in infinite-data regime"]]
    notes_caveats: list[list[str]] = []
    for task in fits:
        a = read_json(fit_dir(spec, task) / "advice.json")
        if not a or "skipped" in a:
            rows.append([TASK_TITLES.get(task, task), fmt(a.get("flops")) if a else "n/a",
                         (a or {}).get("skipped", "no fit"), "", "", "", "", ""])
            continue
        rows.append([TASK_TITLES.get(task, task), fmt(a["flops"]), fmt(a["N_opt"]),
                     fmt(a["D_opt"]), _loss_cell(a), f"{a['preset']} ({fmt(a['preset_params'])})",
                     fmt(a["epochs"]), {True: "yes", False: "**no**", None: "unknown"}[
                         a["supported"]]])
        for caveat in a.get("caveats", []):
            notes_caveats.append([f"{TASK_TITLES.get(task, task)}: {caveat}"])
    r.add("table", "", rows)
    if notes_caveats:
        r.add("p", "Caveats (advice to read with care):")
        r.add("list", rows=notes_caveats)


def _loss_cell(advice: dict) -> str:
    """The planner's predicted loss and the law it comes from."""
    if advice.get("loss") is None:
        return "n/a"
    source = {"loss_prediction": "loss prediction", "parametric": "parametric law"}.get(
        advice.get("loss_source"), advice.get("loss_source"))
    return fmt(advice["loss"]) + (f" ({source})" if source else "")


def _return_section(r: Report, study_dir: Path) -> None:
    r.add("h2", "Pre-training loss vs online return (paper Figure 2)")
    res = read_json(study_dir / "loss_vs_return" / "return.json")
    if not res:
        r.add("p", "*(not run)*")
        return
    r.add("p", f"Each point is a BC checkpoint evaluated for {res['episodes']} episodes in "
          f"`{res['env_id']}` (capped at {res['max_episode_steps']} steps, "
          f"{'greedy' if res['deterministic'] else 'sampled'} actions); a uniformly random "
          f"policy scores {fmt(res['random_policy_return'])}. Checkpoints before "
          f"{res.get('skip_fraction', 0.0):.0%} of a run's last step are left out (an untrained "
          "network samples near-uniform actions and plays like the random baseline)"
          + (", and so are checkpoints whose loss is above a uniform guess over the actions "
             "(the mean over action dimensions of ln of their classes), which have learned "
             "nothing yet"
             if res.get("skip_above_uniform") else "")
          + ". The paper's meta-analysis found correlations stronger than -0.94 in the "
          "infinite-data regime.")
    rows = [["Group", "checkpoints", "Pearson r [95% CI]", "Spearman ρ [95% CI]",
             "fit: return = slope × loss + c"]]
    for name, s in res["summary"].items():
        if "skipped" in s:
            rows.append([name, str(s["n"]), s["skipped"], "", ""])
            continue
        f = s["fit"]
        rows.append([TASK_TITLES.get(name, name), str(s["n"]),
                     _corr_cell(s["correlation"], "pearson"),
                     _corr_cell(s["correlation"], "spearman"),
                     f"slope {fmt(f['slope'])} [{fmt(f['slope_ci'][0])}, {fmt(f['slope_ci'][1])}]"
                     f", R² {fmt(f['r2'])}"])
    r.add("table", "", rows)
    _cluster_notes(r, {k: v.get("correlation") for k, v in res["summary"].items()})
    b = read_json(study_dir / "fits" / "action_baselines.json")
    for task, (_, bar, bar_se) in (_action_bars(b) if b else {}).items():
        losses = [x["loss"] for x in res["rows"] if x.get("task") == task]
        # Sampled val/loss has no error of its own here: claim only a clear gap to the bar.
        if losses and bar_se is not None and min(losses) - bar > 4 * bar_se:
            r.add("p", f"Every {TASK_TITLES.get(task, task)} checkpoint scored here has a "
                  f"held-out loss ({fmt(min(losses))} or more) above its action-only bar "
                  f"({fmt(bar)} ± {fmt(bar_se)}, see the scaling section), by more than four of "
                  "the bar's standard errors: those policies have not learnt from the frames, "
                  "and their correlation with return says little.")
    r.media(study_dir / "loss_vs_return" / res["figure"], "img",
            "Online return vs pre-training loss of BC checkpoints (error bars: standard error)")


def _cluster_notes(r: Report, corr: dict[str, dict | None]) -> None:
    """Say so where a correlation's points form clusters (Spearman far below Pearson)."""
    notes = [[f"{TASK_TITLES.get(k, k)}: {n}"] for k, c in corr.items()
             if (n := cluster_note(c))]
    if notes:
        r.add("list", rows=notes)


def _quality_section(r: Report, study_dir: Path) -> None:
    r.add("h2", "Pre-training loss vs world-model rollout quality (paper Figure 3)")
    res = read_json(study_dir / "loss_vs_quality" / "quality.json")
    if not res:
        r.add("p", "*(not run)*")
        return
    r.add("p", f"Each world-model checkpoint generates {res['clips']} clips of "
          f"{res['clip_frames']} frames from the real first frame and the real actions of "
          f"held-out episodes {res['episodes']}; FVD (Kinetics-400 I3D) over the clip sets, "
          "LPIPS (AlexNet), PSNR and SSIM per generated frame against the real ones. The paper "
          "reports correlations of 0.77 (LPIPS) and 0.83 (FVD). Few clips make FVD noisy and "
          "biased upwards; compare values within this study only.")
    if "n" in res:
        early = res["left_out_early"]
        r.add("p", f"{res['n']} trained checkpoints are correlated; the {early} saved before "
              f"{res['skip_fraction']:.0%} of their run's last step {'is' if early == 1 else 'are'}"
              " left out, as for loss vs return (an untrained world model sits near ln V and "
              "would form a cluster of its own).")
    else:
        r.add("p", "These correlations include untrained checkpoints (the study ran before the "
              "early-checkpoint rule); rerun the quality stage to correlate trained ones only.")
    rows = [["Metric", "n", "Pearson r [95% CI]", "Spearman ρ [95% CI]", "expected sign"]]
    for m, sign in (("fvd", "+"), ("lpips", "+"), ("psnr", "−"), ("ssim", "−")):
        c = res["correlation"].get(m, {})
        n = str(c.get("n", len(res.get("rows", []))))
        if "skipped" in c:
            rows.append([m.upper(), n, c["skipped"], "", sign])
        else:
            rows.append([m.upper(), n, _corr_cell(c, "pearson"), _corr_cell(c, "spearman"),
                         sign])
    r.add("table", "", rows)
    _cluster_notes(r, {m.upper(): c for m, c in res["correlation"].items()})
    r.media(study_dir / "loss_vs_quality" / res["figure"], "img",
            "Rollout metrics vs pre-training loss of world-model checkpoints")
    for v in res["videos"]:
        r.media(study_dir / "loss_vs_quality" / v["file"], "video",
                f"Real (left) vs imagined (right): {v['run']} step {v['step']}, loss "
                f"{fmt(v['loss'])}, FVD {fmt(v['fvd'])}")


def write_study_report(spec: StudySpec) -> dict[str, Any]:
    """Write ``report.md`` and ``report.html`` for the study; returns their paths."""
    study_dir = spec.study_dir
    r = Report(study_dir / "report", f"Scaling study: {spec.name}")
    record = read_json(study_dir / "study.json") or {}
    if spec.description:
        r.add("p", spec.description)
    secs, job = record.get("stage_seconds", {}), record.get("job")
    times = ("Stage times (last invocation): "
             + ", ".join(f"{k} {v:.0f} s" for k, v in secs.items())
             + f"; total {sum(secs.values()):.0f} s. ") if secs else ""
    if job:
        times += (f"The job took {job['seconds']:,.0f} s from its start to this report, setup "
                  f"included, under a time limit of {job['limit_s']:,.0f} s.")
    if times:
        r.add("p", times.strip())
    _dataset_section(r, read_json(study_dir / "dataset.json"))
    _tokenizer_section(r, study_dir, spec)
    protocol_section(r, study_dir, study_dir / "fits", spec.fit.loss_key)
    _fits_section(r, spec)
    _return_section(r, study_dir)
    _quality_section(r, study_dir)
    r.add("h2", "Runs")
    r.add("table", "", _runs_table(spec))
    r.add("h2", "Exact configuration")
    r.add("p", f"Study spec (fingerprint `{spec.fingerprint()}`); rerun it with "
          "`embscale study --spec study_spec.json`. Each run's full trainer config is in "
          "`<run>/config.json`.")
    r.add("code", compact_json(spec.to_dict()))

    write_text_atomic(r.out_dir / "study_spec.json", compact_json(spec.to_dict()) + "\n")
    md, page = r.write()
    return {"markdown": str(md), "html": str(page)}
