"""The parts of a multi-process encode: tagged, checked before merging, cleaned after crashes.

With several ranks each rank writes its block of episodes to ``.<out>.parts/rank-<r>`` and rank 0
merges them. A part left by a killed run (or by a run on another dataset) must never be merged
into this one, so every part gets a tag file ``rank-<r>.tag.json`` naming the dataset and a
nonce shared by the ranks of one run; rank 0 merges only parts whose tag carries this run's nonce,
and refuses a part of this run that names another dataset. Leftover temporary directories of
killed runs are removed on the next run, and local worker processes die with their parent.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from pathlib import Path

from offline_data.atomic import remove_stale_temps, write_text_atomic
from offline_data.tokens import HEADER_NAME

logger = logging.getLogger(__name__)



def run_nonce(local_workers: bool) -> str:
    """An id shared by the ranks of one encode and by no other run.

    Local workers get a fresh random nonce from their parent. ``torchrun`` ranks share
    ``TORCHELASTIC_RUN_ID`` (random under ``--standalone``; set ``--rdzv-id`` on several nodes),
    else the rendezvous address and the launching agent's pid; ``EMBSCALE_ENCODE_NONCE``
    overrides both.
    """
    if os.environ.get("EMBSCALE_ENCODE_NONCE"):
        return os.environ["EMBSCALE_ENCODE_NONCE"]
    if local_workers:
        return secrets.token_hex(8)
    run_id = os.environ.get("TORCHELASTIC_RUN_ID", "none")
    if run_id != "none":
        return run_id
    return (f"{os.environ.get('MASTER_ADDR', 'local')}:{os.environ.get('MASTER_PORT', '')}:"
            f"{os.getppid()}")


def tag_path(part: str | os.PathLike) -> Path:
    """The tag file of a part directory."""
    part = Path(part)
    return part.with_name(part.name + ".tag.json")


def write_tag(part: str | os.PathLike, dataset_id: str, nonce: str) -> None:
    """Tag a finished part with its dataset and run (written after the part, atomically)."""
    write_text_atomic(tag_path(part), json.dumps({"dataset_id": dataset_id, "nonce": nonce}))


def part_ready(part: str | os.PathLike, dataset_id: str, nonce: str) -> bool:
    """True when ``part`` is finished by this run; ValueError when this run's part is foreign.

    A part whose tag carries another nonce is stale (a killed or earlier run): not ready, its
    rank will replace it.
    """
    try:
        tag = json.loads(tag_path(part).read_text())
    except (OSError, ValueError):
        return False
    if tag.get("nonce") != nonce:
        return False
    if tag.get("dataset_id") != dataset_id:
        raise ValueError(f"encode part {part} is of dataset {tag.get('dataset_id')!r}, not "
                         f"{dataset_id!r}; another encode writes to the same --out: give each "
                         "dataset its own --out")
    return (Path(part) / HEADER_NAME).is_file()


def clear_part(part: str | os.PathLike) -> None:
    """Before a rank writes: remove its old tag and the temporary dirs of its killed runs."""
    part = Path(part)
    tag_path(part).unlink(missing_ok=True)
    remove_stale_temps(part)
