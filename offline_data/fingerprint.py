"""Fingerprints of data on disk, so a run never continues on data that changed under its path.

Re-collecting and re-encoding a dataset under the same path gives files of the same names but
other contents; a run resumed on them would join two datasets into one curve. A fingerprint is a
sha256 over every data file's relative name and size, the whole of each small file, and, for
large files, sixteen 64 KiB blocks spread evenly through the file (reading paper-scale shards
whole would take minutes). Re-encoding the *same* data gives the same fingerprint, so resuming
after an identical rebuild stays allowed.

Example:
    fp = directory_fingerprint("tokens/breakout-k64")  # 'sha256:...'
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

WHOLE_FILE_BYTES = 4 << 20  # files up to 4 MiB are hashed whole
BLOCK_BYTES = 64 << 10
BLOCKS = 16


def _hash_file(digest, path: Path) -> None:
    size = path.stat().st_size
    digest.update(f"{size}\n".encode())
    with open(path, "rb") as f:
        if size <= WHOLE_FILE_BYTES:
            digest.update(f.read())
            return
        for i in range(BLOCKS):
            f.seek((size - BLOCK_BYTES) * i // (BLOCKS - 1))
            digest.update(f.read(BLOCK_BYTES))


def directory_fingerprint(path: str | os.PathLike, skip_hidden: bool = True) -> str:
    """``sha256:<hex>`` of the data files under ``path`` (names, sizes and sampled contents).

    Args:
        path: a directory (token shards, a Minari dataset) or a single file.
        skip_hidden: ignore names starting with ``.`` (locks, temporary files).

    Raises:
        FileNotFoundError: nothing at ``path``.
    """
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"no data at {root} to fingerprint")
    digest = hashlib.sha256()
    files = [root] if root.is_file() else sorted(
        p for p in root.rglob("*") if p.is_file()
        and not (skip_hidden and any(part.startswith(".") for part in p.relative_to(root).parts)))
    for p in files:
        digest.update(f"{p.relative_to(root) if p != root else p.name}\n".encode())
        _hash_file(digest, p)
    return "sha256:" + digest.hexdigest()


def check_fingerprint(recorded: str | None, current: str, where: str, data: str) -> None:
    """Refuse to go on when data's fingerprint differs from the one a run recorded.

    Args:
        recorded: the fingerprint saved with the run (None for runs from before fingerprints).
        current: the data's fingerprint now.
        where: the run directory (for the message).
        data: the data's path or id (for the message).

    Raises:
        ValueError: the fingerprints differ.
    """
    if recorded is not None and recorded != current:
        raise ValueError(
            f"cannot resume {where}: the data at {data} is not the data the run started on "
            f"(fingerprint {recorded[:19]}... then, {current[:19]}... now: another dataset, or "
            "that one changed since), so the curve would join two datasets; start a new "
            "--run-dir for this data, or resume on the data the run started on")
