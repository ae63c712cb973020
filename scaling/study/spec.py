"""Typed study specifications: what a scaling study trains, evaluates and reports.

A study spec names a dataset, a tokenizer, per task a ladder of model sizes with a training budget
per run and seeds, and the settings of the two correlation studies. Specs load from JSON or TOML
files whose keys mirror the dataclasses below; unknown keys and values of the wrong type are
rejected (``scaling.study.spec_checks``).

Example (``study.toml``)::

    name = "my-breakout"
    [dataset]
    id = "embscale/breakout/scripted-v2"
    [[tasks]]
    task = "wm-token"
    sizes = ["s30k", "s100k", "s300k", "s1m"]
    tokens = 2e6
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from offline_data.frame_size import parse_frame_size
from scaling.study.adapters.tokenizer import (
    check_tokenizer_override_values,
    split_tokenizer_overrides,
)
from scaling.study.spec_checks import build_section, check_task_overrides, check_task_preset
from scaling.tasks import TRAINABLE
from worldmodels.run_metrics import MEAN_LOSS_KEY

TASKS: tuple[str, ...] = TRAINABLE
STUDY_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
"""A study name: a plain directory name under the runs directory."""


@dataclass
class DatasetSpec:
    """The Minari dataset a study trains on."""

    id: str = "embscale/breakout/scripted-v2"  # Minari dataset id
    collect: bool = False  # collect the dataset from ``env`` when ``id`` is missing locally
    env: str = "embscale/Breakout-v1"  # env to collect from
    # collecting policy: scripted | random | sb3:ALGO:PATH | sb3-weights:ALGO:PATH | module:factory
    # (sb3: unpickles the zip and module: imports the module: both run their code; trusted only)
    policy: str = "scripted"
    frame_size: int | list[int] = 64  # side of the square frames collected, or [height, width]
    episodes: int = 40  # episodes to collect (at most)
    max_total_steps: int = 0  # stop collecting after this many steps in total (0 = no cap)
    max_episode_steps: int = 0  # cap per collected episode (0 = the env's own)
    seed: int = 0  # collection seed
    # env processes collecting at once; part of what the dataset is (stream k plays with a seed
    # derived from (seed, k)), so a dataset collected with another count needs another id
    streams: int = 1
    # scripted demonstrator's skill: [low, high] drawn per episode, one value, or None for
    # the env's embedded default (Breakout 0.7-1.0, Fetch 0.3-1.0)
    skill: list[float] | float | None = None
    # With collect: when the budget protocol would extend a run past its data-pass limit, the
    # study collects train-only supplements (offline_data.growth) of up to this many times the
    # dataset's frames in all, by the same recipe with another seed (0: never; stop at the limit)
    grow: float = 3.0

    def __post_init__(self) -> None:
        if not self.id or "/" not in self.id:
            raise ValueError(f"dataset.id={self.id!r} is not a Minari id; use e.g. "
                             "'embscale/breakout/scripted-v2'")
        if self.episodes < 1:
            raise ValueError(f"dataset.episodes={self.episodes} must be >= 1")
        if self.streams < 1:
            raise ValueError(f"dataset.streams={self.streams} must be >= 1 (1: one process)")
        if not (isinstance(self.grow, (int, float)) and 0 <= self.grow < float("inf")):
            raise ValueError(f"dataset.grow={self.grow!r} must be a number >= 0 (times the "
                             "dataset's frames the study may add; 0: never)")

        parse_frame_size(self.frame_size, name="dataset.frame_size")
        for name in ("max_total_steps", "max_episode_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"dataset.{name}={getattr(self, name)} must be >= 0")
        if self.skill is not None:
            lo_hi = [self.skill] * 2 if isinstance(self.skill, (int, float)) else self.skill
            if len(lo_hi) != 2 or not 0.0 <= float(lo_hi[0]) <= float(lo_hi[1]) <= 1.0:
                raise ValueError(f"dataset.skill={self.skill!r} must be one value or "
                                 "[low, high] with 0 <= low <= high <= 1, e.g. [0.7, 1.0]")
            self.skill = (float(self.skill) if isinstance(self.skill, (int, float))
                          else [float(v) for v in self.skill])


@dataclass
class TokenizerSpec:
    """The frozen image tokenizer (trained by the study unless a checkpoint is given)."""

    tokens_per_frame: int = 16  # d_z, tokens per frame
    codebook_size: int = 512  # V_o, image vocabulary
    steps: int = 1500  # tokenizer training steps (when it is trained here)
    batch_size: int = 32  # frames per tokenizer update
    checkpoint: str | None = None  # use this trained tokenizer instead of training one
    # VQConfig fields (code_dim, ...) or training options (foreground_weight, lr, ...)
    overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("tokens_per_frame", "codebook_size", "steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"tokenizer.{name}={getattr(self, name)} must be >= 1")
        split_tokenizer_overrides(self.overrides)  # unknown keys fail when the spec is read


@dataclass
class TaskSweep:
    """One task's ladder of model sizes; every (size, seed) pair is one training run."""

    task: str = "wm-token"  # wm-token | bc-token | bc-cnn
    sizes: list[str] = field(default_factory=list)  # size names from worldmodels.presets
    tokens: float | None = None  # budget per run in transformer inputs D (give this or flops)
    flops: float | None = None  # budget per run in FLOPs C = 6ND (every size gets the same C)
    seeds: list[int] = field(default_factory=lambda: [0])  # one run per seed and size
    checkpoints: int = 4  # checkpoints kept along each run, log-spaced, for the studies
    preset: str | None = None  # training preset of worldmodels.presets (None: by size)
    overrides: dict[str, Any] = field(default_factory=dict)  # extra trainer config fields
    # frontier protocol: fraction of the study budget kept for this task (None: an equal part of
    # what the tasks with a share leave; no task with a share: tasks draw on it in order)
    budget_share: float | None = None

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"tasks[].task={self.task!r} is unknown; choose one of {TASKS}")
        if not self.sizes:
            raise ValueError(f"tasks[{self.task}].sizes is empty; list at least two sizes")
        if len(set(self.sizes)) != len(self.sizes):
            raise ValueError(f"tasks[{self.task}].sizes={self.sizes} repeats a size")
        if (self.tokens is None) == (self.flops is None):
            raise ValueError(f"tasks[{self.task}]: give exactly one of tokens= or flops= "
                             f"(got tokens={self.tokens}, flops={self.flops})")
        budget = self.tokens if self.tokens is not None else self.flops
        if not (isinstance(budget, (int, float)) and math.isfinite(budget) and budget > 0):
            raise ValueError(f"tasks[{self.task}] budget {budget!r} must be a positive number")
        if not self.seeds:
            raise ValueError(f"tasks[{self.task}].seeds is empty; use e.g. [0]")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"tasks[{self.task}].seeds={self.seeds} repeats a seed; list each "
                             "seed once (every seed is one run per size)")
        if self.budget_share is not None and not 0.0 < self.budget_share <= 1.0:
            raise ValueError(f"tasks[{self.task}].budget_share={self.budget_share} must lie in "
                             "(0, 1], e.g. 0.5")
        if self.checkpoints < 1:
            raise ValueError(f"tasks[{self.task}].checkpoints={self.checkpoints} must be >= 1")
        # a misspelt or study-set trainer field, or a preset of another task, fails when the
        # spec is read, not inside a sweep's worker
        check_task_overrides(self.overrides, where=f"tasks[{self.task}]")
        check_task_preset(self.task, self.preset, where=f"tasks[{self.task}]")

    def run_name(self, size: str, seed: int) -> str:
        """Directory name of the run for ``size`` and ``seed``."""
        return f"{self.task}-{size}-seed{seed}"


@dataclass
class ReturnStudySpec:
    """Loss vs online return of BC checkpoints (paper Figure 2)."""

    enabled: bool = True  # run the study
    env_id: str = "embscale/Breakout-v1"  # real env the policies act in (the dataset's env)
    episodes: int = 8  # evaluation episodes per checkpoint
    num_envs: int = 8  # vector env width
    max_episode_steps: int = 1500  # cap per episode (agent steps)
    deterministic: bool = False  # greedy actions instead of sampling
    bootstrap: int = 1000  # bootstrap resamples for correlation intervals
    seed: int = 0  # evaluation seed
    # checkpoints before this fraction of a run's last step are left out: an untrained network
    # samples near-uniform actions, so it plays like the random baseline whatever its loss
    skip_fraction: float = 0.05
    # checkpoints whose loss is above a uniform guess over the actions (the mean over action
    # dimensions of ln of their classes) are left out too: such a network has learned nothing yet (a
    # few steps into a large run it can be confidently wrong, at 3 nats against ln 4 = 1.39)
    skip_above_uniform: bool = True

    def __post_init__(self) -> None:
        for name in ("episodes", "num_envs", "max_episode_steps", "bootstrap"):
            if getattr(self, name) < 1:
                raise ValueError(f"loss_vs_return.{name}={getattr(self, name)} must be >= 1")
        if not 0.0 <= self.skip_fraction < 1.0:
            raise ValueError(f"loss_vs_return.skip_fraction={self.skip_fraction} must lie in "
                             "[0, 1), e.g. 0.05")


@dataclass
class QualityStudySpec:
    """Loss vs rollout quality of world-model checkpoints (paper Figure 3, Appendix D)."""

    enabled: bool = True  # run the study
    clips: int = 16  # held-out clips generated per checkpoint
    clip_frames: int = 16  # frames per clip (FVD needs at least 9)
    context_frames: int = 1  # real frames the generation is conditioned on
    videos: int = 2  # side-by-side MP4s written (best and worst checkpoints)
    bootstrap: int = 1000  # bootstrap resamples for correlation intervals
    seed: int = 0  # clip selection and sampling seed
    # as for loss vs return: checkpoints before this fraction of a run's last step are left out
    # (an untrained world model sits at loss ~ ln V and would make two clusters, not a trend)
    skip_fraction: float = 0.05

    def __post_init__(self) -> None:
        if not 0.0 <= self.skip_fraction < 1.0:
            raise ValueError(f"loss_vs_quality.skip_fraction={self.skip_fraction} must lie in "
                             "[0, 1), e.g. 0.05")
        if self.clips < 2:
            raise ValueError(f"loss_vs_quality.clips={self.clips} must be >= 2 (FVD needs a "
                             "distribution)")
        if self.clip_frames < 9:
            raise ValueError(f"loss_vs_quality.clip_frames={self.clip_frames} is below the 9 "
                             "frames the I3D network of FVD needs; use 16")
        if not 1 <= self.context_frames < self.clip_frames:
            raise ValueError(f"loss_vs_quality.context_frames={self.context_frames} must be in "
                             f"[1, clip_frames={self.clip_frames})")
        if self.bootstrap < 1:
            raise ValueError(f"loss_vs_quality.bootstrap={self.bootstrap} must be >= 1")


@dataclass
class FitSpec:
    """How the scaling laws are fitted."""

    method: str = "all"  # frontier | parametric | isoflop | all
    parametric_loss: str = "huber"  # huber | lsq
    bootstrap: int = 200  # bootstrap refits per coefficient interval
    # what a refit resamples: runs (whole curves; needs several runs per size), within-run
    # (points within each curve, the runs fixed) or points (scaling/laws/uncertainty.py)
    bootstrap_scheme: str = "runs"
    # metrics.jsonl key fitted: the training loss averaged since the previous log point (in the
    # infinite-data regime train and held-out losses agree); runs without it use train/loss
    loss_key: str = MEAN_LOSS_KEY
    skip_fraction: float = 0.1  # drop each curve's points before this fraction of its final D
    # (of its first-round D under the frontier protocol)
    # start each curve after its last point above a uniform guess's loss (scaling.fitting)
    skip_above_uniform: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.skip_fraction < 1.0:
            raise ValueError(f"fit.skip_fraction={self.skip_fraction} must be in [0, 1)")
        if self.method not in ("frontier", "parametric", "isoflop", "all"):
            raise ValueError(f"fit.method={self.method!r}; choose frontier|parametric|isoflop|all")
        if self.parametric_loss not in ("huber", "lsq"):
            raise ValueError(f"fit.parametric_loss={self.parametric_loss!r}; choose huber|lsq")
        if self.bootstrap_scheme not in ("runs", "within-run", "points"):
            raise ValueError(f"fit.bootstrap_scheme={self.bootstrap_scheme!r}; choose "
                             "runs|within-run|points")


@dataclass
class StudySpec:
    """A whole study: dataset -> tokenizer -> sweeps -> fits -> correlation studies -> report."""

    name: str = "study"  # study name; results go to <runs_dir>/<name>/
    description: str = ""  # one line shown in the report
    dataset: DatasetSpec = field(default_factory=DatasetSpec)
    tokenizer: TokenizerSpec = field(default_factory=TokenizerSpec)
    tasks: list[TaskSweep] = field(default_factory=list)
    loss_vs_return: ReturnStudySpec = field(default_factory=ReturnStudySpec)
    loss_vs_quality: QualityStudySpec = field(default_factory=QualityStudySpec)
    fit: FitSpec = field(default_factory=FitSpec)
    runs_dir: str = "runs"  # parent directory of the study directory
    parallel: int = 2  # training runs at a time on this machine
    device: str = "cpu"  # cpu | cuda | auto
    gpus_per_run: int = 1  # processes (GPUs) per run under torchrun; 0 = every visible GPU
    optimum_tokens_per_param: float = 20.0  # prior D/N at a token model's compute optimum
    # (Chinchilla's ~20; BC-CNN's prior is this divided by d_z + d_a, one input per timestep)
    # fixed: every run trains its task's budget once | frontier: scaling.study.budget_protocol
    # rounds extend runs until neighbouring sizes cross (the task budgets are the first round's)
    protocol: str = "fixed"
    study_budget: float = 0.0  # frontier: the whole study's budget (0: 10x the first round)
    study_budget_unit: str = "flops"  # flops (sum of 6ND) | seconds (training wall time)
    # frontier: a task with this many sizes on its frontier yields its budget share to tasks with
    # fewer (scaling.study.budget_tasks.plan_tasks; 0: every task keeps its share)
    frontier_goal: int = 3

    def __post_init__(self) -> None:
        if not STUDY_NAME_RE.match(self.name):
            raise ValueError(f"name={self.name!r} must be a plain directory name (letters, digits, "
                             "'.', '_', '-')")
        if not self.tasks:
            raise ValueError("tasks is empty; add at least one [[tasks]] entry "
                             f"(task one of {TASKS})")
        seen = [t.task for t in self.tasks]
        if len(set(seen)) != len(seen):
            raise ValueError(f"tasks lists a task twice: {seen}; merge their sizes")
        shares = sum(t.budget_share or 0.0 for t in self.tasks)
        if shares > 1.0 + 1e-9:
            raise ValueError(f"tasks[].budget_share sum to {shares:g}; they are fractions of one "
                             "study budget and must sum to at most 1")
        if self.parallel < 1:
            raise ValueError(f"parallel={self.parallel} must be >= 1")
        if self.gpus_per_run < 0:
            raise ValueError(f"gpus_per_run={self.gpus_per_run} must be >= 0 (0 = all visible)")
        if self.device not in ("cpu", "cuda", "auto"):
            raise ValueError(f"device={self.device!r}; choose cpu|cuda|auto")
        if self.protocol not in ("fixed", "frontier") or self.study_budget_unit not in (
                "flops", "seconds") or not self.study_budget >= 0:
            raise ValueError(f"protocol={self.protocol!r}, study_budget={self.study_budget!r}, "
                             f"study_budget_unit={self.study_budget_unit!r}: choose protocol "
                             "fixed|frontier, a budget >= 0 and a unit flops|seconds")
        if self.frontier_goal < 0:
            raise ValueError(f"frontier_goal={self.frontier_goal} must be >= 0 (0: no task "
                             "yields its budget share)")
        if self.optimum_tokens_per_param <= 0:
            raise ValueError(f"optimum_tokens_per_param={self.optimum_tokens_per_param} "
                             "must be > 0")

    @property
    def study_dir(self) -> Path:
        """Directory holding every artefact of the study."""
        return Path(self.runs_dir) / self.name

    def task(self, name: str) -> TaskSweep | None:
        """The sweep of task ``name``, or None."""
        return next((t for t in self.tasks if t.task == name), None)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form; ``spec_from_dict(spec.to_dict())`` gives an equal spec."""
        return dataclasses.asdict(self)

    def shared_config(self) -> dict[str, Any]:
        """The parts every training run depends on (a change invalidates every run)."""
        d = self.to_dict()
        return {"dataset": d["dataset"], "tokenizer": d["tokenizer"]}

    def fingerprint(self) -> str:
        """Short sha256 of the training-relevant parts (dataset, tokenizer, tasks)."""
        d = self.to_dict()
        text = json.dumps({"dataset": d["dataset"], "tokenizer": d["tokenizer"],
                           "tasks": d["tasks"]}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


_SECTIONS: dict[str, type] = {
    "dataset": DatasetSpec,
    "tokenizer": TokenizerSpec,
    "loss_vs_return": ReturnStudySpec,
    "loss_vs_quality": QualityStudySpec,
    "fit": FitSpec,
}


def spec_from_dict(data: dict[str, Any]) -> StudySpec:
    """Build a validated ``StudySpec`` from a dict (as read from JSON or TOML)."""
    if not isinstance(data, dict):
        raise ValueError(f"a study spec must be an object, got {type(data).__name__}")
    data = dict(data)
    kwargs: dict[str, Any] = {}
    for key, cls in _SECTIONS.items():
        if key in data:
            kwargs[key] = build_section(cls, data.pop(key), key)
    if "tasks" in data:
        tasks = data.pop("tasks")
        if not isinstance(tasks, list):
            raise ValueError(f"tasks must be a list of tables, got {type(tasks).__name__}")
        kwargs["tasks"] = [build_section(TaskSweep, t, f"tasks[{i}]")
                           for i, t in enumerate(tasks)]
    spec = build_section(StudySpec, {**data, **kwargs}, "")
    check_tokenizer_override_values(spec.tokenizer.overrides)
    return spec


def load_spec(path: str | os.PathLike) -> StudySpec:
    """Load a study spec from a ``.json`` or ``.toml`` file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"study spec {path} does not exist; write one (see docs/studies.md)"
                                " or run `embscale study --preset default`")
    try:
        text = path.read_text()
    except UnicodeDecodeError as e:
        raise ValueError(f"study spec {path} is not a text file ({e.reason} at byte {e.start}); "
                         "pass a .toml or .json spec") from e
    if path.suffix == ".toml":
        try:
            import tomllib
        except ImportError as e:  # Python 3.10
            raise ImportError("reading TOML specs needs Python >= 3.11; use a .json spec") from e
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"{path} is not valid TOML: {e}") from e
    elif path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not valid JSON: {e}") from e
    else:
        raise ValueError(f"study spec {path} must end in .json or .toml")
    return spec_from_dict(data)
