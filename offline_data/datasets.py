"""Minari datasets of image trajectories: atomic creation, loading, metadata and splits.

Dataset ids follow ``embscale/<env>/<source>-vN`` (e.g. ``embscale/breakout/scripted-v1``).
Frames are uint8 (H, W, 3) stored losslessly (Arrow IPC + LZ4, no JPEG); actions are stored as
the env gives them and the action discretizer spec lives in the dataset metadata
(``action_discretizer``, a JSON string), so token ids can always be mapped back to env actions.

Datasets are written by ``offline_data.minari_writer.MinariWriter``.

Example:
    ds = load_dataset("embscale/breakout/scripted-v1")
    discretizer = dataset_discretizer(ds)
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from offline_data.discretize import ActionDiscretizer, discretizer_for_space, discretizer_from_spec

logger = logging.getLogger(__name__)

# v2: frames of embscale/Breakout-v1 (playfield crop, maximum of the last two emulator frames);
# v1 held the whole screen of embscale/Breakout-v0, so the two are never mixed.
BREAKOUT_DATASET_ID = "embscale/breakout/scripted-v2"
FETCH_DATASET_ID = "embscale/fetch-pick-place/scripted-v0"
STAGING_DIR = ".embscale-staging"  # hidden: minari's listing skips dot-directories
# Minari's "arrow" layout (one Arrow IPC file per episode), written with LZ4 frame compression:
# lossless frames at about 170 B per 64x64 Breakout frame and ~0.01 ms/frame to encode, against
# ~0.2 ms/frame for parquet (whose per-value list levels dominate); minari reads it unchanged.
DATA_FORMAT = "arrow"
IPC_COMPRESSION = "lz4"


class Episode(NamedTuple):
    """One episode as arrays; T steps, T+1 observations (the last is the final one)."""

    observations: np.ndarray  # uint8 (T+1, H, W, 3)
    actions: np.ndarray  # (T, *action_shape) as the env gives them
    rewards: np.ndarray  # float (T,)
    terminations: np.ndarray  # bool (T,)
    truncations: np.ndarray  # bool (T,)
    metadata: dict  # JSON-able per-episode metadata, e.g. {"skill": 0.7}


def datasets_root() -> Path:
    """Minari's local dataset root (``MINARI_DATASETS_PATH`` or ``~/.minari/datasets``)."""
    from minari.storage.datasets_root_dir import get_dataset_path

    return Path(get_dataset_path())


def list_dataset_ids() -> list[str]:
    """Ids of all local Minari datasets."""
    import minari

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sorted(minari.list_local_datasets())


def dataset_path(dataset_id: str) -> Path:
    """Directory of a local dataset (it may not exist)."""
    return datasets_root() / dataset_id


def check_dataset_id(dataset_id: str) -> None:
    """Raise ValueError unless ``dataset_id`` is a valid ``namespace/name-vN`` Minari id."""
    from minari.dataset.minari_dataset import parse_dataset_id

    try:
        parse_dataset_id(dataset_id)
    except (ValueError, TypeError) as e:  # TypeError: Minari's parse of an id with no -vN
        raise ValueError(f"dataset id {dataset_id!r} is malformed; use the form "
                         "'embscale/<env>/<source>-vN', e.g. 'embscale/breakout/scripted-v1'"
                         ) from e


def load_dataset(dataset_id: str):
    """Open a local Minari dataset, with an error listing what exists when it is unknown."""
    import minari

    if not (dataset_path(dataset_id) / "data").is_dir():
        known = list_dataset_ids()
        listing = ", ".join(known) if known else "none"
        raise FileNotFoundError(
            f"no local dataset {dataset_id!r} under {datasets_root()} (local datasets: {listing}); "
            "create it with `embscale data collect` / `embscale data import`, or set "
            "MINARI_DATASETS_PATH to the directory that holds it")
    dataset = minari.load_dataset(dataset_id)
    if (is_image_space(dataset.observation_space)
            and dataset.storage.metadata.get("jpeg_encoding", True)):  # shown once per dataset
        warnings.warn(f"dataset {dataset_id!r} stores its frames as lossy JPEG (Minari's "
                      "default, which minari.combine_datasets also writes): they are read, "
                      "trained on and measured as decoded, not as recorded. For lossless frames "
                      "write the dataset with jpeg_encoding=False, as `embscale data collect` "
                      "and `embscale data import` do", stacklevel=2)
    return dataset


def is_image_space(space: Any) -> bool:
    """True for a uint8 Box of shape (H, W, 3)."""
    from gymnasium import spaces

    return (isinstance(space, spaces.Box) and space.dtype == np.uint8 and len(space.shape) == 3
            and space.shape[2] == 3)


def check_image_space(space: Any, what: str = "the env") -> None:
    """Raise ValueError naming the fix unless ``space`` holds uint8 RGB frames."""
    if not is_image_space(space):
        raise ValueError(
            f"{what} has non-image observations {space}; datasets hold uint8 RGB frames of shape "
            "(H, W, 3): use an image env such as embscale/Breakout-v0 or "
            "embscale/FetchPickAndPlace-v0, or wrap yours with "
            "gymnasium.wrappers.AddRenderObservation(render_only=True)")


def dataset_discretizer(dataset: Any) -> ActionDiscretizer:
    """The action discretizer stored with a dataset (or the categorical default).

    Raises:
        ValueError: continuous actions and no ``action_discretizer`` in the metadata.
    """
    spec = dataset.storage.metadata.get("action_discretizer")
    if spec:
        return discretizer_from_spec(spec)
    try:
        return discretizer_for_space(dataset.action_space, buckets=None)
    except ValueError as e:
        raise ValueError(f"dataset {dataset.id!r} has continuous actions but no "
                         "'action_discretizer' in its metadata; pass a discretizer (e.g. "
                         "discretizer_for_space(space, buckets=11)) explicitly") from e


def episode_metadata(dataset: Any) -> list[dict]:
    """Per-episode metadata dicts (id, total_steps, skill, return, ...) in episode order."""
    return list(dataset.storage.get_episode_metadata(range(dataset.storage.total_episodes)))


def split_episodes(episode_ids: Sequence[int], fractions: Sequence[float] = (0.8, 0.1, 0.1),
                   seed: int = 0) -> dict[str, list[int]]:
    """Deterministic train/val/test split of episode ids.

    Every split with a positive fraction gets at least one episode when there are enough.

    >>> split_episodes(range(10))
    {'train': [0, 2, 3, 4, 5, 6, 7, 9], 'val': [8], 'test': [1]}
    """
    fractions = tuple(float(f) for f in fractions)
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"fractions={fractions} must be three non-negative numbers summing to 1")
    ids = np.asarray(list(episode_ids), dtype=np.int64)
    perm = ids[np.random.default_rng(seed).permutation(len(ids))]
    n = len(ids)
    n_val = int(round(fractions[1] * n))
    n_test = int(round(fractions[2] * n))
    if n >= 3:
        n_val = max(n_val, 1 if fractions[1] > 0 else 0)
        n_test = max(n_test, 1 if fractions[2] > 0 else 0)
    n_train = max(n - n_val - n_test, 0)
    return {"train": sorted(perm[:n_train].tolist()),
            "val": sorted(perm[n_train:n_train + n_val].tolist()),
            "test": sorted(perm[n_train + n_val:].tolist())}
