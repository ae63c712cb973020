"""Cluster job lists: a sweep's unfinished runs as ``torchrun`` commands, JSON lines or Slurm.

Example::

    from scaling.study.jobs import emit_jobs
    emit_jobs(runs, "jobs.slurm", fmt="slurm", nproc_per_node=8)
"""

from __future__ import annotations

import json
import logging
import os
import shlex
from collections.abc import Sequence
from pathlib import Path

from offline_data.atomic import write_text_atomic
from scaling.study.sweep import DEFAULT_ENTRY, RUN_SPEC_FILE, RunSpec, prepare_runs, run_status

logger = logging.getLogger(__name__)


def emit_jobs(runs: Sequence[RunSpec], out: str | os.PathLike, fmt: str = "jsonl",
              nproc_per_node: int = 8, entry: str = DEFAULT_ENTRY,
              allow_mixed: bool = False) -> Path:
    """Write the unfinished runs as a job list for a cluster scheduler instead of running them.

    Args:
        runs: the sweep.
        out: file to write.
        fmt: ``jsonl`` (one object per run: name, command, run_spec, estimated FLOPs),
            ``torchrun`` (a shell script, one ``torchrun`` command per run) or ``slurm``
            (a Slurm array script, one task per run).
        nproc_per_node: GPUs per run for ``torchrun``/``slurm``.
        entry: worker entry point.
        allow_mixed: see ``check_consistent``.

    Returns:
        The path written.
    """
    if fmt not in ("jsonl", "torchrun", "slurm"):
        raise ValueError(f"job format {fmt!r} is unknown; choose jsonl|torchrun|slurm")
    prepare_runs(runs, allow_mixed=allow_mixed)
    todo = sorted((r for r in runs if run_status(r) != "finished"), key=lambda r: -r.cost)
    cmds = []
    for r in todo:
        spec = str(r.run_dir / RUN_SPEC_FILE)
        cmds.append(["torchrun", "--standalone", f"--nproc_per_node={nproc_per_node}", "-m",
                     "scaling.study.sweep", spec, "--entry", entry])
    out = Path(out)
    if fmt == "jsonl":
        lines = [json.dumps({"name": r.name, "command": shlex.join(c),
                             "run_spec": str(r.run_dir / RUN_SPEC_FILE), "flops": r.cost,
                             "gpus": nproc_per_node}) for r, c in zip(todo, cmds, strict=True)]
        text = "\n".join(lines) + ("\n" if lines else "")
    elif fmt == "torchrun":
        text = "#!/usr/bin/env bash\n# One training run per line; each resumes where it stopped.\n"
        text += "set -euo pipefail\n" + "".join(shlex.join(c) + "\n" for c in cmds)
    else:
        text = ("#!/usr/bin/env bash\n"
                f"#SBATCH --array=0-{max(0, len(cmds) - 1)}\n"
                f"#SBATCH --gpus-per-node={nproc_per_node}\n#SBATCH --nodes=1\n"
                "set -euo pipefail\nCOMMANDS=(\n" +
                "".join(f"  {shlex.quote(shlex.join(c))}\n" for c in cmds) +
                ")\neval \"${COMMANDS[$SLURM_ARRAY_TASK_ID]}\"\n")
    write_text_atomic(out, text)
    logger.info("wrote %d job(s) to %s", len(cmds), out)
    return out
