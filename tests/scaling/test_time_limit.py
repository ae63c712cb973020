"""A study's time limit: the reserve for the later stages, the budget cap and the protocol."""

import json

import pytest

from scaling.study.budget_protocol import ProtocolConfig
from scaling.study.budget_rounds import run_protocol
from scaling.study.report_protocol import time_limit_text
from scaling.study.time_limit import (
    MIN_RESERVE_S,
    OVERHEAD_ROUNDS,
    RESERVE_RATIO,
    ROUND_OVERHEAD_S,
    TimeLimit,
    capped_budget,
    later_stages_reserve,
    parse_duration,
)
from tests.helpers.token_shards import write_shards
from tests.scaling.test_budget_rounds import PER_STEP, _runs, _sweep


@pytest.fixture
def shards(tmp_path):
    write_shards(tmp_path / "shards")
    return tmp_path / "shards"


def test_durations_parse_and_bad_ones_name_the_fix():
    assert parse_duration("29m") == 1740.0 == parse_duration(" 1740 ")
    assert parse_duration("90s") == 90.0 and parse_duration("0.5h") == 1800.0
    for bad in ("soon", "29 minutes", "-5m", "0", ""):
        with pytest.raises(ValueError, match="29m|positive"):
            parse_duration(bad)
    with pytest.raises(ValueError, match="date \\+%s"):
        TimeLimit(60.0, started_at=0.0)
    assert TimeLimit(60.0, started_at=1000.0).deadline == 1060.0


def test_the_reserve_follows_the_data_work_this_study_measured(tmp_path):
    # nothing measured: the job's elapsed seconds before the sweep stand in, with a floor
    assert later_stages_reserve(tmp_path, elapsed=1000.0) == RESERVE_RATIO * 1000.0
    assert later_stages_reserve(tmp_path, elapsed=10.0) == MIN_RESERVE_S
    (tmp_path / "data_seconds.json").write_text(json.dumps(
        {"collect": {"frames": 1000, "seconds": 260.0}, "encode": {"frames": 1000,
                                                                  "seconds": 190.0}}))
    (tmp_path / "tokenizer").mkdir()
    (tmp_path / "tokenizer" / "summary.json").write_text(json.dumps({"seconds": 200.0}))
    assert later_stages_reserve(tmp_path, elapsed=5.0) == pytest.approx(RESERVE_RATIO * 650.0)
    limit = TimeLimit(1740.0, started_at=1000.0)
    end, note = limit.sweep_end(tmp_path, now=1800.0)
    assert end == pytest.approx(2740.0 - RESERVE_RATIO * 650.0)
    assert note == {"limit_s": 1740.0, "reserve_s": 325.0, "sweep_s": pytest.approx(615.0)}


def test_a_limit_that_leaves_the_sweep_no_time_says_so(tmp_path, caplog):
    with caplog.at_level("WARNING", logger="scaling.study.time_limit"):
        TimeLimit(1740.0, started_at=1000.0).sweep_end(tmp_path, now=1800.0)
    assert not caplog.messages
    with caplog.at_level("WARNING", logger="scaling.study.time_limit"):
        end, note = TimeLimit(300.0, started_at=1000.0).sweep_end(tmp_path, now=1400.0)
    assert note["sweep_s"] < 0 and "give a longer --time-limit" in caplog.messages[-1]


def test_the_cap_hands_the_time_left_to_the_workers_and_never_raises_the_budget():
    overhead = OVERHEAD_ROUNDS * ROUND_OVERHEAD_S
    # seconds budget: spent plus the workers' wall seconds left
    cap = capped_budget(1250.0, "seconds", 300.0, 300.0, sweep_end=1000.0 + overhead + 200.0,
                        now=1000.0, workers=2)
    assert cap == pytest.approx(700.0)
    # ample time: the budget stands
    assert capped_budget(1250.0, "seconds", 300.0, 300.0, 1e9, 0.0, 2) == 1250.0
    # past the end: nothing more than what is spent
    assert capped_budget(1250.0, "seconds", 300.0, 300.0, 900.0, 1000.0, 2) == 300.0
    # a FLOPs budget converts the time at the measured FLOPs per training second
    cap = capped_budget(1e15, "flops", 2e12, 100.0, sweep_end=overhead + 50.0, now=0.0,
                        workers=2)
    assert cap == pytest.approx(2e12 + 100.0 * 2e12 / 100.0)
    assert capped_budget(1e15, "flops", 2e12, 0.0, 0.0, 10.0, 2) == 1e15  # no throughput yet


def test_a_protocol_out_of_time_refuses_its_extensions_and_says_so(tmp_path, shards, caplog):
    runs = _runs(tmp_path, shards)
    cfg = ProtocolConfig(budget=1e12, max_growth=2.0)
    note = {"limit_s": 600.0, "reserve_s": 60.0, "sweep_s": 1.0}
    with caplog.at_level("INFO", logger="scaling.study.budget_rounds"):
        state = run_protocol(runs, cfg, tmp_path / "protocol.json", _sweep(),
                             {r.name: PER_STEP for r in runs}, sweep_end=100.0,
                             clock=lambda: 101.0, time_note=note)
    (plan,) = state["rounds"]  # one round: the time left paid for no extension
    spent = plan["wm-token"]["spent"]
    assert plan["wm-token"]["budget"] == pytest.approx(spent) and spent < cfg.budget
    reasons = {d["reason"] for d in plan["wm-token"]["decisions"].values()}
    assert "budget" in reasons and not any(d["extend"] for d in
                                           plan["wm-token"]["decisions"].values())
    limit = state["time_limit"]
    assert limit["capped"] == [{"round": 1, "budget": pytest.approx(spent)}]
    assert limit["limit_s"] == 600.0 and limit["seconds_left"] == -1.0
    assert caplog.messages[-1].startswith("budget protocol: done after round 1, ")
    assert f"; the time limit allows {spent:.4g}" in caplog.messages[-1]
    text = time_limit_text(state)
    assert "time limit of 600 s from its start; 60 s were kept" in text
    assert "lowered the budget for round(s) 1" in text
    assert json.loads((tmp_path / "protocol.json").read_text())["time_limit"] == limit


def test_a_limit_that_never_binds_is_reported_as_such():
    state = {"unit": "seconds", "time_limit": {"limit_s": 1740.0, "reserve_s": 181.0,
                                               "sweep_s": 1190.0, "capped": []}}
    assert time_limit_text(state).endswith("The limit never lowered the budget.")
    assert time_limit_text({"unit": "seconds"}) == ""


def test_the_command_hands_its_limit_to_the_sweep(tmp_path, monkeypatch, capsys):
    from scaling.cli import main
    from scaling.study import steps

    seen = {}

    def sweep(spec, allow_mixed=False, progress=True, time_limit=None):
        seen["limit"] = time_limit
        return {}

    monkeypatch.setattr(steps, "run_study_sweep", sweep)
    assert main(["study", "--quick", "--stages", "sweep", "--runs-dir", str(tmp_path),
                 "--time-limit", "29m", "--started-at", "1700000000", "--no-progress"]) == 0
    assert seen["limit"] == TimeLimit(1740.0, started_at=1700000000.0)
    assert main(["study", "--quick", "--stages", "sweep", "--runs-dir", str(tmp_path),
                 "--no-progress"]) == 0
    assert seen["limit"] is None


def test_the_report_gives_the_jobs_time_under_a_limit(tmp_path):
    import time

    from scaling.cli import main

    argv = ["study", "--quick", "--stages", "report", "--runs-dir", str(tmp_path), "--no-progress"]
    assert main([*argv, "--time-limit", "29m", "--started-at", str(time.time() - 100)]) == 0
    report = (tmp_path / "breakout-quick" / "report" / "report.md").read_text()
    assert "from its start to this report, setup included, under a time limit of 1,740 s" in report
    took = float(report.split("The job took ")[1].split(" s")[0].replace(",", ""))
    assert 100 <= took < 400
    assert main(argv) == 0  # without a limit the next report says nothing of the last one's
    assert "The job took" not in (tmp_path / "breakout-quick" / "report" / "report.md").read_text()
