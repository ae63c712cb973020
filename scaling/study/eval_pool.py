"""Checkpoint evaluations of the correlation studies, spread over worker processes.

Loss vs return plays each behaviour-cloning checkpoint in the real env, and loss vs quality
rolls each world-model checkpoint out; both evaluate one checkpoint after another. On a small CPU
one process leaves cores idle while the env steps (single-threaded) between the policy's forward
passes, so :func:`evaluate_all` evaluates ``parallel`` checkpoints at a time, each worker
process with ``cores // parallel`` threads (and idle OpenMP threads sleeping, as in a sweep),
and yields every result as it arrives, so the caller can record it before the next one ends
and an interrupted study loses at most the evaluations in flight. Every evaluation seeds
itself, so its result does not depend on which worker ran it; only the thread count can move
floating-point sums by rounding. Workers are spawned (no forked torch or OpenMP state), so a
Python script that runs a study with ``parallel > 1`` needs the usual
``if __name__ == "__main__":`` guard; the ``embscale`` command has it.

Example:
    for path, result in evaluate_all(score, paths, parallel=2):
        rows[path] = result
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

from worldmodels.threads import usable_cores


def _start_worker(threads: int) -> None:
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"  # before torch loads in this process
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)


def evaluate_all(fn: Callable[[Any], Any], items: Sequence[Any], parallel: int = 1,
                 cores: int | None = None) -> Iterator[tuple[Any, Any]]:
    """``(item, fn(item))`` for every item, in the order they finish.

    Args:
        fn: a module-level function (it is sent to the workers by reference).
        items: its arguments, one call each (picklable).
        parallel: worker processes; 1 (or a single item) evaluates in this process.
        cores: cores the workers share (default: all this process may use).
    """
    items = list(items)
    if parallel <= 1 or len(items) <= 1:
        for item in items:
            yield item, fn(item)
        return
    cores = cores or usable_cores()
    workers = min(parallel, len(items))
    ctx = multiprocessing.get_context("spawn")  # no forked torch or OpenMP state
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_start_worker,
                             initargs=(max(1, cores // workers),)) as pool:
        futures = {pool.submit(fn, item): i for i, item in enumerate(items)}
        try:
            for future in as_completed(futures):
                yield items[futures[future]], future.result()
        finally:
            for future in futures:  # an error or an interrupt: start nothing more
                future.cancel()
