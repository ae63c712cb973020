"""The budget protocol end to end: a tiny ladder trained in rounds finds a crossing."""

import json

import pytest

from scaling.study.budget_protocol import ProtocolConfig  # noqa: E402
from scaling.study.budget_rounds import run_protocol  # noqa: E402
from scaling.study.sweep import DONE_FILE, RunSpec, prepare_runs, run_status  # noqa: E402
from tests.helpers.token_shards import write_shards

WIDTHS = {"tiny-a": 4, "tiny-b": 16}  # n_embd of the two sizes (1 layer, 1 head)
PER_STEP = 4 * 3 * 5  # windows x timesteps x (d_z + d_a)


def _train(run, stop_at=None):
    from worldmodels.token_data import TokenDataSource
    from worldmodels.token_model import TokenModel
    from worldmodels.trainer import TrainConfig, Trainer, seed_everything

    seed_everything(run.seed)
    data = TokenDataSource(run.data, seq_len=3)
    model = TokenModel(data.model_config(n_layer=1, n_head=1, n_embd=WIDTHS[run.size], task="wm"))
    cfg = TrainConfig(run_dir=str(run.run_dir), learning_rate=1e-2, warmup_steps=2,
                      micro_batch_size=4, tensorboard=False, val_batches=1,
                      max_tokens=run.tokens, seed=run.seed)

    def kill(step, record):
        if stop_at is not None and step == stop_at:
            raise KeyboardInterrupt

    result = Trainer(model, data, cfg, run_config={"model_kind": "token_model",
                                                   "model_config": model.config.to_dict()},
                     callbacks=[kill]).train()
    (run.run_dir / DONE_FILE).write_text(json.dumps({"tokens": result.tokens}))


def _sweep(kill_at=None):
    def sweep(runs):
        prepare_runs(runs)
        for run in runs:
            if run_status(run) != "finished":
                _train(run, (kill_at or {}).get(run.name))
    return sweep


def _runs(tmp_path, shards):
    from worldmodels.token_data import TokenDataSource
    from worldmodels.token_model import TokenModel

    data = TokenDataSource(shards, seq_len=3)
    params = {s: TokenModel(data.model_config(n_layer=1, n_head=1, n_embd=w, task="wm"))
              .num_params() for s, w in WIDTHS.items()}
    return [RunSpec(name=f"wm-token-{s}-seed0", task="wm-token", size=s, seed=0,
                    out_dir=str(tmp_path / f"wm-token-{s}-seed0"), data=str(shards),
                    tokens=60 * PER_STEP, params=params[s]) for s in WIDTHS]


def _curves(runs):
    return [[{k: v for k, v in json.loads(x).items() if k != "tokens_per_s"}
             for x in (r.run_dir / "metrics.jsonl").read_text().splitlines()] for r in runs]


@pytest.fixture
def shards(tmp_path):
    write_shards(tmp_path / "shards")
    return tmp_path / "shards"


@pytest.mark.slow
def test_a_tiny_ladder_is_extended_until_its_curves_cross(tmp_path, shards, caplog):
    runs = _runs(tmp_path / "a", shards)
    cfg = ProtocolConfig(budget=1e12, max_growth=2.0)
    with caplog.at_level("INFO", logger="scaling.study.budget_rounds"):
        state = run_protocol(runs, cfg, tmp_path / "a" / "protocol.json", _sweep(),
                             {r.name: PER_STEP for r in runs})
    (pair,) = state["final"]["wm-token"]["pairs"]
    assert pair["status"] == "crossing", state["final"]
    assert len(state["rounds"]) >= 2  # the first round did not show the crossing
    # every round says how much of the budget is spent, the last that the protocol is done
    spent = state["final"]["wm-token"]["spent"]
    logged = [m for m in caplog.messages if m.startswith("budget protocol: ")]
    assert len(logged) == len(state["rounds"]) and "extends" in logged[0]
    assert logged[-1] == (f"budget protocol: done after round {len(state['rounds'])}, "
                          f"{spent:.4g} of 1e+12 flops spent ({spent / 1e12:.0%})")
    steps = [r["step"] for r in _curves(runs)[0]]
    assert steps[-1] * PER_STEP == state["budgets"][runs[0].name]
    # killed during an extension and run again: the same curves as without the kill
    again = _runs(tmp_path / "b", shards)
    first_extension = state["rounds"][0]["wm-token"]["decisions"][again[0].name]["tokens"]
    kill = {again[0].name: int(first_extension // PER_STEP) - 3}
    with pytest.raises(KeyboardInterrupt):
        run_protocol(again, cfg, tmp_path / "b" / "protocol.json", _sweep(dict(kill)),
                     {r.name: PER_STEP for r in again})
    resumed = run_protocol(again, cfg, tmp_path / "b" / "protocol.json", _sweep(),
                           {r.name: PER_STEP for r in again})
    assert resumed["budgets"] == state["budgets"]
    assert _curves(again) == _curves(runs)


def test_a_budget_too_small_for_one_round_names_the_minimum(tmp_path, shards):
    runs = _runs(tmp_path, shards)
    with pytest.raises(ValueError, match="set the budget to at least"):
        run_protocol(runs, ProtocolConfig(budget=1.0), tmp_path / "protocol.json", _sweep(),
                     {r.name: PER_STEP for r in runs})
    assert not any(r.run_dir.exists() for r in runs)


def test_the_study_spec_chooses_the_protocol_and_the_trainer_step_is_predicted(tmp_path, shards):
    from scaling.study.budget_rounds import planned_tokens_per_step
    from scaling.study.spec import spec_from_dict
    from scaling.tasks import build
    from worldmodels.trainer import TrainConfig, Trainer

    task = {"task": "wm-token", "sizes": ["s10k", "s30k"], "tokens": 1e5}
    spec = spec_from_dict({"name": "p", "tasks": [task], "protocol": "frontier",
                           "study_budget": 1e12})
    assert spec.protocol == "frontier" and spec.study_budget_unit == "flops"
    with pytest.raises(ValueError, match="choose protocol"):
        spec_from_dict({"name": "p", "tasks": [task], "protocol": "frontire"})
    run = RunSpec(name="r", task="wm-token", size="s10k", seed=0, out_dir=str(tmp_path / "r"),
                  data=str(shards), tokens=1e5, overrides={"seq_len": 3})
    model, source, preset, _ = build("wm-token", "s10k", str(shards), seq_len=3)
    trainer = Trainer(model, source, TrainConfig(
        run_dir=str(tmp_path / "r"), max_tokens=1e5, micro_batch_size=preset.micro_batch_size,
        tokens_per_update=preset.update_tokens("s10k"), tensorboard=False))
    assert planned_tokens_per_step(run) == trainer.inputs_per_update


def test_a_seconds_budget_too_small_for_one_round_names_the_minimum(tmp_path, shards):
    runs = _runs(tmp_path, shards)
    cfg = ProtocolConfig(budget=1e-6, unit="seconds")
    with pytest.raises(ValueError, match="set the budget to at least .* seconds"):
        run_protocol(runs, cfg, tmp_path / "protocol.json", _sweep(),
                     {r.name: PER_STEP for r in runs})
    assert all((r.run_dir / DONE_FILE).is_file() for r in runs)  # the first round is kept


def test_cluster_jobs_follow_the_protocol_round_by_round(tmp_path):
    """``embscale study --emit-jobs`` under the protocol: one round of jobs per call, each
    planned from the curves the previous jobs wrote, until the protocol says it is done."""
    from scaling.study.spec import spec_from_dict
    from scaling.study.steps import emit_study_jobs
    from scaling.study.sweep import run_worker

    task = {"task": "wm-token", "sizes": ["s3k", "s10k", "s30k"], "flops": 1e8,
            "overrides": {"seq_len": 3, "micro_batch_size": 4, "tokens_per_update": 60}}
    spec = spec_from_dict({"name": "jobs", "runs_dir": str(tmp_path), "tasks": [task],
                           "protocol": "frontier", "study_budget": 1e12})
    with pytest.raises(ValueError, match="--stages dataset,tokenizer"):
        emit_study_jobs(spec, tmp_path / "jobs.jsonl", "jsonl", 1)
    write_shards(spec.study_dir / "tokens", episodes=(400, 8))
    rounds, budgets = [], []
    for _ in range(12):
        path, rnd = emit_study_jobs(spec, tmp_path / "jobs.jsonl", "jsonl", 1)
        if path is None:
            break
        jobs = [json.loads(line) for line in path.read_text().splitlines()]
        assert jobs and all("torchrun" in j["command"] for j in jobs)
        rounds.append(rnd)
        state = json.loads((spec.study_dir / "protocol.json").read_text())
        budgets.append(dict(state["budgets"]))
        for j in jobs:  # the cluster runs the jobs (a law stands in for the trainer)
            run_worker(j["run_spec"], "tests.helpers.sweep_fake_trainer:train_law")
    assert path is None, "the protocol never finished"
    assert rounds == list(range(1, len(rounds) + 1)) and len(rounds) >= 2
    assert any(b > a for a, b in zip(budgets[0].values(), budgets[-1].values(), strict=True))
    final = json.loads((spec.study_dir / "protocol.json").read_text())["final"]["wm-token"]
    assert [p["status"] for p in final["pairs"]] == ["crossing", "crossing"], final["pairs"]
    # the same command again, with every job run: nothing left to emit
    assert emit_study_jobs(spec, tmp_path / "jobs.jsonl", "jsonl", 1)[0] is None


def test_first_round_budgets_beyond_the_data_limit_are_capped(tmp_path, shards):
    """No run feeding a fit passes 4 times over its data, not even in the first round."""
    from scaling.study.budget_rounds import planned_tokens_per_step
    from scaling.study.report_protocol import protocol_notes
    from tests.helpers.sweep_fake_trainer import train_law

    runs = [RunSpec(name=f"wm-token-{s}-seed0", task="wm-token", size=s, seed=0,
                    out_dir=str(tmp_path / s), data=str(shards), tokens=3e5, params=p,
                    overrides={"seq_len": 3, "micro_batch_size": 4, "tokens_per_update": 60})
               for s, p in (("s10k", 10_000), ("s30k", 30_000))]
    per = {r.name: planned_tokens_per_step(r) for r in runs}
    items = 12_000.0  # training tokens: 4 passes are 48,000, far below the asked 3e5
    state = run_protocol(runs, ProtocolConfig(budget=1e12), tmp_path / "protocol.json",
                         lambda rs: [train_law(r) for r in rs], per,
                         loss_key="train/loss", data={"wm-token": (items, 5)})
    for r in runs:
        assert state["budgets"][r.name] <= 4 * items
        last = json.loads((r.run_dir / "metrics.jsonl").read_text().splitlines()[-1])
        assert last["tokens"] <= 4 * items
    assert len(state["notes"]) == 2 and "capped at" in state["notes"][0]
    # run again when finished: nothing is trained and no round is added
    again = run_protocol(runs, ProtocolConfig(budget=1e12), tmp_path / "protocol.json",
                         lambda rs: [train_law(r) for r in rs], per,
                         loss_key="train/loss", data={"wm-token": (items, 5)})
    assert again["rounds"] == state["rounds"] and again["budgets"] == state["budgets"]
    assert protocol_notes(state)[0].startswith("before round 1: wm-token-s10k-seed0: first-round")
