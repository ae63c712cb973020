"""Sweeps of small runs without per-run process costs: several runs per worker process.

``run_sweep`` starts one process per run, which costs the interpreter, torch and the data stack
each time (several seconds on a small CPU) - more than a small run trains. ``run_pooled_sweep``
starts ``parallel`` worker processes and gives each a share of the runs (longest first, each to
the least loaded worker); a worker trains its runs one after another in the same process, so the
imports are paid once per worker. Every run still seeds everything itself and runs with the same
thread count, so its metrics are those of a run in its own process.

Example:
    python -m scaling.study.sweep_pool runs/s/a/run_spec.json runs/s/b/run_spec.json
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from scaling.study.sweep import (
    DEFAULT_ENTRY,
    LOG_FILE,
    RUN_SPEC_FILE,
    RunSpec,
    SweepError,
    _threads_per_run,
    prepare_runs,
    run_status,
    run_worker,
)

logger = logging.getLogger(__name__)


def partition(runs: Sequence[RunSpec], workers: int) -> list[list[RunSpec]]:
    """Split ``runs`` into ``workers`` groups of similar cost (longest first, least loaded)."""
    groups: list[list[RunSpec]] = [[] for _ in range(max(1, workers))]
    load = [0.0] * len(groups)
    for run in sorted(runs, key=lambda r: -r.cost):
        i = load.index(min(load))
        groups[i].append(run)
        load[i] += run.cost
    return [g for g in groups if g]


def run_pooled_sweep(runs: Sequence[RunSpec], parallel: int = 2, cores: int | None = None,
                     entry: str = DEFAULT_ENTRY, allow_mixed: bool = False) -> dict[str, str]:
    """Train every unfinished run, ``parallel`` worker processes each training several runs.

    Args and result as :func:`scaling.study.sweep.run_sweep` (without its progress bar and
    torchrun).
    """
    prepare_runs(runs, allow_mixed=allow_mixed)
    todo = [r for r in runs if run_status(r) != "finished"]
    threads = _threads_per_run(parallel, cores)
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               EMBSCALE_THREADS=str(threads),
               PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    procs = []
    for group in partition(todo, parallel):
        cmd = [sys.executable, "-m", "scaling.study.sweep_pool", "--entry", entry,
               *[str(r.run_dir / RUN_SPEC_FILE) for r in group]]
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
    try:
        for p in procs:
            p.wait()
    except BaseException:
        for p in procs:
            p.terminate()
        raise
    status = {r.name: "finished" if run_status(r) == "finished" else "failed" for r in runs}
    failed = sorted(n for n, s in status.items() if s == "failed")
    if failed:
        raise SweepError(f"{len(failed)} run(s) failed: {', '.join(failed)}; read their "
                         f"{LOG_FILE}. Fix the cause and run the sweep again: finished runs are "
                         "kept.")
    return status


def _train_logged(spec_path: str, entry: str) -> bool:
    """Train one run with its log in ``<run>/train.log``; False when it failed."""
    run_dir = Path(spec_path).parent
    handler = logging.FileHandler(run_dir / LOG_FILE)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        run_worker(spec_path, entry)
        return True
    except Exception:
        logging.getLogger(__name__).exception("run %s failed", run_dir.name)
        return False
    finally:
        root.removeHandler(handler)
        handler.close()


def main(argv: list[str] | None = None) -> int:
    """Worker: ``python -m scaling.study.sweep_pool [--entry E] RUN_SPEC.json ...`` (in order)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    parser = argparse.ArgumentParser(prog="python -m scaling.study.sweep_pool",
                                     description="Train several runs of a sweep in this process.")
    parser.add_argument("run_specs", nargs="+", help="run_spec.json of each run, in order")
    parser.add_argument("--entry", default=DEFAULT_ENTRY, help="training function module:function")
    args = parser.parse_args(argv)
    logging.getLogger().setLevel(logging.INFO)
    results = [_train_logged(p, args.entry) for p in args.run_specs]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
