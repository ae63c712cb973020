"""Model sizes for the study: the size names a task knows and N of each size."""

from __future__ import annotations

from agents.bc_cnn_shapes import DEFAULT_CNN_BLOCK
from offline_data.tokens import HEADER_NAME, TokenLayout, TokenShards
from scaling.study.adapters.datasets import action_vocab
from scaling.study.paths import tokens_dir
from scaling.tasks import TASKS
from worldmodels import presets


def known_sizes(task: str) -> list[str]:
    """Size names that ``task`` can train with a preset (ladder or the paper's tables)."""
    out = []
    for name in presets.SIZE_PRESETS:
        try:
            presets.preset_for(task, name)
        except ValueError:
            continue
        out.append(name)
    return out


def study_layout(spec) -> TokenLayout:
    """The study's token layout from its spec, before the shards exist.

    d_z and V_o come from the tokenizer spec, the action vocabularies from the dataset (or the
    env it is collected from).
    """
    return TokenLayout(tokens_per_frame=spec.tokenizer.tokens_per_frame,
                       image_vocab=spec.tokenizer.codebook_size,
                       action_vocab_sizes=action_vocab(spec))


def size_params(task: str, size: str, spec) -> int:
    """Exact N of ``size`` for ``task`` in this study, counted from shapes (no model is built).

    :meth:`scaling.tasks.Task.exact_params` over the layout of the study's token shards when they
    exist (their header), else the layout the spec implies (:func:`study_layout`; BC-CNN needs
    only its action vocabularies), and the context of the task's preset: what
    :func:`scaling.tasks.model_params` gives with that preset on the study's data. The task's
    ``overrides`` of ``seq_len`` and ``cnn_block`` apply, as they do to the model it trains.
    """
    t = TASKS[task]
    header = tokens_dir(spec) / HEADER_NAME
    layout = (TokenShards.open(header.parent).layout if t.reads_tokens and header.is_file()
              else study_layout(spec))
    ts = spec.task(task)
    overrides = ts.overrides if ts else {}
    return t.exact_params(size, layout, study_seq_len(spec, task, size),
                          cnn_block=overrides.get("cnn_block", DEFAULT_CNN_BLOCK))


def study_seq_len(spec, task: str, size: str) -> int:
    """Timesteps per window of ``task`` at ``size``: its ``seq_len`` override, else its preset's."""
    ts = spec.task(task)
    p = presets.get_task_preset(ts.preset) if ts and ts.preset else presets.preset_for(task, size)
    return int((ts.overrides if ts else {}).get("seq_len", p.seq_len))
