"""Model sizes and training presets: the paper's (Appendix A, Tables 2-7) and a small CPU ladder.

Sizes are GPT shapes keyed by name: the paper's Table 2 ("2M" ... "894M"), shapes of our own for
its RT-1 models ("rt1-0.08M" ... "rt1-0.99M"; Table 7 gives only their N), and a ladder of small
models for CPU studies ("s3k" ... "s2M"). Task presets hold the sequence length, tokens per update
and learning rate per size of each of the paper's experiments, plus ``ladder`` for the small sizes.

N depends on the vocabulary and context (the embeddings are counted), so a size's N is computed
for a token layout with :func:`param_count`; docs/presets.md tabulates it beside the paper's N.

Example:
    >>> get_size("27M").n_embd
    512
    >>> get_task_preset("wm-token-540").learning_rates["4M"]
    0.005
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SizePreset:
    """A transformer shape."""

    name: str
    """registry key, e.g. "27M" or "s100k" """
    n_layer: int
    """transformer blocks"""
    n_head: int
    """attention heads"""
    n_embd: int
    """residual width; MLP is 4x"""
    paper_params: float | None = None
    """N as reported by the paper (None for our own sizes)"""
    source: str = ""
    """where the shape comes from"""


def _sizes() -> dict[str, SizePreset]:
    table2 = {"2M": (3, 3, 180, 2e6), "4M": (4, 4, 240, 4e6), "11M": (6, 6, 360, 11e6),
              "15M": (4, 4, 512, 15e6), "27M": (8, 8, 512, 27e6), "52M": (10, 10, 640, 52e6),
              "110M": (15, 12, 768, 110e6), "206M": (16, 16, 1024, 206e6),
              "894M": (23, 14, 1792, 894e6)}
    # Our shapes for Table 7's RT-1 models (N near the paper's at d_z=64, 4 x 500 action bins).
    rt1 = {"rt1-0.08M": (1, 2, 12, 0.08e6), "rt1-0.2M": (2, 2, 28, 0.2e6),
           "rt1-0.28M": (2, 4, 40, 0.28e6), "rt1-0.54M": (3, 4, 64, 0.54e6),
           "rt1-0.99M": (4, 4, 96, 0.99e6)}
    # CPU ladder: N near the name at d_z=16, V_o=256, one 4-way action, 10 steps of context.
    ladder = {"s3k": (1, 1, 8), "s10k": (1, 2, 16), "s30k": (2, 2, 28), "s100k": (3, 4, 48),
              "s300k": (4, 4, 72), "s1M": (6, 6, 120), "s2M": (8, 8, 144)}
    out = {}
    for name, (layer, head, embd, n) in table2.items():
        out[name] = SizePreset(name, layer, head, embd, n, "paper Table 2")
    for name, (layer, head, embd, n) in rt1.items():
        out[name] = SizePreset(name, layer, head, embd, n, "ours, for paper Table 7")
    for name, (layer, head, embd) in ladder.items():
        out[name] = SizePreset(name, layer, head, embd, None, "ours, CPU ladder")
    return out


SIZE_PRESETS: dict[str, SizePreset] = _sizes()
"""Every size by name (treat as read-only)."""

LADDER = ("s3k", "s10k", "s30k", "s100k", "s300k", "s1M", "s2M")
"""The small CPU ladder, smallest first."""


def get_size(name: str) -> SizePreset:
    """The size called ``name``; ``ValueError`` listing every size otherwise."""
    try:
        return SIZE_PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown model size {name!r}; choose one of "
                         f"{', '.join(SIZE_PRESETS)}") from None


@dataclass(frozen=True)
class TaskPreset:
    """Training hyperparameters of one experiment family."""

    name: str
    """registry key, e.g. "wm-token-540" """
    task: str
    """'wm-token', 'bc-token' or 'bc-cnn'"""
    seq_len: int
    """timesteps per training window"""
    tokens_per_update: int
    """D per optimizer step (items per update for BC-CNN)"""
    learning_rates: dict[str, float] = field(default_factory=dict)
    """constant learning rate per size name"""
    tokens_per_frame: int | None = None
    """d_z the preset was tuned for (None: any)"""
    warmup_steps: int = 100
    """linear warmup steps"""
    micro_batch_size: int = 16
    """windows per forward pass per process (memory knob; accumulation reaches tokens_per_update)"""
    image_size: int | None = None
    """frame size for BC-CNN (pixels)"""
    source: str = ""
    """paper table"""
    per_size_tokens_per_update: dict[str, int] = field(default_factory=dict)
    """overrides of tokens_per_update for some sizes"""

    def learning_rate(self, size: str) -> float:
        """Learning rate for ``size``; ``ValueError`` listing this preset's sizes otherwise."""
        if size not in self.learning_rates:
            raise ValueError(f"preset {self.name!r} has no learning rate for size {size!r}; its "
                             f"sizes are {', '.join(self.learning_rates)} (or pass --lr)")
        return self.learning_rates[size]

    def update_tokens(self, size: str) -> int:
        """Tokens per update for ``size``."""
        return self.per_size_tokens_per_update.get(size, self.tokens_per_update)


_LADDER_LR = {"s3k": 5e-3, "s10k": 5e-3, "s30k": 5e-3, "s100k": 4e-3, "s300k": 3e-3, "s1M": 2e-3,
              "s2M": 1.5e-3}
# BC-CNN's small CNNs (4-9 channels in the first stage) stall at the action marginal at the
# ladder's rates: on the default Breakout data s30k stayed at the marginal to the end in two of
# three seeds at 5e-3 and left it in all three at 2e-3 (docs/presets.md).
_LADDER_CNN_LR = {size: round(0.4 * lr, 6) for size, lr in _LADDER_LR.items()}
# BC-Token's updates hold few action targets (80 at 1,360 tokens), and at the ladder's rates its
# larger sizes learnt slower than at half of them in 1e7-token runs on 98k Breakout frames
# (s300k at every point of its curve, ending at 0.813 against 0.768 on the test split; s100k
# ending at 0.790 against 0.775), while s10k and s30k hardly changed (docs/presets.md). The
# paper's BC-Token-540 rates (Table 5) are likewise lower than WM-Token-540's (Table 4).
_LADDER_BC_TOKEN_LR = {size: round(0.5 * lr, 6) for size, lr in _LADDER_LR.items()}


def _task_presets() -> dict[str, TaskPreset]:
    presets = [
        TaskPreset("wm-token-256", "wm-token", 10, 522_240,
                   {"15M": 7e-4, "27M": 7e-4, "52M": 7e-4, "110M": 7e-4, "206M": 5.7e-4,
                    "894M": 2.8e-4}, tokens_per_frame=256, source="paper Table 3",
                   # "2M" in the paper; 768 windows of 2,720 tokens
                   per_size_tokens_per_update={"894M": 2_088_960}),
        TaskPreset("wm-token-540", "wm-token", 10, 533_760,
                   {"4M": 5e-3, "11M": 1e-3, "27M": 1e-3, "52M": 1e-3, "110M": 5e-4,
                    "206M": 5e-4}, tokens_per_frame=540, source="paper Table 4"),
        TaskPreset("bc-token-540", "bc-token", 10, 533_760,
                   {"2M": 5e-4, "4M": 5e-4, "11M": 1e-4, "27M": 1e-4}, tokens_per_frame=540,
                   source="paper Table 5"),
        # Table 6 names BC-CNN sizes by their N with the CNN (2M, 3M, 10M, 26M, 51M); the
        # transformer shapes are Table 2's 2M, 4M, 11M, 27M, 52M.
        TaskPreset("bc-cnn", "bc-cnn", 10, 2_560,
                   {"2M": 3e-4, "4M": 3e-4, "11M": 3e-4, "27M": 3e-4, "52M": 3e-4},
                   image_size=128, source="paper Table 6"),
        TaskPreset("rt1", "wm-token", 2, 34_000,
                   {"rt1-0.08M": 1e-2, "rt1-0.2M": 5e-3, "rt1-0.28M": 4e-3,
                    "rt1-0.54M": 2.7e-3, "rt1-0.99M": 2e-3}, source="paper Table 7"),
        # Ours: the CPU ladder. Learning rates follow Table 7's trend for small models, at a
        # smaller batch.
        TaskPreset("ladder", "any", 10, 4_096, dict(_LADDER_LR), warmup_steps=20,
                   micro_batch_size=16, source="ours"),
        # BC-Token's loss covers only d_a of every d_z + d_a tokens (1 in 17 at d_z=16), so an
        # update of the ladder's 4,096 tokens holds 240 action targets; on a CPU budget the
        # number of updates is what limits it: 8 windows of 10 steps at d_z=16 per update.
        TaskPreset("ladder-bc-token", "bc-token", 10, 1_360, dict(_LADDER_BC_TOKEN_LR),
                   warmup_steps=20, micro_batch_size=8, source="ours"),
        # BC-CNN counts one item per timestep: 32 windows of 10 frames per update.
        TaskPreset("ladder-cnn", "bc-cnn", 10, 320, dict(_LADDER_CNN_LR), warmup_steps=20,
                   micro_batch_size=16, source="ours"),
    ]
    return {p.name: p for p in presets}


TASK_PRESETS: dict[str, TaskPreset] = _task_presets()
"""Every task preset by name (treat as read-only)."""

DEFAULT_PRESET = {"wm-token": ("wm-token-256", "wm-token-540", "rt1"),
                  "bc-token": ("bc-token-540",), "bc-cnn": ("bc-cnn",)}
"""Paper presets tried in order for a paper size when none is named."""


def get_task_preset(name: str) -> TaskPreset:
    """The task preset called ``name``; ``ValueError`` listing every preset otherwise."""
    try:
        return TASK_PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of "
                         f"{', '.join(TASK_PRESETS)}") from None


def preset_for(task: str, size: str) -> TaskPreset:
    """The preset a size trains with by default: the ladder for small sizes, else the paper's."""
    get_size(size)
    if size in _LADDER_LR:
        return TASK_PRESETS[{"bc-cnn": "ladder-cnn", "bc-token": "ladder-bc-token"}.get(
            task, "ladder")]
    for name in DEFAULT_PRESET.get(task, ()):
        if size in TASK_PRESETS[name].learning_rates:
            return TASK_PRESETS[name]
    raise ValueError(f"no preset trains task {task!r} at size {size!r}; name one with --preset "
                     f"and set --lr, or pick a size of {', '.join(DEFAULT_PRESET.get(task, ()))}")


def param_count(size: str | SizePreset, vocab_size: int, block_size: int) -> int:
    """N of a token GPT of this size (tied embeddings, learned positions, biases).

    >>> param_count("s10k", vocab_size=260, block_size=170)
    10192
    """
    s = get_size(size) if isinstance(size, str) else size
    return transformer_params(s.n_layer, s.n_embd, block_size, vocab_size)


def transformer_params(n_layer: int, n_embd: int, block_size: int, vocab_size: int = 0,
                       bias: bool = True) -> int:
    """Exact N of ``worldmodels.gpt``'s ``GPT`` (``vocab_size >= 1``) or ``TransformerCore`` (0).

    Counted from the ``GPTConfig`` fields alone, layer by layer: token embedding (tied with the
    output head, counted once), learned positions, blocks, final layer norm.

    >>> transformer_params(1, 16, block_size=170, vocab_size=260)  # GPT of s10k
    10192
    >>> transformer_params(1, 16, block_size=10, bias=False)  # TransformerCore, no biases
    3280
    """
    E, b = n_embd, int(bias)
    # attention 4E^2 (+4E biases), MLP 8E^2 (+5E), two layer norms 2E (+2E)
    per_block = 12 * E * E + 2 * E + b * 11 * E
    return n_layer * per_block + (vocab_size + block_size) * E + (1 + b) * E
