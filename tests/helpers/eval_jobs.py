"""Jobs for ``scaling.study.eval_pool`` tests: module-level, so worker processes can import them."""

from __future__ import annotations

import os


def square_where(x: int) -> tuple[int, int, int, str]:
    """``x * x``, the process that computed it, its torch threads and its OpenMP wait policy."""
    import torch

    if x < 0:
        raise ValueError(f"negative job {x}")
    return x * x, os.getpid(), torch.get_num_threads(), os.environ.get("OMP_WAIT_POLICY", "")
