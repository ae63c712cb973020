"""Read training curves for the fits: run directories (``metrics.jsonl``) or CSV files.

Run directories are what the trainer writes (``runs/<study>/<run>/metrics.jsonl``, one JSON
object per log step with ``step``, ``tokens`` (D), ``flops`` (C), ``params`` (N), ``train/loss``,
and sometimes ``val/loss``). A directory holding no ``metrics.jsonl`` itself is searched
recursively, so a whole study can be given at once.

CSV files have columns ``N``, ``D`` (or ``C``, then D = C / 6N), ``L`` and optionally ``run``
(the curve each row belongs to; default one curve per N), so curves from any source can be fitted.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from scaling.laws.data import Curves, make_curves, size_labels
from worldmodels.run_metrics import LOSS_KEY, METRICS_FILE, iter_metrics

logger = logging.getLogger(__name__)


class _Rows:
    """Points collected from several files, with a label per point for error messages."""

    def __init__(self):
        self.N, self.D, self.L, self.run, self.where = [], [], [], [], []

    def add(self, n, d, loss, run, where):
        self.N.append(n)
        self.D.append(d)
        self.L.append(loss)
        self.run.append(run)
        self.where.append(where)


def _number(value, what: str, where: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} is not a number ({value!r}) at {where}; fix or drop that "
                         f"row") from None


def _read_metrics(path: Path, run: str, loss_key: str, rows: _Rows,
                  skip_above_uniform: bool = False) -> None:
    keys, mine = set(), []
    for i, rec in iter_metrics(path):
        where = f"{path}:{i}"
        keys.update(rec)
        if loss_key not in rec:
            continue  # e.g. val/loss is only logged every few steps
        if "params" not in rec:
            raise ValueError(f"{where} has no 'params' (model size N); metrics.jsonl rows need "
                             f"params, tokens (or flops) and {loss_key!r}")
        n = _number(rec["params"], "params", where)
        if rec.get("tokens") is not None:
            d = _number(rec["tokens"], "tokens", where)
        elif rec.get("flops") is not None:
            d = _data_from_compute(_number(rec["flops"], "flops", where), n, "params", where)
        else:
            raise ValueError(f"{where} has neither 'tokens' (D) nor 'flops' (C); one is needed")
        if d == 0:
            continue  # the log line before the first update: no data seen yet
        loss = math.nan if rec[loss_key] is None else rec[loss_key]  # strict JSON: null = NaN
        mine.append((n, d, _number(loss, loss_key, where), run, where))
    if not mine:
        raise ValueError(f"{path} has no rows with the loss key {loss_key!r} (keys seen: "
                         f"{sorted(keys)}); choose another with --loss-key")
    ceiling = uniform_loss(run_config(path.parent)) if skip_above_uniform else None
    for row in mine[untrained_start([r[2] for r in mine], ceiling):]:
        rows.add(*row)


def run_config(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The run's ``config.json`` ({} without one)."""
    config = Path(run_dir) / "config.json"
    return json.loads(config.read_text()) if config.is_file() else {}


def uniform_action_loss(config: dict[str, Any]) -> float | None:
    """Loss of a uniform guess over the actions, in the BC loss's unit (nats per action).

    The BC losses average the cross-entropy over action dimensions, so this is the mean of
    ln(classes) of each dimension (ln 4 = 1.39 for Breakout). None when ``config`` (a run's
    ``config.json``) does not give the action classes.
    """
    sizes = ((config.get("model_config") or {}).get("action_vocab_sizes")
             or (config.get("data") or {}).get("action_vocab_sizes"))
    return float(np.mean(np.log(np.asarray(sizes, np.float64)))) if sizes else None


def uniform_loss(config: dict[str, Any]) -> float | None:
    """Loss of a uniform guess over what the run's task scores (its ``config.json``).

    Tasks that score actions (BC-Token, BC-CNN): :func:`uniform_action_loss`; a task that
    scores image tokens (WM-Token): ln of the image vocabulary. None for other tasks, or when
    ``config`` does not say.
    """
    from scaling.tasks import TASKS  # the task registry imports the model code

    task = TASKS.get(config.get("task") or "")
    if task is None:
        return None
    if task.policy:
        return uniform_action_loss(config)
    vocab = ((config.get("model_config") or {}).get("image_vocab")
             or (config.get("data") or {}).get("image_vocab"))
    return math.log(vocab) if task.supervised == "image tokens" and vocab else None


def _data_from_compute(c: float, n: float, n_name: str, where: str) -> float:
    """D = C / (6N), refusing an N that cannot divide (make_curves checks the rest)."""
    if not (math.isfinite(n) and n > 0):
        raise ValueError(f"{n_name} (model size N) is {n:g} at {where}, so D = C / (6N) cannot be "
                         f"computed; N must be a positive parameter count: fix or drop that row")
    return c / (6.0 * n)


def untrained_start(losses, ceiling: float | None) -> int:
    """Index after a curve's last loss above ``ceiling`` (0 when none is, or no ceiling)."""
    if ceiling is None:
        return 0
    above = [i for i, v in enumerate(losses) if float(v) > ceiling]
    return above[-1] + 1 if above else 0


def _read_csv(path: Path, prefix: str, rows: _Rows) -> None:
    with path.open(newline="", encoding="utf-8-sig") as f:  # -sig: a spreadsheet's BOM
        reader = csv.DictReader(f)
        cols = [c.strip() for c in (reader.fieldnames or [])]
        reader.fieldnames = cols
        missing = [c for c in ("N", "L") if c not in cols]
        if "D" not in cols and "C" not in cols:
            missing.append("D (or C)")
        if missing:
            raise ValueError(f"CSV {path} is missing column(s) {', '.join(missing)} (it has "
                             f"{cols}); give columns N, D (or C), L and optionally run")
        unlabelled: list[bool] = []
        for i, rec in enumerate(reader, start=2):
            where = f"{path}:{i}"
            n = _number(rec["N"], "N", where)
            if "D" in cols and rec["D"] not in (None, ""):
                d = _number(rec["D"], "D", where)
                if "C" in cols and rec["C"] not in (None, ""):
                    _check_compute(_number(rec["C"], "C", where), n, d, where)
            elif "C" in cols:
                d = _data_from_compute(_number(rec["C"], "C", where), n, "N", where)
            else:
                raise ValueError(f"D is empty at {where}; fill it in, add a C column, or drop "
                                 f"that row")
            loss = _number(rec["L"], "L", where) if rec["L"] not in (None, "") else math.nan
            unlabelled.append(not ("run" in cols and rec["run"]))
            rows.add(n, d, loss, f"{prefix}{rec['run']}" if not unlabelled[-1] else "", where)
    # rows without a run label: one curve per model size of the file
    at = np.arange(len(rows.N) - len(unlabelled), len(rows.N))[np.array(unlabelled, dtype=bool)]
    for j, label in zip(at, size_labels(np.array(rows.N)[at]), strict=True):
        rows.run[j] = f"{prefix}{label}"


def _check_compute(c: float, n: float, d: float, where: str) -> None:
    """Refuse a row whose C is not 6ND (e.g. FLOPs in the D column)."""
    if not math.isclose(c, 6.0 * n * d, rel_tol=0.01):
        raise ValueError(f"C = {c:.4g} is not 6ND = {6.0 * n * d:.4g} at {where}: D must be the "
                         f"training inputs (tokens) and C the FLOPs; fix that row, or keep one of "
                         f"the D and C columns")


def _check_one_task(metrics_files: list[Path]) -> None:
    """Refuse runs of different tasks (their ``config.json``).

    Their losses measure different things (image tokens, actions): no one law describes them.
    """
    tasks: dict[str, Path] = {}
    for m in metrics_files:
        task = run_config(m.parent).get("task")
        if task:
            tasks.setdefault(task, m.parent)
    if len(tasks) > 1:
        raise ValueError(f"the inputs mix runs of {len(tasks)} tasks ("
                         + ", ".join(f"{t}: {d}" for t, d in tasks.items())
                         + "), whose losses measure different things; fit each task's runs "
                         "apart, e.g. `embscale fit runs/<study>/wm-token-*`")


def _once(path: Path, given: Path, read: dict[Path, Path]) -> None:
    """Refuse a file read twice (the same run passed twice, or a run and its study directory)."""
    key = path.resolve()
    if key in read:
        raise ValueError(f"{path} is given twice (through {read[key]} and {given}); its points "
                         "would count twice in the fit: pass each run once")
    read[key] = given


def _first_of_duplicates(rows: _Rows) -> np.ndarray:
    """Mask keeping the first of identical (N, D, L, run) rows, with a warning for the rest."""
    seen: set = set()
    keep = np.ones(len(rows.L), dtype=bool)
    for i, key in enumerate(zip(rows.N, rows.D, rows.L, rows.run, strict=True)):
        if key in seen:
            keep[i] = False
        seen.add(key)
    if not keep.all():
        first = rows.where[int(np.flatnonzero(~keep)[0])]
        logger.warning("dropping %d duplicate rows (the same N, D, L and run; first at %s): "
                       "each point counts once", int((~keep).sum()), first)
    return keep


def find_runs(path: Path) -> list[Path]:
    """``metrics.jsonl`` files under ``path`` (itself, if it holds one), sorted."""
    if (path / METRICS_FILE).is_file():
        return [path / METRICS_FILE]
    return sorted(path.rglob(METRICS_FILE))


def load_curves(paths, *, loss_key: str = LOSS_KEY, drop_nonfinite: bool = False,
                min_tokens: float = 0.0, skip_above_uniform: bool = False) -> Curves:
    """Read curves from run directories, ``metrics.jsonl`` files and CSV files.

    Args:
        paths: files or directories.
        loss_key: metrics key of the loss in run directories (``train/loss`` by default; the
            paper fits training loss, a proxy for test loss in the infinite-data regime).
        drop_nonfinite: drop points with NaN or infinite loss (with a warning) instead of failing.
        min_tokens: drop points with fewer training inputs D than this (e.g. the warmup, whose
            loss no scaling law describes).
        skip_above_uniform: start each run's curve after its last loss above a uniform guess
            over what its task scores (:func:`uniform_loss`, from the run's ``config.json``);
            CSV rows are kept as they are.

    Raises:
        FileNotFoundError: a path does not exist or a directory holds no ``metrics.jsonl``.
        ValueError: on malformed files or points (see :func:`scaling.laws.data.make_curves`).
    """
    paths = [Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
    if not paths:
        raise ValueError("no inputs given; pass run directories or CSV files")
    rows = _Rows()
    many = len(paths) > 1
    used: dict[str, Path] = {}
    read: dict[Path, Path] = {}
    runs = {p: find_runs(p) for p in paths if p.is_dir()}  # each directory walked once
    given = [runs[p] if p in runs else [p] for p in paths if p in runs or p.suffix == ".jsonl"]
    _check_one_task([m for found in given for m in found if m.is_file()])  # before parsing
    for p in paths:
        if not p.exists():
            raise FileNotFoundError(f"input {p} does not exist; pass a run directory, a study "
                                    f"directory or a CSV file")
        if p.is_dir():
            found = runs[p]
            if not found:
                raise FileNotFoundError(f"no metrics.jsonl under {p}; pass run directories "
                                        f"written by 'embscale train' or a CSV of N, D, L")
            for m in found:
                _once(m, p, read)
                rel = m.parent.relative_to(p).as_posix()
                name = p.name if rel == "." else (f"{p.name}/{rel}" if many else rel)
                if used.setdefault(name, m) != m:  # two runs of the same name: use paths
                    name = m.parent.as_posix()
                _read_metrics(m, name, loss_key, rows, skip_above_uniform)
        elif p.suffix.lower() == ".csv":
            _once(p, p, read)
            _read_csv(p, f"{p.stem}:" if many else "", rows)
        elif p.name.endswith(".jsonl"):
            _once(p, p, read)
            _read_metrics(p, p.parent.name, loss_key, rows, skip_above_uniform)
        else:
            raise ValueError(f"cannot read {p}: expected a run directory, a metrics.jsonl or a "
                             f".csv file")
    L = np.array(rows.L, dtype=np.float64)
    keep = np.ones(L.size, dtype=bool)
    if drop_nonfinite:
        keep = np.isfinite(L)
        if not keep.all():
            logger.warning("dropping %d points with NaN or infinite loss", int((~keep).sum()))
    D = np.array(rows.D, dtype=np.float64)
    if min_tokens > 0:
        keep &= ~(D < min_tokens)
        logger.info("kept %d of %d points with D >= %g", int(keep.sum()), keep.size, min_tokens)
    keep &= _first_of_duplicates(rows)
    idx = np.flatnonzero(keep)
    return make_curves(np.array(rows.N)[idx], D[idx], L[idx],
                       np.array(rows.run, dtype=object)[idx],
                       labels=[rows.where[i] for i in idx])
