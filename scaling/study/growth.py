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

A growth stops every worker of the sweep while it collects and encodes, so under a seconds budget
the protocol charges its wall seconds times the workers to the budget
(``scaling.study.budget_tasks.growth_charge``), and before collecting it asks
:meth:`StudyGrower.estimate` what a growth would take: the seconds per frame the study measured
when it grew before, else when it collected and encoded its own dataset (``data_seconds.json``,
written by :func:`record_data_seconds`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from typing import Any

from offline_data.atomic import write_text_atomic
from offline_data.growth import join_data_ids, supplement_id, supplement_seed
from offline_data.tokens import HEADER_NAME, TokenShards
from scaling.study.paths import (
    DATA_SECONDS_FILE,
    dataset_exists,
    grown_tokens_dir,
    read_data_seconds,
    tokenizer_path,
    tokens_dir,
)
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


def record_data_seconds(spec, kind: str, frames: int, seconds: float) -> None:
    """Note in the study directory that ``kind`` of ``frames`` took ``seconds``.

    ``kind`` is ``collect`` or ``encode`` for the study's own dataset, which
    :meth:`StudyGrower.estimate` reads when the study has not grown yet, and ``collect <id>`` or
    ``encode <id>`` for a supplement, so a study killed after growing records what the growth
    took when it runs again (and charges the budget the same).
    """
    record = read_data_seconds(spec.study_dir)
    record[kind] = {"frames": int(frames), "seconds": round(float(seconds), 1)}
    write_text_atomic(spec.study_dir / DATA_SECONDS_FILE, json.dumps(record, indent=2))


def _per_frame(spec, history: list[dict], reads_tokens: bool) -> float | None:
    """Seconds per collected frame (collecting plus encoding) measured by this study, if any."""
    grown = [h for h in history if h.get("collect_seconds", 0) > 0 and h.get("frames", 0) > 0]
    if grown:  # measured on this machine when the study grew before (a reused supplement: 0 s)
        return sum(h["collect_seconds"] + h.get("encode_seconds", 0.0)
                   for h in grown) / sum(h["frames"] for h in grown)
    record = read_data_seconds(spec.study_dir)
    kinds = ("collect", "encode") if reads_tokens else ("collect",)
    if not all(record.get(k, {}).get("frames") for k in kinds):
        return None  # the dataset (or its shards) was made before this study: nothing measured
    return sum(record[k]["seconds"] / record[k]["frames"] for k in kinds)


class StudyGrower:
    """``grow(frames_needed, k, history)``: the study's ``k``-th growth, or None when it may not.

    Args:
        spec: the study (its dataset must be collected by the study).
        limits: per task, (training inputs, inputs per frame) of the dataset before any growth.
        progress: show collection and encoding progress.
    """

    def __init__(self, spec, limits: dict[str, tuple[float | None, int]],
                 progress: bool = True) -> None:
        from scaling.study.adapters.datasets import dataset_summary  # envs

        self.spec, self.progress = spec, progress
        base_frames = dataset_summary(spec.dataset.id)["frames"]
        self.cap, self.cap_by = int(spec.dataset.grow * base_frames), "grow"
        if any(t.task == "bc-cnn" for t in spec.tasks):  # BC-CNN maps one copy of its frames
            held = max(memory_frames(spec) - base_frames, 0)
            self.cap, self.cap_by = (held, "memory") if held < self.cap else (self.cap, "grow")
        self.reads_tokens = any(TASKS[t.task].reads_tokens for t in spec.tasks)
        self.per_frame = {t: max(int(pf), 1) for t, (_, pf) in limits.items()}
        self.base_train = {t: (items or 0.0) / self.per_frame[t]
                           for t, (items, _) in limits.items()}

    def _frames(self, frames_needed: int, history: list[dict]) -> tuple[int, float, int]:
        """(frames the next growth collects, training frames now, frames grown before)."""
        added = sum(int(h["frames"]) for h in history)
        train_now = max(self.base_train.values(), default=0.0) + added
        want = int(math.ceil(frames_needed - train_now))
        return max(min(want, self.cap - added), 0), train_now, added

    def estimate(self, frames_needed: int, history: list[dict]) -> float | None:
        """Wall seconds the next growth would take (None: nothing measured to estimate from)."""
        frames = self._frames(frames_needed, history)[0]
        if frames <= 0:
            return 0.0
        per = _per_frame(self.spec, history, self.reads_tokens)
        return None if per is None else frames * per

    def __call__(self, frames_needed: int, k: int, history: list[dict]) -> Growth | None:
        """Collect and encode the ``k``-th supplement (None: the cap leaves nothing to add)."""
        from scaling.study.adapters.datasets import collect_default_dataset, dataset_summary

        spec, progress, per_frame = self.spec, self.progress, self.per_frame
        frames, train_now, added = self._frames(frames_needed, history)
        if frames <= 0:
            return None
        sup = supplement_id(spec.dataset.id, k)
        start = time.time()
        if not dataset_exists(sup):
            logger.info("growing the study's data: collecting %d training frames into %s",
                        frames, sup)
            ds = dataclasses.replace(spec.dataset, id=sup, collect=True,
                                     seed=supplement_seed(spec.dataset.seed, k),
                                     episodes=frames, max_total_steps=frames)
            collect_default_dataset(ds, progress=progress)
            record_data_seconds(spec, f"collect {sup}", frames, time.time() - start)
        summary = dataset_summary(sup)
        frames, episodes = summary["frames"], summary["episodes"]
        sups = [h["supplement"] for h in history] + [sup]
        data, new_limits = {}, {}
        start = time.time()
        if self.reads_tokens:
            prev = grown_tokens_dir(spec, k - 1) if k > 1 else tokens_dir(spec)
            out = grown_tokens_dir(spec, k)
            if not (out / HEADER_NAME).is_file():
                from worldmodels.token_growth import grow_token_shards  # torch

                grow_token_shards(prev, [sup], tokenizer_path(spec), out, device=spec.device,
                                  progress=progress)
                record_data_seconds(spec, f"encode {sup}", frames, time.time() - start)
            train = TokenShards.open(out).split("train").num_frames
        for t in spec.tasks:
            if TASKS[t.task].reads_tokens:
                data[t.task] = str(out)
                new_limits[t.task] = (float(train * per_frame[t.task]), per_frame[t.task])
            else:
                data[t.task] = join_data_ids(spec.dataset.id, sups)
                new_limits[t.task] = ((self.base_train[t.task] + added + frames)
                                      * per_frame[t.task], per_frame[t.task])
        # as measured when made, by this run or by one killed after it (0: made before the study)
        measured = read_data_seconds(spec.study_dir)
        took = {kind: measured.get(f"{kind} {sup}", {}).get("seconds", 0.0)
                for kind in ("collect", "encode")}
        record = {"supplement": sup, "frames": frames, "episodes": episodes,
                  "asked": int(frames_needed), "train_frames_before": int(train_now),
                  "train_frames": int(train_now + frames), "cap": self.cap,
                  "cap_by": self.cap_by, "collect_seconds": took["collect"],
                  "encode_seconds": took["encode"]}
        return Growth(data, new_limits, record)


def study_grower(spec, limits: dict[str, tuple[float | None, int]],
                 progress: bool = True) -> StudyGrower:
    """The study's grower (see :class:`StudyGrower`)."""
    return StudyGrower(spec, limits, progress=progress)
