"""A dyna run's directory: what a finished run leaves there, and the refusal to replace one."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

RUN_FILES = ("ppo.zip", "results.json", "world_model.pt")
"""What a finished dyna run leaves in its run directory (with ``tb/`` and its evaluations)."""


def check_run_dir(run_dir: str | os.PathLike, overwrite: bool = False) -> None:
    """Refuse a run directory that holds a dyna run unless ``overwrite``; then clear it."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise FileExistsError(f"--run-dir {run_dir} is a file; choose a directory")
    found = [n for n in RUN_FILES if (run_dir / n).exists()]
    if found and not overwrite:
        raise FileExistsError(f"{run_dir} already holds a dyna run ({', '.join(found)}); pass "
                              "--overwrite to replace it, --evaluate-only to evaluate it again, "
                              "or choose another --run-dir")
    if found:
        for name in RUN_FILES:
            (run_dir / name).unlink(missing_ok=True)
        for old in run_dir.glob("evaluation-seed*.json"):  # they evaluated the replaced agent
            old.unlink()
        shutil.rmtree(run_dir / "tb", ignore_errors=True)


def evaluation_path(run_dir: str | os.PathLike, seed: int) -> Path:
    """Where ``evaluate_saved_agent`` writes an evaluation with ``seed``."""
    return Path(run_dir) / f"evaluation-seed{seed}.json"
