"""Small runs without waste: validation placement, kept checkpoints, training-only throughput,
and runs extended by resuming with a larger budget."""

import json
import types

import pytest
import torch

import worldmodels.trainer as trainer_mod
from tests.helpers.token_shards import write_shards
from worldmodels.token_data import TokenDataSource
from worldmodels.token_model import TokenModel
from worldmodels.train_utils import is_val_step, next_val_step
from worldmodels.trainer import TrainConfig, Trainer, seed_everything


@pytest.fixture
def data(tmp_path):
    write_shards(tmp_path / "shards")
    return TokenDataSource(tmp_path / "shards", seq_len=3)


def _trainer(data, run_dir, **kw):
    seed_everything(0)
    model = TokenModel(data.model_config(n_layer=1, n_head=2, n_embd=16, task="wm"))
    cfg = dict(run_dir=str(run_dir), learning_rate=3e-3, warmup_steps=2, micro_batch_size=4,
               tensorboard=False, val_batches=2, max_steps=10)
    cfg.update(kw)
    return Trainer(model, data, TrainConfig(**cfg),
                   run_config={"model_kind": "token_model", "model_config": model.config.to_dict()})


def _metrics(run_dir):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(x).items() if k != "tokens_per_s"} for x in lines]


def test_validation_skips_the_first_steps_of_the_log_grid(data, tmp_path):
    assert [s for s in range(1, 101) if is_val_step(s, 5)] == [1, 10, 16, 26, 40, 64, 100]
    assert [next_val_step(s, 5) for s in (1, 2, 11, 17, 100, 101)] == [1, 10, 16, 26, 100, 159]
    _trainer(data, tmp_path / "run", max_steps=30).train()
    val_steps = [r["step"] for r in _metrics(tmp_path / "run") if "val/loss" in r]
    assert val_steps == [1, 10, 16, 26, 30]  # the final step always validates


def test_kept_checkpoints_are_written_once_and_hard_linked(data, tmp_path):
    run = tmp_path / "run"
    _trainer(data, run, max_steps=16, keep_checkpoints=True).train()
    ckpts = run / "checkpoints"
    kept = sorted(p.name for p in ckpts.glob("step_*.pt"))
    assert kept == ["step_00000001.pt", "step_00000010.pt", "step_00000016.pt"]
    # the last kept checkpoint is last.pt itself (one file, two names); earlier ones keep
    # their own step's weights after last.pt was replaced
    assert (ckpts / "step_00000016.pt").stat().st_ino == (ckpts / "last.pt").stat().st_ino
    steps = [torch.load(ckpts / k, weights_only=True)["step"] for k in kept]
    assert steps == [1, 10, 16]
    assert not list(ckpts.glob("*.tmp*"))


def test_tokens_per_s_times_only_the_training_steps(data, tmp_path, monkeypatch):
    clock = {"t": 0.0}
    monkeypatch.setattr(trainer_mod, "time", types.SimpleNamespace(
        perf_counter=lambda: clock["t"]))
    t = _trainer(data, tmp_path / "run", max_steps=12, checkpoint_every=1)
    train_step, evaluate, save = t._train_step, t.evaluate, t._save_checkpoint

    def timed(fn, seconds):
        def wrapper(*a, **k):
            clock["t"] += seconds
            return fn(*a, **k)
        return wrapper

    # a training step takes 1 s; a validation 50 s and a checkpoint 20 s, which must not count
    t._train_step, t.evaluate, t._save_checkpoint = (timed(train_step, 1.0), timed(evaluate, 50.0),
                                                     timed(save, 20.0))
    t.train()
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) >= 10 and {r["tokens_per_s"] for r in rows} == {t.inputs_per_update}


@pytest.mark.parametrize("budget", ["max_steps", "max_tokens"])
def test_extending_a_finished_run_equals_the_larger_budget_from_the_start(data, tmp_path,
                                                                         budget):
    per_step = 4 * 3 * 5  # windows x timesteps x (d_z + d_a)

    def limit(steps):
        if budget == "max_steps":
            return {"max_steps": steps}
        return {"max_steps": 0, "max_tokens": steps * per_step}

    full = tmp_path / "full"
    _trainer(data, full, **limit(40)).train()
    extended = tmp_path / "extended"
    assert _trainer(data, extended, **limit(16)).train().steps == 16  # 16 is a validation step
    assert _trainer(data, extended, **limit(26)).train().steps == 26
    assert _trainer(data, extended, **limit(40)).train().steps == 40
    assert _metrics(extended) == _metrics(full)
