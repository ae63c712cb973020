"""Checks of study spec values (``scaling.study.spec``): types, trainer overrides, presets.

Each check raises ``ValueError`` with one line that names the key (its place in the spec, e.g.
``tasks[0].seeds[1]``), what is wrong and the fix.

>>> check_value(2.5, int, "parallel")
Traceback (most recent call last):
...
ValueError: parallel must be int, got 2.5 (float)
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any

from scaling.tasks import MODEL_OPTIONS, build
from scaling.training import check_training_options
from worldmodels import presets
from worldmodels.train_config import TrainConfig

STUDY_SET_OPTIONS: dict[str, str] = {
    "seed": "tasks[].seeds (one run per seed)",
    "run_dir": "name and runs_dir (a run trains in <runs_dir>/<name>/<task>-<size>-seed<seed>)",
    "max_tokens": "tasks[].tokens",
    "max_flops": "tasks[].flops",
    "max_steps": "tasks[].tokens or tasks[].flops (a study budgets runs in inputs or FLOPs)",
    "device": "the spec's device (or `embscale study --device`)",
    "keep_checkpoints": "tasks[].checkpoints (the study keeps every checkpoint itself)",
    "resume": "nothing (the study resumes interrupted runs; delete a run's directory to redo it)",
}
"""Trainer fields the study sets itself for every run (``scaling.study.adapters.training`` and
``scaling.training.train_model``), so ``tasks[].overrides`` may not: field -> what sets it."""


def type_name(tp: Any) -> str:
    """Readable name of an annotation: ``list[int]``, ``float | None``, ``any``."""
    if tp is Any:
        return "any"
    if tp is type(None):
        return "None"
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin is not None:
        inner = ", ".join("..." if a is Ellipsis else type_name(a) for a in args)
        return f"{origin.__name__}[{inner}]" if inner else origin.__name__
    return getattr(tp, "__name__", str(tp))


def _matches(value: Any, tp: Any) -> bool:
    """Whether ``value`` has type ``tp`` (an int is a float; a bool is no number)."""
    if tp is Any:
        return True
    if tp is type(None):
        return value is None
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in args)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(map(_matches, value, args))
        return not args or all(_matches(v, args[0]) for v in value)
    if origin is dict:
        key_tp, value_tp = args or (Any, Any)
        return isinstance(value, dict) and all(
            _matches(k, key_tp) and _matches(v, value_tp) for k, v in value.items())
    if origin is not None:
        return isinstance(value, origin)
    if tp is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if tp is float:
        return isinstance(value, (int, float))
    return isinstance(value, tp)


def check_value(value: Any, tp: Any, key: str) -> None:
    """Raise ``ValueError`` ("KEY must be TYPE, got VALUE (TYPE)") unless ``value`` is a ``tp``.

    The items of a list, tuple or dict value are checked one by one, so the error names the item.
    """
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (list, tuple) and isinstance(value, (list, tuple)) and args and (
            origin is list or args[-1] is Ellipsis):
        for i, item in enumerate(value):
            check_value(item, args[0], f"{key}[{i}]")
        return
    if origin is dict and isinstance(value, dict) and args:
        for k, item in value.items():
            check_value(k, args[0], f"{key} key {k!r}")
            check_value(item, args[1], f"{key}.{k}")
        return
    if not _matches(value, tp):
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        raise ValueError(f"{key} must be {type_name(tp)}, got {shown} ({type(value).__name__})")


def check_values(hints: dict[str, Any], data: dict[str, Any], where: str) -> None:
    """:func:`check_value` for every key of ``data`` that ``hints`` (name -> annotation) types."""
    for key, value in data.items():
        if key in hints:
            check_value(value, hints[key], f"{where}.{key}" if where else key)


def build_section(cls: type, data: Any, where: str) -> Any:
    """Instantiate dataclass ``cls`` from ``data``, rejecting unknown keys and wrong types.

    ``where`` is the section's place in the spec ("dataset", "tasks[0]"; "" for the top level).
    """
    if not isinstance(data, dict):
        raise ValueError(f"{where or 'a study spec'} must be a table/object, got "
                         f"{type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{where or 'study spec'} has unknown key(s) {unknown}; allowed: "
                         f"{sorted(names)}")
    check_values(typing.get_type_hints(cls), data, where)
    return cls(**data)


def check_task_overrides(overrides: dict[str, Any], where: str) -> None:
    """Check ``tasks[].overrides``: known trainer fields, none that the study sets, right types.

    The types are those of ``TrainConfig``'s fields and of ``scaling.tasks.build``'s options.
    """
    check_training_options(overrides, where=f"{where}.overrides keys")
    taken = [k for k in overrides if k in STUDY_SET_OPTIONS]
    if taken:
        raise ValueError("; ".join(f"{where}.overrides.{k} is set by the study itself: drop it "
                                   f"and use {STUDY_SET_OPTIONS[k]}" for k in taken))
    hints = {**typing.get_type_hints(TrainConfig),
             **{k: v for k, v in typing.get_type_hints(build).items() if k in MODEL_OPTIONS}}
    check_values(hints, overrides, f"{where}.overrides")
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    try:  # the values TrainConfig itself refuses (a learning rate of -1), before any stage runs
        TrainConfig(**{"max_steps": 1, **{k: v for k, v in overrides.items() if k in fields}})
    except (ValueError, TypeError) as e:
        raise ValueError(f"{where}.overrides: {e}") from None


def check_task_preset(task: str, preset: str | None, where: str) -> None:
    """``tasks[].preset`` must be a known preset for ``task`` (or for any task)."""
    if preset is None:
        return
    fits = [n for n, p in presets.TASK_PRESETS.items() if p.task in ("any", task)]
    if preset not in presets.TASK_PRESETS:
        raise ValueError(f"{where}.preset={preset!r} is unknown; use one of {fits} or drop it "
                         "to pick by size")
    owner = presets.TASK_PRESETS[preset].task
    if owner not in ("any", task):
        raise ValueError(f"{where}.preset={preset!r} is a preset for {owner}, not {task}; use "
                         f"one of {fits} or drop it to pick by size")


def check_tokenizer_checkpoint(spec) -> None:
    """A ``tokenizer.checkpoint`` the spec names must be a file (checked before any stage)."""
    path = spec.tokenizer.checkpoint
    if path and not Path(path).is_file():
        raise ValueError(f"tokenizer.checkpoint={path!r} is not a file; fix the path, train one "
                         "with `embscale tokenizer train`, or drop the key to train one here")
