"""A dyna run's directory: what a finished run leaves there, and the refusal to replace one."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

RUN_FILES = ("ppo.zip", "results.json", "world_model.pt")
"""What a finished dyna run leaves in its run directory (with ``tb/`` and its evaluations)."""


def check_run_dir(run_dir: str | os.PathLike, overwrite: bool = False,
                  inputs: Sequence[str | os.PathLike] = ()) -> None:
    """Refuse a run directory that holds a dyna run unless ``overwrite``; nothing is removed.

    With ``overwrite``, ``inputs`` (the world model and tokenizer files) must lie outside it,
    since the new run replaces what is there.
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise FileExistsError(f"--run-dir {run_dir} is a file; choose a directory")
    found = [n for n in RUN_FILES if (run_dir / n).exists()]
    if found and not overwrite:
        raise FileExistsError(f"{run_dir} already holds a dyna run ({', '.join(found)}); pass "
                              "--overwrite to replace it, --evaluate-only to evaluate it again, "
                              "or choose another --run-dir")
    inside = [str(f) for f in inputs if run_dir.resolve() in Path(f).resolve().parents]
    if found and inside:
        raise ValueError(f"{', '.join(inside)} lies in --run-dir {run_dir}, whose run "
                         "--overwrite replaces; copy it out of the run directory first")


def clear_derived(run_dir: str | os.PathLike, keep_world_model: bool) -> None:
    """Remove what an earlier run derived, once the new run has passed its checks.

    Its evaluations, TensorBoard logs and, unless the new run writes one, its updated world
    model; ``ppo.zip`` and ``results.json`` stay until the new run replaces them atomically.
    """
    run_dir = Path(run_dir)
    for old in run_dir.glob("evaluation-seed*.json"):  # they evaluated the replaced agent
        old.unlink()
    shutil.rmtree(run_dir / "tb", ignore_errors=True)
    if not keep_world_model:
        (run_dir / "world_model.pt").unlink(missing_ok=True)


def evaluation_path(run_dir: str | os.PathLike, seed: int) -> Path:
    """Where ``evaluate_saved_agent`` writes an evaluation with ``seed``."""
    return Path(run_dir) / f"evaluation-seed{seed}.json"
