"""Split-K attention of one query per row over a ``RowKVCache``, as a Triton kernel (CUDA).

A decoded token attends over its row's columns ``[first[b], col]`` of a cache whose shape never
changes. At large batch that attention is a pass over the cache per layer and token, so its speed
is the speed at which the keys and values are read. Written as tensor reductions for the
compiler, it read them at 0.6-0.8 TB/s on an H200 (docs/gym.md), a fifth of what a copy moves:
a head of 18 values (s2M) is a 36-byte row, which SDPA's fused kernels refuse and the generated
reductions read poorly.

Here one program per (row, head, split) walks the columns of its split that the row owns, in
blocks of ``KernelConfig.block`` columns: each block's keys and values are one contiguous span,
read with a load mask that leaves out the columns the row does not own, and blocks outside
``[first, col]`` are not visited, so the bytes read follow the rows' lengths, not the cache's
capacity. The program keeps a running softmax (its maximum score, the sum of its exponentials and
their weighted sum of values, in fp32); a second kernel combines a row's splits (the flash-decoding
scheme). At large batch the (row, head) pairs fill the GPU and each takes one split; at small
batch the columns are split further (:func:`splits`). Every
shape is fixed and nothing asks the host for a value, so the step still compiles and captures as
one CUDA graph; the op is registered with ``torch.library.custom_op`` (with its output's shape
for tracing) so that ``torch.compile`` keeps it inside its graph as one opaque call.

Triton is imported only when the kernel is first used; :func:`available` says whether it can be.
Under ``TRITON_INTERPRET=1`` the kernels run on CPU tensors (slowly), which is how the tests
check them on a machine without a GPU.

Example (on a CUDA machine)::

    y = decode_attention(q, keys, values, first, col)   # (B, n_head, 1, head)
"""

from __future__ import annotations

import functools
import importlib.util
import math
import os
from typing import NamedTuple

import torch


class KernelConfig(NamedTuple):
    """How the partial kernel is launched (``benchmarks/bench_decode_attention.py`` times them)."""

    block: int = 64
    """cache columns a program reads per pass of its loop (a power of two)"""
    num_warps: int = 4
    """warps per program"""
    num_stages: int = 0
    """software-pipelining stages of the loop's loads (0: Triton's default)"""


DEFAULT_CONFIG = KernelConfig()
"""The launch the decode step uses."""
PROGRAMS = 1024
"""at least this many programs when the cache is long enough: (row, head) pairs times splits"""


def splits(pairs: int, columns: int, block: int = DEFAULT_CONFIG.block) -> tuple[int, int]:
    """How many splits of the columns each (row, head) pair gets, and the columns of a split.

    Enough splits for about ``PROGRAMS`` programs in all (one per pair at large batch, where the
    pairs alone fill the GPU), each split a whole number of blocks of ``block`` columns.

    >>> splits(2048, 2570), splits(8, 2570), splits(8, 2570, block=128)
    ((1, 2624), (41, 64), (21, 128))
    """
    blocks = -(-columns // block)
    n = max(1, min(blocks, -(-PROGRAMS // pairs)))
    per = -(-blocks // n)
    return -(-blocks // per), per * block


def check_config(config: KernelConfig) -> KernelConfig:
    """``config`` if the kernel can be launched with it, else a ``ValueError`` naming the field."""
    config = KernelConfig(*config)
    for name, value, low in (("block", config.block, 16), ("num_warps", config.num_warps, 1)):
        if value < low or value & (value - 1):
            raise ValueError(f"KernelConfig.{name} must be a power of two >= {low}, got {value}")
    if config.num_stages < 0:
        raise ValueError(f"KernelConfig.num_stages must be >= 0 (0: Triton's default), got "
                         f"{config.num_stages}")
    return config


def available(device: torch.device | str) -> bool:
    """Whether the kernel can run on ``device``.

    It can where Triton is installed and the device is CUDA, or on CPU tensors when Triton's
    interpreter is on (``TRITON_INTERPRET=1``).
    """
    if importlib.util.find_spec("triton") is None:
        return False
    kind = torch.device(device).type
    return kind == "cuda" or (kind == "cpu" and os.environ.get("TRITON_INTERPRET") == "1")


@functools.cache
def _op():
    """Define the kernels and register the op (once, on first use)."""
    import triton
    import triton.language as tl

    @triton.jit
    def partial_kernel(q_ptr, k_ptr, v_ptr, first_ptr, col_ptr, m_ptr, l_ptr, acc_ptr,
                       n_head, head, n_splits, split_cols, stride_qb, stride_qh, stride_kb,
                       stride_kh, stride_ks, scale, BLOCK: tl.constexpr, HEAD_P: tl.constexpr):
        bh = tl.program_id(0)
        split = tl.program_id(1)
        b = bh // n_head
        h = bh % n_head
        dims = tl.arange(0, HEAD_P)
        in_head = dims < head
        q = tl.load(q_ptr + b * stride_qb + h * stride_qh + dims, mask=in_head,
                    other=0.0).to(tl.float32)
        # this split's owned columns [lo, hi): the loop visits only blocks that hold some
        lo = tl.maximum(split * split_cols, tl.load(first_ptr + b))
        hi = tl.minimum((split + 1) * split_cols, tl.load(col_ptr) + 1)
        m_run = tl.zeros([], tl.float32) - float("inf")
        l_run = tl.zeros([], tl.float32)
        acc = tl.zeros([HEAD_P], tl.float32)
        base = b * stride_kb + h * stride_kh
        for start in range(lo - lo % BLOCK, hi, BLOCK):  # a split owning nothing: no pass
            cols = start + tl.arange(0, BLOCK)
            owned = (cols >= lo) & (cols < hi)
            at = base + cols[:, None] * stride_ks + dims[None, :]
            mask = owned[:, None] & in_head[None, :]  # columns not owned are not read
            k = tl.load(k_ptr + at, mask=mask, other=0.0).to(tl.float32)
            s = tl.where(owned, tl.sum(k * q[None, :], axis=1) * scale, float("-inf"))
            m_new = tl.maximum(m_run, tl.max(s, axis=0))  # finite: every block owns a column
            alpha = tl.exp(m_run - m_new)
            p = tl.exp(s - m_new)
            v = tl.load(v_ptr + at, mask=mask, other=0.0).to(tl.float32)
            l_run = l_run * alpha + tl.sum(p, axis=0)
            acc = acc * alpha + tl.sum(p[:, None] * v, axis=0)
            m_run = m_new
        out = bh * n_splits + split
        tl.store(m_ptr + out, m_run)
        tl.store(l_ptr + out, l_run)
        tl.store(acc_ptr + out * HEAD_P + dims, acc)

    @triton.jit
    def combine_kernel(m_ptr, l_ptr, acc_ptr, o_ptr, head, n_splits, HEAD_P: tl.constexpr,
                       SPLITS_P: tl.constexpr):
        bh = tl.program_id(0)
        splits = tl.arange(0, SPLITS_P)
        dims = tl.arange(0, HEAD_P)
        real = splits < n_splits
        m = tl.load(m_ptr + bh * n_splits + splits, mask=real, other=float("-inf"))
        total = tl.load(l_ptr + bh * n_splits + splits, mask=real, other=0.0)
        top = tl.max(m, axis=0)  # finite: a row always owns its write column
        w = tl.where(m == float("-inf"), 0.0, tl.exp(m - top))
        acc = tl.load(acc_ptr + (bh * n_splits + splits)[:, None] * HEAD_P + dims[None, :],
                      mask=real[:, None], other=0.0)
        y = tl.sum(w[:, None] * acc, axis=0) / tl.sum(w * total, axis=0)
        tl.store(o_ptr + bh * head + dims, y.to(o_ptr.dtype.element_ty), mask=dims < head)

    @torch.library.custom_op("embscale::decode_attention", mutates_args=())
    def decode_attention_op(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                            first: torch.Tensor, col: torch.Tensor, scale: float, block: int,
                            num_warps: int, num_stages: int) -> torch.Tensor:
        B, n_head, S, head = keys.shape
        n_splits, split_cols = splits(B * n_head, S, block)
        head_p = triton.next_power_of_2(head)
        dev = keys.device
        m = torch.empty(B * n_head * n_splits, device=dev, dtype=torch.float32)
        total = torch.empty_like(m)
        acc = torch.empty(B * n_head * n_splits * head_p, device=dev, dtype=torch.float32)
        out = torch.empty(B, n_head, 1, head, device=dev, dtype=q.dtype)
        launch = {"num_warps": num_warps, **({"num_stages": num_stages} if num_stages else {})}
        partial_kernel[(B * n_head, n_splits)](
            q, keys, values, first, col, m, total, acc, n_head, head, n_splits, split_cols,
            q.stride(0), q.stride(1), keys.stride(0), keys.stride(1), keys.stride(2), scale,
            BLOCK=block, HEAD_P=head_p, **launch)
        combine_kernel[(B * n_head,)](
            m, total, acc, out, head, n_splits, HEAD_P=head_p,
            SPLITS_P=triton.next_power_of_2(n_splits))
        return out

    @decode_attention_op.register_fake
    def _(q, keys, values, first, col, scale, block, num_warps, num_stages):
        B, n_head, _, head = keys.shape
        return q.new_empty(B, n_head, 1, head)

    return decode_attention_op


def decode_attention(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                     first: torch.Tensor, col: torch.Tensor,
                     config: KernelConfig = DEFAULT_CONFIG) -> torch.Tensor:
    """Softmax attention of each row's one query over its columns ``[first[b], col]``.

    Args:
        q: (B, n_head, 1, head) queries; the last dimension contiguous.
        keys: (B, n_head, S, head) cached keys (a view of the first ``S`` columns is fine); the
            last dimension contiguous, ``values`` with the same strides.
        values: like ``keys``.
        first: int64 (B,) each row's first owned column.
        col: int64 (1,) the column just written, the last each row attends to.
        config: the kernel's launch (:class:`KernelConfig`).

    Returns:
        (B, n_head, 1, head) in ``q``'s dtype, what ``scaled_dot_product_attention`` gives with
        the mask of the owned columns (sums in fp32).
    """
    if keys.stride(-1) != 1 or q.stride(-1) != 1 or values.stride() != keys.stride():
        raise ValueError("decode_attention needs the head dimension contiguous and values laid "
                         "out like keys (a RowKVCache's tensors, or views of their columns)")
    if not torch.compiler.is_compiling():
        config = check_config(config)
        _op()  # defines the kernels and registers the op, once, outside any compiled region
    return torch.ops.embscale.decode_attention(q, keys, values, first, col,
                                               1.0 / math.sqrt(keys.shape[-1]), *config)


def load() -> None:
    """Define the kernels and register the op now (a compiled step calls it only by name)."""
    _op()
