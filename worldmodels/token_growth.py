"""Grow token shards: append train-only supplement datasets to the train split.

A study that collects its own data grows it when runs reach their data-pass limit
(``offline_data.growth``): it collects a supplement dataset and writes new shards holding the old
shards' splits with every supplement episode appended to ``train``. Validation and test are the
same episodes as before, so a run resumed on the grown shards continues the same curve; the new
header's ``grown_from`` lists the old shards' fingerprint, which is what lets it resume.

Example:
    grow_token_shards("study/tokens", ["embscale/breakout/scripted-grow1-v3"],
                      "study/tokenizer/tokenizer.pt", "study/tokens-grow1")
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from offline_data.atomic import check_parent, remove_stale_temps
from offline_data.fingerprint import directory_fingerprint
from offline_data.run_lock import DirLock
from offline_data.token_writer import merge_token_shards, write_token_shards
from offline_data.tokens import HEADER_NAME, TokenHeader, TokenShards
from worldmodels.tokenize_dataset import check_frame_size, encode_episodes
from worldmodels.tokenizer import load_tokenizer
from worldmodels.tokenizer_data import open_split
from worldmodels.train_utils import resolve_device


def grow_token_shards(base: str | os.PathLike, supplements: Sequence[str],
                      tokenizer: str | os.PathLike, out: str | os.PathLike, *,
                      batch_size: int = 256, device: str = "auto",
                      progress: bool = True) -> TokenShards:
    """Write ``out``: the shards at ``base`` with every episode of ``supplements`` in train.

    Args:
        base: the shards to grow (themselves possibly grown).
        supplements: Minari ids of train-only supplements, collected by the base's recipe.
        tokenizer: the tokenizer that wrote ``base`` (checked by its sha256).
        out: the new shard directory (written atomically; an existing complete one is reused).
        batch_size: frames per encoder call.
        device: "cpu", "cuda", or "auto".
        progress: show a progress bar.
    """
    out = Path(out)
    if (out / HEADER_NAME).is_file():
        return TokenShards.open(out)
    check_parent(out)
    with DirLock(out, "token shard directory", lock_path=out.with_name(f".{out.name}.lock")):
        if (out / HEADER_NAME).is_file():  # finished between our check and the lock
            return TokenShards.open(out)
        # ours to remove under the lock: what a killed run left (a half-merged directory and
        # the parts it encoded)
        remove_stale_temps(out)
        for stale in out.parent.glob(f".{out.name}.supplements-*"):
            shutil.rmtree(stale, ignore_errors=True)
        return _grow(base, supplements, tokenizer, out, batch_size, device, progress)


def _grow(base, supplements, tokenizer, out: Path, batch_size, device, progress) -> TokenShards:
    from tqdm.auto import tqdm

    old = TokenShards.open(base)
    model = load_tokenizer(str(tokenizer), map_location=resolve_device(device))
    old.check_tokenizer(model.sha256())
    h = old.header
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.supplements-", dir=out.parent) as tmp:
        parts = []
        for i, sup in enumerate(supplements):
            reader = open_split(sup, "all")
            check_frame_size(model, tuple(reader.dataset.observation_space.shape), sup)
            if reader.discretizer.to_spec() != h.action_discretizer:
                raise ValueError(f"supplement {sup} encodes actions as "
                                 f"{reader.discretizer.to_spec()}, the shards at {base} as "
                                 f"{h.action_discretizer}; collect it by the base's recipe")
            header = TokenHeader(
                tokens_per_frame=h.tokens_per_frame, image_vocab=h.image_vocab,
                action_vocab_sizes=h.action_vocab_sizes, tokenizer_id=h.tokenizer_id,
                tokenizer_sha256=h.tokenizer_sha256, dataset_id=sup,
                splits={"train": {"episode_ids": [int(e) for e in reader.episode_ids]}},
                action_discretizer=h.action_discretizer)
            bar = tqdm(total=reader.num_steps, disable=not progress, desc=f"encode {sup}",
                       unit="frame")
            part = Path(tmp) / f"part-{i}"
            write_token_shards(part, header, {"train": encode_episodes(
                reader, reader.episode_ids, model, batch_size, bar)})
            bar.close()
            parts.append(str(part))
        merged = merge_token_shards(
            [str(base), *parts], out, dataset_id=h.dataset_id,
            supplements=[*h.supplements, *supplements],
            grown_from=[*h.grown_from, directory_fingerprint(base)])
    return merged
