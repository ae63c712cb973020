"""The tasks the suite pre-trains, one registry entry each: what data, how many inputs, which model.

Paper Section 3 trains three families on the same data: WM-Token (a world model over image and
action tokens, loss on the image tokens), BC-Token (behaviour cloning over the same tokens, loss
on the action tokens) and BC-CNN (behaviour cloning from frames through a CNN, one input per
timestep). Section 5.1's character-level language model is the fourth. Code asks the entry what
a task does instead of comparing its name:

    >>> TASKS["bc-cnn"].data, TASKS["bc-token"].policy, TASKS["wm-token"].title
    ('frames', True, 'WM-Token')
    >>> from offline_data.tokens import TokenLayout
    >>> layout = TokenLayout(tokens_per_frame=16, image_vocab=512, action_vocab_sizes=(4,))
    >>> TASKS["wm-token"].inputs_per_step(layout), TASKS["bc-cnn"].inputs_per_step(layout)
    (17, 1)
    >>> TASKS["wm-token"].exact_params("s10k", layout, 10), TASKS["bc-cnn"].exact_params(
    ...     "s10k", layout, 10)
    (14288, 14452)

N is counted from the size's shape, the token layout and the context alone: no model is built and
no dataset is opened. :meth:`Task.exact_params` is the N of the model :func:`build` makes (BC-CNN's
CNN, projection and action heads included; WM-Token's reward and termination heads are not part
of N). The reference, :func:`model_params`, builds the model and counts it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents.bc_cnn_shapes import (
    DEFAULT_CNN_BLOCK,
    PAPER_CNN,
    CNNShape,
    bc_cnn_params,
    ladder_cnn,
)
from offline_data.tokens import HEADER_NAME, TokenLayout
from worldmodels import presets
from worldmodels.token_data import TokenDataSource

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Task:
    """One pre-training task.

    Attributes:
        name: the task's name on the command line and in specs (``wm-token``).
        title: its name in reports and figures (``WM-Token``).
        data: what it reads: ``tokens`` (a token shard directory), ``frames`` (a Minari dataset)
            or ``text`` (a text file, Section 5.1).
        supervised: what the loss is computed on.
        policy: True when the model predicts actions (a policy for loss vs return).
        world_model: True when the model predicts frames (a simulator for loss vs quality).
        model_kind: ``model_kind`` recorded in the run's ``config.json``.
        builder: ``builder(task, size, data, preset, seq_len, **model_options)`` returning
            ``(model, data_source, model_config)``; None for a task trained by its own script.
    """

    name: str
    title: str
    data: str
    supervised: str
    policy: bool
    world_model: bool
    model_kind: str
    builder: Callable[..., tuple[Any, Any, Any]] | None = None

    @property
    def reads_tokens(self) -> bool:
        """True when the task trains on token shards (needs a tokenizer)."""
        return self.data == "tokens"

    def inputs_per_step(self, layout: TokenLayout | None = None) -> int:
        """Transformer inputs per timestep, the unit of D: d_z + d_a for token tasks, else 1."""
        if not self.reads_tokens:
            return 1
        if layout is None:
            raise ValueError(f"{self.name} counts d_z + d_a inputs per timestep; pass the token "
                             "layout of its shards")
        return layout.tokens_per_step

    def exact_params(self, size: str, layout: TokenLayout, seq_len: int,
                     cnn_block: str = DEFAULT_CNN_BLOCK) -> int:
        """Exact N of the model :func:`build` makes for ``size``, from shapes alone.

        Equal to ``build(...)[0].num_params()`` with the same layout, ``seq_len`` and
        ``cnn_block``; the frame size does not enter BC-CNN's N (its CNN ends in a fixed pool).

        Args:
            size: a size name of ``worldmodels.presets``.
            layout: the token layout; BC-CNN uses only its action vocabularies.
            seq_len: timesteps per window.
            cnn_block: BC-CNN's CNN blocks, "impala" or "convnext".
        """
        shape = presets.get_size(size)
        if self.reads_tokens:
            return presets.transformer_params(shape.n_layer, shape.n_embd,
                                              seq_len * layout.tokens_per_step, layout.vocab_size)
        if self.data == "frames":
            return bc_cnn_params(shape.n_layer, shape.n_embd, seq_len, layout.action_vocab_sizes,
                                 cnn=_cnn_shape(size), cnn_block=cnn_block)
        raise ValueError(f"{self.name} is trained by its own script; count its built model")


def _build_token_model(task: Task, size: str, data: str, preset, seq_len: int,
                       aux_heads: bool = True, image_size: int | None = None,
                       dropout: float = 0.0, cnn_block: str = DEFAULT_CNN_BLOCK):
    """WM-Token / BC-Token over the token shards at ``data``."""
    from worldmodels.token_model import TokenModel  # torch

    shape = presets.get_size(size)
    source = TokenDataSource(data, seq_len=seq_len)
    world_model = task.world_model
    heads = aux_heads and world_model
    cfg = source.model_config(shape.n_layer, shape.n_head, shape.n_embd,
                              task="wm" if world_model else "bc", dropout=dropout,
                              reward_head=heads, termination_head=heads)
    if preset.tokens_per_frame and preset.tokens_per_frame != source.layout.tokens_per_frame:
        logger.warning("preset %s was tuned for tokens_per_frame=%d; these shards have %d",
                       preset.name, preset.tokens_per_frame, source.layout.tokens_per_frame)
    return TokenModel(cfg), source, cfg


def _cnn_shape(size: str) -> CNNShape:
    """BC-CNN's CNN at ``size``: the paper's (0.6M) for paper sizes, else the ladder's."""
    return ladder_cnn(presets.get_size(size).n_embd) if size in presets.LADDER else PAPER_CNN


def _build_bc_cnn(task: Task, size: str, data: str, preset, seq_len: int,
                  aux_heads: bool = True, image_size: int | None = None, dropout: float = 0.0,
                  cnn_block: str = DEFAULT_CNN_BLOCK):
    """BC-CNN over the frames of the Minari dataset ``data``."""
    from agents.bc_cnn import BCCNN  # torch
    from agents.frame_data import FrameDataSource

    if Path(str(data)).is_dir() and (Path(str(data)) / HEADER_NAME).is_file():
        raise ValueError(f"{data} is a token shard; bc-cnn reads frames: pass the Minari "
                         "dataset id (e.g. embscale/breakout/scripted-v2)")
    shape = presets.get_size(size)
    kwargs: dict = {"cnn_block": cnn_block}
    if image_size or preset.image_size:
        kwargs["image_size"] = image_size or preset.image_size
    source = FrameDataSource(data, seq_len=seq_len, image_size=kwargs.get("image_size"))
    cfg = source.model_config(shape.n_layer, shape.n_head, shape.n_embd,
                              paper_cnn=_cnn_shape(size) == PAPER_CNN, **kwargs)
    cfg.gpt = type(cfg.gpt)(**{**cfg.gpt.to_dict(), "dropout": dropout})
    return BCCNN(cfg), source, cfg


TASKS: dict[str, Task] = {t.name: t for t in (
    Task("wm-token", "WM-Token", data="tokens", supervised="image tokens", policy=False,
         world_model=True, model_kind="token_model", builder=_build_token_model),
    Task("bc-token", "BC-Token", data="tokens", supervised="action tokens", policy=True,
         world_model=False, model_kind="token_model", builder=_build_token_model),
    Task("bc-cnn", "BC-CNN", data="frames", supervised="actions", policy=True,
         world_model=False, model_kind="bc_cnn", builder=_build_bc_cnn),
    # Section 5.1: trained by scaling.mechanisms.section51 (its sizes are CHAR_SIZES).
    Task("char-lm", "Char-LM", data="text", supervised="characters", policy=False,
         world_model=False, model_kind="char-lm"),
)}
"""Every task by name."""

# The tasks ``embscale train`` and study specs accept (those with a model builder here).
TRAINABLE: tuple[str, ...] = tuple(name for name, t in TASKS.items() if t.builder is not None)

MODEL_OPTIONS = ("seq_len", "aux_heads", "image_size", "dropout", "cnn_block")
"""Options of :func:`build` that ``train_model`` and sweep ``overrides`` accept besides
``TrainConfig`` fields."""


def get_task(name: str) -> Task:
    """The task called ``name``; ``ValueError`` naming the trainable tasks otherwise."""
    task = TASKS.get(name)
    if task is None or task.builder is None:
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(TRAINABLE)}")
    return task


def build(task: str, size: str, data: str, seq_len: int | None = None, preset: str | None = None,
          aux_heads: bool = True, image_size: int | None = None, dropout: float = 0.0,
          cnn_block: str = DEFAULT_CNN_BLOCK):
    """Build ``(model, data_source, preset, run_config)`` for a task and size name.

    Args:
        task: 'wm-token', 'bc-token' or 'bc-cnn'.
        size: a size name of ``worldmodels.presets`` ("s100k", "27M", ...).
        data: token shard directory (token tasks) or Minari dataset id (bc-cnn).
        seq_len: timesteps per window (default: the preset's).
        preset: task preset name (default: the ladder for small sizes, else the paper's).
        aux_heads: train reward and termination heads with WM-Token (for world-model envs).
        image_size: BC-CNN frame size (default: the preset's, else the dataset's).
        dropout: transformer dropout.
        cnn_block: BC-CNN's CNN blocks, "impala" or "convnext" (see agents.bc_cnn_nets).
    """
    t = get_task(task)
    presets.get_size(size)
    p = presets.get_task_preset(preset) if preset else presets.preset_for(task, size)
    if p.task not in ("any", task):
        raise ValueError(f"preset {p.name!r} is for task {p.task!r}, not {task!r}; pick a "
                         f"{task} preset")
    seq_len = int(seq_len or p.seq_len)
    model, source, cfg = t.builder(t, size, data, p, seq_len, aux_heads=aux_heads,
                                   image_size=image_size, dropout=dropout, cnn_block=cnn_block)
    run_config = {"task": task, "size": size, "preset": p.name, "model_kind": t.model_kind,
                  "model_config": cfg.to_dict()}
    return model, source, p, run_config


def model_params(task: str, size: str, data: str, **model_options: Any) -> int:
    """Exact N of ``size`` for ``task`` on ``data`` (embeddings, CNN and action heads included).

    Builds the model (and opens the data for its vocabulary): the reference that
    :meth:`Task.exact_params` equals without either.
    """
    return build(task, size, data, **model_options)[0].num_params()
