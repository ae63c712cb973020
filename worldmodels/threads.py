"""CPU threads per process: a default that fits the processes running at once, and quiet OpenMP.

With two threads per process on a busy machine a small model's step ran 5-7 times slower than
with one: OpenMP threads spin while they wait. ``quiet_openmp`` sets ``OMP_WAIT_POLICY=PASSIVE``
(unless set) and must run before torch is first imported; ``apply_threads`` sets torch's count.
"""

from __future__ import annotations

import argparse
import os

from offline_data.argtypes import positive_int


def quiet_openmp() -> None:
    """Let idle OpenMP threads sleep instead of spinning (``OMP_WAIT_POLICY=PASSIVE``)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS reports one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def default_threads(processes: int = 1) -> int:
    """Threads per process for ``processes`` processes running at once.

    ``EMBSCALE_THREADS``, else ``OMP_NUM_THREADS``, else the usable cores divided by the processes
    running at once (``LOCAL_WORLD_SIZE`` under torchrun, else ``processes``).
    """
    for name in ("EMBSCALE_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(name, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "0") or 0) or max(1, int(processes))
    return max(1, usable_cores() // local)


def apply_threads(threads: int | None, processes: int = 1) -> int:
    """Set torch's CPU threads (and ``OMP_NUM_THREADS`` for child processes); returns the count.

    Args:
        threads: the count asked for (None or 0: :func:`default_threads`).
        processes: processes of this command running at once (workers).
    """
    if threads is not None and threads < 0:
        raise ValueError(f"--threads {threads} must be >= 0 (0: the default)")
    n = int(threads or default_threads(processes))
    if processes > 1 and not threads:
        os.environ["OMP_NUM_THREADS"] = str(n)  # spawned workers read it when torch loads
    import torch

    torch.set_num_threads(n)
    return n


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--threads`` (default: :func:`default_threads` for the command's processes)."""
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="torch CPU threads per process (default: EMBSCALE_THREADS, else "
                             "OMP_NUM_THREADS, else the usable cores divided by the processes "
                             "running at once)")
