"""Checks of the split-K decode-attention kernel, run in a process of its own.

Triton decides at a kernel's definition whether it runs compiled or interpreted, so the CPU test
runs these in a subprocess with ``TRITON_INTERPRET=1`` (``python -m
tests.helpers.decode_attention_check``); on a CUDA machine the same checks run on the GPU.
"""

from __future__ import annotations

import sys
import warnings

import torch
import torch.nn.functional as F


def kernel_matches_masked_sdpa(device: str) -> None:
    """Rows that start late, a width cut short, heads of 18 and 16, fp32 and bf16; few rows (the
    columns split among programs) and many (one program walks a row's columns).

    Many rows take the one-split path because the (row, head) pairs alone reach ``PROGRAMS``
    (33 x 32 pairs, as on a GPU). Interpreted on a CPU, the last case lowers ``PROGRAMS`` to 1
    so that 3 x 2 pairs take that path, since the interpreter runs the programs one after another
    (this check took 57 s on 2 CPU cores with 1,056 pairs, 5 s with 6; one timing each).
    """
    from worldmodels import decode_attention as module
    from worldmodels.decode_attention import decode_attention, splits

    g = torch.Generator().manual_seed(0)
    assert splits(3 * 2, 150)[0] == 3 and splits(33 * 32, 150)[0] == 1
    fp32, both = ((torch.float32, 1e-5),), ((torch.float32, 1e-5), (torch.bfloat16, 1e-2))
    programs = module.PROGRAMS
    interpreted = torch.device(device).type == "cpu"
    many = (3, 2) if interpreted else (33, 32)
    try:
        for head, B, nh, dtypes, widths, one_split in ((18, 3, 2, both, (150, 130), False),
                                                       (16, 3, 2, both, (150, 130), False),
                                                       (18, *many, fp32, (130,), True)):
            module.PROGRAMS = 1 if one_split and interpreted else programs
            assert (splits(B * nh, 150)[0] == 1) == one_split
            for dtype, tol in dtypes:
                q, keys, values, first, col = _case(g, device, dtype, head, B, nh)
                for width in widths:
                    k, v = keys[:, :, :width], values[:, :, :width]
                    err = _error(decode_attention(q, k, v, first, col), q, k, v, first, col)
                    assert err < tol, (head, dtype, width, one_split, err)
    finally:
        module.PROGRAMS = programs
    # traced whole by torch.compile (the op is opaque to it and has its output's shape)
    traced = torch.compile(decode_attention, backend="eager", fullgraph=True)
    torch.testing.assert_close(traced(q, k, v, first, col), decode_attention(q, k, v, first, col))
    try:
        decode_attention(q, keys.transpose(2, 3), values, first, col)
    except ValueError as e:
        assert "head dimension contiguous" in str(e)
    else:
        raise AssertionError("a cache without a contiguous head dimension was accepted")


def _case(g, device, dtype, head, B, nh):
    """Query, key and value caches of 150 columns, rows starting at 0, 37 and 120, and the
    current column 120 (the last row owns one column)."""
    S = 150
    keys = torch.randn(B, nh, S, head, generator=g).to(device, dtype)
    values = torch.randn(B, nh, S, head, generator=g).to(device, dtype)
    qkv = torch.randn(B, 3 * nh * head, generator=g).to(device, dtype)
    q = qkv[:, :nh * head].view(B, nh, 1, head)  # strided, as the decode step's split
    first = torch.tensor([0, 37, 120] * (B // 3), device=device)
    col = torch.tensor([120], device=device)
    return q, keys, values, first, col


def _error(y, q, k, v, first, col) -> float:
    """Largest difference of the kernel's ``y`` from masked SDPA in fp32 (checks dtype, shape)."""
    cols = torch.arange(k.shape[2], device=k.device)
    mask = ((cols[None] >= first[:, None]) & (cols[None] <= col))[:, None, None, :]
    want = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=mask)
    assert y.dtype == q.dtype and y.shape == q.shape
    return (y.float() - want).abs().max().item()


def step_matches_row_forward(device: str, mode: str) -> None:
    """The decode step attending with the kernel gives row_forward's hidden states and cache,
    with the default launch and with another (blocks of 16 columns, 2 warps, 2 stages)."""
    from tests.helpers.decode_steps import check_against_row_forward, small_gpt
    from worldmodels.decode_attention import DEFAULT_CONFIG, KernelConfig

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        step = check_against_row_forward(small_gpt(device, n_embd=36), batch=3, mode=mode,
                                         attention="triton")
        other = KernelConfig(16, 2, 2)
        launched = check_against_row_forward(small_gpt(device, n_embd=36), batch=3, mode=mode,
                                             attention="triton", kernel=other)
    assert step.kernel == DEFAULT_CONFIG and launched.kernel == other
    assert step.widths == [40]  # the kernel reads only owned columns: one width is enough
    fallbacks = [str(w.message) for w in caught if "decoding eagerly" in str(w.message)]
    assert not fallbacks, fallbacks  # the compiled step ran, not the eager fallback
    assert step.mode == mode


def main(argv: list[str]) -> int:
    device = argv[0] if argv else "cpu"
    kernel_matches_masked_sdpa(device)
    for mode in ("eager", "compile") if device == "cpu" else ("cuda-graph",):
        step_matches_row_forward(device, mode)
    print("decode attention checks passed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
