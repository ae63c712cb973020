"""What the model commands share: world-model options, thread setup, the simulator, MP4 files."""

from __future__ import annotations

import argparse
import os

from offline_data import argtypes as A
from offline_data.frame_size import env_size
from worldmodels.threads import add_threads_argument, apply_threads


def write_mp4(frames, path: str | os.PathLike, fps: int = 15, scale: int = 4) -> None:
    """Write uint8 frames (T, H, W, 3) as an H.264 MP4, enlarged ``scale`` times, atomically."""
    import tempfile
    from pathlib import Path

    import numpy as np
    from moviepy import ImageSequenceClip

    frames = np.asarray(frames, np.uint8)
    if scale > 1:
        frames = frames.repeat(scale, 1).repeat(scale, 2)
    # H.264 wants even sizes.
    frames = frames[:, : frames.shape[1] // 2 * 2, : frames.shape[2] // 2 * 2]
    clip = ImageSequenceClip(list(frames), fps=fps)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # ffmpeg picks the container from the suffix, so the temporary file keeps ".mp4".
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".mp4", dir=path.parent)
    os.close(fd)
    try:
        clip.write_videofile(tmp, codec="libx264", audio=False, logger=None)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        clip.close()


def add_wm_args(p: argparse.ArgumentParser) -> None:
    """The options naming a world model, its tokenizer and how it imagines."""
    p.add_argument("--world-model", required=True, metavar="CKPT",
                   help="WM-Token checkpoint (<run>/checkpoints/last.pt)")
    p.add_argument("--tokenizer", required=True, metavar="PATH",
                   help="the VQ-VAE checkpoint the world model's tokens came from")
    p.add_argument("--tokens", metavar="DIR", default=None,
                   help="token shards for burn-in episodes (default: the model's training data)")
    p.add_argument("--split", default="test", help="shard split to start from (held out)")
    p.add_argument("--burn-in", type=A.positive_int, default=4, help="real frames before imagining")
    p.add_argument("--temperature", type=A.nonnegative_float, default=1.0,
                   help="sampling temperature of image tokens (0: greedy)")
    p.add_argument("--reward", choices=("expected", "argmax"), default="expected",
                   help="imagined reward: expected reward sign, or its most likely value")
    p.add_argument("--seed", type=A.nonnegative_int, default=0, help="random seed (>= 0)")
    p.add_argument("--device", default="auto",
                   help="torch device of the world model and tokenizer: cpu, cuda, cuda:N or "
                        "auto (CUDA when available)")
    add_mismatch_flag(p)
    add_threads_argument(p)


def add_mismatch_flag(p: argparse.ArgumentParser) -> None:
    """``--allow-tokenizer-mismatch``."""
    p.add_argument("--allow-tokenizer-mismatch", action="store_true",
                   help="experts only: go on (with a warning) when the tokenizer or token "
                        "shards are not the ones the model was trained on (their sha256 "
                        "differs); results are then usually meaningless")


def threaded(func):
    """``func`` run after torch's CPU threads are set from ``--threads``."""
    def run(args) -> int:
        apply_threads(args.threads)
        return func(args)
    return run


def simulator_from_args(args, num_envs: int):
    """The world model of ``add_wm_args``' options as a simulator of ``num_envs`` envs."""
    from worldmodels.simulator import SimulatorConfig, load_simulator  # torch

    cfg = SimulatorConfig(burn_in=args.burn_in, temperature=args.temperature,
                          reward=args.reward)
    return load_simulator(args.world_model, args.tokenizer, args.tokens, args.split, num_envs,
                          cfg, seed=args.seed, device=args.device,
                          allow_tokenizer_mismatch=args.allow_tokenizer_mismatch)


def add_size_argument(p: argparse.ArgumentParser) -> None:
    """``--size``: the frame size the env renders, for models trained on other than its default."""
    p.add_argument("--size", type=env_size, default=None,
                   help="frame size of the env: one side (32) or HEIGHTxWIDTH (72x120); give "
                        "the size the model was trained on when it is not the env's default")


def env_kwargs(args) -> dict:
    """The env's keyword arguments from ``--size`` (none when it is not given)."""
    return {"size": args.size} if args.size is not None else {}
