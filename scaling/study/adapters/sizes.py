"""Model sizes for the study: the size names a task knows and N of each size."""

from __future__ import annotations

from offline_data.tokens import TokenLayout
from scaling.study.adapters.datasets import action_vocab
from scaling.study.paths import dataset_exists, tokens_dir
from scaling.tasks import TASKS, model_params
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
    """N of ``size`` for ``task`` in this study: exact once the data exists, else on paper.

    With its data (token shards, or BC-CNN's dataset) the model is built and counted
    (:func:`scaling.tasks.model_params`); before that the transformer alone is counted over the
    study's vocabulary and context (:meth:`scaling.tasks.Task.paper_params`).
    """
    t = TASKS[task]
    data = str(tokens_dir(spec)) if t.reads_tokens else spec.dataset.id
    if (t.reads_tokens and (tokens_dir(spec) / "header.json").is_file()) or (
            not t.reads_tokens and dataset_exists(spec.dataset.id)):
        return int(model_params(task, size, data))
    ts = spec.task(task)
    p = presets.get_task_preset(ts.preset) if ts and ts.preset else presets.preset_for(task, size)
    return t.paper_params(size, study_layout(spec), p.seq_len)
