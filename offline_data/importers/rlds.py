"""Import robot episodes stored in the RLDS / Open X-Embodiment TFRecord layout, without TensorFlow.

Each TFRecord record is one episode: a ``tf.train.Example`` whose step features are flattened
over the episode (TFDS's RLDS layout: ``steps/observation/image`` holds one encoded JPEG per step,
``steps/action/world_vector`` T*3 floats, ``steps/is_first`` T ints, ...) or a
``tf.train.SequenceExample`` with the same names as per-step feature lists. ``RLDSMapping`` names
the fields; the ``rt1`` preset is RT-1's (``fractal20220817_data``) layout and other robot
datasets need only another mapping (a JSON file on the command line).

RLDS step ``t`` holds ``o_t``, the action ``a_t`` taken on it and the reward ``r_t`` that
followed; the last step (``is_last``) contributes its observation, and its reward (where RT-1
puts the success reward) is added to the transition before it, the last one there is. An episode
of N steps becomes N observations and N-1 actions. Records are parsed with the ``protobuf``
runtime (``example_proto``), which ``benchmarks/bench_tfrecord.py`` measures against a
hand-written wire-format decoder.

Example:
    embscale data import rlds --source rt1_shards/ --dataset-id embscale/rt1/robot-v0
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from offline_data.datasets import Episode
from offline_data.discretize import UniformDiscretizer
from offline_data.frame_size import parse_frame_size
from offline_data.importers.example_proto import parse_sequence_example
from offline_data.importers.tfrecord import read_tfrecord
from offline_data.minari_writer import MinariWriter

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RLDSMapping:
    """Which TFRecord features hold the image, actions and step flags of an episode."""

    image: str = "steps/observation/image"
    """Encoded image (JPEG/PNG) per step."""
    actions: tuple[str, ...] = ("steps/action/world_vector",
                                "steps/action/gripper_closedness_action")
    """Float action features, concatenated in this order into the action vector."""
    action_dims: tuple[int, ...] = (3, 1)
    """Dimensions per action feature."""
    action_low: float | tuple[float, ...] = -1.0
    """Lower action bound (one value or one per concatenated dimension)."""
    action_high: float | tuple[float, ...] = 1.0
    """Upper action bound."""
    buckets: int = 500
    """Uniform buckets per action dimension (RT-1: 500)."""
    reward: str | None = "steps/reward"
    """Reward per step (None: zeros)."""
    is_first: str | None = "steps/is_first"
    """First-step flags (only checked)."""
    is_last: str | None = "steps/is_last"
    """Last-step flags (only checked)."""
    is_terminal: str | None = "steps/is_terminal"
    """Terminal flags: a terminal last step marks the episode terminated, else truncated."""
    episode_metadata: tuple[str, ...] = field(default_factory=tuple)
    """Context features copied into the episode metadata (e.g. language instructions)."""

    def __post_init__(self):
        if len(self.actions) != len(self.action_dims) or not self.actions:
            raise ValueError(f"actions {self.actions} and action_dims {self.action_dims} must be "
                             "non-empty and of equal length")
        if self.buckets < 2:
            raise ValueError(f"buckets={self.buckets} must be >= 2")

    @property
    def action_dim(self) -> int:
        """Length of the concatenated action vector."""
        return int(sum(self.action_dims))

    @classmethod
    def from_json(cls, path_or_text: str | Path) -> RLDSMapping:
        """Load a mapping from a JSON file (or JSON text); unknown keys are refused."""
        text = str(path_or_text)
        where = "the RLDS mapping"
        if not text.lstrip().startswith("{"):
            where = f"RLDS mapping {path_or_text}"
            text = Path(path_or_text).read_text()
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{where} is not valid JSON ({e})") from None
        if not isinstance(raw, dict):
            raise ValueError(f"{where} must be a JSON object of feature names, got "
                             f"{type(raw).__name__}")
        _check_types(raw, where)
        unknown = set(raw) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown RLDS mapping keys {sorted(unknown)}; valid keys: "
                             f"{sorted(cls.__dataclass_fields__)}")
        for key in ("actions", "action_dims", "episode_metadata"):
            if key in raw:
                raw[key] = tuple(raw[key])
        for key in ("action_low", "action_high"):
            if isinstance(raw.get(key), list):
                raw[key] = tuple(raw[key])
        return cls(**raw)

    def to_dict(self) -> dict:
        """JSON-able dict."""
        return asdict(self)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_numbers(v: Any) -> bool:
    return isinstance(v, list) and all(_is_number(x) for x in v)


def _is_names(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def _is_name_or_null(v: Any) -> bool:
    return v is None or isinstance(v, str)


_KINDS = {
    "image": (lambda v: isinstance(v, str), "a feature name"),
    "actions": (_is_names, "a list of feature names"),
    "action_dims": (lambda v: _is_numbers(v) and all(isinstance(x, int) for x in v),
                    "a list of integers"),
    "action_low": (lambda v: _is_number(v) or _is_numbers(v), "a number or a list of numbers"),
    "action_high": (lambda v: _is_number(v) or _is_numbers(v), "a number or a list of numbers"),
    "buckets": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    "reward": (_is_name_or_null, "a feature name or null"),
    "is_first": (_is_name_or_null, "a feature name or null"),
    "is_last": (_is_name_or_null, "a feature name or null"),
    "is_terminal": (_is_name_or_null, "a feature name or null"),
    "episode_metadata": (_is_names, "a list of feature names"),
}
"""What each key of an RLDS mapping file holds: (check, description for the message)."""


def _check_types(raw: dict, where: str) -> None:
    """Refuse mapping values of the wrong kind, naming the key (before they fail inside)."""
    for key, value in raw.items():
        if key in _KINDS and not _KINDS[key][0](value):
            raise ValueError(f"{where}: {key} must be {_KINDS[key][1]}, got {value!r}")


MAPPINGS: dict[str, RLDSMapping] = {
    "rt1": RLDSMapping(episode_metadata=("episode_metadata/file_path",)),
    # Bridge V2 in OXE: 7-D action vector in one feature, third-person camera image_0.
    "bridge": RLDSMapping(image="steps/observation/image_0", actions=("steps/action",),
                          action_dims=(7,), buckets=256),
}


def _get(features: dict, key: str, where: str) -> Any:
    if key not in features:
        raise ValueError(f"{where} lacks the mapped field {key!r} (fields present: "
                         f"{sorted(features)}); fix the field mapping (--mapping JSON or preset)")
    return features[key]


def _record_features(data: bytes) -> dict[str, Any]:
    """An Example's features, or a SequenceExample's flattened (per-step lists concatenated).

    One parse serves both: an ``Example``'s features (field 1) are a ``SequenceExample``'s
    context, and an ``Example`` has no feature lists.
    """
    context, lists = parse_sequence_example(data)
    flat = dict(context)
    for key, steps in lists.items():
        if steps and isinstance(steps[0], list):
            flat[key] = [b for s in steps for b in s]
        else:
            flat[key] = np.concatenate(steps) if steps else np.zeros(0)
    return flat


def _decode_image(data: bytes, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    img = Image.open(io.BytesIO(data)).convert("RGB")
    if img.size != (size[1], size[0]):
        img = img.resize((size[1], size[0]), Image.BILINEAR)
    return np.asarray(img)


def _decode_frames(images: Sequence[Any], size: tuple[int, int], field_name: str,
                   where: str) -> np.ndarray:
    """Every step's encoded image as uint8 (n, H, W, 3); a corrupt one names its step."""
    from PIL import UnidentifiedImageError

    frames = np.empty((len(images), *size, 3), np.uint8)
    for t, data in enumerate(images):
        try:
            frames[t] = _decode_image(bytes(data), size)
        except Exception as e:  # noqa: BLE001 - PIL's decoders raise many types
            why = ("not an image format PIL can identify"
                   if isinstance(e, UnidentifiedImageError) else f"{type(e).__name__}: {e}")
            raise ValueError(f"{where} step {t}: field {field_name!r} holds an image that cannot "
                             f"be decoded ({why}); re-export this record or leave its file "
                             "out") from e
    return frames


def _check_finite_actions(values: np.ndarray, key: str, where: str) -> None:
    """Refuse NaN/inf in the (steps, dim) action values that become transitions."""
    bad = ~np.isfinite(values)
    if bad.any():
        step, dim = (int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{where} step {step}: action field {key!r} holds {values[step, dim]} "
                         f"(dimension {dim}); actions must be finite numbers, so fix or drop "
                         "this record")


def episode_from_record(data: bytes, mapping: RLDSMapping, size: int | str | tuple[int, int],
                        where: str) -> Episode:
    """Decode one RLDS episode record into an ``Episode`` with frames resized to ``size``.

    ``size`` is one side of a square or (height, width) (see ``parse_frame_size``).

    Raises:
        ValueError: a mapped field is missing or has the wrong size, an action value is NaN or
            inf, or an image cannot be decoded (the message names ``where``, the step and field).
    """
    size = parse_frame_size(size)
    features = _record_features(data)
    images = _get(features, mapping.image, where)
    n = len(images)
    if n < 2:
        raise ValueError(f"{where} has {n} steps; an episode needs at least 2")
    parts = []
    for key, dim in zip(mapping.actions, mapping.action_dims, strict=True):
        values = np.asarray(_get(features, key, where), dtype=np.float32)
        if values.size != n * dim:
            raise ValueError(f"{where}: {key!r} has {values.size} values, expected {n} steps x "
                             f"{dim}; fix action_dims in the mapping")
        parts.append(values.reshape(n, dim))
        _check_finite_actions(parts[-1][:-1], key, where)  # the last step's action is unused
    actions = np.concatenate(parts, axis=1)[:-1]
    rewards = np.zeros(n - 1)
    if mapping.reward:
        step_rewards = np.asarray(_get(features, mapping.reward, where), dtype=np.float64)
        if step_rewards.size != n:
            raise ValueError(f"{where}: {mapping.reward!r} has {step_rewards.size} values for "
                             f"{n} steps; fix the reward field of the mapping")
        if not np.isfinite(step_rewards).all():
            step = int(np.flatnonzero(~np.isfinite(step_rewards))[0])
            raise ValueError(f"{where} step {step}: reward field {mapping.reward!r} holds "
                             f"{step_rewards[step]}; rewards must be finite numbers, so fix or "
                             "drop this record")
        rewards = step_rewards[:n - 1].copy()
        rewards[-1] += step_rewards[-1]  # the is_last step's reward ends the last transition
    if mapping.is_first:
        first = np.asarray(_get(features, mapping.is_first, where)).astype(bool)
        if not first[0]:
            logger.warning("%s: first step is not marked is_first", where)
    if mapping.is_last:
        _get(features, mapping.is_last, where)
    terminal = False
    if mapping.is_terminal:
        terminal = bool(np.asarray(_get(features, mapping.is_terminal, where)).astype(bool)[-1])
    terminations = np.zeros(n - 1, bool)
    terminations[-1] = terminal
    truncations = np.zeros(n - 1, bool)
    truncations[-1] = not terminal
    frames = _decode_frames(images, size, mapping.image, where)
    meta = {"source": where}
    for key in mapping.episode_metadata:
        if key in features:
            value = features[key]
            meta[key] = (value[0].decode("utf-8", "replace") if isinstance(value, list)
                         else np.asarray(value).tolist())
    return Episode(frames, actions, rewards, terminations, truncations, meta)


def iter_rlds_episodes(files: Sequence[str | Path], mapping: RLDSMapping,
                       size: int | str | tuple[int, int] = 64,
                       verify_crc: bool = True) -> Iterator[Episode]:
    """Stream episodes from TFRecord files, one record (episode) at a time."""
    for path in files:
        for i, data in enumerate(read_tfrecord(path, verify_crc=verify_crc)):
            yield episode_from_record(data, mapping, size, where=f"{Path(path).name} record {i}")


def find_tfrecords(source: str | Path) -> list[Path]:
    """A TFRecord file, or the ``*.tfrecord*`` files of a directory (sorted)."""
    source = Path(source)
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise FileNotFoundError(f"{source} is neither a TFRecord file nor a directory of them")
    files = sorted(p for p in source.iterdir() if ".tfrecord" in p.name)
    if not files:
        raise FileNotFoundError(f"no *.tfrecord* files in {source}")
    return files


def import_rlds(source: str | Path, dataset_id: str, mapping: RLDSMapping | str = "rt1",
                size: int | str | tuple[int, int] = 64, max_episodes: int | None = None,
                verify_crc: bool = True, description: str = "", overwrite: bool = False,
                progress: bool = True):
    """Import RLDS TFRecord episodes as a Minari dataset (atomic write).

    ``size`` is the output frame size: one side of a square or (height, width) / ``"HxW"``.
    """
    from gymnasium import spaces
    from tqdm.auto import tqdm

    if isinstance(mapping, str):
        if mapping not in MAPPINGS:
            raise ValueError(f"unknown RLDS mapping preset {mapping!r}; use one of "
                             f"{sorted(MAPPINGS)} or an RLDSMapping / JSON file")
        mapping = MAPPINGS[mapping]
    files = find_tfrecords(source)
    d = mapping.action_dim
    low = np.broadcast_to(np.asarray(mapping.action_low, np.float32), (d,)).copy()
    high = np.broadcast_to(np.asarray(mapping.action_high, np.float32), (d,)).copy()
    action_space = spaces.Box(low, high, dtype=np.float32)
    size = parse_frame_size(size)
    obs_space = spaces.Box(0, 255, (*size, 3), np.uint8)
    discretizer = UniformDiscretizer(low, high, mapping.buckets)
    with MinariWriter(dataset_id, observation_space=obs_space, action_space=action_space,
                      discretizer=discretizer, algorithm_name="rlds-import",
                      description=description or "robot episodes imported from RLDS TFRecords",
                      metadata={"rlds_mapping": json.dumps(mapping.to_dict())},
                      overwrite=overwrite) as writer:
        bar = tqdm(desc=dataset_id, unit="ep", disable=not progress, total=max_episodes)
        for ep in iter_rlds_episodes(files, mapping, size, verify_crc):
            writer.add_episode(*ep)
            bar.update(1)
            if max_episodes and writer.num_episodes >= max_episodes:
                break
        bar.close()
        return writer.commit()
