"""Grown training data: a dataset plus train-only supplements collected later by the same recipe.

A study that collects its own data can run out of it: a run may make at most a few passes over
its training split (the infinite-data regime the scaling fits assume). Rather than start over on a
bigger dataset (whose episode split would differ, so no run could continue), the study collects a
*supplement*: a new Minari dataset, played by the same demonstrator with another seed, whose every
episode is a training episode. The base dataset's validation and test episodes stay what they
were, so losses before and after the growth are measured on the same episodes.

A grown data source is named by joining the ids with ``+``, base first::

    embscale/breakout/scripted-v3+embscale/breakout/scripted-grow1-v3

(Minari ids cannot hold a ``+``.) Its fingerprint combines the fingerprints of its parts, and
every shorter prefix is one of the data it *grew from*: a run started on the base resumes on the
grown data (``worldmodels.run_state.check_same_data``), and on nothing else.

Example:
    >>> supplement_id("embscale/breakout/scripted-v3", 2)
    'embscale/breakout/scripted-grow2-v3'
    >>> split_data_ids("a/b-v0+a/b-grow1-v0")
    ('a/b-v0', ['a/b-grow1-v0'])
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

SEP = "+"
"""Joins a base dataset id and its supplements' ids into one data name."""

_ID = re.compile(r"^(?:(?P<ns>.+)/)?(?P<name>[^/]+?)(?:-v(?P<version>\d+))?$")


def split_data_ids(data: str) -> tuple[str, list[str]]:
    """``(base id, [supplement ids])`` of a data name (a plain id has no supplements)."""
    parts = [p for p in str(data).split(SEP)]
    if any(not p for p in parts):
        raise ValueError(f"data {data!r}: empty dataset id around {SEP!r}; write "
                         f"base{SEP}supplement1{SEP}supplement2 with no spaces")
    return parts[0], parts[1:]


def join_data_ids(base: str, supplements: Sequence[str] = ()) -> str:
    """The data name of ``base`` grown by ``supplements`` (inverse of :func:`split_data_ids`)."""
    return SEP.join([base, *supplements])


def supplement_id(base_id: str, k: int) -> str:
    """Id of the ``k``-th (1-based) train-only supplement of ``base_id``: ``name-grow<k>``."""
    if k < 1:
        raise ValueError(f"supplement number {k} must be >= 1")
    m = _ID.match(base_id)
    if m is None or SEP in base_id:
        raise ValueError(f"cannot derive a supplement id from {base_id!r}")
    ns = f"{m['ns']}/" if m["ns"] else ""
    version = f"-v{m['version']}" if m["version"] is not None else ""
    return f"{ns}{m['name']}-grow{k}{version}"


def supplement_seed(seed: int, k: int) -> int:
    """Collection seed of the ``k``-th supplement: far from the base's and from each other's."""
    return int(seed) + 1_000_003 * int(k)


def combined_fingerprint(fingerprints: Sequence[str]) -> str:
    """One fingerprint for data made of parts (a single part keeps its own fingerprint)."""
    if len(fingerprints) == 1:
        return fingerprints[0]
    digest = hashlib.sha256(b"grown\n")
    for fp in fingerprints:
        digest.update(f"{fp}\n".encode())
    return "sha256:" + digest.hexdigest()


def grown_from(fingerprints: Sequence[str]) -> list[str]:
    """Fingerprints of every shorter prefix of the parts: the data this data grew from."""
    return [combined_fingerprint(fingerprints[:i]) for i in range(1, len(fingerprints))]
