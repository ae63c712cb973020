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
import os
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


# ----- fits and planner (scaling.cli.fit, scaling.planner) -----

def curve_points(run_dirs: list[Path], loss_key: str, skip_fraction: float) -> list[dict]:
    """(N, D, L, run) points of each run's curve, without its first ``skip_fraction`` of D.

    The first steps (warmup and the initial plateau of tiny models) do not follow a power law
    in D; like Hoffmann et al., the fits use each curve after its start.
    """
    import math

    from scaling.study.stats import read_metrics

    rows = []
    for d in run_dirs:
        recs = read_metrics(d)
        key = loss_key if any(loss_key in r for r in recs) else "train/loss"  # older runs
        recs = [r for r in recs if key in r and math.isfinite(float(r[key]))]
        if not recs:
            continue
        final = max(float(r["tokens"]) for r in recs)
        rows += [{"N": r["params"], "D": r["tokens"], "L": r[key], "run": Path(d).name}
                 for r in recs if float(r["tokens"]) >= skip_fraction * final]
    return rows


def fit_runs(run_dirs: list[Path], out_dir: Path, fit_spec, title: str = "") -> dict[str, Any]:
    """Run ``embscale fit`` on the runs' curves; returns the written ``fit.json`` object."""
    import csv

    from offline_data.atomic import atomic_file
    from scaling.cli import fit as fit_cli

    points = Path(out_dir).with_name(Path(out_dir).name + "_points.csv")
    with atomic_file(points) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["N", "D", "L", "run"])
        writer.writeheader()
        writer.writerows(curve_points(run_dirs, fit_spec.loss_key, fit_spec.skip_fraction))
    parser = argparse.ArgumentParser(prog="embscale")
    fit_cli.register(parser.add_subparsers(dest="command"))
    argv = ["fit", str(points), "--out", str(out_dir), "--overwrite",
            "--method", fit_spec.method, "--parametric-loss", fit_spec.parametric_loss,
            "--bootstrap", str(fit_spec.bootstrap)]
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
    return p.to_dict()


def dataset_tokens(spec, task: str) -> float | None:
    """Unique training inputs D of the study's data for ``task`` (None when unknown)."""
    from scaling.study.steps import tokens_dir

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
            skill = {} if ds.skill is None else {"skill": _skill(ds.skill)}
            collect_default(name, progress=progress, dataset_id=ds.id, num_episodes=ds.episodes,
                            max_total_steps=ds.max_total_steps or None,
                            max_steps_per_episode=ds.max_episode_steps or None, seed=ds.seed,
                            **skill)
            return
    import envs
    from offline_data.collect import collect, resolve_policy

    env = envs.make(ds.env, size=ds.frame_size)
    try:
        skill = (0.0, 1.0) if ds.skill is None else _skill(ds.skill)
        kwargs = {"skill": skill} if ds.policy == "scripted" else {}
        policy = resolve_policy(ds.policy, env, seed=ds.seed, **kwargs)
        collect(env, policy, ds.episodes, ds.id, seed=ds.seed,
                max_total_steps=ds.max_total_steps or None,
                max_steps_per_episode=ds.max_episode_steps or None,
                description=f"collected by `embscale study` from {ds.env} with the {ds.policy} "
                            "policy", progress=progress)
    finally:
        env.close()


def _skill(skill) -> float | tuple[float, float]:
    """DatasetSpec.skill (already validated to a float or [low, high]) as the collector takes it."""
    return tuple(skill) if isinstance(skill, list) else skill


# ----- model sizes (worldmodels.presets, scaling.cli.train) -----

def known_sizes(task: str) -> list[str]:
    """Size names that ``task`` can train with a preset (ladder or the paper's tables)."""
    from worldmodels import presets

    out = []
    for name in presets.SIZE_PRESETS:
        try:
            presets.preset_for(task, name)
        except ValueError:
            continue
        out.append(name)
    return out


def _action_vocab(spec) -> tuple[int, ...]:
    """Action vocabulary per dimension of the study's dataset (or of the env it collects from)."""
    from offline_data.datasets import dataset_discretizer, dataset_path, load_dataset

    if (dataset_path(spec.dataset.id) / "data").is_dir():
        return tuple(dataset_discretizer(load_dataset(spec.dataset.id)).vocab_sizes)
    import envs
    from offline_data.discretize import discretizer_for_space

    env = envs.make(spec.dataset.env)
    try:
        return tuple(discretizer_for_space(env.action_space).vocab_sizes)
    finally:
        env.close()


def size_params(task: str, size: str, spec) -> int:
    """N of ``size`` for ``task`` in this study: exact once the data exists, else estimated.

    Token tasks are counted with ``worldmodels.presets.param_count`` over the study's vocabulary
    and context (exact for the transformer; auxiliary heads add a little). BC-CNN needs its data
    for an exact count; before that its transformer alone is counted.
    """
    from scaling.study.steps import dataset_exists, tokens_dir
    from worldmodels import presets

    if task == "bc-cnn" and dataset_exists(spec.dataset.id):
        from scaling.cli.train import model_params

        return int(model_params(task, size, spec.dataset.id))
    if task != "bc-cnn" and (tokens_dir(spec) / "header.json").is_file():
        from scaling.cli.train import model_params

        return int(model_params(task, size, str(tokens_dir(spec))))
    vocab = _action_vocab(spec)
    t = spec.task(task)
    p = presets.get_task_preset(t.preset) if t and t.preset else presets.preset_for(task, size)
    seq_len = p.seq_len
    if task == "bc-cnn":
        return presets.param_count(size, vocab_size=sum(vocab), block_size=seq_len)
    return presets.param_count(size, vocab_size=spec.tokenizer.codebook_size + sum(vocab),
                               block_size=seq_len * (spec.tokenizer.tokens_per_frame + len(vocab)))


# ----- tokenizer (worldmodels.tokenizer_train, worldmodels.tokenize_dataset) -----

def tokenizer_finished(out_dir: Path, steps: int) -> bool:
    """True when the tokenizer run in ``out_dir`` has trained all ``steps``."""
    summary = Path(out_dir) / "summary.json"
    return summary.is_file() and int(json.loads(summary.read_text()).get("step", 0)) >= steps


def tokenizer_threads() -> int:
    """Torch threads for the study's tokenizer: ``EMBSCALE_THREADS``, else every core.

    The count does not follow the machine's load: float sums differ between thread counts, so a
    count chosen by load made the tokenizer, and everything trained on its tokens, differ between
    a run on an idle machine and one beside other work (the default study's BC-Token losses
    moved by up to 0.05). Set ``EMBSCALE_THREADS=1`` on a machine that other jobs keep busy.
    """
    return int(os.environ.get("EMBSCALE_THREADS", "0") or 0) or (os.cpu_count() or 1)


# Fields of the tokenizer's training config that a study spec may set in tokenizer.overrides
# (the rest of that config is the study's own: dataset, directory, steps, device, threads).
TOKENIZER_TRAIN_OPTIONS = ("lr", "warmup_steps", "min_lr_ratio", "recon_loss",
                           "gradient_loss_weight", "foreground_weight", "seed")


def split_tokenizer_overrides(overrides: dict[str, Any]) -> tuple[dict, dict]:
    """Split ``tokenizer.overrides`` into VQConfig fields and training options.

    >>> split_tokenizer_overrides({"code_dim": 16, "foreground_weight": 20.0})
    ({'code_dim': 16}, {'foreground_weight': 20.0})
    """
    import dataclasses

    from worldmodels.tokenizer_config import VQConfig

    model_fields = {f.name for f in dataclasses.fields(VQConfig)} - {
        "image_height", "image_width", "tokens_per_frame", "codebook_size"}
    unknown = sorted(set(overrides) - model_fields - set(TOKENIZER_TRAIN_OPTIONS))
    if unknown:
        raise ValueError(f"tokenizer.overrides has unknown keys {unknown}; use VQConfig fields "
                         f"{sorted(model_fields)} or training options "
                         f"{sorted(TOKENIZER_TRAIN_OPTIONS)}")
    model = {k: v for k, v in overrides.items() if k in model_fields}
    train = {k: v for k, v in overrides.items() if k not in model_fields}
    return model, train


def train_tokenizer(spec, out_dir: Path, progress: bool = True) -> dict[str, Any]:
    """Train (or resume) the study's tokenizer in ``out_dir``."""
    from offline_data.datasets import load_dataset
    from worldmodels.tokenizer_config import VQConfig
    from worldmodels.tokenizer_train import TokenizerTrainConfig
    from worldmodels.tokenizer_train import train_tokenizer as _train

    t = spec.tokenizer
    h, w = load_dataset(spec.dataset.id).observation_space.shape[:2]
    model_opts, train_opts = split_tokenizer_overrides(t.overrides)
    vq = VQConfig(image_height=h, image_width=w, tokens_per_frame=t.tokens_per_frame,
                  codebook_size=t.codebook_size, **model_opts)
    threads = tokenizer_threads()
    cfg = TokenizerTrainConfig(dataset_id=spec.dataset.id, out_dir=str(out_dir), steps=t.steps,
                               batch_size=t.batch_size, eval_every=max(1, t.steps // 3),
                               checkpoint_every=max(1, min(500, t.steps // 4)),
                               device="cuda" if spec.device == "cuda" else spec.device,
                               num_threads=threads, **train_opts)
    return _train(cfg, vq, resume=True, progress=progress)


def encode_dataset(spec, tokenizer: Path, out: Path, progress: bool = True) -> None:
    """Tokenize the study's dataset into token shards at ``out`` (replacing a partial one)."""
    from worldmodels.tokenize_dataset import encode_dataset as _encode

    workers = min(2, os.cpu_count() or 1) if spec.device == "cpu" else 1
    _encode(tokenizer, spec.dataset.id, out, device=spec.device, overwrite=out.exists(),
            num_workers=workers, progress=progress)


# ----- training (scaling.cli.train) -----

def train_run(run) -> dict[str, Any]:
    """The sweep's training entry: train (or resume) one ``RunSpec`` with kept checkpoints."""
    from scaling.cli.train import train_model

    overrides = {"keep_checkpoints": True, "device": run.device, **run.overrides}
    result = train_model(run.task, run.size, run.data, run.out_dir, seed=run.seed,
                         tokens=run.tokens, flops=run.flops, preset=run.preset, **overrides)
    return {"params": int(result.params), "steps": int(result.steps),
            "tokens": int(result.tokens), "flops": float(result.flops),
            "train_loss": float(result.train_loss),
            "val_loss": None if result.val_loss is None else float(result.val_loss)}
