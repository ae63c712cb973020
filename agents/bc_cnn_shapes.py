"""BC-CNN's shapes without torch: the CNN of a size and N counted from shapes alone.

The counts follow ``agents.bc_cnn_nets.FrameCNN`` and ``agents.bc_cnn.BCCNN`` layer by layer
without building a module, so a study can know a run's exact N before its dataset exists (a test
builds every ladder size and compares with ``num_params()``). N does not depend on the frame size:
the last stage is average-pooled to a fixed grid, and the frames are always RGB.

    >>> frame_cnn_params((4, 8, 8), pool=4, embd=32, block="impala")
    10384
    >>> bc_cnn_params(1, 16, seq_len=10, action_vocab_sizes=(4,), cnn=ladder_cnn(16))
    14452
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from worldmodels.presets import transformer_params

CNN_BLOCKS = ("impala", "convnext")
"""Block kinds of the CNN stages (see ``agents.bc_cnn_nets``)."""
DEFAULT_CNN_BLOCK = CNN_BLOCKS[0]
"""The block kind a BC-CNN uses unless told (Impala's residual 3x3 convs)."""

IMAGE_CHANNELS = 3
"""Channels of the CNN's input frames (RGB)."""


class CNNShape(NamedTuple):
    """The CNN fields of ``BCCNNConfig``."""

    channels: tuple[int, ...]  # width of each stage (each halves the resolution)
    pool: int  # the last stage is average-pooled to pool x pool
    embd: int  # CNN output embedding


PAPER_CNN = CNNShape(channels=(16, 32, 32), pool=4, embd=1024)
"""The paper's CNN (Appendix A.1: 1024-d embedding; about 0.6M parameters with Impala blocks)."""


def ladder_cnn(n_embd: int) -> CNNShape:
    """The small ladder's CNN, which scales with the transformer width ``n_embd``."""
    c = max(4, n_embd // 8)
    return CNNShape(channels=(c, 2 * c, 2 * c), pool=PAPER_CNN.pool, embd=2 * n_embd)


def _block_params(c: int, block: str) -> int:
    if block == "impala":  # two 3x3 convs with biases
        return 2 * (9 * c * c + c)
    # depthwise 7x7 (+bias), LayerNorm (2c), Linear(c, 4c), Linear(4c, c), layer scale (c)
    return (49 * c + c) + 2 * c + (4 * c * c + 4 * c) + (4 * c * c + c) + c


def frame_cnn_params(channels: Iterable[int], pool: int, embd: int,
                     block: str = DEFAULT_CNN_BLOCK) -> int:
    """Trainable parameters of ``FrameCNN(channels, pool, embd, block)``."""
    if block not in CNN_BLOCKS:
        raise ValueError(f"cnn_block={block!r}; choose one of {', '.join(CNN_BLOCKS)}")
    total, c_in = 0, IMAGE_CHANNELS
    for c in channels:
        total += 9 * c_in * c + c + 2 * _block_params(c, block)  # 3x3 conv to c, two blocks
        c_in = c
    return total + c_in * pool * pool * embd + embd  # linear layer to embd


def bc_cnn_params(n_layer: int, n_embd: int, seq_len: int, action_vocab_sizes: Iterable[int],
                  cnn: CNNShape = PAPER_CNN, cnn_block: str = DEFAULT_CNN_BLOCK,
                  bias: bool = True) -> int:
    """Exact N of a ``BCCNN``: CNN, projection to the width, transformer core, action heads.

    Args:
        n_layer: transformer blocks.
        n_embd: transformer width E.
        seq_len: the core's block size in timesteps (learned positions are counted).
        action_vocab_sizes: classes of each action dimension (one linear head over their sum).
        cnn: the CNN's stage widths, pool grid and embedding.
        cnn_block: ``"impala"`` or ``"convnext"``.
        bias: the transformer's ``GPTConfig.bias``.
    """
    heads = sum(int(v) for v in action_vocab_sizes)
    return (frame_cnn_params(cnn.channels, cnn.pool, cnn.embd, cnn_block)
            + cnn.embd * n_embd + n_embd  # proj
            + transformer_params(n_layer, n_embd, seq_len, vocab_size=0, bias=bias)
            + n_embd * heads + heads)


def stored_frame_bytes(frame_shape: Iterable[int], image_size: int | None = None) -> int:
    """Bytes per frame of BC-CNN's decoded training frames (``agents.frame_data``).

    Frames read at their own size stay uint8; frames read at another ``image_size`` are resized
    once and kept as float16 pixel values (``agents.bc_cnn.resize_frames``).

        >>> stored_frame_bytes((64, 64, 3)), stored_frame_bytes((64, 64, 3), image_size=32)
        (12288, 6144)
    """
    h, w, c = (int(x) for x in frame_shape)
    if image_size is None or (int(image_size), int(image_size)) == (h, w):
        return h * w * c
    return int(image_size) ** 2 * c * 2
