"""The tokenizer's targets on held-out episodes, and how a run's summary reads against them.

``embscale tokenizer train`` prints :func:`format_summary` and :func:`format_target`;
``benchmarks/bench_tokenizer.py`` judges its sweep with :func:`judge_target`.
"""

from __future__ import annotations

from typing import Any

from offline_data.datasets import FETCH_DATASET_ID

# The targets on held-out episodes: PSNR rises with tokens per frame over
# TARGET_SWEEP_K, and at TARGET_K the PSNR reaches PSNR_TARGETS_DB[dataset] with more than
# MIN_CODEBOOK_USAGE of the codebook in use.
TARGET_SWEEP_K = (16, 36, 64, 100, 256)
TARGET_K = 64
# The Breakout target was set on the whole-screen frames of scripted-v1 (embscale/Breakout-v0);
# the cropped, dilated frames of the newer default have no measured target yet.
PSNR_TARGETS_DB = {"embscale/breakout/scripted-v1": 30.0, FETCH_DATASET_ID: 26.0}
MIN_CODEBOOK_USAGE = 0.5


def format_summary(summary: dict[str, Any]) -> str:
    """Human-readable summary of a tokenizer run."""
    v = summary["codebook_size"]
    return (
        f"tokenizer {summary['tokenizer_id']} on {summary['dataset_id']}: "
        f"{summary['tokens_per_frame']} tokens/frame, step {summary['step']}/{summary['steps']}"
        f"{' (time limit)' if summary['stopped_early'] else ''}, {summary['seconds']:.0f} s, "
        f"{summary['frames_per_s']:.0f} frames/s\n"
        f"  held-out PSNR {summary['val/psnr']:.2f} dB over {summary['val_frames']} frames"
        f"{_foreground_text(summary)}; codebook usage {summary['val/codes_used']}/{v} "
        f"({100 * summary['val/codebook_usage']:.0f}%); perplexity {summary['val/perplexity']:.1f}"
    )


def _foreground_text(summary: dict[str, Any]) -> str:
    fg = summary.get("val/psnr_foreground")
    if fg is None:
        return ""
    return (f" (foreground, the {100 * summary['val/foreground_fraction']:.1f}% of pixels that "
            f"move: {fg:.2f} dB)")


def judge_target(summary: dict[str, Any], psnr_target: float | None = None
                 ) -> tuple[float, bool, bool] | None:
    """``(PSNR target, PSNR met, codebook usage met)`` for a run, or None without a target.

    Args:
        summary: a run's summary (``summary.json``).
        psnr_target: PSNR target in dB; default ``PSNR_TARGETS_DB[summary["dataset_id"]]``.
    """
    target = psnr_target if psnr_target is not None else \
        PSNR_TARGETS_DB.get(summary["dataset_id"])
    if target is None:
        return None
    return (target, summary["val/psnr"] >= target,
            summary["val/codebook_usage"] > MIN_CODEBOOK_USAGE)


def format_target(summary: dict[str, Any], psnr_target: float | None = None) -> str | None:
    """One line judging a run against the K=64 targets, or None if its dataset has none.

    Args:
        summary: a run's summary (``summary.json``).
        psnr_target: PSNR target in dB; default ``PSNR_TARGETS_DB[summary["dataset_id"]]``.
    """
    judged = judge_target(summary, psnr_target)
    if judged is None:
        return None
    target, psnr_ok, usage_ok = judged
    head = f"target at K={TARGET_K}: PSNR >= {target:.0f} dB, codebook usage > " \
           f"{MIN_CODEBOOK_USAGE:.0%}"
    if summary["tokens_per_frame"] != TARGET_K:
        return (f"  {head} (this run has K={summary['tokens_per_frame']}; PSNR must rise over "
                f"K = {', '.join(map(str, TARGET_SWEEP_K))}: check with "
                "benchmarks/bench_tokenizer.py --runs)")
    return (f"  {head}: PSNR {summary['val/psnr']:.2f} dB {'met' if psnr_ok else 'NOT met'}, "
            f"usage {summary['val/codebook_usage']:.0%} {'met' if usage_ok else 'NOT met'}")
