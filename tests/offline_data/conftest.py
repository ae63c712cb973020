"""Fixtures for offline_data tests: tiny image envs registered with string entry points."""

from __future__ import annotations

import pytest

import agents.demonstrators  # noqa: F401  (registers `--policy scripted`)
from tests.helpers import pixel_envs


@pytest.fixture(autouse=True)
def _test_envs():
    pixel_envs.register()
    return pixel_envs
