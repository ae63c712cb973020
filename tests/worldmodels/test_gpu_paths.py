"""The trainer's device paths: CPU stays eager in fp32 with fused AdamW (its losses move only by
float rounding); CUDA compiles by default, fuses AdamW and trains under bf16 autocast (skipped
without CUDA).
"""

import pytest
import torch

from tests.helpers.token_shards import write_shards
from worldmodels.gpt import GPT, GPTConfig, configure_optimizer
from worldmodels.token_data import TokenDataSource
from worldmodels.token_model import TokenModel
from worldmodels.trainer import TrainConfig, Trainer, seed_everything

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _trainer(tmp_path, device, **kw):
    write_shards(tmp_path / "shards")
    data = TokenDataSource(tmp_path / "shards", seq_len=3)
    seed_everything(0)
    model = TokenModel(data.model_config(n_layer=1, n_head=2, n_embd=16, task="wm"))
    cfg = TrainConfig(run_dir=str(tmp_path / "run"), micro_batch_size=4, tensorboard=False,
                      val_batches=1, max_steps=3, device=device, **kw)
    return Trainer(model, data, cfg, run_config={"model_kind": "token_model",
                                                 "model_config": model.config.to_dict()})


def _compiled(trainer) -> bool:
    return hasattr(trainer.loss_module, "_orig_mod")  # torch.compile's wrapper


def test_cpu_default_is_eager_fp32_with_fused_adamw(tmp_path):
    t = _trainer(tmp_path, "cpu")
    assert t.config.compile is None and not _compiled(t)
    assert t.optimizer.defaults.get("fused")
    with t._autocast():
        assert not torch.is_autocast_enabled("cpu")


def test_fused_adamw_follows_the_per_tensor_one_to_float_rounding():
    losses = {}
    for fused in (None, True):
        torch.manual_seed(0)
        model = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=40))
        opt = configure_optimizer(model, 3e-3, 0.1, (0.9, 0.95), fused=fused)
        g = torch.Generator().manual_seed(1)
        losses[fused] = []
        for _ in range(30):
            idx = (torch.randint(0, 40, (4, 1), generator=g) + torch.arange(17)) % 40  # counting
            _, loss = model(idx[:, :-1], idx[:, 1:])
            loss.backward()
            opt.step()
            opt.zero_grad()
            losses[fused].append(loss.item())
    assert losses[None][-1] < losses[None][0] - 0.5  # it learns
    assert losses[True] == pytest.approx(losses[None], abs=1e-5)


def test_compile_can_be_forced_on_cpu(tmp_path):
    assert _compiled(_trainer(tmp_path, "cpu", compile=True))


@cuda
def test_cuda_default_compiles_fuses_and_trains_in_bf16(tmp_path):
    t = _trainer(tmp_path, "cuda")
    assert _compiled(t) and t.optimizer.defaults.get("fused")
    result = t.train()
    assert result.steps == 3 and result.train_loss == result.train_loss  # finite, not NaN
    assert not _compiled(_trainer(tmp_path / "off", "cuda", compile=False))


def test_a_resumed_optimizer_keeps_the_kind_it_was_saved_with():
    # Checkpoints written with per-tensor AdamW resume per-tensor: the saved group's settings win.
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=8, vocab_size=11))
    old = configure_optimizer(model, 1e-3, 0.1, (0.9, 0.95))
    _, loss = model(torch.zeros(2, 8, dtype=torch.long), torch.zeros(2, 8, dtype=torch.long))
    loss.backward()
    old.step()
    new = configure_optimizer(model, 1e-3, 0.1, (0.9, 0.95), fused=True)
    new.load_state_dict(old.state_dict())
    assert not new.param_groups[0].get("fused")
    new.step()  # and it steps
