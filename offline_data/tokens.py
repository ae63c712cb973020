"""Token shards: tokenized datasets on disk and their global id layout.

A token shard is a directory::

    header.json                 TokenHeader (d_z, V_o, action vocabs, tokenizer id + sha256)
    <split>/frame_tokens.npy    uint16 (F, K)  image token ids in [0, V_o)
    <split>/action_tokens.npy   uint16 (F, A)  per-dimension local action ids in [0, vocab_j)
    <split>/rewards.npy         float32 (F,)   reward received after the action of that frame
    <split>/terminations.npy    bool (F,)      episode terminated after the action of that frame
    <split>/episode_starts.npy  int64 (E+1,)   first frame of each episode, then F

Frame ``t`` of an episode is the observation the action ``t`` was taken in, so an episode of ``n``
steps contributes ``n`` frames (Minari's final observation, which has no action, is not stored).
Arrays are opened with ``np.load(mmap_mode="r")``, so paper-scale data streams from disk.

Training windows over the shards come from ``offline_data.token_windows.TokenWindowLoader``.

Example:
    shards = TokenShards.open("tokens/breakout-k64")
    shards.layout.tokens_per_step  # d_z + d_a
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

if TYPE_CHECKING:
    pass

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
HEADER_NAME = "header.json"
ARRAYS = {"frame_tokens": np.uint16, "action_tokens": np.uint16, "rewards": np.float32,
          "terminations": np.bool_, "episode_starts": np.int64}
"""The arrays of a split, ``<split>/<name>.npy``, by name with their dtypes (shapes above)."""
_MAX_UINT16 = 1 << 16


@dataclasses.dataclass(frozen=True)
class TokenHeader:
    """The JSON header of a token shard directory."""

    tokens_per_frame: int
    """d_z: image tokens per frame."""
    image_vocab: int
    """V_o: image codebook size; image ids lie in [0, V_o)."""
    action_vocab_sizes: tuple[int, ...]
    """Vocabulary of each action dimension (d_a entries)."""
    tokenizer_id: str
    """Name of the tokenizer that produced the frame tokens."""
    tokenizer_sha256: str
    """sha256 of the tokenizer's weights and config; shards from another tokenizer are refused."""
    dataset_id: str = ""
    """Source Minari dataset id."""
    splits: dict = dataclasses.field(default_factory=dict)
    """Per split: {"num_frames": int, "num_episodes": int, "episode_ids": [...]}."""
    action_discretizer: dict | None = None
    """Spec of the discretizer that produced the action tokens (offline_data.discretize)."""
    format_version: int = FORMAT_VERSION
    """Version of this on-disk format."""
    supplements: list = dataclasses.field(default_factory=list)
    """Train-only supplement datasets whose episodes were appended to the train split
    (``offline_data.growth``); empty for shards of one dataset."""
    grown_from: list = dataclasses.field(default_factory=list)
    """Fingerprints of the shard directories these shards extend, oldest first: a run started
    on any of them may resume on these (train grew; val and test are the same episodes)."""

    def __post_init__(self):
        vocab = tuple(int(v) for v in self.action_vocab_sizes)
        object.__setattr__(self, "action_vocab_sizes", vocab)
        if self.tokens_per_frame < 1:
            raise ValueError(f"tokens_per_frame must be >= 1, got {self.tokens_per_frame}")
        if not 1 <= self.image_vocab <= _MAX_UINT16:
            raise ValueError(
                f"image_vocab must be in [1, 65536] (uint16 ids), got {self.image_vocab}")
        if any(not 1 <= v <= _MAX_UINT16 for v in self.action_vocab_sizes):
            raise ValueError(
                f"action_vocab_sizes must each be in [1, 65536], got {self.action_vocab_sizes}"
            )

    @property
    def layout(self) -> TokenLayout:
        """The global id layout of sequences built from these shards."""
        return TokenLayout(self.tokens_per_frame, self.image_vocab, self.action_vocab_sizes)

    def to_json(self) -> str:
        """Serialise to a JSON string."""
        d = dataclasses.asdict(self)
        d["action_vocab_sizes"] = list(self.action_vocab_sizes)
        return json.dumps(d, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TokenHeader:
        """Parse a header, rejecting unknown keys and other format versions."""
        d = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"token shard header has unknown keys {unknown}; written by a newer "
                             "version? Re-run `embscale tokenizer encode`.")
        if d.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"token shard format_version {d.get('format_version')} is not "
                             f"{FORMAT_VERSION}; re-run `embscale tokenizer encode`.")
        return cls(**d)


class TokenLayout:
    """Global token ids of the interleaved sequence ``[z_t^1..z_t^K, a_t^1..a_t^A]`` per timestep.

    Image ids keep their codebook ids ``[0, V_o)``; action dimension ``j`` uses ids
    ``[action_offsets[j], action_offsets[j] + vocab_j)`` after them, so no two kinds share an id.

    >>> layout = TokenLayout(4, 16, (3, 5))
    >>> layout.tokens_per_step, layout.vocab_size, layout.action_offsets
    (6, 24, (16, 19))
    >>> layout.image_positions.tolist()
    [True, True, True, True, False, False]
    """

    def __init__(self, tokens_per_frame: int, image_vocab: int,
                 action_vocab_sizes: Iterable[int]):
        self.tokens_per_frame = int(tokens_per_frame)
        """Image tokens per frame (the paper's d_z)."""
        self.image_vocab = int(image_vocab)
        self.action_vocab_sizes = tuple(int(v) for v in action_vocab_sizes)
        if self.tokens_per_frame < 1:
            raise ValueError(f"tokens_per_frame must be >= 1, got {tokens_per_frame}")
        if self.image_vocab < 1 or any(v < 1 for v in self.action_vocab_sizes):
            raise ValueError(f"vocabularies must be >= 1, got image_vocab={image_vocab}, "
                             f"action_vocab_sizes={self.action_vocab_sizes}")
        offsets = self.image_vocab + np.concatenate([[0], np.cumsum(self.action_vocab_sizes)])
        self.action_offsets = tuple(int(o) for o in offsets[:-1])
        self.vocab_size = int(offsets[-1])

    def __repr__(self) -> str:
        return (f"TokenLayout(tokens_per_frame={self.tokens_per_frame}, "
                f"image_vocab={self.image_vocab}, action_vocab_sizes={self.action_vocab_sizes})")

    @property
    def d_a(self) -> int:
        """Action tokens per timestep."""
        return len(self.action_vocab_sizes)

    @property
    def tokens_per_step(self) -> int:
        """d_z + d_a."""
        return self.tokens_per_frame + self.d_a

    @property
    def image_positions(self) -> np.ndarray:
        """Bool (d_z + d_a,): true at the image tokens of one timestep."""
        return np.arange(self.tokens_per_step) < self.tokens_per_frame

    def to_global(self, frame_tokens: np.ndarray, action_tokens: np.ndarray) -> np.ndarray:
        """Interleave per-step tokens into global ids.

        Args:
            frame_tokens: int (..., T, d_z) image ids in [0, V_o).
            action_tokens: int (..., T, d_a) per-dimension local action ids.

        Returns:
            int64 (..., T * (d_z + d_a)) global ids.
        """
        z = np.asarray(frame_tokens, dtype=np.int64)
        a = np.asarray(action_tokens, dtype=np.int64) + np.asarray(self.action_offsets, np.int64)
        steps = np.concatenate([z, a], axis=-1)  # (..., T, K + A)
        return steps.reshape(*steps.shape[:-2], -1)

    def from_global(self, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Inverse of :meth:`to_global` over whole timesteps: (frame ids, local action ids)."""
        t = np.asarray(tokens, dtype=np.int64)
        if t.shape[-1] % self.tokens_per_step:
            raise ValueError(f"sequence length {t.shape[-1]} is not a multiple of "
                             f"tokens_per_step={self.tokens_per_step}")
        steps = t.reshape(*t.shape[:-1], -1, self.tokens_per_step)
        actions = steps[..., self.tokens_per_frame:] - np.asarray(self.action_offsets, np.int64)
        return steps[..., : self.tokens_per_frame], actions

    def target_masks(self, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
        """Loss masks over a window of ``seq_len`` timesteps, aligned with next-token targets.

        Returns:
            ``(wm_mask, bc_mask)``, bool (seq_len * (d_z + d_a),). Entry ``i`` is true when the
            token at ``i + 1`` (the target predicted at position ``i``) is an image token
            (``wm_mask``) or an action token (``bc_mask``). The last entry has no target and is
            false in both, so ``mask[:-1]`` lines up with ``tokens[1:]``.
        """
        image = np.tile(self.image_positions, seq_len)
        wm = np.zeros_like(image)
        bc = np.zeros_like(image)
        wm[:-1] = image[1:]
        bc[:-1] = ~image[1:]
        return wm, bc


class SplitArrays(NamedTuple):
    """The arrays of one split (memory-mapped when opened from disk)."""

    frame_tokens: np.ndarray  # uint16 (F, K)
    action_tokens: np.ndarray  # uint16 (F, A)
    rewards: np.ndarray  # float32 (F,)
    terminations: np.ndarray  # bool (F,)
    episode_starts: np.ndarray  # int64 (E + 1,)

    @property
    def num_frames(self) -> int:
        """Frames in the split."""
        return int(self.frame_tokens.shape[0])

    @property
    def num_episodes(self) -> int:
        """Episodes in the split."""
        return int(len(self.episode_starts) - 1)

    @property
    def episode_lengths(self) -> np.ndarray:
        """int64 (E,) frames per episode."""
        return np.diff(np.asarray(self.episode_starts))


class EpisodeTokens(NamedTuple):
    """One tokenized episode, the unit written to a shard."""

    frame_tokens: np.ndarray  # int (T, K)
    action_tokens: np.ndarray  # int (T, A)
    rewards: np.ndarray  # float (T,)
    terminations: np.ndarray  # bool (T,)


class TokenShards:
    """A token shard directory opened read-only; arrays are memory-mapped."""

    def __init__(self, path: Path, header: TokenHeader):
        self.path = path
        self.header = header
        self._splits: dict[str, SplitArrays] = {}

    @classmethod
    def open(cls, path: str | os.PathLike, tokenizer_sha256: str | None = None) -> TokenShards:
        """Open a shard directory; with ``tokenizer_sha256``, refuse shards of another tokenizer."""
        path = Path(path)
        header_path = path / HEADER_NAME
        if not header_path.is_file():
            raise FileNotFoundError(f"no token shard at {path} (missing {HEADER_NAME}); create one "
                                    "with `embscale tokenizer encode`")
        shards = cls(path, TokenHeader.from_json(header_path.read_text()))
        if tokenizer_sha256 is not None:
            shards.check_tokenizer(tokenizer_sha256)
        return shards

    @property
    def layout(self) -> TokenLayout:
        """Global id layout of these shards."""
        return self.header.layout

    @property
    def split_names(self) -> list[str]:
        """Splits present in the header."""
        return sorted(self.header.splits)

    def check_tokenizer(self, tokenizer_sha256: str) -> None:
        """Raise ValueError unless these shards were written by the tokenizer with this sha256."""
        if tokenizer_sha256 != self.header.tokenizer_sha256:
            raise ValueError(
                f"token shard {self.path} was written by tokenizer {self.header.tokenizer_id!r} "
                f"(sha256 {self.header.tokenizer_sha256[:12]}...), not by the given tokenizer "
                f"(sha256 {tokenizer_sha256[:12]}...); re-encode the dataset with this tokenizer "
                "(`embscale tokenizer encode`) or pass the tokenizer that wrote the shard"
            )

    def split(self, name: str) -> SplitArrays:
        """Memory-map the arrays of split ``name``, checking them against the header."""
        if name not in self._splits:
            if name not in self.header.splits:
                raise ValueError(f"split {name!r} is not in token shard {self.path}; "
                                 f"available: {self.split_names}")
            self._splits[name] = self._load_split(name)
        return self._splits[name]

    def _load_split(self, name: str) -> SplitArrays:
        info = self.header.splits[name]
        frames, episodes = int(info["num_frames"]), int(info["num_episodes"])
        shapes = {"frame_tokens": (frames, self.header.tokens_per_frame),
                  "action_tokens": (frames, len(self.header.action_vocab_sizes)),
                  "rewards": (frames,), "terminations": (frames,),
                  "episode_starts": (episodes + 1,)}
        expected = {key: (ARRAYS[key], shapes[key]) for key in ARRAYS}
        arrays = {}
        for key, (dtype, shape) in expected.items():
            file = self.path / name / f"{key}.npy"
            fix = "re-run `embscale tokenizer encode` to rewrite the shard"
            if not file.is_file():
                raise FileNotFoundError(f"token shard file {file} is missing; {fix}")
            try:
                arr = np.load(file, mmap_mode="r")
            except (ValueError, OSError, EOFError) as e:
                raise ValueError(
                    f"token shard file {file} is truncated or corrupt ({e}); {fix}") from e
            if arr.dtype != dtype or arr.shape != shape:
                raise ValueError(f"token shard file {file} holds {arr.dtype}{arr.shape}, header "
                                 f"expects {np.dtype(dtype)}{shape}: truncated or mixed shard; "
                                 f"{fix}")
            arrays[key] = arr
        starts = np.asarray(arrays["episode_starts"])
        if len(starts) and (starts[0] != 0 or starts[-1] != frames or np.any(np.diff(starts) < 0)):
            raise ValueError(f"token shard {self.path / name} has inconsistent episode_starts; "
                             "re-run `embscale tokenizer encode`")
        return SplitArrays(**arrays)
