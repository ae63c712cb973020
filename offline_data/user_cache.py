"""The user cache directory where the project keeps what it derives once and reuses.

Metric weights (``scaling.metrics.weights``) and BC-CNN's decoded frames
(``agents.frame_store``) live in folders of it: ``$EMBSCALE_CACHE``, else
``$XDG_CACHE_HOME/embodied-scaling``, else ``~/.cache/embodied-scaling``.
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "EMBSCALE_CACHE"
"""Environment variable naming the cache directory."""


def user_cache_dir() -> Path:
    """``$EMBSCALE_CACHE``, else ``$XDG_CACHE_HOME/embodied-scaling``, else the home's cache."""
    root = os.environ.get(CACHE_ENV)
    if root:
        return Path(root).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "embodied-scaling"
