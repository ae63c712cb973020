"""Does a tokenizer keep the Breakout ball? Ball recall of reconstructions on held-out frames.

Run: ``.venv/bin/python benchmarks/bench_ball_reconstruction.py --tokenizer RUN_DIR
--dataset embscale/breakout/scripted-v2`` (several ``--tokenizer`` runs may be given; each is
measured on the dataset it names with ``--dataset``, or on the one in its ``config.json``).

Reads held-out frames (``--split``, default ``test``: episodes neither the tokenizer's training
nor its validation saw) spread evenly over the split, encodes them to tokens and decodes them.
The ball is found by colour in the real frame: pixels whose red channel exceeds green by more
than ``--threshold`` (the ball is (200, 72, 72), so 128 at full colour) inside the open
playfield, between the bottom of the wall of bricks and the top of the paddle and inside the
side walls (the bricks and the paddle share the ball's colour, so the ball is not looked for
there). The box is computed from the dataset's own env kwargs (``size``, ``crop``, ``dilate``),
so frames cropped or resized differently are measured on the same part of the screen. A frame
*contains the ball* when it has such pixels; its reconstruction *shows the ball* when it has
pixels of the same colour test within ``--radius`` pixels (Chebyshev) of the real ones.

Printed per tokenizer: frames read, frames with a ball, the share of those whose reconstruction
shows it (recall, with a Wilson 95% interval), the share of frames without a ball whose
reconstruction has ball-coloured pixels in the playfield anyway (false balls), and held-out PSNR.
The baseline is the target of the default study: a recall of at least 0.90 at its tokens per
frame (and the 0.00 of the 16-token tokenizers that the earlier frames gave, docs/tokenizer.md).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import scipy.ndimage as nd
import torch

# Breakout in screen pixels: the wall of bricks ends at row 92, the paddle starts at row 189,
# the side walls end at column 7 and start at column 152.
BRICKS_BOTTOM, PADDLE_TOP, WALL_LEFT, WALL_RIGHT = 93, 189, 8, 152
SCREEN_HW = (210, 160)


def playfield_box(size: int, crop: tuple[int, int, int, int] | None,
                  dilate: tuple[int, int]) -> tuple[slice, slice]:
    """Rows and columns of a ``size`` x ``size`` frame that show only the open playfield.

    The screen box between the bricks and the paddle, shrunk by the dilation's reach (a dilated
    brick or paddle grows by about half its window) and mapped through the crop and the resize.
    """
    top, bottom, left, right = crop if crop is not None else (0, SCREEN_HW[0], 0, SCREEN_HW[1])
    sy, sx = size / (bottom - top), size / (right - left)
    w, h = dilate
    r0 = math.ceil((BRICKS_BOTTOM + h // 2 - top) * sy) + 1
    r1 = math.floor((PADDLE_TOP - h // 2 - top) * sy) - 1
    c0 = math.ceil((WALL_LEFT + w // 2 - left) * sx) + 1
    c1 = math.floor((WALL_RIGHT - w // 2 - left) * sx) - 1
    return slice(max(r0, 0), min(r1, size)), slice(max(c0, 0), min(c1, size))


def ball_pixels(frames: np.ndarray, box: tuple[slice, slice], threshold: int) -> np.ndarray:
    """bool (B, H, W): ball-coloured pixels (red - green > threshold) of uint8 frames in box."""
    f = frames.astype(np.int16)
    mask = np.zeros(f.shape[:3], bool)
    region = f[:, box[0], box[1]]
    mask[:, box[0], box[1]] = (region[..., 0] - region[..., 1]) > threshold
    return mask


def wilson(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score 95% interval of a proportion ``hits / n``."""
    if n == 0:
        return float("nan"), float("nan")
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def env_kwargs(dataset) -> dict:
    """The env kwargs recorded in a Minari dataset's env spec (empty when there is none)."""
    spec = dataset.spec.env_spec
    return dict(spec.kwargs) if spec is not None else {}


@torch.no_grad()
def measure(tokenizer_path: str, dataset_id: str, split: str, num_frames: int, threshold: int,
            radius: int, batch_size: int = 256) -> dict:
    """Ball recall, false balls and PSNR of one tokenizer on held-out frames of a dataset."""
    from envs.images import sprite_dilation
    from worldmodels.tokenizer import load_tokenizer
    from worldmodels.tokenizer_data import held_out_frames, open_split

    reader = open_split(dataset_id, split)
    frames = held_out_frames(reader, num_frames)
    kw = env_kwargs(reader.dataset)
    size = frames.shape[1]
    crop = tuple(kw["crop"]) if kw.get("crop") is not None else None
    dilate = kw.get("dilate", "auto")
    if dilate == "auto":
        screen = SCREEN_HW if crop is None else (crop[1] - crop[0], crop[3] - crop[2])
        dilate = sprite_dilation(screen, size)
    elif dilate == "none":
        dilate = (1, 1)
    box = playfield_box(size, crop, tuple(dilate))
    model = load_tokenizer(tokenizer_path)
    recon = np.concatenate([model.decode(model.encode(frames[i:i + batch_size])).cpu().numpy()
                            for i in range(0, len(frames), batch_size)])
    real = ball_pixels(frames, box, threshold)
    shown = ball_pixels(recon, box, threshold)
    has_ball = real.any((1, 2))
    near = np.ones((2 * radius + 1, 2 * radius + 1), bool)
    hits = sum(bool((shown[i] & nd.binary_dilation(real[i], near)).any())
               for i in np.flatnonzero(has_ball))
    n_ball = int(has_ball.sum())
    false = int(shown[~has_ball].any((1, 2)).sum())
    mse = np.mean((frames.astype(np.float64) - recon.astype(np.float64)) ** 2)
    return {"tokenizer": tokenizer_path, "dataset": dataset_id, "split": split,
            "tokens_per_frame": model.config.tokens_per_frame,
            "codebook_size": model.config.codebook_size, "frames": len(frames),
            "frames_with_ball": n_ball, "ball_shown": hits,
            "recall": hits / n_ball if n_ball else float("nan"),
            "recall_ci95": wilson(hits, n_ball), "frames_without_ball": len(frames) - n_ball,
            "false_balls": false,
            "false_rate": false / (len(frames) - n_ball) if len(frames) > n_ball else 0.0,
            "psnr": float(10 * np.log10(255.0 ** 2 / max(mse, 1e-12))),
            "playfield_box": [box[0].start, box[0].stop, box[1].start, box[1].stop]}


def _dataset_of(run: str) -> str | None:
    cfg = Path(run) / "config.json"
    if cfg.is_file():
        return json.loads(cfg.read_text()).get("train", {}).get("dataset_id") or \
            json.loads(cfg.read_text()).get("dataset_id")
    return None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokenizer", required=True, nargs="+",
                   help="tokenizer run directories or tokenizer.pt files")
    p.add_argument("--dataset", default=None,
                   help="Minari dataset id (default: the one in each run's config.json)")
    p.add_argument("--split", default="test", help="held-out split (test or val)")
    p.add_argument("--frames", type=int, default=2000, help="held-out frames read at most")
    p.add_argument("--threshold", type=int, default=40,
                   help="red minus green above which a pixel is ball-coloured (ball: 128)")
    p.add_argument("--radius", type=int, default=2, help="pixels between real and shown ball")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    results = []
    print(f"{'tokenizer':<44} {'K':>4} {'V':>5} {'frames':>6} {'w/ ball':>7} {'shown':>6} "
          f"{'recall':>6} {'95% CI':>13} {'false':>6} {'PSNR':>5}")
    for run in args.tokenizer:
        dataset = args.dataset or _dataset_of(run)
        if dataset is None:
            p.error(f"--dataset is needed: {run} has no config.json naming its dataset")
        r = measure(run, dataset, args.split, args.frames, args.threshold, args.radius)
        results.append(r)
        lo, hi = r["recall_ci95"]
        print(f"{run[-44:]:<44} {r['tokens_per_frame']:>4} {r['codebook_size']:>5} "
              f"{r['frames']:>6} {r['frames_with_ball']:>7} {r['ball_shown']:>6} "
              f"{r['recall']:>6.3f} [{lo:.3f},{hi:.3f}] {r['false_rate']:>6.3f} "
              f"{r['psnr']:>5.1f}")
    print("target: recall >= 0.90 at the default study's tokens per frame")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
