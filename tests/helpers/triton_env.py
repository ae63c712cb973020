"""Where a test subprocess finds Triton: installed in the environment (CUDA builds of torch bring
it), or in the folder `scripts/setup.sh --tests` installs it into, outside the environment (see
there why).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INTERPRETER_TRITON = ROOT / ".venv" / "triton-interpreter"
HAS_TRITON = importlib.util.find_spec("triton") is not None


def env_with_triton(**extra: str) -> dict[str, str]:
    """This process's environment plus ``extra``, with Triton importable; skips the test if no
    Triton is at hand."""
    env = dict(os.environ, **extra)
    if HAS_TRITON:
        return env
    if not (INTERPRETER_TRITON / "triton").is_dir():
        pytest.skip("needs triton (scripts/setup.sh --tests installs it on Linux x86-64)")
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(INTERPRETER_TRITON), str(ROOT), env.get("PYTHONPATH")) if p)
    return env
