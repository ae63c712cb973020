"""A task whose frontier is identified yields its budget share to the tasks short of theirs."""

import dataclasses
import json

import pytest

from scaling.study.budget_costs import spent
from scaling.study.budget_protocol import ProtocolConfig, plan_round
from scaling.study.budget_tasks import YIELDS, frontier_sizes, plan_tasks
from scaling.study.presets import default_study
from scaling.study.report_page import Report
from scaling.study.report_protocol import protocol_section
from tests.scaling.test_budget_protocol import crossing_compute, curve, task_runs
from tests.scaling.test_report_protocol import study  # noqa: F401 (the fixture)

LADDER = {"s1k": 1000, "s3k": 3000, "s10k": 10_000, "s30k": 30_000, "s100k": 100_000}


def identified_task():
    """Five sizes whose three lower pairs have crossed; s30k/s100k is still open and asks."""
    names = list(LADDER)
    reach = {}
    for a, b in zip(names[:-2], names[1:-1], strict=True):
        c = 4.0 * crossing_compute(LADDER[a], LADDER[b])
        reach[a], reach[b] = max(reach.get(a, 0.0), c), max(reach.get(b, 0.0), c)
    reach["s100k"] = reach["s30k"] / 3.0
    runs = [curve(k, n, reach[k] / (6.0 * n)) for k, n in LADDER.items()]
    for r in runs:
        r.name = f"done-{r.name}"
    return runs


def test_frontier_sizes_counts_crossed_sizes_with_a_larger_neighbour():
    plan = plan_round(identified_task(), ProtocolConfig(budget=1e30))
    assert [p.status for p in plan.pairs] == ["crossing"] * 3 + ["open"]
    assert frontier_sizes(plan) == 3  # s3k, s10k, s30k: each bracketed by a larger size
    assert plan.decisions["done-s100k"].extend  # left alone, it would go on to s30k/s100k
    # a two-size ladder that has not crossed has none
    assert frontier_sizes(plan_round(task_runs("short", 1.0), ProtocolConfig(budget=1e30))) == 0


def test_an_identified_task_yields_its_share_and_extends_from_what_is_left():
    curves = {"done": identified_task(), "short": task_runs("short", 1.0)}
    asked = {t: plan_round(cs, ProtocolConfig(budget=1e30)).planned for t, cs in curves.items()}
    used = {t: spent(cs, "flops") for t, cs in curves.items()}
    assert asked["done"] > 0 and asked["short"] > 0
    # "short"'s share pays for half of what it asks; "done"'s share would pay for all of its own
    budget = sum(used.values()) + asked["done"] + asked["short"] / 2
    share = {"short": (used["short"] + asked["short"] / 2) / budget}
    share["done"] = 1.0 - share["short"]
    keep = plan_tasks(curves, ProtocolConfig(budget=budget, frontier_goal=0), share)
    assert keep["done"].planned == pytest.approx(asked["done"])
    assert keep["short"].planned < asked["short"]
    # with a goal of 3 frontier sizes "done" has met it: its share pays for "short" first
    plans = plan_tasks(curves, ProtocolConfig(budget=budget), share)
    assert plans["short"].planned == pytest.approx(asked["short"])
    refused = [d for d in plans["done"].decisions.values() if d.reason == "budget"]
    assert refused and all("the task yields: 3 sizes on its frontier (goal 3)" in d.detail
                           for d in refused)
    assert sum(used.values()) + sum(p.planned for p in plans.values()) <= budget * (1 + 1e-12)
    # what "short" leaves still goes to "done", after it (here, with shares and without)
    roomy = sum(used.values()) + asked["done"] + asked["short"]
    for shares in (share, None):
        both = plan_tasks(curves, ProtocolConfig(budget=roomy), shares)
        assert both["short"].planned == pytest.approx(asked["short"])
        assert both["done"].planned == pytest.approx(asked["done"])
    # without shares the tasks draw in order, the identified one last
    plain = plan_tasks({"done": curves["done"], "short": curves["short"]},
                       ProtocolConfig(budget=sum(used.values()) + asked["short"]))
    assert plain["short"].planned == pytest.approx(asked["short"]) and plain["done"].done


def test_every_task_identified_or_a_goal_of_zero_changes_nothing():
    curves = {"done": identified_task()}
    budget = spent(curves["done"], "flops") * 100.0
    alone = plan_tasks(curves, ProtocolConfig(budget=budget), {"done": 1.0})
    same = plan_round(curves["done"], ProtocolConfig(budget=budget))
    assert same.planned > 0 and alone["done"].planned == pytest.approx(same.planned)
    with pytest.raises(ValueError, match="frontier_goal"):
        ProtocolConfig(budget=1.0, frontier_goal=-1)
    spec = default_study()
    assert spec.frontier_goal == 3  # the study passes it to the protocol (budget_rounds)
    with pytest.raises(ValueError, match="frontier_goal"):
        dataclasses.replace(spec, frontier_goal=-1)


def test_the_report_names_a_task_that_yielded(study):  # noqa: F811 (the fixture)
    study_dir, state, _, _ = study
    r = Report(study_dir / "plain-report", "x")
    assert protocol_section(r, study_dir) and "yielded" not in r.markdown()
    yielded = study_dir / "yielded"
    yielded.mkdir()
    final = json.loads(json.dumps(state["final"]))
    for d in final["bc-cnn"]["decisions"].values():
        if d["reason"] == "budget":
            d["detail"] = d["detail"].split(", but only ")[0] + f", but {YIELDS}: 3 sizes"
    (yielded / "protocol.json").write_text(json.dumps({**state, "final": final}))
    r = Report(yielded / "report", "x")
    assert protocol_section(r, yielded)
    assert "BC-CNN had enough sizes on the frontier and yielded the budget share" in r.markdown()
