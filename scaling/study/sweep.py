"""Sweeps: every training run of a study, resumably, several at a time or as a cluster job list.

A sweep is a list of ``RunSpec`` (one per task, size and seed). ``run_sweep`` starts each run as a
subprocess (``python -m scaling.study.sweep RUN_SPEC.json``), a few at a time with the machine's
cores split between them; finished runs (``done.json`` present) are skipped and interrupted ones are
started again, which resumes them from their last checkpoint. ``scaling.study.jobs.emit_jobs``
writes the same runs as ``torchrun`` commands, a JSON-lines job list or a Slurm array script
instead.

Example:
    python -m scaling.study.sweep runs/my-study/wm-token-s100k-seed0/run_spec.json
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from offline_data.atomic import write_text_atomic
from worldmodels.run_metrics import METRICS_FILE, last_record

logger = logging.getLogger(__name__)

RUN_SPEC_FILE = "run_spec.json"
DONE_FILE = "done.json"
LOG_FILE = "train.log"
DEFAULT_ENTRY = "scaling.study.adapters.training:train_run"
DIE_WITH_PARENT = "EMBSCALE_DIE_WITH_PARENT"
"""Set in the environment of a sweep's run processes: each exits when its parent dies (under
``torchrun`` the ranks die with it), so no run trains on after a killed study. A run started by
hand or by a cluster job (``--emit-jobs``) does not have it, and outlives its shell."""


@dataclass
class RunSpec:
    """One training run of a sweep; JSON-able, written to ``<out_dir>/run_spec.json``."""

    name: str  # run directory name, e.g. "wm-token-s100k-seed0"
    task: str  # wm-token | bc-token | bc-cnn
    size: str  # size name from worldmodels.presets
    seed: int  # training seed
    out_dir: str  # run directory (runs/<study>/<name>)
    data: str  # token shard directory (token tasks) or Minari dataset id (bc-cnn)
    tokens: float | None = None  # budget in transformer inputs D
    flops: float | None = None  # budget in FLOPs C = 6ND
    # checkpoints the study's later stages evaluate along the run (the run keeps every one)
    checkpoints: int = 4
    preset: str | None = None  # training preset (None: by size)
    device: str = "cpu"  # cpu | cuda | auto
    params: int | None = None  # N of this size for this task (for ordering and job lists)
    overrides: dict[str, Any] = field(default_factory=dict)  # extra trainer config fields
    shared: dict[str, Any] = field(default_factory=dict)  # study-wide config the run depends on

    @property
    def run_dir(self) -> Path:
        """The run directory."""
        return Path(self.out_dir)

    @property
    def num_params(self) -> float:
        """N, which converts between the run's FLOPs and tokens; ``ValueError`` when unknown."""
        if not self.params:
            raise ValueError(f"run spec {self.name!r} has no params (N), so its FLOPs and tokens "
                             "cannot be converted: set params in its run_spec.json")
        return float(self.params)

    @property
    def budget_tokens(self) -> float:
        """D of the run's budget: its tokens, or its FLOPs over 6N."""
        if self.tokens is not None:
            return float(self.tokens)
        return float(self.flops) / (6.0 * self.num_params)

    @property
    def cost(self) -> float:
        """Estimated FLOPs of the run, for scheduling longest first (by tokens without N)."""
        if self.flops is not None:
            return float(self.flops)
        return 6.0 * float(self.params or 1) * float(self.tokens or 0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return dataclasses.asdict(self)

    def config_dict(self) -> dict[str, Any]:
        """The fields that define the run's results (everything but where it lives)."""
        d = self.to_dict()
        # where/how it runs, N (derived), and how many of its checkpoints later stages read
        for derived in ("out_dir", "device", "params", "checkpoints"):
            d.pop(derived)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSpec:
        """Inverse of ``to_dict``; unknown keys are rejected."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"run spec has unknown key(s) {unknown}; allowed: {sorted(names)}")
        return cls(**data)

    @classmethod
    def load(cls, path: str | os.PathLike) -> RunSpec:
        """Read a ``run_spec.json``."""
        return cls.from_dict(json.loads(Path(path).read_text()))


class SpecMismatchError(ValueError):
    """An existing run directory was made by a different spec than the one now requested."""


class SweepError(ChildProcessError):
    """One or more runs of a sweep failed (the message quotes the first one's log)."""


def failed_runs_error(runs: Sequence[RunSpec], failed: Sequence[str]) -> SweepError:
    """The error for the ``failed`` runs: names, the first one's last log line, the logs.

    The last line a run logged is its error when it stopped on one.
    """
    logs = [Path(r.out_dir) / LOG_FILE for r in runs if r.name in failed]
    last = ""
    if logs and logs[0].is_file():
        lines = [ln.strip() for ln in logs[0].read_text(errors="replace").splitlines()]
        last = next((ln for ln in reversed(lines) if ln), "")
    said = f"; {failed[0]} ended with: {last[:300]}" if last else ""
    return SweepError(f"{len(failed)} run(s) failed: {', '.join(failed)}{said}; read "
                      f"{', '.join(map(str, logs))}. Fix the cause and run the sweep again: "
                      "finished runs are kept")


def run_status(run: RunSpec) -> str:
    """``"finished"``, ``"interrupted"`` (trained, not finished) or ``"pending"``.

    A run that kept no checkpoint and logged no point past D = 0 never trained a step (it failed
    on its config, its data or its first step): it is pending, so a corrected spec may start it
    afresh.
    """
    d = run.run_dir
    if (d / DONE_FILE).is_file():
        return "finished"
    if (d / "checkpoints").exists():
        return "interrupted"
    last = last_record(d) if (d / METRICS_FILE).is_file() else None
    return "interrupted" if last and float(last.get("tokens") or 0) > 0 else "pending"


def _diff(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Human-readable differences between two JSON-able values."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new), key=str):
            key = f"{prefix}.{k}" if prefix else str(k)
            if k not in old:
                out.append(f"{key}: (absent) -> {new[k]!r}")
            elif k not in new:
                out.append(f"{key}: {old[k]!r} -> (absent)")
            else:
                out += _diff(old[k], new[k], key)
        return out
    return [] if old == new else [f"{prefix}: {old!r} -> {new!r}"]


def check_consistent(runs: Sequence[RunSpec], allow_mixed: bool = False) -> list[str]:
    """Refuse to mix results: compare each existing run directory's spec with the requested one.

    Args:
        runs: the runs the current spec asks for.
        allow_mixed: keep going when specs differ (the differences are returned and logged).

    Returns:
        Descriptions of the differences found (empty when every existing run matches).

    Raises:
        SpecMismatchError: a started or finished run was made with a different configuration
            and ``allow_mixed`` is False.
    """
    problems = []
    for run in runs:
        path = run.run_dir / RUN_SPEC_FILE
        if run_status(run) == "pending" or not path.is_file():
            continue
        try:
            old = RunSpec.load(path).config_dict()
        except (ValueError, TypeError, json.JSONDecodeError) as e:
            problems.append(f"{run.name}: unreadable {RUN_SPEC_FILE} ({e})")
            continue
        diffs = _diff(old, run.config_dict())
        if diffs:
            problems.append(f"{run.name} ({run_status(run)}): " + "; ".join(diffs[:6]))
    if problems and not allow_mixed:
        raise SpecMismatchError(
            "the study directory holds runs made with a different spec, and mixing their "
            "results would corrupt the fits:\n  " + "\n  ".join(problems) +
            "\nFix: restore the original spec, give the study a new name, delete those run "
            "directories, or pass --allow-mixed to keep them anyway.")
    for p in problems:
        logger.warning("mixing results: %s", p)
    return problems


def _threads_per_run(parallel: int, cores: int | None) -> int:
    cores = cores or os.cpu_count() or 1
    return max(1, cores // max(1, parallel))


def _progress(run: RunSpec) -> float:
    """Fraction of the run's budget done, from the last line of its metrics.jsonl."""
    last = last_record(run.run_dir)
    if last is None:
        return 0.0
    if run.tokens:
        return min(1.0, float(last.get("tokens", 0)) / run.tokens)
    if run.flops:
        return min(1.0, float(last.get("flops", 0)) / run.flops)
    return 0.0


def progress_postfix(runs: Iterable[RunSpec]) -> str:
    """``name:NN%`` of each run in training, for a progress bar's postfix."""
    return " ".join(f"{r.name}:{_progress(r):.0%}" for r in runs)


def _worker_command(run: RunSpec, entry: str, nproc_per_node: int = 1) -> list[str]:
    spec = str(run.run_dir / RUN_SPEC_FILE)
    if nproc_per_node > 1:  # data-parallel over this machine's GPUs
        return [sys.executable, "-m", "torch.distributed.run", "--standalone",
                f"--nproc_per_node={nproc_per_node}", "-m", "scaling.study.sweep", spec,
                "--entry", entry]
    return [sys.executable, "-m", "scaling.study.sweep", spec, "--entry", entry]


def prepare_runs(runs: Sequence[RunSpec], allow_mixed: bool = False) -> None:
    """Check consistency, then write each run's ``run_spec.json`` where none is recorded.

    A run that has started keeps the spec it was started with (with ``allow_mixed`` it is
    resumed as it was), so a run directory always describes what was trained in it.
    """
    check_consistent(runs, allow_mixed=allow_mixed)
    for run in runs:
        path = run.run_dir / RUN_SPEC_FILE
        if run_status(run) == "pending" or not path.is_file():
            write_text_atomic(path, json.dumps(run.to_dict(), indent=2))


def run_sweep(runs: Sequence[RunSpec], parallel: int = 2, cores: int | None = None,
              entry: str = DEFAULT_ENTRY, allow_mixed: bool = False, poll_s: float = 0.5,
              progress: bool = True, nproc_per_node: int = 1,
              on_finish: Callable[[RunSpec, int], None] | None = None) -> dict[str, str]:
    """Run every unfinished run, ``parallel`` at a time, each in its own process.

    Args:
        runs: the sweep.
        parallel: runs at a time.
        cores: CPU cores to share between concurrent runs (default: all); each run gets
            ``cores // parallel`` threads.
        entry: ``module:function`` called by the worker with the ``RunSpec`` and thread count.
        allow_mixed: see ``check_consistent``.
        poll_s: seconds between checks of the running processes.
        progress: show a tqdm bar.
        nproc_per_node: processes per run; above 1 each run is started with torchrun (DDP).
        on_finish: called with each run and its exit code as it ends.

    Returns:
        Status per run name: ``finished`` (now or before) or ``failed``.

    Raises:
        SweepError: after every run has ended, if any failed (names the logs to read).
    """
    from tqdm.auto import tqdm

    prepare_runs(runs, allow_mixed=allow_mixed)
    status = {r.name: run_status(r) for r in runs}  # logs are only opened below
    todo = sorted((r for r in runs if status[r.name] != "finished"), key=lambda r: -r.cost)
    skipped = len(runs) - len(todo)
    if skipped:
        logger.info("sweep: %d of %d runs already finished, skipped", skipped, len(runs))
    resumed = [r.name for r in todo if status[r.name] == "interrupted"]
    if resumed:
        logger.info("sweep: resuming %d interrupted run(s): %s", len(resumed), ", ".join(resumed))
    threads = _threads_per_run(parallel, cores)
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               EMBSCALE_THREADS=str(threads),
               PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle OpenMP threads sleep, never spin
    env[DIE_WITH_PARENT] = "1"  # a killed study (SIGTERM, kill -9) takes its runs with it
    active: dict[str, tuple[RunSpec, subprocess.Popen, Any]] = {}
    bar = tqdm(total=len(runs), initial=skipped, desc="sweep", unit="run", disable=not progress,
               dynamic_ncols=True)
    queue = list(todo)
    try:
        while queue or active:
            while queue and len(active) < parallel:
                run = queue.pop(0)
                log = open(run.run_dir / LOG_FILE, "ab")  # noqa: SIM115 - closed when it ends
                proc = subprocess.Popen(_worker_command(run, entry, nproc_per_node), stdout=log,
                                        stderr=subprocess.STDOUT, env=env)
                active[run.name] = (run, proc, log)
                logger.info("sweep: started %s (%s, %d threads)", run.name,
                            "resume" if status[run.name] == "interrupted" else "new", threads)
            time.sleep(poll_s)
            for name in list(active):
                run, proc, log = active[name]
                rc = proc.poll()
                if rc is None:
                    continue
                log.close()
                del active[name]
                ok = rc == 0 and run_status(run) == "finished"
                status[name] = "finished" if ok else "failed"
                if ok:
                    logger.info("sweep: finished %s", name)
                else:
                    logger.error("sweep: %s failed (exit %d); see %s", name, rc,
                                 run.run_dir / LOG_FILE)
                if on_finish is not None:
                    on_finish(run, rc)
                bar.update(1)
            if active:
                bar.set_postfix_str(progress_postfix(r for r, _, _ in active.values()),
                                    refresh=False)
                bar.refresh()
    except BaseException:
        for _, proc, _ in active.values():
            if proc.poll() is None:
                proc.terminate()
        for _, proc, log in active.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()
        raise
    finally:
        bar.close()
    failed = sorted(n for n, s in status.items() if s == "failed")
    if failed:
        raise failed_runs_error(runs, failed)
    return status


def collect_results(runs: Sequence[RunSpec], task: str | None = None) -> list[Path]:
    """Run directories of the finished runs (optionally of one task), for the fits."""
    return [r.run_dir for r in runs
            if run_status(r) == "finished" and (task is None or r.task == task)]


def _load_entry(entry: str) -> Callable[..., Any]:
    module, _, func = entry.partition(":")
    if not module or not func:
        raise ValueError(f"entry {entry!r} must look like 'package.module:function'")
    return getattr(importlib.import_module(module), func)


def run_worker(spec_path: str | os.PathLike, entry: str = DEFAULT_ENTRY) -> None:
    """Train one run in this process, then mark it finished (rank 0 writes ``done.json``)."""
    # Threads come from OMP_NUM_THREADS, which torch reads when it is first imported.
    run = RunSpec.load(spec_path)
    t0 = time.time()
    result = _load_entry(entry)(run)
    if int(os.environ.get("RANK", "0")) == 0:
        done = {"name": run.name, "seconds": round(time.time() - t0, 2), "finished_at": time.time()}
        if isinstance(result, dict):
            done.update(result)
        write_text_atomic(run.run_dir / DONE_FILE, json.dumps(done, indent=2))


def main(argv: list[str] | None = None) -> int:
    """Worker entry: ``python -m scaling.study.sweep RUN_SPEC.json [--entry module:function]``."""
    parser = argparse.ArgumentParser(prog="python -m scaling.study.sweep",
                                     description="Train one run of a sweep (resumes if started).")
    parser.add_argument("run_spec", help="path of the run's run_spec.json")
    parser.add_argument("--entry", default=DEFAULT_ENTRY,
                        help="training function as module:function (default: %(default)s)")
    args = parser.parse_args(argv)
    if os.environ.pop(DIE_WITH_PARENT, None):  # started by run_sweep (or torchrun under it)
        from offline_data.processes import die_with_parent

        die_with_parent(os.getppid())
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run_worker(args.run_spec, args.entry)
    return 0


if __name__ == "__main__":
    sys.exit(main())
