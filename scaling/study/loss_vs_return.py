"""Loss vs online return of behaviour-cloning checkpoints (paper Figure 2).

Checkpoints kept along each BC run (BC-Token or BC-CNN) act in the real env through
stable-baselines3's ``evaluate_policy`` on a vector env; each gives a (pre-training loss, mean
return) pair. Pearson and Spearman correlations come with bootstrap intervals, a line is fitted
to return against loss, and a plot is drawn. Results per checkpoint are cached in ``rows.jsonl``
so an interrupted study resumes.

Example:
    study = run_return_study(["runs/s/bc-token-s100k-seed0"], "runs/s/loss_vs_return")
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from offline_data.atomic import write_text_atomic
from scaling.inputs import run_config, uniform_action_loss
from scaling.plots import save_figure
from scaling.study.eval_pool import evaluate_all
from scaling.study.spec import ReturnStudySpec
from scaling.study.stats import Checkpoint, correlate, linear_fit, load_scored_rows, run_checkpoints

logger = logging.getLogger(__name__)

ROWS_FILE = "rows.jsonl"


def make_eval_env(env_id: str, num_envs: int, max_episode_steps: int, seed: int):
    """An SB3 ``DummyVecEnv`` of ``num_envs`` monitored copies of ``env_id``, seeded."""
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv

    import envs  # gymnasium

    def factory(i: int):
        def make():
            return Monitor(envs.make(env_id, max_episode_steps=max_episode_steps))
        return make

    venv = DummyVecEnv([factory(i) for i in range(num_envs)])
    venv.seed(seed)
    return venv


def evaluate_checkpoint(checkpoint: str | os.PathLike, spec: ReturnStudySpec,
                        tokenizer: str | os.PathLike | None = None,
                        device: str = "cpu", venv: Any = None) -> dict[str, Any]:
    """Mean, spread and list of episode returns of one checkpoint in the real env.

    Args:
        checkpoint: a BC-Token or BC-CNN trainer checkpoint.
        spec: env, episodes and vector-env settings.
        tokenizer: the tokenizer of a BC-Token model's tokens (unused for BC-CNN).
        device: torch device of the policy (``auto``: CUDA when available).
        venv: a vector env from :func:`make_eval_env` with ``spec``'s settings, to use again
            (it is seeded with ``spec.seed`` here, so it plays as a new one would); default: a
            new one, closed afterwards.
    """
    from stable_baselines3.common.evaluation import evaluate_policy

    from agents.policies import load_policy  # torch

    own = venv is None
    if own:
        venv = make_eval_env(spec.env_id, spec.num_envs, spec.max_episode_steps, spec.seed)
    else:  # every env resets with its seed first (the ALE reloads its game and reseeds)
        venv.seed(spec.seed)
    try:
        policy = load_policy(checkpoint, tokenizer=tokenizer, seed=spec.seed, device=device)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            returns, lengths = evaluate_policy(policy, venv, n_eval_episodes=spec.episodes,
                                               deterministic=spec.deterministic,
                                               return_episode_rewards=True)
    finally:
        if own:
            venv.close()
    returns = np.asarray(returns, np.float64)
    return {"return_mean": float(returns.mean()),
            "return_sem": float(returns.std(ddof=1) / np.sqrt(len(returns)))
            if len(returns) > 1 else 0.0,
            "returns": returns.tolist(), "lengths": [int(v) for v in lengths]}


_VENVS: dict[tuple, Any] = {}  # a worker's vector env, kept across its checkpoints


def _evaluate(job: tuple) -> dict[str, Any]:
    """:func:`evaluate_checkpoint` of ``(checkpoint, spec, tokenizer, device)`` (a worker's job).

    The worker keeps its vector env for its next checkpoints: making the ALE envs anew costs
    about 0.2 s each, and a seeded reset makes a kept one play exactly as a new one.
    """
    checkpoint, spec, tokenizer, device = job
    key = (spec.env_id, spec.num_envs, spec.max_episode_steps)
    if key not in _VENVS:
        _close_kept_envs()
        _VENVS[key] = make_eval_env(*key, spec.seed)
    return evaluate_checkpoint(checkpoint, spec, tokenizer=tokenizer, device=device,
                               venv=_VENVS[key])


def _close_kept_envs() -> None:
    for venv in _VENVS.values():
        venv.close()
    _VENVS.clear()


def summarize(rows: list[dict], n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Correlation and line fit of return vs loss, per task and over all BC checkpoints."""
    out: dict[str, Any] = {}
    groups = {"all": rows}
    for task in sorted({r["task"] for r in rows}):
        groups[task] = [r for r in rows if r["task"] == task]
    for name, rs in groups.items():
        loss = [r["loss"] for r in rs]
        ret = [r["return_mean"] for r in rs]
        try:
            out[name] = {"correlation": correlate(loss, ret, n_boot=n_boot, seed=seed).to_dict(),
                         "fit": linear_fit(loss, ret, n_boot=n_boot, seed=seed).to_dict(),
                         "n": len(rs)}
        except ValueError as e:
            out[name] = {"skipped": str(e), "n": len(rs)}
    return out


def plot_return(rows: list[dict], summary: dict[str, Any], path: str | os.PathLike,
                random_return: float | None = None) -> Path:
    """Figure 2 style: mean return (with standard errors) against pre-training loss per task."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({r["task"] for r in rows})
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.6 * len(tasks), 3.6), squeeze=False)
    cmap = plt.get_cmap("viridis")
    for ax, task in zip(axes[0], tasks, strict=True):
        rs = [r for r in rows if r["task"] == task]
        sizes = sorted({r["params"] for r in rs})
        for i, n in enumerate(sizes):
            pts = [r for r in rs if r["params"] == n]
            ax.errorbar([r["loss"] for r in pts], [r["return_mean"] for r in pts],
                        yerr=[r["return_sem"] for r in pts], fmt="o", ms=4, capsize=2,
                        color=cmap(i / max(1, len(sizes) - 1)), label=f"N={n:,}")
        s = summary.get(task, {})
        title = task
        if "fit" in s:
            x = np.linspace(min(r["loss"] for r in rs), max(r["loss"] for r in rs), 50)
            ax.plot(x, s["fit"]["slope"] * x + s["fit"]["intercept"], "k--", lw=1)
            c = s["correlation"]
            title += (f"  r={c['pearson']:.2f} [{c['pearson_ci'][0]:.2f}, "
                      f"{c['pearson_ci'][1]:.2f}]")
        if random_return is not None:
            ax.axhline(random_return, color="grey", lw=0.8, ls=":", label="random policy")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("pre-training loss")
        ax.set_ylabel("online return")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def random_policy_return(spec: ReturnStudySpec) -> float:
    """Mean return of uniformly random actions under the same evaluation settings (baseline)."""
    from stable_baselines3.common.evaluation import evaluate_policy

    venv = make_eval_env(spec.env_id, spec.num_envs, spec.max_episode_steps, spec.seed)
    space = venv.action_space
    space.seed(spec.seed)

    class _Random:
        def predict(self, observation, state=None, episode_start=None, deterministic=False):
            return np.array([space.sample() for _ in range(len(observation))]), state

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            returns, _ = evaluate_policy(_Random(), venv, n_eval_episodes=spec.episodes,
                                         return_episode_rewards=True)
    finally:
        venv.close()
    return float(np.mean(returns))


def run_return_study(run_dirs: list[str | os.PathLike], out_dir: str | os.PathLike,
                     spec: ReturnStudySpec | None = None, checkpoints_per_run: int = 4,
                     tokenizer: str | os.PathLike | None = None,
                     progress: bool = True, device: str = "cpu",
                     parallel: int = 1) -> dict[str, Any]:
    """Evaluate BC checkpoints along each run online and relate their return to their loss.

    Args:
        run_dirs: finished BC-Token / BC-CNN run directories with kept checkpoints.
        out_dir: where ``rows.jsonl``, ``return.json`` and the figure go.
        spec: env, episodes, vector-env width, bootstrap settings.
        checkpoints_per_run: checkpoints evaluated per run, log-spaced.
        tokenizer: the tokenizer of the BC-Token runs' tokens.
        progress: show a progress bar.
        device: torch device of the policies (``auto``: CUDA when available).
        parallel: checkpoints evaluated at a time, each in a worker process
            (``scaling.study.eval_pool``).

    Returns:
        The summary written to ``return.json``.
    """
    from tqdm.auto import tqdm

    spec = spec or ReturnStudySpec()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpts: list[tuple[str, Checkpoint]] = []
    for d in run_dirs:
        cfg = run_config(d)
        task = cfg.get("task") or Path(d).name.rsplit("-", 2)[0]
        ceiling = uniform_action_loss(cfg) if spec.skip_above_uniform else None
        found = run_checkpoints(d, checkpoints_per_run, skip_fraction=spec.skip_fraction,
                                max_loss=ceiling)
        if not found:
            logger.warning("%s kept no checkpoints with a logged loss%s; skipped", d,
                           "" if ceiling is None else
                           f" at or below a uniform guess over the actions ({ceiling:.3g})")
        ckpts += [(task, c) for c in found]
    if len(ckpts) < 3:
        raise ValueError(f"only {len(ckpts)} BC checkpoint(s) to evaluate; a correlation needs "
                         "at least 3: train with kept checkpoints or more runs")
    rows_path = out / ROWS_FILE
    rows = load_scored_rows(rows_path)
    todo = {c.path: (t, c) for t, c in ckpts if c.path not in rows}
    jobs = [(path, spec, None if tokenizer is None else str(tokenizer), device) for path in todo]
    bar = tqdm(total=len(jobs), desc="loss vs return", unit="ckpt", disable=not progress)
    try:
        for job, result in evaluate_all(_evaluate, jobs, parallel=parallel):
            task, c = todo[job[0]]
            bar.update()
            row = {"checkpoint": c.path, "run": c.run, "task": task, "step": c.step,
                   "tokens": c.tokens, "flops": c.flops, "params": c.params, "loss": c.loss,
                   "loss_key": c.loss_key, **result}
            rows[c.path] = row
            with open(rows_path, "a") as f:
                f.write(json.dumps(row) + "\n")
            logger.info("%s step %d: loss %.4f return %.2f +- %.2f", c.run, c.step, c.loss,
                        row["return_mean"], row["return_sem"])
    finally:  # the envs kept when this process evaluated (parallel 1)
        _close_kept_envs()
    bar.close()
    table = [rows[c.path] for _, c in ckpts]
    baseline_path = out / "random_policy.json"
    if baseline_path.is_file():
        baseline = json.loads(baseline_path.read_text())["return_mean"]
    else:
        baseline = random_policy_return(spec)
        write_text_atomic(baseline_path, json.dumps({"return_mean": baseline}))
    summary = summarize(table, n_boot=spec.bootstrap, seed=spec.seed)
    figure = plot_return(table, summary, out / "loss_vs_return.png", random_return=baseline)
    result = {"env_id": spec.env_id, "episodes": spec.episodes,
              "max_episode_steps": spec.max_episode_steps, "deterministic": spec.deterministic,
              "skip_fraction": spec.skip_fraction,
              "skip_above_uniform": spec.skip_above_uniform, "random_policy_return": baseline,
              "rows": table, "summary": summary, "figure": figure.name}
    write_text_atomic(out / "return.json", json.dumps(result, indent=2))
    return result
