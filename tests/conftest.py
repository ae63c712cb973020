"""Shared fixtures: isolated Minari storage, seeded RNGs, headless rendering."""

from __future__ import annotations

import os
import random

# Headless defaults before any env or pygame import.
os.environ.setdefault("MUJOCO_GL", "osmesa")
os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")

import numpy as np
import pytest


@pytest.fixture(autouse=True)
def minari_datasets_path(tmp_path, monkeypatch):
    """Every test gets its own empty Minari dataset root."""
    root = tmp_path / "minari"
    root.mkdir()
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    monkeypatch.setenv("EMBSCALE_FRAMES_DIR", str(tmp_path / "frames"))  # BC-CNN's frame files
    return root


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """Tests use tiny models, for which one thread is fastest (and 2 cores are shared)."""
    try:
        import torch
    except ImportError:
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def seeded():
    """Seed python, numpy and torch so tests are repeatable."""
    random.seed(0)
    np.random.seed(0)
    try:
        import torch

        torch.manual_seed(0)
    except ImportError:
        pass
