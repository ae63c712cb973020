"""Read video files forward once with the ffmpeg binary of ``imageio-ffmpeg`` (no decoding library).

Example:
    with FrameStream("episode_000000.mp4", size=(96, 96)) as video:
        frames = video.take(np.arange(0, 100, 3))  # uint8 (34, 96, 96, 3)
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from offline_data.frame_size import resize_rgb

PREFETCH_BYTES = 64 * 2**20
"""Decoded frames read ahead of the caller, in bytes (a few hundred small frames)."""


class _Prefetch:
    """Items of an iterator pulled on a background thread into a bounded queue.

    Reading ffmpeg's pipe releases the GIL, so the decoder keeps running while the caller
    resizes, discretizes and writes; without it ffmpeg stalls whenever the pipe (a few frames)
    is full. Errors of the iterator are raised by ``__next__``.
    """

    _END = object()

    def __init__(self, items: Iterator[Any], depth: int):
        self._items = items
        self._queue: queue.Queue = queue.Queue(max(2, depth))
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._done = False
        self._thread = threading.Thread(target=self._run, daemon=True, name="video-prefetch")
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            for item in self._items:
                if not self._put(item):
                    return
        except BaseException as e:  # handed to the consumer
            self._error = e
        self._put(self._END)

    def __next__(self) -> Any:
        if self._done:
            raise StopIteration
        item = self._queue.get()
        if item is self._END:
            self._done = True
            if self._error is not None:
                raise self._error
            raise StopIteration
        return item

    def close(self) -> None:
        """Stop the thread, then close the underlying iterator."""
        self._stop.set()
        self._thread.join()
        close = getattr(self._items, "close", None)
        if close is not None:
            close()


class FrameStream:
    """Decoded RGB frames of one video, taken in increasing frame order and resized.

    Args:
        path: a video file ffmpeg can read (mp4, mkv, webm, ...; any codec the bundled ffmpeg
            decodes, AV1 included).
        size: output (height, width); each frame taken is resized to it (PIL bilinear).
    """

    def __init__(self, path: str | Path, size: tuple[int, int]):
        import imageio_ffmpeg

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"video {self.path} is missing")
        self.size = (int(size[0]), int(size[1]))
        self._reader = imageio_ffmpeg.read_frames(str(self.path))
        meta = next(self._reader)
        self.fps = float(meta.get("fps") or 0.0)
        self.width, self.height = (int(v) for v in meta["size"])
        self.position = 0
        """Index of the next frame the decoder yields (= frames decoded so far)."""
        self._last: bytes | None = None
        self._frames = _Prefetch(self._reader, PREFETCH_BYTES // (3 * self.width * self.height))

    def take(self, indices: np.ndarray) -> np.ndarray:
        """uint8 (n, H, W, 3) frames at ``indices`` (non-decreasing, from ``position - 1`` on).

        A frame may be taken again (upsampling, or two episodes of one file that share a
        boundary frame): the last decoded frame is kept.

        Raises:
            ValueError: an index lies before the last decoded frame, or past the video's end
                (the message gives the frame count decoded).
        """
        indices = np.asarray(indices, dtype=np.int64)
        out = np.empty((len(indices), *self.size, 3), np.uint8)
        shape = (self.height, self.width, 3)
        for k, index in enumerate(indices.tolist()):
            if index < self.position - (self._last is not None):
                raise ValueError(f"{self.path}: frames must be taken in increasing order; frame "
                                 f"{index} is before frame {self.position - 1}, already passed")
            while self.position <= index:
                try:
                    self._last = next(self._frames)
                except StopIteration:
                    raise ValueError(f"{self.path} has {self.position} frames, but frame {index} "
                                     "is needed: the video is shorter than its table (a "
                                     "truncated or re-encoded file?)") from None
                self.position += 1
            out[k] = resize_rgb(np.frombuffer(self._last, np.uint8).reshape(shape), self.size)
        return out

    def close(self) -> None:
        """Stop the decoder process."""
        self._frames.close()

    def __enter__(self) -> FrameStream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
