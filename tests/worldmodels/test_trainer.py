import doctest
import json
import math
import os
import socket

import pytest
import torch

import worldmodels.trainer as trainer_mod
from tests.helpers.token_shards import write_shards
from worldmodels.token_data import TokenDataSource
from worldmodels.token_model import TokenModel
from worldmodels.trainer import NonFiniteLossError, TrainConfig, Trainer, seed_everything


@pytest.fixture
def data(tmp_path):
    write_shards(tmp_path / "shards")
    return TokenDataSource(tmp_path / "shards", seq_len=3)


def _trainer(data, run_dir, task="wm", n_embd=16, callbacks=None, model_cls=TokenModel, **kw):
    seed_everything(0)
    extra = {"dropout": kw.pop("dropout")} if "dropout" in kw else {}
    model = model_cls(data.model_config(n_layer=1, n_head=2, n_embd=n_embd, task=task, **extra))
    cfg = dict(run_dir=str(run_dir), learning_rate=3e-3, warmup_steps=2, micro_batch_size=4,
               tensorboard=False, val_batches=2, max_steps=10)
    cfg.update(kw)
    return Trainer(model, data, TrainConfig(**cfg),
                   run_config={"model_kind": "token_model",
                               "model_config": model.config.to_dict()}, callbacks=callbacks)


def _metrics(run_dir, drop=("tokens_per_s",)):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(x).items() if k not in drop} for x in lines]


def test_log_step_doctest():
    import worldmodels.train_utils as utils_mod

    result = doctest.testmod(utils_mod)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("task,steps", [("wm", 50), ("bc", 25)])
def test_loss_falls_and_metrics_are_complete(data, tmp_path, task, steps):
    run = tmp_path / "run"
    result = _trainer(data, run, task=task, n_embd=32, max_steps=steps, learning_rate=1e-2,
                      micro_batch_size=8, tensorboard=(task == "wm")).train()
    rows = _metrics(run, drop=())
    first, last = rows[0], rows[-1]
    assert {"step", "tokens", "flops", "params", "train/loss", "train/loss_mean", "lr",
            "tokens_per_s", "epoch"} <= set(first)
    assert last["step"] == result.steps == steps and "val/loss" in last
    assert last["flops"] == 6 * last["params"] * last["tokens"]
    assert last["tokens"] == steps * 8 * 3 * (4 + 1)
    recent = sum(r["train/loss"] for r in rows[-3:]) / 3
    assert recent < 0.7 * first["train/loss"]
    assert last["val/loss"] < 0.6 * first["train/loss"]
    # log-spaced: every step early, sparser later, ~20 per decade
    steps_logged = [r["step"] for r in rows]
    assert steps_logged == [s for s in range(1, steps + 1) if s == steps
                            or trainer_mod.is_log_step(s, 20) or trainer_mod.is_log_step(s, 5)]
    assert steps_logged[:10] == list(range(1, 11)) and 14 not in steps_logged
    assert json.loads((run / "config.json").read_text())["params"] == last["params"]
    assert (run / "checkpoints" / "last.pt").is_file()
    if task == "wm":
        assert any(p.name.startswith("events") for p in (run / "tb").iterdir())


def test_kill_and_resume_gives_the_same_metrics(data, tmp_path):
    full = tmp_path / "full"
    _trainer(data, full, max_steps=24, checkpoint_every=11).train()

    def crash_at_14(step, record):
        if step == 14:
            raise KeyboardInterrupt  # as if killed after step 14 (last checkpoint at 11)

    killed = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        _trainer(data, killed, max_steps=24, checkpoint_every=11, callbacks=[crash_at_14]).train()
    assert _metrics(killed)[-1]["step"] == 13
    assert torch.load(killed / "checkpoints" / "last.pt", weights_only=True)["step"] == 11
    # what a kill during a write leaves: half a checkpoint and half a config beside the real ones
    (killed / "checkpoints" / ".last.pt.k1ll3d_x.tmp").write_bytes(b"PK\x03\x04 half")
    (killed / ".config.json.abcdefgh.tmp").write_text("{")
    result = _trainer(data, killed, max_steps=24, checkpoint_every=11).train()
    assert result.steps == 24
    assert _metrics(killed) == _metrics(full)
    assert not list(killed.rglob("*.tmp"))  # the resumed run removed them


@pytest.mark.parametrize("device", [
    "cpu", pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(
        not torch.cuda.is_available(), reason="needs CUDA")])])
def test_resume_with_dropout_continues_the_same_masks(data, tmp_path, device):
    # Dropout draws from the CPU generator on a CPU and from the device's generator on a GPU:
    # the checkpoint carries both, so a resumed run draws the masks it would have drawn.
    kw = dict(max_steps=12, checkpoint_every=6, dropout=0.3, device=device)
    _trainer(data, tmp_path / "full", **kw).train()

    def crash_at_9(step, record):
        if step == 9:
            raise KeyboardInterrupt  # killed after step 9; the last checkpoint is step 6's

    with pytest.raises(KeyboardInterrupt):
        _trainer(data, tmp_path / "cut", callbacks=[crash_at_9], **kw).train()
    torch.rand(5, device=device)  # the resuming process's own draws must not matter
    _trainer(data, tmp_path / "cut", **kw).train()
    assert _metrics(tmp_path / "cut") == _metrics(tmp_path / "full")


def test_rerunning_a_finished_run_reports_its_losses(data, tmp_path):
    first = _trainer(data, tmp_path / "run").train()
    again = _trainer(data, tmp_path / "run").train()
    assert again.steps == first.steps == 10
    assert again.train_loss == first.train_loss and again.val_loss == first.val_loss
    assert math.isfinite(again.train_loss) and again.val_loss is not None


def test_resume_from_another_config_is_refused(data, tmp_path):
    run = tmp_path / "run"
    _trainer(data, run, max_steps=2).train()
    with pytest.raises(ValueError, match="another config.*learning_rate"):
        _trainer(data, run, max_steps=4, learning_rate=1e-4).train()
    # a bigger budget is fine: the run continues
    assert _trainer(data, run, max_steps=3).train().steps == 3
    with pytest.raises(FileExistsError, match="already holds a run"):
        _trainer(data, run, max_steps=3, resume=False).train()


class _Exploding(TokenModel):
    calls = 0

    def compute_loss(self, batch):
        out = super().compute_loss(batch)
        _Exploding.calls += 1
        if _Exploding.calls >= 5:
            nan = out.loss * float("nan")
            return out._replace(loss=nan, scaling_loss=nan.detach())
        return out


def test_every_seed_is_scored_on_the_same_held_out_windows(data, tmp_path):
    a = _trainer(data, tmp_path / "a", seed=0)
    b = _trainer(data, tmp_path / "b", seed=3)
    val_a, val_b = next(a.val_loader.epoch_batches(0)), next(b.val_loader.epoch_batches(0))
    assert torch.equal(torch.as_tensor(val_a.tokens), torch.as_tensor(val_b.tokens))
    # the training order does follow the seed
    assert not torch.equal(torch.as_tensor(a.train_loader.batch_at(0).tokens),
                           torch.as_tensor(b.train_loader.batch_at(0).tokens))


def test_nan_loss_stops_with_step_and_keeps_last_good_checkpoint(data, tmp_path):
    run = tmp_path / "run"
    _Exploding.calls = 0
    t = _trainer(data, run, model_cls=_Exploding, checkpoint_every=2, val_batches=0)
    with pytest.raises(NonFiniteLossError, match=r"step 5 .*last good checkpoint.*learning rate"):
        t.train()
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["step"] == 4
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())


def test_budget_stops_and_infinite_data_warning(data, tmp_path):
    per_update = 4 * 3 * 5
    t = _trainer(data, tmp_path / "run", max_steps=0, max_tokens=7 * per_update - 1,
                 val_batches=0)
    assert t.total_steps() == 7
    # 40 episodes x 24 frames x 5 tokens = 4800 train tokens; > 4 passes warns
    with pytest.warns(UserWarning, match="infinite-data regime"):
        _trainer(data, tmp_path / "long", max_steps=90, micro_batch_size=16, val_batches=0,
                 log_points_per_decade=50).train()
    t = _trainer(data, tmp_path / "acc", tokens_per_update=3 * per_update)
    assert t.accum_steps == 3 and t.inputs_per_update == 3 * per_update
    flops = _trainer(data, tmp_path / "f", max_steps=0, max_flops=1e9)
    assert flops.total_steps() == math.ceil(1e9 / (6 * flops.num_params * per_update))


def test_config_errors():
    with pytest.raises(ValueError, match="budget"):
        TrainConfig()
    with pytest.raises(ValueError, match="learning_rate"):
        TrainConfig(max_steps=1, learning_rate=0)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world, port, shard_path, run_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world),
                      RANK=str(rank), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    data = TokenDataSource(shard_path, seq_len=3)
    _trainer(data, run_dir, micro_batch_size=2, max_steps=4, tokens_per_update=2 * 4 * 15,
             device="cpu").train()
    torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_ddp_two_cpu_processes_match_single_process(data, tmp_path):
    # global batch 8 windows per step: DDP 2 ranks x 2 windows x 2 accumulation steps,
    # single process 4 windows x 2 accumulation steps
    single = tmp_path / "single"
    _trainer(data, single, micro_batch_size=4, max_steps=4, tokens_per_update=8 * 15).train()
    ddp = tmp_path / "ddp"
    torch.multiprocessing.spawn(_ddp_worker, args=(2, _free_port(), data.path, str(ddp)),
                                nprocs=2, join=True)
    a = torch.load(single / "checkpoints" / "last.pt", weights_only=True)["model"]
    b = torch.load(ddp / "checkpoints" / "last.pt", weights_only=True)["model"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-4)
    ma, mb = _metrics(single), _metrics(ddp)
    assert [r["tokens"] for r in ma] == [r["tokens"] for r in mb]
    for ra, rb in zip(ma, mb, strict=True):
        assert ra["train/loss"] == pytest.approx(rb["train/loss"], rel=1e-5)
        assert ("val/loss" in ra) == ("val/loss" in rb)
        if "val/loss" in ra:
            assert ra["val/loss"] == pytest.approx(rb["val/loss"], rel=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_bf16_training_runs_and_resumes(data, tmp_path):
    run = tmp_path / "run"
    result = _trainer(data, run, max_steps=6, device="cuda").train()
    assert math.isfinite(result.train_loss) and result.steps == 6
    assert _trainer(data, run, max_steps=8, device="cuda").train().steps == 8


def test_progress_logs_every_tenth_off_a_terminal(caplog):
    import logging

    from worldmodels.train_utils import Progress

    log = logging.getLogger("progress-test")
    with caplog.at_level(logging.INFO, logger="progress-test"):
        p = Progress(20, desc="env steps", log=log)
        for _ in range(20):
            p.update(1)
        Progress(0, log=log).update(5)  # an empty total logs nothing (and does not hang)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "env steps 2/20" and lines[-1] == "env steps 20/20" and len(lines) == 10


def test_learning_rate_warms_up_linearly_then_stays_constant(data, tmp_path):
    t = _trainer(data, tmp_path / "r", max_steps=4, learning_rate=1e-2)  # warmup_steps=2
    t.train()
    assert [r["lr"] for r in _metrics(tmp_path / "r")] == pytest.approx([5e-3, 1e-2, 1e-2, 1e-2])
    assert [g["lr"] for g in t.optimizer.param_groups] == pytest.approx([1e-2] * len(
        t.optimizer.param_groups))  # what the optimizer used, not only what was logged


def test_two_accumulated_micro_batches_equal_one_batch_of_both(data, tmp_path):
    # micro-batches 0 and 1 of 4 windows hold batch 0 of 8 windows; every window has the same
    # number of targets, so the mean of the two means is the mean over the 8
    whole = _trainer(data, tmp_path / "whole", max_steps=3, micro_batch_size=8)
    parts = _trainer(data, tmp_path / "parts", max_steps=3, micro_batch_size=4,
                     tokens_per_update=8 * 3 * 5)
    assert (whole.accum_steps, parts.accum_steps) == (1, 2)
    whole.train()
    parts.train()
    for key in ("train/loss", "grad_norm"):
        assert [r[key] for r in _metrics(tmp_path / "parts")] == pytest.approx(
            [r[key] for r in _metrics(tmp_path / "whole")], rel=1e-5)
    for (name, a), b in zip(whole.model.state_dict().items(), parts.model.state_dict().values(),
                            strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5), name  # Adam: 3 steps of 3e-3
