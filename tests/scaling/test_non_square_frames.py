"""Non-square frames end to end: import a 72x120 video, tokenize on a 3:5 grid, train WM-Token."""

import csv
import json
import shlex

import imageio_ffmpeg
import numpy as np
import pytest

from offline_data.datasets import load_dataset
from scaling.cli import main as embscale
from scaling.study.presets import get_preset
from worldmodels.tokenizer import VQVAE, VQConfig


def _write_gameplay(folder, height, width, frames=30, fps=20, episodes=10):
    """``episodes`` (video, controller log) pairs (10: the 80/10/10 split has a val episode)."""
    for e in range(episodes):
        _write_pair(folder, f"run{e}", height, width, frames, fps, shift=5 * e)


def _write_pair(folder, stem, height, width, frames, fps, shift):
    folder.mkdir(parents=True, exist_ok=True)
    writer = imageio_ffmpeg.write_frames(str(folder / f"{stem}.mp4"), (width, height), fps=fps,
                                         codec="libx264rgb", quality=None, pix_fmt_out="rgb24",
                                         macro_block_size=1,
                                         output_params=["-qp", "0", "-preset", "ultrafast"])
    writer.send(None)
    for i in range(frames):
        f = np.zeros((height, width, 3), np.uint8)
        f[: height // 6] = (200, 80, 40)
        x = (shift + 7 * i) % (width - 12)
        f[height // 2: height // 2 + 10, x: x + 12] = 250  # a block moving right
        writer.send(f)
    writer.close()
    with open(folder / f"{stem}.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["timestamp", "fire", "steer"])
        for k, t in enumerate(np.arange(0, frames / fps, 0.013)):
            w.writerow([f"{t:.4f}", int(k % 9 == 0), f"{np.sin(t):.3f}"])


@pytest.mark.slow
def test_72x120_video_to_a_wm_token_step(tmp_path, capsys):
    _write_gameplay(tmp_path / "logs", 90, 150)  # neither the target size nor square
    assert embscale(["data", "import", "gameplay", "--source", str(tmp_path / "logs"),
                     "--size", "72x120", "--rate", "10", "--dataset-id",
                     "embscale/wide/human-v0", "--no-progress"]) == 0
    ds = load_dataset("embscale/wide/human-v0")
    assert ds.observation_space.shape == (72, 120, 3)
    tok = tmp_path / "tok"
    # 60 tokens per frame tile 72x120 as a 6x10 grid (3:5, like the paper's 540 = 18x30).
    assert embscale(["tokenizer", "train", "--dataset", "embscale/wide/human-v0",
                     "--tokens-per-frame", "60", "--codebook-size", "16", "--code-dim", "4",
                     "--channels", "8", "--max-channels", "8", "--steps", "4", "--batch-size",
                     "4", "--eval-every", "4", "--eval-frames", "8", "--out", str(tok),
                     "--no-progress"]) == 0
    assert embscale(["tokenizer", "encode", "--tokenizer", str(tok), "--dataset",
                     "embscale/wide/human-v0", "--out", str(tmp_path / "tokens"),
                     "--batch-size", "16", "--no-progress"]) == 0
    capsys.readouterr()
    run = tmp_path / "runs" / "wm"
    assert embscale(["train", "--task", "wm-token", "--size", "s10k", "--data",
                     str(tmp_path / "tokens"), "--steps", "1", "--seq-len", "2",
                     "--micro-batch-size", "2", "--tokens-per-update", "248",
                     "--warmup-steps", "1", "--run-dir", str(run), "--no-tensorboard"]) == 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 1 and np.isfinite(rows[-1]["train/loss"])
    assert rows[-1]["tokens"] == 248  # 2 windows x 2 steps x (60 image + 2 action tokens)


def test_540_tokens_tile_3_to_5_frames():
    cfg = VQConfig(image_height=144, image_width=240, tokens_per_frame=540, codebook_size=16,
                   code_dim=4, channels=4, max_channels=8)
    assert cfg.grid == (18, 30)
    model = VQVAE(cfg).eval()
    frames = np.random.default_rng(0).integers(0, 256, (2, 144, 240, 3), dtype=np.uint8)
    ids = model.encode(frames)
    assert ids.shape == (2, 540)
    assert model.decode(ids).shape == (2, 144, 240, 3)


@pytest.mark.parametrize("name", ["paper-wm-token-540", "paper-bc-token-540"])
def test_540_presets_name_an_import_command_that_works(name, tmp_path, monkeypatch, capsys):
    from scaling.study.steps import validate_spec

    spec = get_preset(name)
    text = spec.description
    start = text.index("`embscale data import") + 1
    command = shlex.split(text[start:text.index("`", start)])
    assert command[:4] == ["embscale", "data", "import", "gameplay"]
    assert spec.dataset.id in command and "144x240" in command
    _write_gameplay(tmp_path / "logs", 144, 240, frames=10, episodes=2)
    monkeypatch.chdir(tmp_path)  # the description's source folder is logs/
    assert embscale(command[1:] + ["--no-progress"]) == 0
    h, w = load_dataset(spec.dataset.id).observation_space.shape[:2]
    assert VQConfig(image_height=h, image_width=w,
                    tokens_per_frame=spec.tokenizer.tokens_per_frame).grid == (18, 30)
    validate_spec(spec)  # the dataset is there, the sizes and budgets check out
