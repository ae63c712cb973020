"""Adapters between the study machinery and the parts it orchestrates.

The sweep's default training entry (``train_run``) and the study's calls into data collection,
tokenizer training/encoding, model presets, fits and the planner all go through the public
functions of those packages; this module only translates a ``StudySpec``/``RunSpec`` into their
arguments, so the study code does not depend on their internals.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


# ----- fits and planner (scaling.fit_cli, scaling.planner) -----

def fit_runs(run_dirs: list[Path], out_dir: Path, fit_spec, title: str = "") -> dict[str, Any]:
    """Run ``embscale fit`` on run directories; returns the written ``fit.json`` object."""
    from scaling import fit_cli

    parser = argparse.ArgumentParser(prog="embscale")
    fit_cli.register(parser.add_subparsers(dest="command"))
    argv = ["fit", *map(str, run_dirs), "--out", str(out_dir), "--overwrite",
            "--method", fit_spec.method, "--parametric-loss", fit_spec.parametric_loss,
            "--loss-key", fit_spec.loss_key, "--bootstrap", str(fit_spec.bootstrap),
            "--drop-nonfinite"]
    if title:
        argv += ["--title", title]
    args = parser.parse_args(argv)
    args.func(args)
    return json.loads((Path(out_dir) / "fit.json").read_text())


def plan_next(fit_path: Path, flops: float, spec, task: str) -> dict[str, Any]:
    """The planner's advice for ``flops`` (10x the study's largest run), or why there is none."""
    from scaling.planner import plan

    fit = json.loads(Path(fit_path).read_text())
    tokens = dataset_tokens(spec, task)
    try:
        p = plan(fit, flops=flops, dataset_tokens=tokens)
    except ValueError as e:
        return {"flops": flops, "skipped": str(e)}
    return {"flops": p.flops, "N_opt": p.N_opt, "D_opt": p.D_opt, "loss": p.loss,
            "loss_source": p.loss_source, "allocation_source": p.allocation_source,
            "preset": p.preset.name, "preset_params": p.preset.num_params,
            "dataset_tokens": p.dataset_tokens, "epochs": p.epochs, "supported": p.supported,
            "max_flops_in_regime": p.max_flops_in_regime}


def dataset_tokens(spec, task: str) -> float | None:
    """Unique training inputs D of the study's data for ``task`` (None when unknown)."""
    from scaling.study_steps import tokens_dir

    header = tokens_dir(spec) / "header.json"
    if not header.is_file():
        return None
    from offline_data.tokens import TokenShards

    shards = TokenShards.open(tokens_dir(spec))
    frames = shards.split("train").num_frames
    return float(frames if task == "bc-cnn" else frames * shards.layout.tokens_per_step)


# ----- dataset (offline_data.defaults / offline_data.collect) -----

def collect_default_dataset(ds, progress: bool = True) -> None:
    """Collect ``ds.id`` from ``ds.env`` with ``ds.policy`` (atomic: all or nothing).

    For an env with an embedded default (Breakout, Fetch) at the default frame size the default's
    recipe is used (demonstrator skill range, discretizer buckets) with the spec's counts.
    """
    from offline_data.defaults import DEFAULTS, collect_default

    for name, default in DEFAULTS.items():
        if default.env_id == ds.env and ds.frame_size == 64 and ds.policy == default.policy:
            collect_default(name, progress=progress, dataset_id=ds.id, num_episodes=ds.episodes,
                            max_total_steps=ds.max_total_steps or None,
                            max_steps_per_episode=ds.max_episode_steps or None, seed=ds.seed)
            return
    import envs
    from offline_data.collect import collect, resolve_policy

    env = envs.make(ds.env, size=ds.frame_size)
    try:
        kwargs = {"skill": (0.0, 1.0)} if ds.policy == "scripted" else {}
        policy = resolve_policy(ds.policy, env, seed=ds.seed, **kwargs)
        collect(env, policy, ds.episodes, ds.id, seed=ds.seed,
                max_total_steps=ds.max_total_steps or None,
                max_steps_per_episode=ds.max_episode_steps or None,
                description=f"collected by `embscale study` from {ds.env} with the {ds.policy} "
                            "policy", progress=progress)
    finally:
        env.close()
