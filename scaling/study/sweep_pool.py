"""Sweeps of small runs without per-run process costs: long-lived worker processes.

``run_sweep`` starts one process per run, which costs the interpreter, torch and the data stack
each time (several seconds on a small CPU) - more than a small run trains. A :class:`WorkerPool`
starts ``parallel`` worker processes once and hands them runs one at a time, longest first, each
to the first worker that is free; a worker trains its runs one after another in the same process,
so the imports (torch, and ``torch._dynamo``, which ``torch.optim`` loads with a process's first
optimizer) are paid once per worker, and data a worker has read stays in memory for its next run
(``agents.frame_cache``). One pool serves every round of the budget protocol. Every run still
seeds everything itself and runs with the same thread count, so its metrics are those of a run in
its own process (a test checks this).

Workers read run-spec paths on stdin and answer ``ok`` or ``failed`` on a private copy of their
stdout (what the training prints goes to ``/dev/null``; each run's log is its ``train.log``); they
exit when stdin closes or when the parent dies.

Example:
    with WorkerPool(parallel=2) as pool:
        pool.run(first_round_runs)
        pool.run(second_round_runs)
"""

from __future__ import annotations

import argparse
import logging
import os
import selectors
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from offline_data.processes import die_with_parent
from scaling.study.sweep import (
    DEFAULT_ENTRY,
    LOG_FILE,
    RUN_SPEC_FILE,
    RunSpec,
    _threads_per_run,
    failed_runs_error,
    prepare_runs,
    progress_postfix,
    run_status,
    run_worker,
)

logger = logging.getLogger(__name__)


class WorkerPool:
    """``parallel`` worker processes that train the runs given to :meth:`run`, round after round.

    Args:
        parallel: worker processes (runs trained at once).
        cores: cores shared by the workers (default: all); each run gets ``cores // parallel``
            threads.
        entry: the training function, ``module:function``.
        progress: show a tqdm bar of each :meth:`run`'s runs, with the share of its budget each
            run in training has done.
    """

    def __init__(self, parallel: int = 2, cores: int | None = None, entry: str = DEFAULT_ENTRY,
                 progress: bool = False):
        self.parallel, self.entry, self.progress = max(1, parallel), entry, progress
        threads = _threads_per_run(self.parallel, cores)
        self.env = dict(os.environ)
        self.env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
                        EMBSCALE_THREADS=str(threads),
                        PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        self.env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        self.workers: list[subprocess.Popen] = []

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _start(self, count: int) -> None:
        while len(self.workers) < count:
            self.workers.append(subprocess.Popen(
                [sys.executable, "-m", "scaling.study.sweep_pool", "--serve", "--entry",
                 self.entry], env=self.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL, text=True, bufsize=1))

    def run(self, runs: Sequence[RunSpec], allow_mixed: bool = False,
            desc: str = "sweep") -> dict[str, str]:
        """Train every unfinished run of ``runs``; returns ``{name: "finished"}``.

        ``desc`` labels the progress bar.

        Raises:
            SweepError: a run failed (the others are trained first; finished runs are kept).
        """
        from tqdm.auto import tqdm

        prepare_runs(runs, allow_mixed=allow_mixed)
        todo = sorted((r for r in runs if run_status(r) != "finished"), key=lambda r: -r.cost)
        for w in [w for w in self.workers if w.poll() is not None]:  # died in an earlier round
            self._release(w)
            self.workers.remove(w)
        self._start(min(self.parallel, len(todo)))
        bar = tqdm(total=len(runs), initial=len(runs) - len(todo), desc=desc, unit="run",
                   disable=not self.progress, dynamic_ncols=True)
        try:
            self._dispatch(todo, bar)
        except BaseException:
            self.close(kill=True)
            raise
        finally:
            bar.set_postfix_str("", refresh=False)
            bar.close()
        status = {r.name: "finished" if run_status(r) == "finished" else "failed" for r in runs}
        failed = sorted(n for n, s in status.items() if s == "failed")
        if failed:
            raise failed_runs_error(runs, failed)
        return status

    def _dispatch(self, todo: list[RunSpec], bar) -> None:
        queue, busy = list(todo), {}
        with selectors.DefaultSelector() as sel:
            for w in self.workers:
                sel.register(w.stdout, selectors.EVENT_READ, w)
            idle = list(self.workers)
            while queue or busy:
                while queue and idle:
                    w, run = idle.pop(0), queue.pop(0)
                    try:
                        w.stdin.write(f"{run.run_dir / RUN_SPEC_FILE}\n")
                        w.stdin.flush()
                    except OSError:  # the worker died while idle: the run waits for another
                        sel.unregister(w.stdout)
                        queue.insert(0, run)
                        continue
                    busy[w.pid] = run
                if not busy:  # every worker died: the runs left are reported as failed
                    break
                if not bar.disable:
                    bar.set_postfix_str(progress_postfix(busy.values()), refresh=False)
                    bar.refresh()
                for key, _ in sel.select(timeout=None if bar.disable else 5.0):
                    w = key.data
                    line = w.stdout.readline()
                    run = busy.pop(w.pid, None)
                    if run is not None:  # not a worker that died while idle
                        bar.update(1)
                    if not line:  # the worker died (its run is unfinished: reported failed)
                        sel.unregister(w.stdout)
                        logger.warning("sweep worker %d exited during %s", w.pid,
                                       run.name if run else "no run")
                        continue
                    idle.append(w)

    def close(self, kill: bool = False) -> None:
        """Stop the workers (after their current run, or at once with ``kill``)."""
        for w in self.workers:
            if kill and w.poll() is None:
                w.terminate()
            try:
                w.stdin.close()
            except OSError:
                pass
        for w in self.workers:
            try:
                w.wait(timeout=None if not kill else 30)
            except subprocess.TimeoutExpired:
                w.kill()
            self._release(w)
        self.workers = []

    @staticmethod
    def _release(w: subprocess.Popen) -> None:
        for pipe in (w.stdin, w.stdout):
            try:
                pipe.close()
            except OSError:
                pass


def run_pooled_sweep(runs: Sequence[RunSpec], parallel: int = 2, cores: int | None = None,
                     entry: str = DEFAULT_ENTRY, allow_mixed: bool = False) -> dict[str, str]:
    """Train every unfinished run in a :class:`WorkerPool` of its own.

    Args and result as :func:`scaling.study.sweep.run_sweep` (without its progress bar and
    torchrun).
    """
    with WorkerPool(parallel, cores, entry) as pool:
        return pool.run(runs, allow_mixed=allow_mixed)


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


def _serve(entry: str) -> int:
    """Worker loop: train each run-spec path read on stdin, answer on a private stdout."""
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())  # what training prints cannot garble the answers
    for line in sys.stdin:
        path = line.strip()
        if path:
            answers.write(("ok" if _train_logged(path, entry) else "failed") + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Worker: ``python -m scaling.study.sweep_pool [--entry E] (--serve | RUN_SPEC.json ...)``."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    parser = argparse.ArgumentParser(prog="python -m scaling.study.sweep_pool",
                                     description="Train several runs of a sweep in this process.")
    parser.add_argument("run_specs", nargs="*", help="run_spec.json of each run, in order")
    parser.add_argument("--entry", default=DEFAULT_ENTRY, help="training function module:function")
    parser.add_argument("--serve", action="store_true",
                        help="read run_spec.json paths on stdin until it closes (a pool worker)")
    args = parser.parse_args(argv)
    logging.getLogger().setLevel(logging.INFO)
    if args.serve:
        die_with_parent(os.getppid())
        return _serve(args.entry)
    if not args.run_specs:
        parser.error("give run_spec.json paths, or --serve")
    results = [_train_logged(p, args.entry) for p in args.run_specs]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
