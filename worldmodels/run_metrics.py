"""The one reader of a training run's ``metrics.jsonl`` (one JSON object per logged step).

The trainer appends a line per log step, in strict JSON (``null`` for a NaN or infinite value,
which JSON does not allow); a run that is still being written (or was killed mid-write) may end in
a partial line, which readers drop with a warning. Any other line that is not JSON is an error
naming the file and line.

Example::

    from worldmodels.run_metrics import read_metrics
    records = read_metrics("runs/default/wm-token-s100k-seed0")
    losses = [r["val/loss"] for r in records if "val/loss" in r]
"""

from __future__ import annotations

import json
import logging
import math
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from offline_data.atomic import write_text_atomic

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
LOSS_KEY = "train/loss"
"""A log point's training loss (its step's batch): what ``embscale fit`` reads unless told."""
MEAN_LOSS_KEY = "train/loss_mean"
"""The training loss averaged since the previous log point: what a study fits and its budget
protocol compares (a run that never logged it is read at ``LOSS_KEY``)."""


def metrics_path(run: str | os.PathLike) -> Path:
    """``run/metrics.jsonl`` for a run directory; ``run`` itself for a ``.jsonl`` file."""
    path = Path(run)
    return path if path.name.endswith(".jsonl") else path / METRICS_FILE


def iter_metrics(run: str | os.PathLike) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, record)`` for every record of a run's ``metrics.jsonl``.

    Args:
        run: a run directory or a ``metrics.jsonl`` file.

    Raises:
        FileNotFoundError: there is no ``metrics.jsonl``.
        ValueError: a line other than the last is not valid JSON.
    """
    path = metrics_path(run)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; is {run} a training run directory?")
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            if i == len(lines):  # a run still being written may end in a partial line
                msg = (f"{path}: dropped a truncated last line ({line[:40]!r}...), written by a "
                       "process that was killed mid-write (or still writing)")
                warnings.warn(msg, stacklevel=3)
                logger.warning(msg)
                continue
            raise ValueError(f"{path}:{i} is not valid JSON ({e}); fix or remove that line") from e
        yield i, record


def read_metrics(run: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a run's ``metrics.jsonl`` (see :func:`iter_metrics`)."""
    return [record for _, record in iter_metrics(run)]


def last_record(run: str | os.PathLike, tail_bytes: int = 4096) -> dict[str, Any] | None:
    """The last complete record of a run's ``metrics.jsonl``, reading only its tail.

    For polling a run that is being written (progress bars); None when there is no file or no
    complete record in the last ``tail_bytes`` yet.
    """
    path = metrics_path(run)
    try:
        with open(path, "rb") as f:
            f.seek(max(0, path.stat().st_size - tail_bytes))
            lines = [ln for ln in f.read().decode(errors="ignore").splitlines() if ln.strip()]
    except OSError:
        return None
    for line in reversed(lines):
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            continue
    return None


def finite_or_none(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by None (recursively).

    >>> finite_or_none({"a": float("nan"), "b": [1.0, float("inf")]})
    {'a': None, 'b': [1.0, None]}
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    return value


def strict_json(record: dict[str, Any]) -> str:
    """One line of strict JSON (``null`` for NaN/Infinity, which JSON does not allow)."""
    return json.dumps(finite_or_none(record), allow_nan=False)


def append_metrics(run: str | os.PathLike, record: dict[str, Any]) -> None:
    """Append one record (a log point) to a run's ``metrics.jsonl``, as strict JSON."""
    with open(metrics_path(run), "a") as f:
        f.write(strict_json(record) + "\n")


def truncate_metrics(run: str | os.PathLike, step: int) -> None:
    """Drop the records logged after ``step`` (a resumed run logs them again), atomically.

    A truncated last line (a process killed mid-write) is dropped with a warning.
    """
    path = metrics_path(run)
    kept = [r for r in read_metrics(run) if r["step"] <= step]
    write_text_atomic(path, "".join(strict_json(r) + "\n" for r in kept))


def last_losses(run: str | os.PathLike) -> tuple[float, float | None]:
    """The last logged ``train/loss`` and ``val/loss`` (NaN and None when never logged)."""
    train, val = float("nan"), None
    if metrics_path(run).is_file():
        for record in read_metrics(run):
            train = record["train/loss"] if record.get("train/loss") is not None else train
            val = record["val/loss"] if record.get("val/loss") is not None else val
    return train, val
