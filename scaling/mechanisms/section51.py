"""Section 5.1: sparse and super-classed losses lower the optimal model-size coefficient.

Character-level transformers on a text file (context 16) are trained under the dense, sparse and
sparse + super-classed losses over a ladder of sizes, under the frontier-seeking budget protocol
(``scaling.mechanisms.char_protocol``); a parametric fit of each family gives ``N_opt ∝ C^a``, and
a frontier fit gives it too where neighbouring sizes' curves cross. The paper finds ``a`` falls
from 0.63 (dense) to 0.15 (sparse + super-classed), the same direction as WM-Token/BC-CNN vs
BC-Token.

Example:
    embscale reproduce section-5.1 --text tinyshakespeare.txt --out runs/section-5.1
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from offline_data.atomic import write_text_atomic
from scaling.fitting import fit_curves
from scaling.inputs import load_curves
from scaling.laws.analysis import FitOptions
from scaling.laws.data import FitError
from scaling.laws.identification import bound_caveats, bound_issues, entry_caveats
from scaling.mechanisms.char_lm import (
    CHAR_SIZES,
    LOSSES,
    CharCorpus,
    CharDataSource,
    build_char_model,
)
from scaling.mechanisms.char_protocol import frontier_estimate, train_ladders
from scaling.mechanisms.common import Estimate, difference, estimate, run_jobs
from scaling.plots import save_figure
from worldmodels.run_metrics import read_metrics
from worldmodels.trainer import TrainConfig, Trainer

logger = logging.getLogger(__name__)

WARMUP_STEPS = 20
PAPER_A = {"dense": 0.63, "sparse": None, "superclass": 0.15}
LOSS_TITLES = {"dense": "dense (all 16 positions)", "sparse": "sparse (last position)",
               "superclass": "sparse + super-classed (2 classes)"}


@dataclass
class Section51Config:
    """What the Section 5.1 reproduction trains and fits."""

    text: str = ""
    """plain-text file to model (tiny-shakespeare in the paper)"""
    out: str = "runs/section-5.1"
    """output directory (runs/ and report/)"""
    sizes: tuple[str, ...] = ("c4k", "c15k", "c40k", "c110k", "c300k")
    """model sizes from the character ladder (c4k ... c17M)"""
    losses: tuple[str, ...] = LOSSES
    """losses to compare"""
    tokens: float = 2e6
    """characters D per run in the protocol's first round (2 passes over tiny-shakespeare's
    training part)"""
    study_flops: float = 0.0
    """the protocol's FLOPs budget (0: twice the first round; a third per loss); runs are also
    capped at 4 passes over the training part"""
    batch_size: int = 128
    """windows per optimizer step"""
    context: int = 16
    """characters per window"""
    seed: int = 0
    """seed of initialisation, data order and the super-class assignment"""
    num_bootstrap: int = 300
    """bootstrap refits per parametric fit"""
    workers: int = 0
    """parallel training processes (0: one per core)"""
    val_batches: int = 16
    """held-out batches per validation point (the fits use val/loss)"""
    val_points_per_decade: int = 12
    """validation points per decade of steps"""
    device: str = "auto"
    """'auto', 'cpu' or 'cuda'"""
    extra: dict = field(default_factory=dict)
    """free-form notes stored with the results"""

    @property
    def min_fit_tokens(self) -> float:
        """Smallest D fitted: twice the warmup (``WARMUP_STEPS`` optimizer steps) in tokens."""
        return 2 * WARMUP_STEPS * self.batch_size * self.context

    def __post_init__(self):
        unknown = [s for s in self.sizes if s not in CHAR_SIZES]
        if unknown:
            raise ValueError(f"unknown sizes {unknown}; choose from {', '.join(CHAR_SIZES)}")
        if len(self.sizes) < 3:
            raise ValueError(f"a parametric fit needs at least 3 sizes, got {list(self.sizes)}")
        bad = [x for x in self.losses if x not in LOSSES]
        if bad:
            raise ValueError(f"unknown losses {bad}; choose from {LOSSES}")
        if self.tokens <= 0 or self.batch_size < 1:
            raise ValueError("tokens and batch_size must be positive")


QUICK = {"sizes": ("c4k", "c15k", "c40k"), "tokens": 1.5e5, "batch_size": 32,
         "num_bootstrap": 40, "val_batches": 4, "val_points_per_decade": 6}


def _train_one(job: dict) -> dict:
    """Train one (loss, size) run; resumes or returns at once if already finished."""
    corpus = CharCorpus(job["text"])
    data = CharDataSource(corpus, job["context"])
    model = build_char_model(job["size"], corpus.vocab_size, job["loss"], job["context"],
                             superclass_seed=job["seed"])
    size = CHAR_SIZES[job["size"]]
    cfg = TrainConfig(run_dir=job["run_dir"], seed=job["seed"], learning_rate=size.learning_rate,
                      warmup_steps=WARMUP_STEPS, micro_batch_size=job["batch_size"],
                      max_tokens=job["tokens"],
                      log_points_per_decade=10, val_points_per_decade=job["val_points"],
                      val_batches=job["val_batches"], device=job["device"], tensorboard=False)
    run_config = {"model_kind": "char-lm", "task": job["loss"], "size": job["size"],
                  "model_config": {**asdict(model.gpt.config), "loss": job["loss"]}}
    result = Trainer(model, data, cfg, run_config=run_config).train()
    return {"loss": job["loss"], "size": job["size"], "params": result.params,
            "val_loss": result.val_loss, "train_loss": result.train_loss}


def train_all(cfg: Section51Config) -> list[dict]:
    """Train every (loss, size) run under the budget protocol (resumable); a summary per run."""
    out = Path(cfg.out)

    def job(loss: str, size: str, tokens: float) -> dict:
        return {"text": str(cfg.text), "context": cfg.context, "size": size, "loss": loss,
                "seed": cfg.seed, "batch_size": cfg.batch_size, "tokens": tokens,
                "val_batches": cfg.val_batches, "device": cfg.device,
                "val_points": cfg.val_points_per_decade,
                "run_dir": str(out / "runs" / loss / size)}

    def run_all(jobs: list[dict]) -> list[dict]:  # the largest models first
        jobs = sorted(jobs, key=lambda j: -_n_guess(j["size"]))
        return run_jobs(_train_one, jobs, cfg.workers, desc="section 5.1 runs")

    return train_ladders(cfg, job, run_all)


def _n_guess(size: str) -> int:
    s = CHAR_SIZES[size]
    return s.n_layer * 12 * s.n_embd ** 2


def fit_all(cfg: Section51Config, min_tokens: float | None = None) -> dict:
    """Parametric fit per loss, with bootstrap intervals and the differences between losses.

    Args:
        cfg: the experiment.
        min_tokens: smallest D fitted (default ``cfg.min_fit_tokens``; 0 fits every point).
    """
    min_tokens = cfg.min_fit_tokens if min_tokens is None else min_tokens

    out = Path(cfg.out)
    opts = FitOptions(methods=("parametric",), num_bootstrap=cfg.num_bootstrap, seed=cfg.seed,
                      extrapolation=False)
    # one run per size: the frontier's refits resample points within runs (resampling whole
    # runs would drop sizes from most refits)
    frontier_opts = FitOptions(methods=("frontier",), num_bootstrap=cfg.num_bootstrap,
                               seed=cfg.seed, extrapolation=False, bootstrap_scheme="within-run")
    fits, analyses, failed, all_curves, frontier = {}, {}, {}, {}, {}
    for loss in cfg.losses:
        curves = load_curves([out / "runs" / loss / s for s in cfg.sizes], loss_key="val/loss")
        # Points logged before twice the warmup are dropped: the learning rate is not yet the
        # constant one, so they are not samples of the law being fitted.
        curves = curves.take(np.flatnonzero(curves.D >= min_tokens))
        all_curves[loss] = curves
        frontier[loss] = frontier_estimate(curves, frontier_opts, out, loss)
        try:
            res = fit_curves(curves, opts, loss_key="val/loss").analysis
        except FitError as e:
            # Recorded and reported; the other losses are still fitted.
            failed[loss] = str(e)
            logger.warning("section 5.1: the %s fit failed: %s", loss, e)
            continue
        p = res.parametric
        boot = res.boot.get("parametric")
        samples = boot.samples if boot is not None else {}
        fits[loss] = {k: estimate(getattr(p, k), samples.get(k)) for k in
                      ("a", "b", "alpha", "beta", "E")}
        fits[loss]["samples_a"] = samples.get("a")
        judged = res.judged_ci("parametric")
        fits[loss]["not_identified"] = bound_issues(p, judged)
        fits[loss]["caveats"] = bound_caveats(p, judged)
        fits[loss]["bootstrap"] = res.bootstrap_summary()
        analyses[loss] = res
    effects, unidentified, caveated = {}, {}, {}
    for lo, hi in (("dense", "sparse"), ("sparse", "superclass"), ("dense", "superclass")):
        if lo in fits and hi in fits:
            name = f"{lo} - {hi}"
            effects[name] = difference(fits[lo]["a"].value, fits[lo]["samples_a"],
                                       fits[hi]["a"].value, fits[hi]["samples_a"],
                                       seed=cfg.seed)
            why = [f"{loss}: {', '.join(fits[loss]['not_identified'])}" for loss in (lo, hi)
                   if fits[loss]["not_identified"]]
            if why:
                unidentified[name] = "; ".join(why)
            elif cav := [loss for loss in (lo, hi) if fits[loss]["caveats"]]:
                caveated[name] = cav  # the losses; their caveats are listed above the table
    return {"fits": fits, "effects": effects, "unidentified": unidentified, "caveated": caveated,
            "analyses": analyses, "failed": failed, "curves": all_curves,
            "min_tokens": min_tokens, "frontier": frontier}


def figure10(fitted: dict, path: Path) -> Path:
    """Training curves (val loss vs FLOPs, coloured by N) with the parametric fit, per loss."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib import cm, colors

    curves = fitted["curves"]
    losses = list(curves)
    fig, axes = plt.subplots(1, len(losses), figsize=(5 * len(losses), 4.2),
                             constrained_layout=True, squeeze=False)
    allN = np.concatenate([c.curve_N for c in curves.values()])
    norm = colors.LogNorm(vmin=allN.min(), vmax=allN.max())
    cmap = plt.get_cmap("viridis")
    for ax, loss in zip(axes[0], losses, strict=True):
        c = curves[loss]
        res = fitted["analyses"].get(loss)
        p = res.parametric if res is not None else None
        for i, sl in enumerate(c.curve_slices()):
            col = cmap(norm(c.curve_N[i]))
            ax.plot(c.C[sl], c.L[sl], color=col, lw=1.3)
            if p is not None:
                ax.plot(c.C[sl], p.predict(c.N[sl], c.D[sl]), color=col, lw=0.9, ls="--")
        sub = (f"parametric fit: $N_{{opt}} \\propto C^{{{p.a:.2f}}}$" if p is not None
               else "parametric fit failed (see report)")
        ax.set(xscale="log", xlabel="FLOPs C", ylabel="validation loss (nats)",
               title=f"{LOSS_TITLES[loss]}\n{sub}")
    fig.colorbar(cm.ScalarMappable(norm=norm, cmap=cmap), ax=axes[0, -1], label="parameters N")
    return save_figure(fig, path)


def _fit_lines(fitted: dict) -> list[str]:
    """The coefficient and effect tables of one set of fits."""
    lines = ["| loss | a (ours) | a (paper) | b (ours) | alpha | beta | E |",
             "|---|---|---|---|---|---|---|"]
    for loss, f in fitted["fits"].items():
        paper = PAPER_A.get(loss)
        lines.append(f"| {LOSS_TITLES[loss]} | {f['a'].fmt()} | "
                     f"{'—' if paper is None else f'{paper:.2f}'} | {f['b'].fmt()} | "
                     f"{f['alpha'].fmt()} | {f['beta'].fmt()} | {f['E'].fmt()} |")
    for loss, reason in fitted["failed"].items():
        paper = PAPER_A.get(loss)
        lines.append(f"| {LOSS_TITLES[loss]} | fit failed: {reason} | "
                     f"{'—' if paper is None else f'{paper:.2f}'} | | | | |")
    boots = [f"{LOSS_TITLES[loss]} {f['bootstrap']['num_failed'].get('parametric', 0)} of "
             f"{f['bootstrap']['num']} ({f['bootstrap']['scheme']} resampling)"
             for loss, f in fitted["fits"].items()]
    if boots:
        lines += ["", "Failed bootstrap refits, left out: " + "; ".join(boots) + "."]
    for loss, f in fitted["fits"].items():
        if f["not_identified"]:
            lines += ["", f"{LOSS_TITLES[loss]}: not identified, "
                      f"{'; '.join(f['not_identified'])}."]
        elif caveats := entry_caveats(f):
            lines += ["", f"{LOSS_TITLES[loss]}: identified, but {'; '.join(caveats)}."]
    lines += ["", "| difference in a | estimate | reproduced? |", "|---|---|---|"]
    for name, eff in fitted["effects"].items():
        lines.append(f"| {name} | {eff.fmt()} | {_verdict(eff, fitted, name)} |")
    lines += ["", "Frontier fits of the same curves (where neighbouring sizes cross):", "",
              "| loss | a, frontier fit | sizes on the frontier |", "|---|---|---|"]
    for loss, f in fitted["frontier"].items():
        if "reason" in f:
            why = f["reason"].removeprefix("not identified: ")
            lines.append(f"| {LOSS_TITLES[loss]} | not identified: {why} | |")
        else:
            note = f" (no interval: {f['no_interval']})" if f.get("no_interval") else ""
            lines.append(f"| {LOSS_TITLES[loss]} | {f['a'].fmt()}{note} | {f['sizes']} |")
    return lines


def _fits_json(fitted: dict) -> dict:
    return {"min_tokens": fitted["min_tokens"],
            "fits": {loss: {k: v.to_json() for k, v in f.items() if isinstance(v, Estimate)}
                     for loss, f in fitted["fits"].items()},
            "effects": {k: {**v.to_json(), "reproduced": _verdict(v, fitted, k)}
                        for k, v in fitted["effects"].items()},
            "not_identified": {loss: f["not_identified"] for loss, f in fitted["fits"].items()
                               if f["not_identified"]},
            "caveats": {loss: entry_caveats(f) for loss, f in fitted["fits"].items()
                        if entry_caveats(f)},
            "bootstrap": {loss: f["bootstrap"] for loss, f in fitted["fits"].items()},
            "failed": fitted["failed"],
            "frontier": {loss: ({"reason": f["reason"]} if "reason" in f else
                                {"a": f["a"].to_json(), "sizes": f["sizes"],
                                 "no_interval": f.get("no_interval")})
                         for loss, f in fitted["frontier"].items()}}


def _loss_drop(out: Path, loss: str, size: str) -> tuple[float, float, float]:
    """First, best and last validation loss of one run."""
    rows = read_metrics(out / "runs" / loss / size)
    vals = [r["val/loss"] for r in rows if "val/loss" in r]
    return (vals[0], min(vals), vals[-1]) if vals else (math.nan, math.nan, math.nan)


def write_report(cfg: Section51Config, results: list[dict], fitted: dict, command: str,
                 all_points: dict | None = None) -> Path:
    """``report/report.md``, ``report/results.json`` and ``report/figure10.png`` under ``out``.

    Args:
        cfg: the experiment.
        results: one summary per run.
        fitted: the primary fits (points after the warmup).
        command: the command that regenerates the report.
        all_points: the same fits on every logged point (the paper's choice), shown beside.
    """
    rep = Path(cfg.out) / "report"
    rep.mkdir(parents=True, exist_ok=True)
    figure10(fitted, rep / "figure10.png")
    lines = [
        "# Section 5.1: sparse and super-classed losses", "",
        "Character-level transformers (context 16) trained under three losses; a parametric fit "
        "`L = E + A/N^alpha + B/D^beta` (Huber on log loss, Hoffmann/Epoch) of each family's "
        "validation-loss curves gives the compute-optimal model-size coefficient "
        "`a = beta/(alpha+beta)` in `N_opt ∝ C^a`. 95% bootstrap intervals, resampling whole "
        "runs. The paper's claim is that `a` falls from dense to sparse + super-classed (0.63 "
        "to 0.15); an effect is reproduced when the interval of the difference lies above zero "
        "and neither fit sits at its bounds (not identified).", "",
        f"Regenerate: `{command}`", "",
        f"## Fits on points after the warmup (D >= {fitted['min_tokens']:,.0f})", "",
        *_fit_lines(fitted), ""]
    if all_points is not None:
        lines += ["## Fits on every logged point", "",
                  "The same fits including the warmup points, as a sensitivity check.", "",
                  *_fit_lines(all_points), ""]
    lines += ["![Figure 10](figure10.png)", "", "## Runs", "",
              "| loss | size | N | first val loss | best val loss | final val loss |",
              "|---|---|---|---|---|---|"]
    for r in sorted(results, key=lambda r: (r["loss"], r["params"])):
        first, best, last = _loss_drop(Path(cfg.out), r["loss"], r["size"])
        if r["val_loss"] is None or not math.isfinite(r["val_loss"]):
            # a run resumed when already finished reports no val loss: its last logged one
            r["val_loss"] = None if math.isnan(last) else last
        vl = r["val_loss"]
        lines.append(f"| {r['loss']} | {r['size']} | {r['params']:,} | {first:.4f} | "
                     f"{best:.4f} | {'—' if vl is None else f'{vl:.4f}'} |")
    cfg_json = {k: v for k, v in asdict(cfg).items() if k != "text"}
    cfg_json["text"] = Path(cfg.text).name
    lines += ["", "## Configuration", "", "```json", json.dumps(cfg_json, indent=2), "```", ""]
    write_text_atomic(rep / "report.md", "\n".join(lines))
    payload = {**_fits_json(fitted), "paper": PAPER_A, "runs": results, "config": cfg_json}
    if all_points is not None:
        payload["all_points"] = _fits_json(all_points)
    write_text_atomic(rep / "results.json", json.dumps(payload, indent=2))
    return rep / "report.md"


def _verdict(eff: Estimate, fitted: dict | None = None, name: str = "") -> str:
    why = (fitted or {}).get("unidentified", {}).get(name)
    if why:  # a difference of coefficients the bounds set, not the data: no finding
        return f"not identified ({why})"
    if math.isnan(eff.low):
        verdict = "no interval"
    elif eff.low > 0:
        verdict = "yes"
    elif eff.high < 0:
        verdict = "no: opposite direction"
    else:
        verdict = "not significant (interval includes 0)"
    losses = (fitted or {}).get("caveated", {}).get(name)
    if not losses:
        return verdict
    names = " and ".join(losses)
    whose = (f"the {names} fits' E intervals reach" if len(losses) > 1 else
             f"the {names} fit's E interval reaches")
    return f"{verdict}; caveat: {whose} 0"


def run(cfg: Section51Config, command: str = "embscale reproduce section-5.1") -> dict:
    """Train, fit, write the report; return the headline numbers."""
    results = train_all(cfg)
    fitted = fit_all(cfg)
    all_points = fit_all(cfg, min_tokens=0)
    report = write_report(cfg, results, fitted, command, all_points)
    head = {loss: f["a"].fmt() for loss, f in fitted["fits"].items()}
    head.update({loss: f"fit failed ({reason})" for loss, reason in fitted["failed"].items()})
    every = {loss: f["a"].fmt() for loss, f in all_points["fits"].items()}
    front = {loss: f["a"].fmt() if "a" in f else "not identified"
             for loss, f in fitted["frontier"].items()}
    return {"report": str(report), "a": head, "a (frontier fit)": front,
            "effects": {k: (v.fmt(), _verdict(v, fitted, k))
                        for k, v in fitted["effects"].items()},
            "a (every point)": every,
            "effects (every point)": {k: (v.fmt(), _verdict(v, all_points, k))
                                      for k, v in all_points["effects"].items()}}
