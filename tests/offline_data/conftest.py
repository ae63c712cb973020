"""Fixtures for offline_data tests: tiny image envs registered with string entry points."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import offline_data_envs  # noqa: E402

import agents.demonstrators  # noqa: E402, F401  (registers `--policy scripted`)


@pytest.fixture(autouse=True)
def _test_envs():
    offline_data_envs.register()
    return offline_data_envs
