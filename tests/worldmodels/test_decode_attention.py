"""The split-K decode-attention kernel against masked SDPA and ``row_forward``: through Triton's
interpreter on CPU (in a subprocess, since Triton picks interpreted or compiled kernels when it
defines them), and on CUDA (skipped without it)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from tests.helpers.decode_steps import padded_cache, small_gpt
from tests.helpers.triton_env import HAS_TRITON, ROOT, env_with_triton
from worldmodels.decode_attention import KernelConfig, available, check_config, decode_attention
from worldmodels.decode_step import DecodeStep
from worldmodels.simulator import SimulatorConfig

needs_triton = pytest.mark.skipif(not HAS_TRITON, reason="needs the triton package")
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def test_interpreted_kernel_matches_masked_attention_and_the_decode_step():
    env = env_with_triton(TRITON_INTERPRET="1")
    done = subprocess.run([sys.executable, "-m", "tests.helpers.decode_attention_check", "cpu"],
                          env=env, capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "checks passed" in done.stdout


def test_the_kernel_is_offered_only_where_it_runs(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert not available("cpu")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert available("cpu") == HAS_TRITON


def test_a_launch_the_kernel_cannot_take_is_refused_by_name():
    assert check_config((128, 8, 2)) == KernelConfig(block=128, num_warps=8, num_stages=2)
    for bad, field in (((48, 4, 0), "block"), ((8, 4, 0), "block"), ((64, 3, 0), "num_warps"),
                       ((64, 4, -1), "num_stages")):
        with pytest.raises(ValueError, match=f"KernelConfig.{field}"):
            check_config(KernelConfig(*bad))
    q, kv, col = torch.zeros(1, 1, 1, 4), torch.zeros(1, 1, 8, 4), torch.zeros(1, dtype=torch.long)
    with pytest.raises(ValueError, match="KernelConfig.block"):  # before any kernel is defined
        decode_attention(q, kv, kv, col, col, KernelConfig(100, 4, 0))
    gpt = small_gpt()
    with pytest.raises(ValueError, match="'triton' attention only"):
        DecodeStep(gpt, padded_cache(gpt, 2), mode="eager", kernel=KernelConfig(32, 2, 0))
    with pytest.raises(ValueError, match="decode_attention='triton'"):
        SimulatorConfig(decode_kernel=(32, 2, 0))
    with pytest.raises(ValueError, match="KernelConfig.num_warps"):
        SimulatorConfig(decode_attention="triton", decode_kernel=(32, 3, 0))
    assert SimulatorConfig(decode_attention="triton", decode_kernel=[32, 2, 0]).decode_kernel == (
        KernelConfig(32, 2, 0))


@cuda
@needs_triton
def test_cuda_kernel_and_captured_step():
    from tests.helpers.decode_attention_check import (
        kernel_matches_masked_sdpa,
        step_matches_row_forward,
    )

    kernel_matches_masked_sdpa("cuda")
    step_matches_row_forward("cuda", "cuda-graph")
