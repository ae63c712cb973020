"""Model sizes for the study: the size names a task knows and N of each size."""

from __future__ import annotations

from scaling.cli.train import model_params
from scaling.study.adapters.datasets import action_vocab
from scaling.study.paths import dataset_exists, tokens_dir
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


def size_params(task: str, size: str, spec) -> int:
    """N of ``size`` for ``task`` in this study: exact once the data exists, else estimated.

    Token tasks are counted with ``worldmodels.presets.param_count`` over the study's vocabulary
    and context (exact for the transformer; auxiliary heads add a little). BC-CNN needs its data
    for an exact count; before that its transformer alone is counted.
    """
    if task == "bc-cnn" and dataset_exists(spec.dataset.id):
        return int(model_params(task, size, spec.dataset.id))
    if task != "bc-cnn" and (tokens_dir(spec) / "header.json").is_file():
        return int(model_params(task, size, str(tokens_dir(spec))))
    vocab = action_vocab(spec)
    t = spec.task(task)
    p = presets.get_task_preset(t.preset) if t and t.preset else presets.preset_for(task, size)
    seq_len = p.seq_len
    if task == "bc-cnn":
        return presets.param_count(size, vocab_size=sum(vocab), block_size=seq_len)
    return presets.param_count(size, vocab_size=spec.tokenizer.codebook_size + sum(vocab),
                               block_size=seq_len * (spec.tokenizer.tokens_per_frame + len(vocab)))
