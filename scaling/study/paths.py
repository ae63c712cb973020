"""Where a study keeps its files: the dataset it reads, its tokenizer, token shards and fits."""

from __future__ import annotations

import json
from pathlib import Path

from offline_data.datasets import dataset_path
from scaling.study.spec import StudySpec

PROTOCOL_FILE = "protocol.json"
"""The budget protocol's state in the study directory (``scaling.study.budget_rounds``)."""

DATA_SECONDS_FILE = "data_seconds.json"
"""Measured seconds of the study's own collection and encoding (``scaling.study.growth``)."""


def read_data_seconds(study_dir: str | Path) -> dict[str, dict[str, float]]:
    """``data_seconds.json``: per kind (collect | encode) the frames and seconds it took; {}."""
    path = Path(study_dir) / DATA_SECONDS_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def dataset_exists(dataset_id: str) -> bool:
    """True when the Minari dataset is stored locally."""
    return (dataset_path(dataset_id) / "data").is_dir()


def tokenizer_path(spec: StudySpec) -> Path:
    """The tokenizer checkpoint the study uses."""
    if spec.tokenizer.checkpoint:
        return Path(spec.tokenizer.checkpoint)
    return spec.study_dir / "tokenizer" / "tokenizer.pt"


def tokens_dir(spec: StudySpec) -> Path:
    """The study's token shards."""
    return spec.study_dir / "tokens"


def grown_tokens_dir(spec: StudySpec, k: int) -> Path:
    """The study's token shards after its ``k``-th growth (``scaling.study.growth``)."""
    return spec.study_dir / f"tokens-grow{k}"


def fit_dir(spec: StudySpec, task: str) -> Path:
    """Where a task's fit outputs go."""
    return spec.study_dir / "fits" / task


def grown_data(spec: StudySpec) -> dict[str, str]:
    """Per task, the data its runs read after the study grew it (empty before any growth).

    ``protocol.json`` records it (``scaling.study.growth``); every step that plans the study's
    runs reads it here, so a resumed study and its report see the runs as they were trained.
    """
    return dict(_protocol_state(spec).get("data") or {})


def grown_train_inputs(spec: StudySpec) -> dict[str, float]:
    """Per task, the distinct training inputs of the data it grew to (empty before any growth)."""
    limits = _protocol_state(spec).get("limits") or {}
    return {task: float(v[0]) for task, v in limits.items() if v and v[0] is not None}


def _protocol_state(spec: StudySpec) -> dict:
    path = spec.study_dir / PROTOCOL_FILE
    return json.loads(path.read_text()) if path.is_file() else {}

