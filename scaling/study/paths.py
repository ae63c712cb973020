"""Where a study keeps its files: the dataset it reads, its tokenizer, token shards and fits."""

from __future__ import annotations

from pathlib import Path

from offline_data.datasets import dataset_path
from scaling.study.spec import StudySpec


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


def fit_dir(spec: StudySpec, task: str) -> Path:
    """Where a task's fit outputs go."""
    return spec.study_dir / "fits" / task
