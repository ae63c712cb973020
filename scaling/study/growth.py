"""A collecting study grows its data when the budget protocol's runs reach their data-pass limit.

The protocol keeps every run that feeds a fit within ``max_passes`` passes over its training data
(the infinite-data regime). When an extension it can pay for would pass that limit and the study
collects its own data (``dataset.collect``, ``dataset.grow > 0``), :func:`study_grower` collects a
train-only supplement (``offline_data.growth``): the same env, demonstrator and frame size, with
a seed of its own, as many frames as the extension needs (at most ``dataset.grow`` times the
dataset's frames over the whole study). Token tasks then read new shards with the supplement's
episodes appended to the train split (``worldmodels.token_growth``); BC-CNN reads the dataset
and its supplements together. Validation and test stay the dataset's own episodes.

Each growth is recorded in ``protocol.json`` (which supplement, how many frames, how long it
took); a study killed during one finds the supplement and shards already written and reuses them.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable
from typing import Any

from offline_data.growth import join_data_ids, supplement_id, supplement_seed
from offline_data.tokens import HEADER_NAME, TokenShards
from scaling.study.paths import dataset_exists, grown_tokens_dir, tokenizer_path, tokens_dir
from scaling.tasks import TASKS

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class Growth:
    """What one growth gave the study."""

    data: dict[str, str]  # task -> its runs' data now (token shards, or base+supplements ids)
    limits: dict[str, tuple[float, int]]  # task -> (training inputs, inputs per frame)
    record: dict[str, Any]  # for protocol.json and the report


def memory_frames(spec, fraction: float = 0.5) -> int:
    """Training frames BC-CNN may grow to: one copy of them fills ``fraction`` of the memory.

    BC-CNN's training frames are decoded into one file that every worker of the sweep maps
    (``agents.frame_store``), so the page cache holds a single copy whatever ``spec.parallel``
    is; keeping that copy within half the machine's memory keeps training at memory speed.
    """
    import os

    from agents.bc_cnn_shapes import stored_frame_bytes
    from offline_data.datasets import load_dataset
    from worldmodels import presets

    shape = load_dataset(spec.dataset.id).observation_space.shape
    sizes = [(t.overrides.get("image_size")
              or (presets.get_task_preset(t.preset) if t.preset
                  else presets.preset_for(t.task, size)).image_size)
             for t in spec.tasks if t.task == "bc-cnn" for size in t.sizes]
    frame_bytes = max([stored_frame_bytes(shape, s) for s in sizes or [None]] + [1])
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return int(fraction * memory / frame_bytes)


def study_grower(spec, limits: dict[str, tuple[float | None, int]], progress: bool = True
                 ) -> Callable[[int, int, list[dict]], Growth | None]:
    """``grow(frames_needed, k, history)``: the study's ``k``-th growth, or None when it may not.

    Args:
        spec: the study (its dataset must be collected by the study).
        limits: per task, (training inputs, inputs per frame) of the dataset before any growth.
        progress: show collection and encoding progress.
    """
    from scaling.study.adapters.datasets import collect_default_dataset, dataset_summary  # envs

    base_frames = dataset_summary(spec.dataset.id)["frames"]
    cap, cap_by = int(spec.dataset.grow * base_frames), "grow"
    if any(t.task == "bc-cnn" for t in spec.tasks):  # BC-CNN maps one copy of its frames
        held = max(memory_frames(spec) - base_frames, 0)
        cap, cap_by = (held, "memory") if held < cap else (cap, cap_by)
    reads_tokens = any(TASKS[t.task].reads_tokens for t in spec.tasks)
    per_frame = {t: max(int(pf), 1) for t, (_, pf) in limits.items()}
    base_train = {t: (items or 0.0) / per_frame[t] for t, (items, _) in limits.items()}

    def grow(frames_needed: int, k: int, history: list[dict]) -> Growth | None:
        added = sum(int(h["frames"]) for h in history)
        train_now = max(base_train.values(), default=0.0) + added
        want = int(math.ceil(frames_needed - train_now))
        room = cap - added
        if want <= 0 or room <= 0:
            return None
        sup = supplement_id(spec.dataset.id, k)
        start = time.time()
        if not dataset_exists(sup):
            logger.info("growing the study's data: collecting %d training frames into %s",
                        min(want, room), sup)
            ds = dataclasses.replace(spec.dataset, id=sup, collect=True,
                                     seed=supplement_seed(spec.dataset.seed, k),
                                     episodes=max(min(want, room), 1),
                                     max_total_steps=min(want, room))
            collect_default_dataset(ds, progress=progress)
        collected = time.time() - start
        summary = dataset_summary(sup)
        frames, episodes = summary["frames"], summary["episodes"]
        sups = [h["supplement"] for h in history] + [sup]
        data, new_limits = {}, {}
        start = time.time()
        if reads_tokens:
            prev = grown_tokens_dir(spec, k - 1) if k > 1 else tokens_dir(spec)
            out = grown_tokens_dir(spec, k)
            if not (out / HEADER_NAME).is_file():
                from worldmodels.token_growth import grow_token_shards  # torch

                grow_token_shards(prev, [sup], tokenizer_path(spec), out, device=spec.device,
                                  progress=progress)
            train = TokenShards.open(out).split("train").num_frames
        for t in spec.tasks:
            if TASKS[t.task].reads_tokens:
                data[t.task] = str(out)
                new_limits[t.task] = (float(train * per_frame[t.task]), per_frame[t.task])
            else:
                data[t.task] = join_data_ids(spec.dataset.id, sups)
                new_limits[t.task] = ((base_train[t.task] + added + frames) * per_frame[t.task],
                                      per_frame[t.task])
        record = {"supplement": sup, "frames": frames, "episodes": episodes,
                  "asked": int(frames_needed), "train_frames_before": int(train_now),
                  "train_frames": int(train_now + frames), "cap": cap, "cap_by": cap_by,
                  "collect_seconds": round(collected, 1),
                  "encode_seconds": round(time.time() - start, 1)}
        return Growth(data, new_limits, record)

    return grow
