"""A run directory survives kill -9, a second trainer, changed data, damaged files and NaNs."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from offline_data.run_lock import DirectoryInUseError, DirLock
from scaling.cli import main as embscale
from tests.helpers.token_shards import write_shards
from worldmodels.run_metrics import strict_json
from worldmodels.token_data import TokenDataSource
from worldmodels.token_model import TokenModel
from worldmodels.trainer import NonFiniteLossError, TrainConfig, Trainer, seed_everything

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def shards(tmp_path):
    write_shards(tmp_path / "shards")
    return tmp_path / "shards"


def _trainer(shards, run_dir, model_cls=TokenModel, **kw):
    seed_everything(0)
    data = TokenDataSource(shards, seq_len=3)
    model = model_cls(data.model_config(n_layer=1, n_head=2, n_embd=16, task="wm"))
    cfg = dict(run_dir=str(run_dir), learning_rate=3e-3, warmup_steps=2, micro_batch_size=4,
               tensorboard=False, val_batches=2, max_steps=6)
    cfg.update(kw)
    return Trainer(model, data, TrainConfig(**cfg), run_config={
        "model_kind": "token_model", "model_config": model.config.to_dict()})


def _strict_records(run_dir):
    def refuse(name):
        raise AssertionError(f"metrics.jsonl holds {name}: not strict JSON")

    lines = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line, parse_constant=refuse) for line in lines]


def _train_argv(shards, run_dir, steps):
    # one thread everywhere: float sums differ between thread counts, and the killed run (a
    # subprocess) and the resumed and reference runs (in this process) must compute alike
    return ["-q", "train", "--task", "wm-token", "--size", "s10k", "--data", str(shards),
            "--run-dir", str(run_dir), "--steps", str(steps), "--seq-len", "3",
            "--micro-batch-size", "4", "--tokens-per-update", "0", "--no-tensorboard",
            "--checkpoint-every", "5", "--val-batches", "1", "--threads", "1"]


@pytest.fixture(autouse=True)
def _restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _wait_for(predicate, timeout=120.0, what="condition"):
    deadline = time.time() + timeout
    while not predicate():
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _env():
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def test_kill_9_mid_training_then_a_second_trainer_then_resume_gives_the_same_curve(
        shards, tmp_path, capsys):
    """Two trainers on one directory: the second is refused naming the first's pid; after the
    first is killed with SIGKILL its stale lock is taken over and the resumed curve is the
    uninterrupted one."""
    killed, full = tmp_path / "killed", tmp_path / "full"
    # The first trainer's budget is far out of reach: it is still running when the second one
    # starts, whatever the machine's load. Budgets may change on resume; the curve may not.
    proc = subprocess.Popen([sys.executable, "-m", "scaling.cli", *_train_argv(
        shards, killed, 10**6)], env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_for(lambda: (killed / "checkpoints" / "last.pt").is_file() or proc.poll() is not None,
                  what="the first checkpoint")
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert embscale(_train_argv(shards, killed, 10**6)) == 2  # the concurrent trainer
        err = capsys.readouterr().err
        assert f"in use by process {proc.pid}" in err and str(killed) in err
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
        proc.stderr.close()
    assert json.loads((killed / ".lock").read_text())["pid"] == proc.pid  # left behind: stale
    ckpt_step = torch.load(killed / "checkpoints" / "last.pt", weights_only=True)["step"]
    steps = ckpt_step + 12
    assert embscale(_train_argv(shards, killed, steps)) == 0  # recovers the stale lock, resumes
    assert embscale(_train_argv(shards, full, steps)) == 0
    drop = ("tokens_per_s",)
    resumed = [{k: v for k, v in r.items() if k not in drop} for r in _strict_records(killed)]
    reference = [{k: v for k, v in r.items() if k not in drop} for r in _strict_records(full)]
    assert resumed == reference and resumed[-1]["step"] == steps


def test_lock_refuses_a_second_holder_and_recovers_a_dead_ones(tmp_path, caplog):
    with DirLock(tmp_path / "run", "run directory"):
        with pytest.raises(DirectoryInUseError, match=rf"in use by process {os.getpid()}"):
            DirLock(tmp_path / "run", "run directory").acquire()
    # a lock file naming a process that no longer exists: taken over, with a warning
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "run" / ".lock").write_text(json.dumps({"pid": dead.pid}))
    with DirLock(tmp_path / "run", "run directory"):
        assert json.loads((tmp_path / "run" / ".lock").read_text())["pid"] == os.getpid()
    assert "stale lock" in caplog.text and str(dead.pid) in caplog.text


def test_resume_refuses_data_that_changed_under_the_same_path(shards, tmp_path):
    run = tmp_path / "run"
    _trainer(shards, run, max_steps=3).train()
    rewards = np.load(shards / "train" / "rewards.npy", mmap_mode="r+")
    rewards[:] = 1.0 - rewards[:]  # re-collected data: same layout and counts, other contents
    rewards.flush()
    del rewards
    with pytest.raises(ValueError, match="is not the data the run started on"):
        _trainer(shards, run, max_steps=6).train()
    assert json.loads((run / "config.json").read_text())["data_fingerprint"].startswith("sha256:")


def test_truncated_metrics_line_and_damaged_last_pt_are_recovered(shards, tmp_path):
    run, full = tmp_path / "run", tmp_path / "full"
    # 10 is a validation step of the log grid, so stopping there adds no point that a longer run
    # would not log too (a run's last step is always validated)
    _trainer(shards, run, max_steps=10, keep_checkpoints=True, checkpoint_every=2).train()
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 11, "tokens": 2')  # killed mid-write
    last = run / "checkpoints" / "last.pt"
    # a truncated last.pt: the trainer only ever replaces last.pt (atomically), and kept step
    # checkpoints are hard links to an earlier last.pt, so damage comes as a new, short file
    data = last.read_bytes()
    last.unlink()
    last.write_bytes(data[: len(data) // 3])
    with pytest.warns(UserWarning) as record:
        _trainer(shards, run, max_steps=16, keep_checkpoints=True, checkpoint_every=2).train()
    text = " ".join(str(w.message) for w in record)
    assert "truncated last line" in text and "step_00000010.pt" in text
    _trainer(shards, full, max_steps=16, keep_checkpoints=True, checkpoint_every=2).train()
    drop = ("tokens_per_s",)
    assert ([{k: v for k, v in r.items() if k not in drop} for r in _strict_records(run)]
            == [{k: v for k, v in r.items() if k not in drop} for r in _strict_records(full)])


def test_damaged_last_pt_without_step_checkpoints_is_a_clear_error(shards, tmp_path):
    run = tmp_path / "run"
    _trainer(shards, run, max_steps=2).train()
    (run / "checkpoints" / "last.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"last\.pt is not a readable checkpoint.*new --run-dir"):
        _trainer(shards, run, max_steps=4).train()


class _NaNValModel(TokenModel):
    """Trains normally; its held-out loss is NaN (a model that diverged on other windows)."""

    def compute_loss(self, batch):
        out = super().compute_loss(batch)
        if not self.training:
            return out._replace(scaling_loss=out.scaling_loss * float("nan"))
        return out


def test_nan_validation_loss_writes_no_checkpoint_and_logs_null(shards, tmp_path):
    run = tmp_path / "run"
    with pytest.raises(NonFiniteLossError, match=r"val/loss = nan at step 1.*no checkpoint"):
        _trainer(shards, run, model_cls=_NaNValModel, max_steps=6).train()
    assert not (run / "checkpoints" / "last.pt").exists()
    records = _strict_records(run)
    assert records[-1]["step"] == 1 and records[-1]["val/loss"] is None


def test_non_finite_parameters_are_never_checkpointed(shards, tmp_path):
    trainer = _trainer(shards, tmp_path / "run", max_steps=2)
    with torch.no_grad():
        next(trainer.model.parameters()).fill_(math.inf)
    with pytest.raises(NonFiniteLossError):
        trainer.train()
    assert not (tmp_path / "run" / "checkpoints" / "last.pt").exists()


@pytest.mark.parametrize("lr", [math.inf, math.nan, -1e-3, 0.0, 1e39])
def test_absurd_learning_rates_are_refused(lr):
    with pytest.raises(ValueError, match="learning_rate"):
        TrainConfig(learning_rate=lr, max_steps=1)


def test_strict_json_maps_non_finite_to_null():
    line = strict_json({"a": math.nan, "b": [1.0, -math.inf], "c": 2})
    assert json.loads(line) == {"a": None, "b": [1.0, None], "c": 2}


def test_budget_below_one_step_is_refused(shards, tmp_path):
    with pytest.raises(ValueError, match=r"--tokens 0\.001 is less than one optimizer step"):
        _trainer(shards, tmp_path / "run", max_steps=0, max_tokens=1e-3).train()
    shutil.rmtree(tmp_path / "run", ignore_errors=True)
