import json
import re

import numpy as np
import pytest
import torch

from tests.helpers.tokenizers import TINY_VQ, make_dataset, one_torch_thread
from worldmodels.tokenizer import VQVAE, VQConfig, load_tokenizer
from worldmodels.tokenizer_targets import format_target
from worldmodels.tokenizer_train import (
    TokenizerTrainConfig,
    TokenizerTrainer,
    train_tokenizer,
)

DATASET = "embscale/synthetic/random-v0"


@pytest.fixture(autouse=True)
def _one_thread():
    with one_torch_thread():
        yield


def _cfg(tmp_path, name="run", **kw):
    base = dict(dataset_id=DATASET, out_dir=str(tmp_path / name), steps=4, batch_size=4,
                eval_every=2, checkpoint_every=2, log_every=1, eval_frames=6, grid_frames=3,
                warmup_steps=1, tensorboard=False)
    base.update(kw)
    return TokenizerTrainConfig(**base)


def _vq(k=16):
    return VQConfig(tokens_per_frame=k, **TINY_VQ)


def _rows(path):
    return [json.loads(ln) for ln in (path / "metrics.jsonl").read_text().splitlines()]


def test_train_writes_run_directory(tmp_path):
    make_dataset(DATASET)
    cfg = _cfg(tmp_path, tensorboard=True)
    summary = train_tokenizer(cfg, _vq(), progress=False)
    out = tmp_path / "run"
    for name in ("config.json", "metrics.jsonl", "checkpoint.pt", "tokenizer.pt", "recon.png",
                 "summary.json"):
        assert (out / name).is_file(), name
    assert any((out / "tb").iterdir())
    rows = _rows(out)
    assert [r["step"] for r in rows if "train/loss" in r] == [1, 2, 3, 4]
    val = [r for r in rows if "val/psnr" in r]
    assert [r["step"] for r in val] == [2, 4]
    assert 0 < val[-1]["val/codebook_usage"] <= 1 and val[-1]["val/perplexity"] >= 1
    assert summary["step"] == 4 and summary["val/psnr"] == val[-1]["val/psnr"]
    tok = load_tokenizer(out)
    assert tok.sha256() == summary["tokenizer_sha256"]
    assert json.loads((out / "config.json").read_text())["vq"]["tokens_per_frame"] == 16


@pytest.mark.parametrize("restarts", [False, True])
def test_resume_continues_from_the_same_step(tmp_path, restarts):
    make_dataset(DATASET)
    # with a fast-decaying usage, unused codes are restarted on random rows (global torch RNG)
    vq = (lambda: VQConfig(tokens_per_frame=16, **{**TINY_VQ, "ema_decay": 0.5})) \
        if restarts else _vq
    full = TokenizerTrainer(_cfg(tmp_path, "full", steps=6), vq())
    full.train(progress=False)
    part = TokenizerTrainer(_cfg(tmp_path, "part", steps=6), vq())
    assert part.train(progress=False, stop_at=4)["stopped_early"]
    resumed = TokenizerTrainer(_cfg(tmp_path, "part", steps=6), vq(), resume=True)
    assert resumed.step == 4
    resumed.train(progress=False)
    rows = [r for r in _rows(tmp_path / "part") if "train/loss" in r]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert any(r["train/restarted_codes"] > 0 for r in rows[4:]) == restarts
    for (k, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values(),
                         strict=True):
        assert torch.allclose(a, b, atol=1e-6), k


def test_a_resumed_run_logs_the_same_train_means_and_counts_every_runs_seconds(tmp_path):
    # a row every 3 steps, a checkpoint every 2: the resume at step 4 falls inside the row of 4-6
    make_dataset(DATASET)
    cfg = dict(steps=6, log_every=3, checkpoint_every=2, eval_every=6)
    full = TokenizerTrainer(_cfg(tmp_path, "full", **cfg), _vq())
    full.train(progress=False)
    part = TokenizerTrainer(_cfg(tmp_path, "part", **cfg), _vq())
    first = part.train(progress=False, stop_at=4)
    resumed = TokenizerTrainer(_cfg(tmp_path, "part", **cfg), _vq(), resume=True)
    summary = resumed.train(progress=False)

    def train_rows(run):
        return [{k: v for k, v in r.items() if k.startswith("train/") or k == "step"}
                for r in _rows(tmp_path / run) if "train/loss" in r]

    assert [r["step"] for r in train_rows("part")] == [3, 6]
    for a, b in zip(train_rows("full"), train_rows("part"), strict=True):
        assert b == pytest.approx(a, rel=1e-5)
    assert summary["seconds"] > first["seconds"]  # the first run's seconds are counted too


def test_run_directory_errors(tmp_path):
    make_dataset(DATASET)
    train_tokenizer(_cfg(tmp_path, steps=2), _vq(), progress=False)
    with pytest.raises(FileExistsError, match="--resume"):
        TokenizerTrainer(_cfg(tmp_path, steps=2), _vq())
    with pytest.raises(ValueError, match="tokens_per_frame"):
        TokenizerTrainer(_cfg(tmp_path, steps=4), _vq(k=64), resume=True)
    TokenizerTrainer(_cfg(tmp_path, steps=2), _vq(), overwrite=True)


def test_frame_size_mismatch(tmp_path):
    make_dataset(DATASET, num_episodes=3, size=32)
    with pytest.raises(ValueError, match="has 32x32 frames but the tokenizer config is for 64x64"):
        TokenizerTrainer(_cfg(tmp_path), _vq())


def test_bad_config_values():
    with pytest.raises(ValueError, match="batch_size"):
        TokenizerTrainConfig(batch_size=0)
    with pytest.raises(ValueError, match="recon_loss"):
        TokenizerTrainConfig(recon_loss="perceptual")
    cfg = TokenizerTrainConfig(steps=100, warmup_steps=10, lr=1.0, min_lr_ratio=0.1)
    assert cfg.lr_at(0) == pytest.approx(0.1) and cfg.lr_at(10) == pytest.approx(1.0)
    assert cfg.lr_at(100) == pytest.approx(0.1)


def test_frame_cache_streams_when_the_split_does_not_fit():
    from worldmodels.tokenizer_data import FrameCache, held_out_frames, open_split

    make_dataset(DATASET, num_episodes=8)
    reader = open_split(DATASET, "train")
    full = FrameCache(reader, capacity=10**6)
    assert not full.streaming and full.size == reader.num_steps
    small = FrameCache(reader, capacity=20, seed=1)
    assert small.streaming and small.size == 20 and small.frames.shape == (20, 64, 64, 3)
    before = small.frames.copy()
    for _ in range(3):
        small.refresh()
    assert not (small.frames == before).all()
    gen = torch.Generator().manual_seed(0)
    assert small.sample(5, gen).shape == (5, 64, 64, 3)
    val = held_out_frames(open_split(DATASET, "val"), 4)
    assert 1 <= len(val) <= 4 and val.dtype.name == "uint8"


@pytest.mark.parametrize("dataset, psnr, usage, expected", [
    ("embscale/breakout/scripted-v1", 30.7, 0.58, "PSNR >= 30 dB.*30.70 dB met, usage 58% met"),
    ("embscale/breakout/scripted-v1", 29.9, 0.58, "29.90 dB NOT met, usage 58% met"),
    ("embscale/fetch-pick-place/scripted-v0", 26.1, 0.40, "PSNR >= 26 dB.*met, usage 40% NOT met"),
])
def test_summary_judges_the_k64_targets(dataset, psnr, usage, expected):
    summary = {"dataset_id": dataset, "tokens_per_frame": 64, "val/psnr": psnr,
               "val/codebook_usage": usage}
    assert re.search(expected, format_target(summary))
    assert "must rise over K = 16, 36, 64, 100, 256" in format_target(
        {**summary, "tokens_per_frame": 16})
    assert format_target({**summary, "dataset_id": DATASET}) is None


class _LosesTheBall(torch.nn.Module):
    """Stands in for a tokenizer whose reconstructions are exact except that the ball is gone."""

    def __init__(self):
        super().__init__()
        self.config = VQConfig(tokens_per_frame=16, codebook_size=4)

    def preprocess(self, frames):
        return VQVAE.preprocess(self, frames)

    @property
    def device(self):
        return torch.device("cpu")

    def encode(self, frames):
        self._frames = torch.as_tensor(frames)
        return torch.zeros(len(frames), 16, dtype=torch.long)

    def decode(self, ids):
        recon = self._frames.clone()
        recon[recon[..., 0] == 250] = 0  # the ball's pixels come back black
        return recon


def test_evaluate_reports_the_foreground_psnr_that_a_lost_ball_sinks():
    from worldmodels.tokenizer_train import evaluate

    frames = np.zeros((8, 64, 64, 3), np.uint8)
    frames[:, :10] = 120  # static wall
    for i in range(8):
        frames[i, 40:42, 4 * i:4 * i + 2] = 250  # a 2x2 ball that moves
    m = evaluate(_LosesTheBall(), frames, batch_size=3)
    # 4 of 4,096 pixels move; each lost ball pixel errs by 250 in 3 channels
    assert m["foreground_fraction"] == pytest.approx(4 / 4096)
    assert m["psnr_foreground"] == pytest.approx(10 * np.log10(255**2 / 250**2))
    assert m["psnr"] == pytest.approx(10 * np.log10(255**2 / (4 * 250**2 / 4096)))
    assert m["psnr"] - m["psnr_foreground"] > 30  # the frame PSNR hides the loss
    assert m["codes_used"] == 1
    static = np.repeat(frames[:1], 4, axis=0)  # nothing moves: no foreground PSNR
    assert evaluate(_LosesTheBall(), static)["psnr_foreground"] is None


def _streaming_cfg(tmp_path, name, **kw):
    return _cfg(tmp_path, name, steps=8, eval_every=100, checkpoint_every=4,
                max_cached_frames=30, refresh_every=1, **kw)


def test_resume_is_exact_when_frames_stream(tmp_path):
    make_dataset(DATASET)
    full = TokenizerTrainer(_streaming_cfg(tmp_path, "full"), _vq())
    assert full.cache.streaming
    full.train(progress=False)
    TokenizerTrainer(_streaming_cfg(tmp_path, "part"), _vq()).train(progress=False, stop_at=4)
    resumed = TokenizerTrainer(_streaming_cfg(tmp_path, "part"), _vq(), resume=True)
    resumed.train(progress=False)
    assert resumed.cache.state_dict() == full.cache.state_dict()
    assert np.array_equal(resumed.cache.frames, full.cache.frames)
    for (k, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values(),
                         strict=True):
        assert torch.equal(a, b), k


def test_frame_cache_state_rebuilds_the_ring():
    from worldmodels.tokenizer_data import FrameCache, open_split

    make_dataset(DATASET, num_episodes=8)
    reader = open_split(DATASET, "train")
    for refreshes in (0, 1, 13):  # 13 wraps the episode order and the ring several times
        cache = FrameCache(reader, capacity=20, seed=1)
        for _ in range(refreshes):
            cache.refresh()
        rebuilt = FrameCache(reader, capacity=20, seed=1, state=cache.state_dict())
        assert rebuilt.state_dict() == cache.state_dict()
        assert np.array_equal(rebuilt.frames, cache.frames)
        cache.refresh()
        rebuilt.refresh()
        assert np.array_equal(rebuilt.frames, cache.frames)
    with pytest.warns(UserWarning, match="another split, capacity or seed"):
        other = FrameCache(reader, capacity=20, seed=2, state=cache.state_dict())
    assert np.array_equal(other.frames, FrameCache(reader, capacity=20, seed=2).frames)


def test_resume_of_an_old_checkpoint_without_the_ring_warns(tmp_path):
    make_dataset(DATASET)
    TokenizerTrainer(_streaming_cfg(tmp_path, "run"), _vq()).train(progress=False, stop_at=4)
    ckpt = tmp_path / "run" / "checkpoint.pt"
    state = torch.load(ckpt, weights_only=True)
    del state["frame_cache"]
    torch.save(state, ckpt)
    with pytest.warns(UserWarning, match="predates saving the streamed-frame ring"):
        resumed = TokenizerTrainer(_streaming_cfg(tmp_path, "run"), _vq(), resume=True)
    assert resumed.step == 4 and resumed.train(progress=False)["step"] == 8


def test_resume_drops_a_truncated_metrics_line(tmp_path):
    make_dataset(DATASET)
    TokenizerTrainer(_cfg(tmp_path, steps=4), _vq()).train(progress=False, stop_at=2)
    metrics = tmp_path / "run" / "metrics.jsonl"
    with open(metrics, "a") as f:
        f.write('{"step": 3, "lr": 0.00')  # killed mid-append
    with pytest.warns(UserWarning, match="dropped a truncated last line"):
        resumed = TokenizerTrainer(_cfg(tmp_path, steps=4), _vq(), resume=True)
    assert [r["step"] for r in _rows(tmp_path / "run")] == [1, 2, 2]
    resumed.train(progress=False)
    assert [r["step"] for r in _rows(tmp_path / "run") if "train/loss" in r] == [1, 2, 3, 4]
    lines = metrics.read_text().splitlines()
    metrics.write_text("\n".join(lines[:1] + ["{oops"] + lines[1:]) + "\n")
    with pytest.raises(ValueError, match=r"metrics.jsonl:2 is not valid JSON"):
        TokenizerTrainer(_cfg(tmp_path, steps=4), _vq(), resume=True)


def test_each_step_gets_one_val_row(tmp_path):
    make_dataset(DATASET)
    cfg = _cfg(tmp_path, steps=6)
    stopped = TokenizerTrainer(cfg, _vq()).train(progress=False, stop_at=4)  # stops on an eval
    TokenizerTrainer(cfg, _vq(), resume=True).train(progress=False)
    again = TokenizerTrainer(cfg, _vq(), resume=True).train(progress=False)  # a finished run
    val = [r for r in _rows(tmp_path / "run") if "val/psnr" in r]
    assert [r["step"] for r in val] == [2, 4, 6]
    assert stopped["val/psnr"] == val[1]["val/psnr"]
    assert again["step"] == 6 and again["val/psnr"] == val[2]["val/psnr"]
    assert again["val/codebook_usage"] == val[2]["val/codebook_usage"]


def _tb_steps(run_dir, tag="train/loss"):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tb"))
    events.Reload()
    return [e.step for e in events.Scalars(tag)]


def test_tensorboard_drops_a_killed_runs_events_on_resume_and_the_old_run_on_overwrite(tmp_path):
    make_dataset(DATASET)
    cfg = dict(steps=6, tensorboard=True)
    part = TokenizerTrainer(_cfg(tmp_path, "part", **cfg), _vq())
    part.train(progress=False, stop_at=4)
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(tmp_path / "part" / "tb")) as killed:  # logged after the checkpoint
        killed.add_scalar("train/loss", 9.0, 5)
    train_tokenizer(_cfg(tmp_path, "part", **cfg), _vq(), resume=True, progress=False)
    assert _tb_steps(tmp_path / "part") == [1, 2, 3, 4, 5, 6]
    train_tokenizer(_cfg(tmp_path, "part", steps=2, tensorboard=True), _vq(), overwrite=True,
                    progress=False)
    assert _tb_steps(tmp_path / "part") == [1, 2]


def test_a_second_process_on_the_run_directory_is_refused(tmp_path):
    from offline_data.run_lock import DirectoryInUseError, DirLock

    make_dataset(DATASET)
    cfg = _cfg(tmp_path, steps=2)
    with DirLock(tmp_path / "run", "tokenizer run directory"):  # held as another process would
        with pytest.raises(DirectoryInUseError):
            train_tokenizer(cfg, _vq(), progress=False)
    train_tokenizer(cfg, _vq(), progress=False)
