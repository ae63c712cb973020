"""Read video files forward once with the ffmpeg binary of ``imageio-ffmpeg`` (no decoding library).

Example:
    with FrameStream("episode_000000.mp4", size=(96, 96)) as video:
        frames = video.take(np.arange(0, 100, 3))  # uint8 (34, 96, 96, 3)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from offline_data.frame_size import resize_rgb


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
                    self._last = next(self._reader)
                except StopIteration:
                    raise ValueError(f"{self.path} has {self.position} frames, but frame {index} "
                                     "is needed: the video is shorter than its table (a "
                                     "truncated or re-encoded file?)") from None
                self.position += 1
            out[k] = resize_rgb(np.frombuffer(self._last, np.uint8).reshape(shape), self.size)
        return out

    def close(self) -> None:
        """Stop the decoder process."""
        self._reader.close()

    def __enter__(self) -> FrameStream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
