"""A collecting study grows its data when runs reach the data-pass limit, and only then."""

import json

import pytest

from scaling.study.budget_protocol import ProtocolConfig
from scaling.study.budget_rounds import planned_tokens_per_step, run_protocol
from scaling.study.growth import Growth
from scaling.study.sweep import RunSpec, prepare_runs
from tests.helpers.sweep_fake_trainer import train_law
from tests.helpers.token_shards import write_shards

ITEMS = 12_000.0  # training tokens of the first shards: 4 passes are 48,000


def _runs(tmp_path, shards):
    return [RunSpec(name=f"wm-token-{s}-seed0", task="wm-token", size=s, seed=0,
                    out_dir=str(tmp_path / s), data=str(shards), tokens=3e4, params=p,
                    overrides={"seq_len": 3, "micro_batch_size": 4, "tokens_per_update": 60})
            for s, p in (("s30k", 30_000), ("s100k", 100_000))]


def _sweep(runs):
    prepare_runs(runs)
    return [train_law(r) for r in runs]


def _protocol(tmp_path, runs, grow, collect=True):
    per = {r.name: planned_tokens_per_step(r) for r in runs}
    return run_protocol(runs, ProtocolConfig(budget=1e12, collect=collect),
                        tmp_path / "protocol.json", _sweep, per,
                        loss_key="train/loss", data={"wm-token": (ITEMS, 5)}, grow=grow)


@pytest.fixture
def shards(tmp_path):
    write_shards(tmp_path / "shards")
    write_shards(tmp_path / "grown", episodes=(400, 8))  # stands in for the grown shards
    return tmp_path


def test_runs_at_the_data_limit_continue_on_grown_data(tmp_path, shards):
    calls = []

    def grow(frames_needed, k, history):
        calls.append((frames_needed, k, len(history)))
        if k > 1:
            return None  # the cap: no second growth
        return Growth({"wm-token": str(tmp_path / "grown")}, {"wm-token": (10 * ITEMS, 5)},
                      {"supplement": "x/y-grow1-v0", "frames": 21_600, "episodes": 900,
                       "asked": frames_needed, "train_frames_before": 2_400,
                       "train_frames": 24_000, "cap": 30_000, "collect_seconds": 1.0,
                       "encode_seconds": 1.0})

    runs = _runs(tmp_path / "a", tmp_path / "shards")
    state = _protocol(tmp_path / "a", runs, grow)
    assert calls and calls[0][0] > ITEMS / 5 and calls[0][1] == 1  # frames beyond the data's
    assert len(state["growth"]) == 1 and state["growth"][0]["round"] >= 1
    assert state["data"] == {"wm-token": str(tmp_path / "grown")}
    assert max(state["budgets"].values()) > 4 * ITEMS  # past the first data's limit
    assert max(state["budgets"].values()) <= 4 * 10 * ITEMS  # never past the grown data's
    for r in runs:  # the runs now read the grown data
        spec = json.loads((r.run_dir / "run_spec.json").read_text())
        assert spec["data"] == str(tmp_path / "grown")
    # the study run again resumes on its grown data, training nothing more
    again = _protocol(tmp_path / "a", _runs(tmp_path / "a", tmp_path / "shards"), grow)
    assert again["budgets"] == state["budgets"] and len(again["growth"]) == 1


def test_growth_refused_at_the_cap_is_said_not_dropped(tmp_path, shards):
    calls = []

    def grow(frames_needed, k, history):  # grows once to twice the data, then hits the cap
        calls.append(k)
        if k > 1:
            return None
        return Growth({"wm-token": str(tmp_path / "grown")}, {"wm-token": (2 * ITEMS, 5)},
                      {"supplement": "x/y-grow1-v0", "frames": 2_400, "episodes": 100,
                       "asked": frames_needed, "train_frames_before": 2_400,
                       "train_frames": 4_800, "cap": 4_800, "collect_seconds": 1.0,
                       "encode_seconds": 1.0})

    state = _protocol(tmp_path / "a", _runs(tmp_path / "a", tmp_path / "shards"), grow)
    assert 2 in calls and len(state["growth"]) == 1  # asked again beyond the grown data
    assert max(state["budgets"].values()) <= 4 * 2 * ITEMS
    refused = state["growth_refused"]
    assert refused and all(r["why"] == "cap" and r["asked"] > 0 for r in refused)
    assert refused[0]["round"] > state["growth"][0]["round"]


def test_a_fixed_dataset_never_grows(tmp_path, shards):
    def grow(*_):
        raise AssertionError("a study that does not collect must not grow its data")

    state = _protocol(tmp_path, _runs(tmp_path, tmp_path / "shards"), grow, collect=False)
    assert max(state["budgets"].values()) <= 4 * ITEMS and not state["growth"]


def test_the_report_shows_what_was_collected(tmp_path):
    from scaling.study.report_page import Report
    from scaling.study.report_protocol import growth_part

    r = Report(tmp_path, "t")
    growth_part(r, {"growth": [{"round": 2, "supplement": "a/b-grow1-v0", "frames": 1000,
                                "episodes": 3, "asked": 3400, "train_frames_before": 2400,
                                "train_frames": 3400, "cap": 9000, "collect_seconds": 2.5,
                                "encode_seconds": 1.5}],
                    "growth_refused": [{"round": 4, "asked": 50_000}]})
    text = r.markdown() if hasattr(r, "markdown") else str(r.__dict__)
    assert "a/b-grow1-v0" in text and "2,400 → 3,400" in text
    assert "In round 4 the runs asked for 50,000 training frames" in text
    cost = Report(tmp_path, "t")  # refused for the growth's own cost under a seconds budget
    growth_part(cost, {"growth_refused": [{"round": 3, "asked": 9_000, "why": "cost",
                                           "seconds": 40.0, "cost": 80.0, "workers": 2}]})
    assert ("collecting and encoding them would have taken about 40 s, 80 s of the seconds "
            "budget with 2 workers waiting") in cost.markdown()
    assert "up to the 9,000 frames the study may collect (`dataset.grow` times" in text
    # a cap lowered by BC-CNN's memory is named as such, not as dataset.grow
    r = Report(tmp_path, "t")
    growth_part(r, {"growth": [{"round": 2, "supplement": "a/b-grow1-v0", "frames": 1000,
                                "episodes": 3, "asked": 3400, "train_frames_before": 2400,
                                "train_frames": 3400, "cap": 4000, "cap_by": "memory",
                                "collect_seconds": 2.5, "encode_seconds": 1.5}]})
    text = r.markdown() if hasattr(r, "markdown") else str(r.__dict__)
    assert "up to the 4,000 frames the study may collect (fewer than `dataset.grow`" in text
    assert "half of the machine's memory" in text


def _timed_sweep(runs):
    """``_sweep`` with the trainer's throughput logged: a run of N parameters trains
    3e9 / N tokens per second, so a seconds budget can be planned."""
    prepare_runs(runs)
    for r in runs:
        train_law(r)
        path = r.run_dir / "metrics.jsonl"
        recs = [json.loads(line) for line in path.read_text().splitlines()]
        path.write_text("".join(json.dumps({**x, "tokens_per_s": 3e9 / x["params"]}) + "\n"
                                for x in recs))


class _Grower:
    """A grower whose growth takes 2 s (1 collecting, 1 encoding) and that estimates it takes
    ``estimate`` seconds."""

    def __init__(self, grown, estimate):
        self.grown, self.seconds, self.calls = grown, estimate, []

    def estimate(self, frames_needed, history):
        return self.seconds

    def __call__(self, frames_needed, k, history):
        self.calls.append(frames_needed)
        if k > 1:
            return None
        return Growth({"wm-token": str(self.grown)}, {"wm-token": (10 * ITEMS, 5)},
                      {"supplement": "x/y-grow1-v0", "frames": 21_600, "episodes": 900,
                       "asked": frames_needed, "train_frames_before": 2_400,
                       "train_frames": 24_000, "cap": 30_000, "collect_seconds": 1.0,
                       "encode_seconds": 1.0})


def _seconds_protocol(path, shards, grow, budget, **kw):
    runs = _runs(path, shards / "shards")
    per = {r.name: planned_tokens_per_step(r) for r in runs}
    return run_protocol(runs, ProtocolConfig(budget=budget, unit="seconds", collect=True),
                        path / "protocol.json", _timed_sweep, per, loss_key="train/loss",
                        data={"wm-token": (ITEMS, 5)}, grow=grow, workers=2, **kw)


def test_a_seconds_budget_pays_for_growing_the_data(tmp_path, shards):
    """Under a seconds budget a growth costs its wall seconds times the workers that wait: the
    study grows only when the budget pays for the growth's estimate and the extensions that
    asked for it together, and what the growth took is charged to the budget."""
    # (the first round trains 1.64 s; on the grown data the runs go on to 8.8 s in all)
    grow = _Grower(tmp_path / "grown", estimate=3.0)  # 6 s of the budget with 2 workers
    state = _seconds_protocol(tmp_path / "a", tmp_path, grow, budget=13.0)
    assert grow.calls and len(state["growth"]) == 1
    assert state["growth_charge"] == pytest.approx(4.0)  # (1 + 1) s, 2 workers waiting
    trained = sum(p["spent"] for p in state["final"].values())
    assert 2.0 < trained <= 13.0 - 4.0  # the runs went on, within what the growth left
    again = _seconds_protocol(tmp_path / "a", tmp_path, grow, budget=13.0)  # resumed: the
    assert again["budgets"] == state["budgets"]  # history's charge is kept, nothing more runs

    # under a time limit that caps the budget, the growth's charge is still what it took
    grow = _Grower(tmp_path / "grown", estimate=3.0)
    capped = _seconds_protocol(tmp_path / "c", tmp_path, grow, budget=100.0, sweep_end=69.0,
                               clock=lambda: 0.0)
    assert capped["time_limit"]["capped"] and len(capped["growth"]) == 1
    assert capped["growth_charge"] == pytest.approx(4.0)

    # the same runs with a growth estimated at 10 s (20 s of the budget): none is collected
    grow = _Grower(tmp_path / "grown", estimate=10.0)
    state = _seconds_protocol(tmp_path / "b", tmp_path, grow, budget=13.0)
    assert not grow.calls and not state["growth"] and "growth_charge" not in state
    assert state["growth_refused"][0] == {"round": 1, "asked": state["growth_refused"][0][
        "asked"], "why": "cost", "seconds": 10.0, "cost": 20.0, "workers": 2}
    details = [d["detail"] for p in state["final"].values() for d in p["decisions"].values()
               if d["reason"] == "data limit"]
    assert any("collecting and encoding them would take about 10 s, 20 s of the budget with 2 "
               "workers waiting" in d for d in details), details
    assert max(state["budgets"].values()) <= 4 * ITEMS


def test_the_growth_estimate_uses_what_the_study_measured(tmp_path):
    from scaling.study.growth import _per_frame, record_data_seconds

    class Spec:
        study_dir = tmp_path

    assert _per_frame(Spec, [], reads_tokens=True) is None  # nothing measured: no estimate
    record_data_seconds(Spec, "collect", 1000, 2.0)
    assert _per_frame(Spec, [], reads_tokens=False) == pytest.approx(0.002)
    assert _per_frame(Spec, [], reads_tokens=True) is None  # the encoding is not known yet
    record_data_seconds(Spec, "encode", 1000, 1.0)
    assert _per_frame(Spec, [], reads_tokens=True) == pytest.approx(0.003)
    # a growth this study made is the better measure (a reused supplement took 0 s: skipped)
    history = [{"frames": 500, "collect_seconds": 2.0, "encode_seconds": 0.5},
               {"frames": 700, "collect_seconds": 0.0, "encode_seconds": 0.1}]
    assert _per_frame(Spec, history, reads_tokens=True) == pytest.approx(0.005)


@pytest.mark.slow
def test_a_real_collecting_study_grows_its_data_and_its_runs_continue(tmp_path):
    """Real Breakout collection, tokenizer, shards and trainers: runs that reach 4 passes over
    a tiny dataset continue, past it, on a supplement the study collects for them."""
    from offline_data.tokens import TokenShards
    from scaling.study.paths import dataset_exists, grown_tokens_dir, tokens_dir
    from scaling.study.runner import run_study
    from scaling.study.spec import DatasetSpec, StudySpec, TaskSweep, TokenizerSpec

    train = {"warmup_steps": 2, "micro_batch_size": 4, "val_batches": 1, "tensorboard": False}
    spec = StudySpec(
        name="grow", runs_dir=str(tmp_path), protocol="frontier", study_budget=60,
        study_budget_unit="seconds", parallel=1, optimum_tokens_per_param=0.1,
        dataset=DatasetSpec(id="embscale/breakout/growmini-v0", collect=True, episodes=4,
                            max_total_steps=600, max_episode_steps=200, grow=2.0),
        tokenizer=TokenizerSpec(tokens_per_frame=16, codebook_size=32, steps=8, batch_size=8),
        tasks=[TaskSweep(task="wm-token", sizes=["s3k", "s30k"], tokens=13600,
                         overrides={**train, "tokens_per_update": 680}),
               TaskSweep(task="bc-cnn", sizes=["s10k", "s30k"], tokens=800,
                         overrides={**train, "tokens_per_update": 40})])
    run_study(spec, stages=("dataset", "tokenizer", "sweep"), progress=False)
    state = json.loads((spec.study_dir / "protocol.json").read_text())
    assert state["growth"], state.get("growth_refused")
    sup = state["growth"][0]["supplement"]
    assert sup == "embscale/breakout/growmini-grow1-v0" and dataset_exists(sup)
    grown = TokenShards.open(grown_tokens_dir(spec, len(state["growth"])))
    base = TokenShards.open(tokens_dir(spec))
    assert grown.split("train").num_frames > base.split("train").num_frames
    assert grown.split("val").num_frames == base.split("val").num_frames
    assert state["data"]["bc-cnn"].startswith("embscale/breakout/growmini-v0+")
    for name, tokens in state["budgets"].items():  # never past 4 passes over what it had
        task = name.rsplit("-", 2)[0]
        assert tokens <= 4 * state["limits"][task][0] + 1e-6, (name, tokens, state["limits"])
    resumed = [name for name in state["budgets"] if "data_grown_from" in json.loads(
        (spec.study_dir / name / "config.json").read_text())]
    assert resumed, "no run continued on the grown data"
    # the fit's advice checks passes over the data the runs trained on: the grown data
    from scaling.study.adapters.fits import plan_next

    fit = tmp_path / "fit.json"
    fit.write_text(json.dumps({"frontier": {"status": "ok", "a": 0.5, "a0": 0.1, "b": 0.5,
                                            "b0": 1 / 0.6}}))
    for task in ("wm-token", "bc-cnn"):
        advice = plan_next(fit, 1e12, spec, task)
        assert advice["dataset_tokens"] == pytest.approx(state["limits"][task][0]), advice
    # the seconds budget paid for the growth: its wall seconds (1 worker waited)
    took = sum(g["collect_seconds"] + g["encode_seconds"] for g in state["growth"])
    assert state["growth_charge"] == pytest.approx(took)
    measured = json.loads((spec.study_dir / "data_seconds.json").read_text())
    assert measured["collect"]["frames"] == measured["encode"]["frames"] == 600
    # a study killed after growing finds the supplement and its shards when it runs again, and
    # records the seconds they took then, not the 0 s of reusing them
    from scaling.study.growth import study_grower

    first = state["growth"][0]
    assert measured[f"collect {sup}"]["seconds"] == first["collect_seconds"] > 0
    again = study_grower(spec, {"wm-token": (None, 17), "bc-cnn": (None, 1)}, progress=False)(
        first["asked"], 1, []).record
    assert (again["collect_seconds"], again["encode_seconds"]) == (
        first["collect_seconds"], first["encode_seconds"])


def test_bc_cnn_caps_growth_at_what_one_shared_copy_can_hold(tmp_path):
    """BC-CNN's workers map one file of its training frames (agents.frame_store): growth stays
    within what half of the machine's memory holds as one copy, however many workers there are
    (64x64 RGB frames: 12 KiB, or 6 KiB when the model reads them at 32x32, held resized)."""
    import os

    from scaling.study.growth import memory_frames
    from scaling.study.spec import DatasetSpec, StudySpec, TaskSweep
    from tests.helpers.tokenizers import make_dataset

    make_dataset("embscale/synthetic/memcap-v0", num_episodes=3, steps=5, size=64)
    tasks = [TaskSweep(task="bc-cnn", sizes=["s10k"], tokens=100)]
    one = StudySpec(name="m", runs_dir=str(tmp_path), parallel=1, tasks=tasks,
                    dataset=DatasetSpec(id="embscale/synthetic/memcap-v0"))
    two = StudySpec(name="m", runs_dir=str(tmp_path), parallel=2, tasks=tasks,
                    dataset=DatasetSpec(id="embscale/synthetic/memcap-v0"))
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert memory_frames(one) == memory_frames(two) == int(0.5 * memory / (64 * 64 * 3))
    small = [TaskSweep(task="bc-cnn", sizes=["s10k"], tokens=100, overrides={"image_size": 32})]
    resized = StudySpec(name="m", runs_dir=str(tmp_path), parallel=2, tasks=small,
                        dataset=DatasetSpec(id="embscale/synthetic/memcap-v0"))
    assert memory_frames(resized) == int(0.5 * memory / (32 * 32 * 3 * 2))


def test_bc_cnn_knows_its_data_limit_without_token_shards(tmp_path):
    """A study without token shards (BC-CNN alone, or before the tokenizer stage) still limits
    BC-CNN to 4 passes: its limit is the training timesteps its trainer reads, counted from the
    dataset; before this, such a study extended BC-CNN runs without a limit."""
    from agents.frame_data import FrameDataSource
    from offline_data.reader import WindowReader
    from scaling.study.budget_rounds import study_data_limits
    from scaling.study.paths import tokens_dir
    from scaling.study.spec import DatasetSpec, StudySpec, TaskSweep
    from tests.helpers.tokenizers import make_dataset

    make_dataset("embscale/synthetic/cnnlimit-v0", num_episodes=10, steps=12, size=16)
    spec = StudySpec(name="c", runs_dir=str(tmp_path), parallel=1,
                     tasks=[TaskSweep(task="bc-cnn", sizes=["s10k", "s30k"], tokens=100)],
                     dataset=DatasetSpec(id="embscale/synthetic/cnnlimit-v0"))
    assert not tokens_dir(spec).exists()
    items, per_frame = study_data_limits(spec)["bc-cnn"]
    trainer_items = FrameDataSource("embscale/synthetic/cnnlimit-v0", seq_len=10).num_train_items
    every = WindowReader("embscale/synthetic/cnnlimit-v0", 10, split="all").num_steps
    assert per_frame == 1 and items == trainer_items and 0 < items < every  # train split only
    # a window longer than the episodes leaves none: the error names the split and seq_len
    spec.tasks[0].overrides["seq_len"] = 1000
    with pytest.raises(ValueError, match="seq_len=1000"):
        study_data_limits(spec)


def _limited_pair(task, params, seconds_per_10k, items=2_500.0):
    """Two sizes of ``task``: the smaller lower everywhere and at 4 passes over ``items``, the
    larger with more compute, so the pair asks the smaller to catch up beyond its data."""
    from scaling.study.budget_costs import RunCurve

    small_t = [100.0, 200.0, 400.0, 1_000.0, 2_000.0, 4_000.0, 10_000.0]
    large_t = [t * 2 for t in small_t]
    out = []
    for name, n, tokens, offset in ((f"{task}-small", params, small_t, 0.0),
                                    (f"{task}-large", 3 * params, large_t, 0.5)):
        flops = [6.0 * n * t for t in tokens]
        out.append(RunCurve(name, name.rsplit("-", 1)[1], n, flops,
                            [10.0 * c ** -0.1 + offset for c in flops], tokens[-1], 100,
                            train_items=items,
                            seconds=seconds_per_10k * tokens[-1] / 10_000))
    return out


def test_the_study_collects_only_data_that_its_budget_will_use():
    """Task B's data-limited run is affordable only with the share task A leaves while A's own
    run sits at the data limit. Growth lifts A's limit too, and A asks again. When A kept its
    share, B's extension was no longer paid for and the collected data went unused (in one
    default study 579k collected frames, 248 s to collect and 162 s to encode). A share now
    goes to the others when what it asks costs more than the study has left, and shares that
    pay for nothing are pooled, so on these ladders B's extension is paid after growth, at
    either cost of A's runs. Data too few to lift B's limit are not collected."""
    from scaling.study.budget_costs import RunCurve
    from scaling.study.budget_protocol import ProtocolConfig
    from scaling.study.budget_tasks import growth_pays, plan_tasks

    def tasks(a_seconds_per_10k):
        xl = [6.0 * 9_000 * t for t in (100.0, 200.0)]  # B's largest size: refused by the budget
        return {"a": _limited_pair("a", 1_000, a_seconds_per_10k),
                "b": _limited_pair("b", 1_000, 15.0) + [RunCurve(
                    "b-xl", "xl", 9_000, xl, [10.0 * c ** -0.1 + 1.0 for c in xl], 200.0, 100,
                    train_items=2_500.0, seconds=4.0)]}

    shares = {"a": 0.5, "b": 0.5}
    tight = ProtocolConfig(budget=200.0, unit="seconds", collect=True)
    for a_cost in (14.0, 20.0):
        curves = tasks(a_cost)
        plans = plan_tasks(curves, tight, shares)
        a, b = plans["a"].decisions["a-small"], plans["b"].decisions["b-small"]
        assert a.reason == b.reason == "data limit"
        assert plans["b"].data_request and not plans["a"].data_request  # only B's is affordable
        assert growth_pays(curves, plans, plans["b"].data_request, tight, shares)
        assert not growth_pays(curves, plans, 2_500, tight, shares)  # the data it has already
    ample = ProtocolConfig(budget=1_000.0, unit="seconds", collect=True)
    plans = plan_tasks(curves, ample, shares)
    assert growth_pays(curves, plans, max(p.data_request or 0 for p in plans.values()), ample,
                       shares)
