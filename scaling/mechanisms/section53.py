"""Section 5.3: the tokenizer's compression rate moves the optimal model-size coefficient.

On the robot dataset, one VQ-VAE per tokens-per-frame value ``d_z`` in {16, 36, 64, 100, 256}, a
ladder of WM-Token models per tokenizer (the CPU ladder, with Table 7's two steps of context;
``--sizes rt1-0.08M ...`` for the paper's RT-1 sizes) trained under the frontier-seeking budget
protocol (every size starts at one compute value and runs are extended until neighbouring sizes
cross, within a FLOPs budget per ladder and 4 passes over the data), a frontier fit
per (tokenizer, seed), then the coefficient ``a`` of ``N_opt ∝ C^a`` against ``d_z`` with its
correlation (paper Figure 16: ``a`` rises with ``d_z``, R = 0.61 over three repeats).

Each (tokenizer, seed) is one study of the ordinary pipeline (dataset, tokenizer, sweep, fit), so
the experiment is resumable and its runs are ordinary run directories.

Example:
    embscale reproduce section-5.3 --out runs/section-5.3
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from offline_data.defaults import DEFAULTS
from scaling.laws.identification import entry_caveats
from scaling.mechanisms.common import check_dataset_arg, estimate, pearson
from scaling.mechanisms.section53_report import PAPER_R, figure, identified, write_report
from scaling.study.spec import (
    DatasetSpec,
    FitSpec,
    QualityStudySpec,
    ReturnStudySpec,
    StudySpec,
    TaskSweep,
    TokenizerSpec,
)
from worldmodels.run_metrics import metrics_path, read_metrics

logger = logging.getLogger(__name__)


@dataclass
class Section53Config:
    """What the Section 5.3 reproduction trains."""

    out: str = "runs/section-5.3"
    """output directory (one study per tokenizer and seed, and report/)"""
    dataset: str = "embscale/fetch-pick-place/scripted-v0"
    """robot Minari dataset (collected if it is the embedded default and missing; any other
    must exist)"""
    tokens_per_frame: tuple[int, ...] = (16, 36, 64, 100, 256)
    """tokens per frame (the paper's d_z) of each tokenizer"""
    sizes: tuple[str, ...] = ("s10k", "s30k", "s100k", "s300k")
    """WM-Token sizes (the CPU ladder; the paper's Table 7 RT-1 sizes rt1-0.08M ... on a GPU)"""
    seeds: tuple[int, ...] = (0, 1)
    """repeats of each ladder (the paper used three)"""
    flops: float = 1e11
    """first-round compute per run, the same for every size (the protocol extends runs)"""
    study_flops: float = 2e12
    """the protocol's budget per ladder (6ND summed over its runs; 4 sizes x 5e11)"""
    seq_len: int = 2
    """timesteps of context, the same for every d_z (paper Table 7: 2; 2 x 260 tokens at 256)"""
    tokens_per_update: int = 2048
    """tokens per optimizer step: small, so the largest size still gets ~100 updates"""
    tokenizer_steps: int = 800
    """VQ-VAE updates per tokenizer"""
    codebook_size: int = 512
    """V_o of every tokenizer"""
    bootstrap: int = 200
    """bootstrap refits per frontier fit"""
    parallel: int = 2
    """training runs at a time"""
    device: str = "cpu"
    """cpu | cuda | auto"""
    episodes: int = 240
    """episodes to collect when the dataset is missing (12,000 frames)"""

    def __post_init__(self):
        if len(self.tokens_per_frame) < 3:
            raise ValueError("a correlation needs at least 3 tokens-per-frame values, got "
                             f"{list(self.tokens_per_frame)}")
        if len(self.sizes) < 3:
            raise ValueError(f"a frontier fit needs at least 3 sizes, got {list(self.sizes)}")


QUICK_DATASET = "embscale/fetch-pick-place/quick-v0"
"""The miniature dataset of ``--quick``, under its own id (never a truncated copy of the real
default)."""

QUICK = {"tokens_per_frame": (16, 36, 64), "sizes": ("s10k", "s30k", "s100k"), "seeds": (0, 1),
         "flops": 5e9, "study_flops": 6e10, "tokens_per_update": 512, "tokenizer_steps": 30,
         "codebook_size": 64, "bootstrap": 20, "episodes": 6}


def own_dataset(quick: bool) -> str:
    """The dataset the reproduction collects when it is missing (the default, or its quick id)."""
    return QUICK_DATASET if quick else Section53Config.dataset


def study_spec(cfg: Section53Config, k: int, seed: int, quick: bool):
    """The study of tokenizer ``k`` and ladder repeat ``seed``."""
    fetch = DEFAULTS["fetch"]
    tok_ckpt = None
    if seed != cfg.seeds[0]:  # one tokenizer per d_z, shared by the repeats
        tok_ckpt = str(Path(cfg.out) / f"k{k}-seed{cfg.seeds[0]}" / "tokenizer" / "tokenizer.pt")
    return StudySpec(
        name=f"k{k}-seed{seed}", runs_dir=cfg.out,
        description=f"Section 5.3: WM-Token ladder on {k} tokens per frame (repeat {seed})",
        # only the embedded default is collected: a mistyped --dataset must not be built
        dataset=DatasetSpec(id=cfg.dataset, collect=cfg.dataset == own_dataset(quick),
                            env=fetch.env_id, policy=fetch.policy,
                            episodes=cfg.episodes, max_total_steps=300 if quick else 0),
        tokenizer=TokenizerSpec(tokens_per_frame=k, codebook_size=cfg.codebook_size,
                                steps=cfg.tokenizer_steps, batch_size=16 if quick else 32,
                                checkpoint=tok_ckpt),
        tasks=[TaskSweep(task="wm-token", sizes=list(cfg.sizes), flops=cfg.flops, seeds=[seed],
                         checkpoints=1,
                         overrides={"warmup_steps": 5 if quick else 20, "seq_len": cfg.seq_len,
                                    "tokens_per_update": cfg.tokens_per_update})],
        loss_vs_return=ReturnStudySpec(enabled=False),
        loss_vs_quality=QualityStudySpec(enabled=False),
        # one run per size: whole-run resampling would drop sizes from most refits
        fit=FitSpec(bootstrap=cfg.bootstrap, bootstrap_scheme="within-run"),
        parallel=cfg.parallel, device=cfg.device, optimum_tokens_per_param=1.0,
        protocol="frontier", study_budget=cfg.study_flops, study_budget_unit="flops",
    )


def coefficient(fit: dict) -> dict:
    """What a fit.json gives: ``method``, ``a``, ``a_ci``, ``not_identified`` and ``caveats``.

    The frontier fit when it succeeded, else the parametric one (``method`` ``"none"`` when
    neither did).
    """
    for method in ("frontier", "parametric"):
        f = fit.get(method, {})
        if f.get("status") == "ok":
            lo, hi = f.get("ci", {}).get("a", [math.nan, math.nan])
            return {"method": method, "a": float(f["a"]), "a_ci": [float(lo), float(hi)],
                    "not_identified": list(f.get("not_identified") or []),
                    "caveats": entry_caveats(f)}
    return {"method": "none", "a": math.nan, "a_ci": [math.nan, math.nan], "not_identified": [],
            "caveats": []}


def run(cfg: Section53Config, quick: bool = False, command: str = "") -> dict:
    """Every study, then the coefficient-vs-d_z analysis and report."""
    from scaling.study.report_protocol import data_limit_note  # torch
    from scaling.study.runner import run_study  # torch, gymnasium
    from scaling.study.steps import fit_dir  # gymnasium

    rows, pooled = [], []
    for k in cfg.tokens_per_frame:
        specs = []
        for seed in cfg.seeds:
            spec = study_spec(cfg, k, seed, quick)
            specs.append(spec)
            run_study(spec, stages=("dataset", "tokenizer", "sweep", "fit"))
            fit = json.loads((fit_dir(spec, "wm-token") / "fit.json").read_text())
            coef = coefficient(fit)
            # The repeats share the first repeat's tokenizer.
            summary = Path(cfg.out) / f"k{k}-seed{cfg.seeds[0]}" / "tokenizer" / "summary.json"
            psnr = (json.loads(summary.read_text()).get("val/psnr") if summary.is_file()
                    else None)
            rows.append({"tokens_per_frame": k, "seed": seed, **coef, "tokenizer_psnr": psnr,
                         "passes": _max_passes(spec.study_dir, cfg.sizes, seed),
                         "data_limit": data_limit_note(spec.study_dir, "wm-token"),
                         "reason": None if coef["method"] != "none" else
                         fit.get("error") or fit.get("frontier", {}).get("reason")})
        if len(specs) > 1:
            pooled.append(_pooled_fit(cfg, k, specs))
    return analyze(cfg, rows, command, pooled)


def _pooled_fit(cfg: Section53Config, k: int, specs) -> dict:
    """One fit of every repeat's runs at ``d_z = k``, with a whole-run interval.

    The repeats' runs of one size are pooled as seeds (the mean of their log losses), and each
    refit draws whole runs from all of them, so its interval holds the spread between repeats
    that the per-repeat fits (points resampled within fixed runs) leave out.
    """
    from scaling.study.adapters.fits import fit_runs  # scipy
    from scaling.study.steps import plan_runs  # gymnasium
    from scaling.study.sweep import collect_results

    dirs, first = [], {}
    for spec in specs:
        runs = plan_runs(spec)
        dirs += collect_results(runs, "wm-token")
        first.update({r.name: r.budget_tokens for r in runs})
    out = Path(cfg.out) / "report" / f"k{k}-repeats"
    fit_spec = FitSpec(bootstrap=cfg.bootstrap, bootstrap_scheme="runs")
    try:
        fit = fit_runs(dirs, out, fit_spec, title=f"d_z = {k}, {len(specs)} repeats",
                       reference=first)
    except ValueError as e:
        return {"tokens_per_frame": k, **coefficient({}), "runs": len(dirs), "reason": str(e)}
    coef = coefficient(fit)
    boot = fit.get(coef["method"], {}).get("bootstrap", {})
    reason = None
    if coef["method"] == "none":
        reason = "; ".join(f"{m}: {fit[m].get('reason')}" for m in ("frontier", "parametric")
                           if fit.get(m, {}).get("reason"))
    return {"tokens_per_frame": k, **coef, "runs": len(dirs), "reason": reason,
            "failed_refits": boot.get("num_failed"), "refits": boot.get("num")}


def _max_passes(study_dir: Path, sizes, seed: int) -> float | None:
    """Most passes over the training tokens made by any run of a ladder (the smallest model's)."""
    dirs = [study_dir / f"wm-token-{size}-seed{seed}" for size in sizes]
    passes = [recs[-1].get("epoch") for d in dirs
              if metrics_path(d).is_file() and (recs := read_metrics(d))]
    passes = [float(p) for p in passes if p is not None]
    return max(passes) if passes else None


def analyze(cfg: Section53Config, rows: list[dict], command: str,
            pooled: list[dict] | None = None) -> dict:
    """Correlation and slope of ``a`` against ``log d_z`` over the identified fits; report.

    ``pooled``: one fit per d_z of every repeat's runs (:func:`_pooled_fit`), reported beside.
    """
    ok = [r for r in rows if identified(r)]
    k = np.array([r["tokens_per_frame"] for r in ok], dtype=np.float64)
    a = np.array([r["a"] for r in ok], dtype=np.float64)
    # R on ln d_z, the x of the slope below (d_z is spaced geometrically)
    R = pearson(np.log(k), a) if k.size >= 2 and np.ptp(k) > 0 else math.nan
    result = {"rows": rows, "R": R, "paper_R": PAPER_R, "pooled": pooled or []}
    if len(ok) >= 3 and np.ptp(k) > 0:
        x = np.log(k)
        slope = float(np.polyfit(x, a, 1)[0])
        rng = np.random.default_rng(0)
        boot = []
        for _ in range(2000):
            i = rng.integers(0, len(ok), len(ok))
            if np.ptp(x[i]) > 0:
                boot.append(np.polyfit(x[i], a[i], 1)[0])
        result["slope_per_log_dz"] = estimate(slope, np.array(boot))
    out = Path(cfg.out) / "report"
    out.mkdir(parents=True, exist_ok=True)
    figure(rows, result, out / "figure16.png")
    write_report(cfg, result, out, command)
    s = result.get("slope_per_log_dz")
    return {"report": str(out / "report.md"),
            "R (ours)": f"{R:.2f}" if math.isfinite(R) else "none (too few identified fits)",
            "R (paper)": f"{PAPER_R:.2f}",
            "slope of a per ln(d_z)": s.fmt(3) if s is not None else "not enough identified fits",
            "fits": ", ".join(f"d_z={r['tokens_per_frame']} seed {r['seed']}: {r['a']:.2f} "
                              f"({r['method']}{'' if identified(r) else ', not identified'})"
                              for r in rows)}


def run_cli(args, command: str) -> dict:
    """``embscale reproduce section-5.3``."""
    kw = dict(QUICK) if args.quick else {}
    own = own_dataset(args.quick)
    dataset = own if args.dataset == Section53Config.dataset else args.dataset
    if dataset != own:  # another dataset is never collected: it must exist
        check_dataset_arg(dataset, Section53Config.dataset)
    if args.sizes:
        kw["sizes"] = tuple(args.sizes)
    if args.flops:
        kw["flops"] = float(args.flops)
    if args.study_flops:
        kw["study_flops"] = float(args.study_flops)
    if args.tokens_per_update:
        kw["tokens_per_update"] = int(args.tokens_per_update)
    cfg = Section53Config(out=args.out, dataset=dataset, parallel=args.workers or 2,
                          device=args.device, **kw)
    if args.seed:
        cfg.seeds = tuple(s + args.seed for s in cfg.seeds)
    return run(cfg, quick=args.quick, command=command)
