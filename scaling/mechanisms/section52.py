"""Section 5.2: compute per action explains why BC-Token curves plateau later than BC-CNN's.

A BC-Token transformer reads ``d_z + d_a`` inputs for every action it predicts, BC-CNN reads one, so
at equal N BC-Token spends ``d_z + d_a`` times more forward FLOPs per action (paper: 556 x 2 x 1M
vs 1 x 2 x 1M). From our own runs this module measures, per model size, the FLOPs per predicted
action of each family and the compute at which each training curve plateaus, and reports their
ratios.

A curve *plateaus* at the first logged compute C after which the loss falls by less than
``slope`` in log-log over the next half decade of compute (``-d ln L / d ln C < slope``). A curve
that never does within its budget is censored (it plateaus later than its last point), and so is
a run of fewer optimizer steps than the budget protocol's ``min_plateau_steps``: a young
behaviour-cloning curve can sit flat at the action marginal long before it learns (in one default
study the s300k runs ended flat after 252 updates, at validation losses of 0.99 and 0.98 against
the action frequencies' 1.02, and counted as plateaued).

Example:
    embscale reproduce section-5.2 --runs runs/breakout-default
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from offline_data.atomic import write_text_atomic
from offline_data.tokens import TokenLayout
from scaling.mechanisms.common import Estimate, check_dataset_arg, estimate
from scaling.plots import save_figure
from scaling.study.budget_protocol import ProtocolConfig
from scaling.study.presets import default_study, quick_study
from scaling.study.spec import TaskSweep
from scaling.tasks import TASKS
from worldmodels.run_metrics import metrics_path, read_metrics

logger = logging.getLogger(__name__)

PLATEAU_SLOPE = 0.02
"""A curve has plateaued once the loss falls by less than this in ln L per unit ln C."""
PLATEAU_SPAN = 0.5
"""Decades of compute over which the local slope is measured."""
MIN_PLATEAU_STEPS = ProtocolConfig.min_plateau_steps
"""Optimizer steps before a flat curve may count as plateaued (the budget protocol's rule)."""


@dataclass
class RunSummary:
    """What Section 5.2 needs of one training run."""

    run: str
    task: str
    size: str
    N: int
    inputs_per_action: int
    C: np.ndarray
    D: np.ndarray
    L: np.ndarray
    plateau_C: float
    censored: bool
    steps: int = 0  # optimizer steps of the run's last logged point
    young: bool = False  # censored because the run is shorter than MIN_PLATEAU_STEPS

    @property
    def flops_per_action(self) -> float:
        """Forward FLOPs per predicted action: 2 N x transformer inputs per action."""
        return 2.0 * self.N * self.inputs_per_action


def plateau_point(C, L, slope: float = PLATEAU_SLOPE, span: float = PLATEAU_SPAN
                  ) -> tuple[float, bool]:
    """First compute from which the curve's local log-log slope stays above ``-slope``.

    The local slope at a point is measured over the next ``span`` decades of compute. The
    plateau starts at the first point from which every later window is flat, so a transient
    plateau that the loss leaves again (BC-CNN sits at the action marginal until it learns to
    see the ball, then falls) does not count. Returns ``(C_plateau, censored)``; a curve still
    falling in its last window is censored and returns its last C.

    >>> C = np.geomspace(1e8, 1e14, 120)
    >>> L = 1.0 + 10 * (C / 1e8) ** -1.0  # falls fast, then levels off
    >>> c, censored = plateau_point(C, L)
    >>> 1e10 < c < 1e11 and not censored
    True
    >>> L2 = np.where(C < 1e11, 2.0, 2.0 * (C / 1e11) ** -0.3)  # flat, then falls to the end
    >>> plateau_point(C, L2) == (C[-1], True)
    True
    """
    C, L = np.asarray(C, dtype=np.float64), np.asarray(L, dtype=np.float64)
    order = np.argsort(C)
    logc, logl = np.log10(C[order]), np.log(L[order])
    flat = []
    for i in range(len(logc)):
        j = np.searchsorted(logc, logc[i] + span)
        if j >= len(logc):
            break
        local = (logl[j] - logl[i]) / ((logc[j] - logc[i]) * math.log(10))
        flat.append(local > -slope)
    if not flat or not flat[-1]:
        return float(C[order][-1]), True
    start = len(flat) - 1
    while start > 0 and flat[start - 1]:
        start -= 1
    return float(C[order][start]), False


LOSS_KEYS = ("train/loss_mean", "train/loss")
"""Curve used, first present: the training loss averaged between log points, else per step."""


def summarize_run(run_dir: str | Path) -> RunSummary | None:
    """Read one BC run directory; None for runs of other tasks."""
    run_dir = Path(run_dir)
    cfg = json.loads((run_dir / "config.json").read_text())
    task = cfg.get("task")
    if task not in TASKS or not TASKS[task].policy:
        return None
    data = cfg.get("data", {})
    # inputs per timestep depend on d_z and d_a only (a record without V_o still counts)
    layout = (TokenLayout(tokens_per_frame=data["tokens_per_frame"],
                          image_vocab=data.get("image_vocab", 1),
                          action_vocab_sizes=data["action_vocab_sizes"])
              if TASKS[task].reads_tokens else None)
    inputs = TASKS[task].inputs_per_step(layout)
    rows = read_metrics(run_dir)
    key = next((k for k in LOSS_KEYS if any(k in r for r in rows)), LOSS_KEYS[-1])
    rows = [r for r in rows if key in r and math.isfinite(r[key])]
    if len(rows) < 3:
        raise ValueError(f"{run_dir} has only {len(rows)} logged points; train it longer")
    C = np.array([r["flops"] for r in rows], dtype=np.float64)
    D = np.array([r["tokens"] for r in rows], dtype=np.float64)
    L = np.array([r[key] for r in rows], dtype=np.float64)
    pc, censored = plateau_point(C, L)
    steps = int(max(r.get("step", 0) for r in rows))
    young = not censored and steps < MIN_PLATEAU_STEPS
    if young:  # flat, but too early to tell a plateau from the action marginal's level
        pc, censored = float(C.max()), True
    return RunSummary(run_dir.name, task, cfg.get("size", "?"), int(cfg["params"]), inputs,
                      C, D, L, pc, censored, steps, young)


def find_bc_runs(paths) -> list[RunSummary]:
    """Every BC-Token and BC-CNN run under ``paths`` (run or study directories)."""
    out = []
    for p in map(Path, paths):
        if not p.exists():
            raise FileNotFoundError(f"{p} does not exist; pass run directories or a study's runs")
        for cfg in sorted([p / "config.json"] if (p / "config.json").is_file()
                          else p.rglob("config.json")):
            if metrics_path(cfg.parent).is_file():
                s = summarize_run(cfg.parent)
                if s is not None:
                    out.append(s)
    return out


def compare(summaries: list[RunSummary], seed: int = 0) -> dict:
    """Pair BC-Token and BC-CNN runs of the same size; ratios and their bootstrap interval."""
    token = {s.size: s for s in summaries if s.task == "bc-token"}
    cnn = {s.size: s for s in summaries if s.task == "bc-cnn"}
    sizes = [s for s in token if s in cnn]
    if not sizes:
        raise ValueError("no model size has both a BC-Token and a BC-CNN run; train both tasks "
                         f"at the same sizes (BC-Token: {sorted(token)}, BC-CNN: {sorted(cnn)})")
    pairs = []
    for size in sorted(sizes, key=lambda s: token[s].N):
        t, c = token[size], cnn[size]
        # A censored BC-CNN curve leaves the ratio open; a censored BC-Token curve (against a
        # plateaued BC-CNN) makes it a lower bound.
        bound = "none" if c.censored else ("lower" if t.censored else "exact")
        pairs.append({"bound": bound, "size": size, "N_token": t.N, "N_cnn": c.N,
                      "inputs_per_action_token": t.inputs_per_action,
                      "flops_per_action_token": t.flops_per_action,
                      "flops_per_action_cnn": c.flops_per_action,
                      "flops_per_action_ratio": t.flops_per_action / c.flops_per_action,
                      "plateau_C_token": t.plateau_C, "censored_token": t.censored,
                      "plateau_C_cnn": c.plateau_C, "censored_cnn": c.censored,
                      "steps_token": t.steps, "young_token": t.young,
                      "steps_cnn": c.steps, "young_cnn": c.young,
                      "plateau_ratio": t.plateau_C / c.plateau_C})
    known = [p for p in pairs if p["bound"] != "none"]
    logr = np.log10([p["plateau_ratio"] for p in known])
    rng = np.random.default_rng(seed)
    boot = (rng.choice(logr, (2000, len(logr))).mean(axis=1) if len(logr) > 1 else None)
    later = estimate(float(logr.mean()) if len(logr) else math.nan, boot)
    return {"pairs": pairs, "log10_plateau_ratio": later, "determined": len(known),
            "lower_bounds": sum(p["bound"] == "lower" for p in known),
            "token_later": sum(p["plateau_ratio"] > 1 for p in known)}


def figure(summaries: list[RunSummary], path: Path) -> Path:
    """Loss vs FLOPs of both families, coloured by N, plateau points marked."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib import cm, colors

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True, sharex=True)
    Ns = [s.N for s in summaries]
    norm = colors.LogNorm(vmin=min(Ns), vmax=max(Ns) * 1.0001)
    cmap = plt.get_cmap("viridis")
    for ax, task in zip(axes, ("bc-token", "bc-cnn"), strict=True):
        for s in (x for x in summaries if x.task == task):
            col = cmap(norm(s.N))
            ax.plot(s.C, s.L, color=col, lw=1.3, label=f"{s.size} (N={s.N:,})")
            i = int(np.argmin(np.abs(s.C - s.plateau_C)))
            ax.plot(s.C[i], s.L[i], marker=">" if s.censored else "o", color=col, ms=7,
                    mec="k")
        ax.set(xscale="log", xlabel="FLOPs C", ylabel="loss (nats)",
               title=f"{task}: o = plateau, > = not plateaued")
        ax.legend(fontsize=7)
    fig.colorbar(cm.ScalarMappable(norm=norm, cmap=cmap), ax=axes[-1], label="parameters N")
    return save_figure(fig, path)


def _censor_note(pair: dict, family: str) -> str:
    """' (not yet)', ' (too young: S steps)' or '' for one family's plateau column."""
    if pair.get(f"young_{family}"):
        return f" (too young: {pair[f'steps_{family}']:,} steps)"
    return " (not yet)" if pair[f"censored_{family}"] else ""


RATIO_MARK = {"exact": "", "lower": ">= ", "none": "? "}
"""How the plateau ratio is shown: exact, a lower bound, or open (see :func:`compare`)."""


def write_report(out: Path, summaries: list[RunSummary], result: dict, command: str) -> Path:
    """``report/report.md``, ``results.json`` and ``curves.png`` under ``out``."""
    rep = out / "report"
    rep.mkdir(parents=True, exist_ok=True)
    figure(summaries, rep / "curves.png")
    later: Estimate = result["log10_plateau_ratio"]
    pairs = result["pairs"]
    lines = [
        "# Section 5.2: compute per action, BC-Token vs BC-CNN", "",
        "At equal transformer size N, BC-Token reads `d_z + d_a` inputs per predicted action and "
        "BC-CNN one, so BC-Token spends `d_z + d_a` times the forward FLOPs per action (paper: "
        "556 x 2 x 1M ≈ 1e9 vs 2e6). The paper argues this makes BC-Token curves plateau at "
        "much larger compute. A curve plateaus at the first compute after which its loss falls "
        f"by less than {PLATEAU_SLOPE} in ln L per unit ln C over the next {PLATEAU_SPAN} "
        "decades and stays flat to the end of the run; 'not yet' means it had not plateaued by "
        "the end of its budget, 'too young' that its run ended flat but before "
        f"{MIN_PLATEAU_STEPS:,} optimizer steps, too early to tell a plateau from the flat "
        "stretch at the action marginal that precedes learning (the budget protocol's rule); "
        "both count as not plateaued. A ratio is exact when both curves plateaued, a lower "
        "bound (>=) when only BC-CNN's did, and open (?) when BC-CNN's had not: such sizes are "
        "left out of the mean.", "",
        f"Regenerate: `{command}`", "",
        "| size | N BC-Token | N BC-CNN | FLOPs/action BC-Token | FLOPs/action BC-CNN | ratio | "
        "plateau C BC-Token | plateau C BC-CNN | plateau ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for p in pairs:
        lines.append(
            f"| {p['size']} | {p['N_token']:,} | {p['N_cnn']:,} | "
            f"{p['flops_per_action_token']:.3g} | {p['flops_per_action_cnn']:.3g} | "
            f"{p['flops_per_action_ratio']:.1f} | {p['plateau_C_token']:.3g}"
            f"{_censor_note(p, 'token')} | {p['plateau_C_cnn']:.3g}{_censor_note(p, 'cnn')} | "
            f"{RATIO_MARK[p['bound']]}{p['plateau_ratio']:.1f} |")
    n, lower = result["determined"], result["lower_bounds"]
    if n == 0:
        verdict = ("undetermined: BC-CNN had not plateaued at any size; train longer (or at "
                   "more compute per run) so that its curves flatten")
    elif not math.isnan(later.low) and later.low > 0:
        verdict = "reproduced: BC-Token plateaus later, interval excludes equal"
    else:
        verdict = "not reproduced with an interval excluding no effect"
    summary = (f"BC-Token plateaus later in {result['token_later']} of {n} sizes where the "
               f"ratio is known ({lower} of them lower bounds; {len(pairs) - n} open); ")
    if n:
        summary += (f"mean log10 plateau-compute ratio {later.fmt()}"
                    f"{' (a lower bound)' if lower else ''} (bootstrap over sizes): ")
    lines += ["", summary + f"{verdict}.", "", "![curves](curves.png)", ""]
    write_text_atomic(rep / "report.md", "\n".join(lines))
    write_text_atomic(rep / "results.json", json.dumps(
        {"pairs": pairs, "log10_plateau_ratio": later.to_json(), "verdict": verdict,
         "token_later": result["token_later"], "determined": result["determined"],
         "lower_bounds": result["lower_bounds"]}, indent=2))
    return rep / "report.md"


def sweep_spec(out: Path, quick: bool, seed: int, dataset: str | None = None):
    """The study spec that trains BC-Token and BC-CNN at equal sizes and equal compute.

    ``dataset``: the Minari id to train on; the preset's own (None) is collected when missing,
    any other is never collected (it must exist).
    """
    base = quick_study() if quick else default_study()
    if dataset is not None and dataset != base.dataset.id:
        base.dataset = replace(base.dataset, id=dataset, collect=False)
    sizes = ["s10k", "s30k"] if quick else ["s10k", "s30k", "s100k", "s300k"]
    if quick:
        # CI-sized: small updates so that short runs still log curves; BC-CNN's convolutions
        # cost far more than 6N per frame on a CPU, so it gets less compute here (the default
        # gives both families the same compute).
        budgets = {"bc-token": (4e9, {"warmup_steps": 5, "tokens_per_update": 1024}),
                   "bc-cnn": (3e8, {"warmup_steps": 5, "tokens_per_update": 64})}
    else:
        budgets = {t: (3e12, {"warmup_steps": 10}) for t in ("bc-token", "bc-cnn")}
    base.name = out.name
    base.runs_dir = str(out.parent)
    base.tasks = [TaskSweep(task=t, sizes=sizes, flops=flops, seeds=[seed], checkpoints=1,
                            overrides=dict(over)) for t, (flops, over) in budgets.items()]
    base.loss_vs_return.enabled = False
    base.loss_vs_quality.enabled = False
    base.optimum_tokens_per_param = 1.0
    return base


def run_cli(args, command: str) -> dict:
    """``embscale reproduce section-5.2``."""
    out = Path(args.out)
    default = default_study().dataset.id
    if args.runs:
        if args.dataset != default:
            raise ValueError(f"--dataset {args.dataset} names the data of the sweep trained "
                             "without --runs; drop --dataset to report on the --runs given, or "
                             "drop --runs to train on it")
        paths = args.runs
    else:
        from scaling.study.runner import run_study  # torch, gymnasium

        # --quick trains on a miniature dataset under its own id, not a copy of the default
        own = (quick_study() if args.quick else default_study()).dataset.id
        dataset = own if args.dataset == default else args.dataset
        if dataset != own:  # another dataset is never collected: it must exist
            check_dataset_arg(dataset, default)
        spec = sweep_spec(out, args.quick, args.seed, dataset)
        spec.parallel = args.workers or spec.parallel
        run_study(spec, stages=("dataset", "tokenizer", "sweep"))
        paths = [spec.study_dir]
    summaries = find_bc_runs(paths)
    result = compare(summaries, seed=args.seed)
    report = write_report(out, summaries, result, command)
    pairs = result["pairs"]
    return {"report": str(report),
            "FLOPs per action, BC-Token / BC-CNN": ", ".join(
                f"{p['size']}: {p['flops_per_action_ratio']:.0f}x" for p in pairs),
            "plateau compute, BC-Token / BC-CNN": ", ".join(
                f"{p['size']}: {RATIO_MARK[p['bound']]}{p['plateau_ratio']:.1f}x"
                for p in pairs) + " (>= lower bound, ? open)",
            "mean log10 plateau ratio": (f"{result['log10_plateau_ratio'].fmt()} over "
                                         f"{result['determined']} sizes with a known ratio")}
