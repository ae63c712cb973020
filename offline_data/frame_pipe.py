"""Raw screens from a collection stream to the writing process, through a file both map.

A pipelined stream (:func:`offline_data.collect_streams.collect_streams` with one stream) plays
its episodes in a child process with the env's frames deferred
(``envs.atari.AtariImageEnv.defer_frames``): the child only emulates and acts, and the parent
makes each observation from its raw screen (``frame_maker``) and writes the dataset, so the two
run side by side on two cores. The screens (70 KB each for Breakout's playfield) travel through
:class:`FramePipe`: two episode slots in a file mapped by both processes. The child writes
episode ``j`` into slot ``j % 2`` once the parent has released it; the parent makes the frames of
the slot and releases it. Only the episode's length and its small arrays go through a queue:
pickling the screens through one cost as much time as making the frames.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

SLOTS = 2
"""Episode slots in the file: the child plays one episode ahead of the parent."""


class FramePipe:
    """Two episode slots of raw screens in the file ``path`` (created here, by the parent).

    Args:
        path: the file (the caller removes it; the dataset writer's staging directory suits).
        cap: the most steps an episode may have (it holds ``cap + 1`` screens).
        shape: one raw screen's shape, e.g. (164, 144, 3).
        ctx: the multiprocessing context the child is started with (for the slots' semaphore).

    Give the pipe to the child as a ``Process`` argument; there it is the env's frame sink.
    """

    def __init__(self, path: str | os.PathLike, cap: int, shape: tuple[int, ...], ctx: Any):
        self.path = os.fspath(path)
        self.shape = (SLOTS, int(cap) + 1, *(int(s) for s in shape))
        self.free = ctx.Semaphore(SLOTS)
        self._slots: np.memmap | None = np.memmap(self.path, np.uint8, "w+", shape=self.shape)
        self._slot, self._t = 0, 0

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_slots"] = None  # each process maps the file itself
        return state

    def _mapped(self) -> np.memmap:
        if self._slots is None:
            self._slots = np.memmap(self.path, np.uint8, "r+", shape=self.shape)
        return self._slots

    # the child's side
    def start_episode(self, j: int) -> None:
        """Wait until episode ``j``'s slot is free, then fill it from its first screen."""
        self.free.acquire()
        self._slot, self._t = j % SLOTS, 0

    def __call__(self, raw: np.ndarray) -> None:
        """The env's frame sink: store the next raw screen of the episode."""
        slots = self._mapped()
        if self._t >= slots.shape[1]:
            raise RuntimeError(f"an episode outgrew its slot of {slots.shape[1]} screens; give "
                               "max_steps_per_episode as the episode cap")
        slots[self._slot, self._t] = raw
        self._t += 1

    @property
    def written(self) -> int:
        """Screens stored for the current episode."""
        return self._t

    # the parent's side
    def frames(self, j: int, length: int, make_frame: Callable[[np.ndarray], np.ndarray]
               ) -> np.ndarray:
        """Episode ``j``'s ``length`` observations made from its screens; frees its slot."""
        raw = self._mapped()[j % SLOTS, :length]
        try:
            first = make_frame(raw[0])
            out = np.empty((length, *first.shape), np.uint8)
            out[0] = first
            for t in range(1, length):
                out[t] = make_frame(raw[t])
        finally:
            self.free.release()
        return out

    def close(self) -> None:
        """Unmap the file in this process."""
        self._slots = None
