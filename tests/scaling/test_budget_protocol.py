"""The frontier-seeking budget protocol on synthetic curves from a known L(N, D) law."""

import math
import re

import numpy as np
import pytest

from scaling.study.budget_costs import RunCurve, next_grid_tokens, spent
from scaling.study.budget_curves import Size, curve_noise
from scaling.study.budget_protocol import (
    ProtocolConfig,
    check_study_budget,
    crossings,
    plan_round,
)
from worldmodels.train_utils import is_log_step

TPS = 1000  # tokens per optimizer step of every synthetic run
SIGMA = 0.003  # noise of each logged loss


def chinchilla(n, d):
    """L(N, D) = E + A / N^alpha + B / D^beta."""
    return 1.0 + 40.0 / n ** 0.5 + 60.0 / d ** 0.35


def crossing_compute(n1, n2, law=chinchilla):
    """Compute C at which L(n2, C/6n2) falls below L(n1, C/6n1) (bisection in log C)."""
    lo, hi = math.log(6 * n2 * TPS), math.log(1e20)
    for _ in range(200):
        mid = (lo + hi) / 2
        c = math.exp(mid)
        if law(n2, c / (6 * n2)) < law(n1, c / (6 * n1)):
            hi = mid
        else:
            lo = mid
    return math.exp(hi)


def curve(name, n, tokens, law=chinchilla, train_items=None):
    """The run's logged points up to ``tokens``, with the same noise at a step in every round."""
    steps = int(tokens // TPS)
    logged = [s for s in range(1, steps + 1) if s == steps or is_log_step(s, 20)]
    loss = [law(n, s * TPS) + SIGMA * np.random.default_rng([n, s]).standard_normal()
            for s in logged]
    return RunCurve(name=name, size=name, params=n, flops=[6.0 * n * s * TPS for s in logged],
                    loss=loss, tokens=float(steps * TPS), inputs_per_update=TPS,
                    train_items=train_items, items_per_frame=10)


def simulate(sizes, cfg, tokens=1e5, law=chinchilla, train_items=None, rounds=30):
    """Run the protocol's rounds to the end: every extension resumes the same curve."""
    budget = {name: next_grid_tokens(tokens, TPS, cfg.val_points_per_decade) for name in sizes}
    history = []
    for _ in range(rounds):
        plan = plan_round([curve(k, n, budget[k], law, train_items) for k, n in sizes.items()],
                          cfg)
        history.append(plan)
        if plan.done:
            return plan, history
        budget.update({k: d.tokens for k, d in plan.decisions.items() if d.extend})
    raise AssertionError(f"the protocol did not finish in {rounds} rounds")


SIZES = {"s10k": 10_000, "s30k": 30_000}


def task_runs(task, scale):
    """The ladder ``SIZES`` scaled by ``scale`` at its first budget, as the runs of ``task``."""
    out = [curve(k, int(n * scale), 1e5) for k, n in SIZES.items()]
    for c in out:
        c.name = f"{task}-{c.name}"
    return out


def test_noise_estimate_recovers_the_scatter_of_a_curve():
    c = np.logspace(8, 12, 80)
    smooth = 1.0 + 30.0 / c ** 0.2
    noisy = smooth + 0.01 * np.random.default_rng(0).standard_normal(c.size)
    assert curve_noise(c, noisy) == pytest.approx(0.01, rel=0.3)
    assert curve_noise(c, smooth) < 1e-3


def test_a_sizes_noise_counts_the_spread_between_its_seeds():
    # two seeds of one size whose curves are each smooth but end 0.1 apart
    seeds = [curve("s10k", 10_000, 1e5, lambda n, d, k=k: chinchilla(n, d) + 0.1 * k)
             for k in range(2)]
    assert Size(seeds[:1], 0.5).sigma < 0.02  # one run: the scatter of its points alone
    assert Size(seeds, 0.5).sigma == pytest.approx(0.1 / math.sqrt(2), rel=0.05)


def test_a_crossing_is_found_where_the_law_puts_it():
    truth = crossing_compute(*SIZES.values())
    plan, history = simulate(SIZES, ProtocolConfig(budget=1e14))
    assert len(history) > 2  # the first round's curves do not cross: the protocol extended them
    assert any(d.reason == "extended" for d in history[0].decisions.values())
    (pair,) = crossings(plan)
    assert (pair.small, pair.large) == ("s10k", "s30k")
    assert truth / 1.1 < pair.crossing_flops < truth * 1.1  # 1.3% off with this noise draw
    assert pair.margin == pytest.approx(2 * math.sqrt(2 / 5) * SIGMA, rel=0.5)
    assert {d.reason for d in plan.decisions.values()} == {"crossing"}
    # the larger model was run past the crossing; neither ran more than 4x past it
    final = {k: 6 * SIZES[k] * d.tokens for k, d in plan.decisions.items()}
    assert final["s30k"] > pair.crossing_flops and max(final.values()) < 8 * truth


def test_a_plateau_of_the_smaller_model_stops_the_pair():
    def law(n, d):  # the larger model never gets below the smaller one's floor
        return (1.0 if n == 10_000 else 1.3) + 5e3 / d

    plan, history = simulate(SIZES, ProtocolConfig(budget=1e14), law=law)
    (pair,) = plan.pairs
    assert pair.status == "plateau" and not crossings(plan)
    assert (d := plan.decisions["s10k"]).reason == "plateau" and "two doublings" in d.detail
    # the larger model was extended until its curve covered the smaller one's compute
    assert any(h.decisions["s10k"].reason == "plateau" and h.decisions["s30k"].extend
               for h in history)
    assert 30_000 * plan.decisions["s30k"].tokens >= 10_000 * plan.decisions["s10k"].tokens


def test_the_study_budget_running_out_is_reported():
    first = sum(6.0 * n * next_grid_tokens(1e5, TPS, 5) for n in SIZES.values())
    cfg = ProtocolConfig(budget=3 * first)
    plan, _ = simulate(SIZES, cfg)
    blocked = [d for d in plan.decisions.values() if d.reason == "budget"]
    assert blocked and not crossings(plan)
    assert "would cost" in blocked[0].detail and "left" in blocked[0].detail
    assert plan.spent + plan.planned <= cfg.budget
    with pytest.raises(ValueError, match=re.escape(f"at least {first:.3g} flops")):
        check_study_budget(first, ProtocolConfig(budget=first / 2))


def test_a_fixed_dataset_stops_the_run_at_four_passes():
    items = 2e5  # 4 passes = 8e5 tokens, far below the ~2e6 the crossing needs
    plan, _ = simulate(SIZES, ProtocolConfig(budget=1e14), train_items=items)
    small = plan.decisions["s10k"]
    assert small.reason == "data limit" and "not identified: data limit" in small.detail
    assert small.tokens <= 4 * items and small.frames_needed > items / 10
    assert f"{small.frames_needed:,} training frames needed" in small.detail
    assert not crossings(plan)
    # a study that collects its own data asks for more frames instead
    plan, _ = simulate(SIZES, ProtocolConfig(budget=1e14, collect=True), train_items=items)
    assert plan.data_request and plan.data_request > items / 10
    assert "the study collects them" in plan.decisions["s10k"].detail


def test_a_collecting_study_asks_for_data_only_for_runs_the_limit_stops():
    """A run that can still be extended up to the data limit is, without asking for data; once
    the limit stops it, the study asks for the frames its extension needs, if it can pay."""
    items = 2e5
    cfg = ProtocolConfig(budget=1e14, collect=True)
    _, history = simulate(SIZES, cfg, train_items=items)
    for plan in history:
        small = plan.decisions["s10k"]
        if small.extend:  # extended (to the limit at most): no data asked for
            assert plan.data_request is None, plan.decisions
        elif small.reason == "data limit":
            assert plan.data_request == small.frames_needed
    assert any(p.decisions["s10k"].reason == "data limit" for p in history)
    poor = ProtocolConfig(budget=6.0 * 10_000 * 4 * items * 1.01, collect=True)
    plan = plan_round([curve(k, n, 4 * items, chinchilla, items) for k, n in SIZES.items()],
                      poor)
    assert plan.data_request is None  # the budget could not train the data it would ask for


def test_budgets_land_on_validation_steps():
    assert next_grid_tokens(1, TPS, 5) == TPS
    assert next_grid_tokens(11 * TPS, TPS, 5) == 16 * TPS
    assert next_grid_tokens(16 * TPS, TPS, 5) == 16 * TPS
    with pytest.raises(ValueError, match="budget unit"):
        ProtocolConfig(budget=1.0, unit="hours")


def _noisy_run(loss_at, steps: int, sigma: float, seed: int) -> Size:
    """One run's log-spaced points of ``loss_at(step)`` plus Gaussian noise, as a Size."""
    logged = [s for s in range(1, steps + 1) if s == steps or is_log_step(s, 20)]
    rng = np.random.default_rng(seed)
    loss = [loss_at(s) + sigma * rng.standard_normal() for s in logged]
    run = RunCurve(name="r", size="s10k", params=10_000, flops=[6e4 * s * TPS for s in logged],
                   loss=loss, tokens=float(steps * TPS), inputs_per_update=TPS)
    return Size([run], late_fraction=0.5)


def test_a_plateau_is_a_fall_per_doubling_within_the_noise():
    # flat: the fall per doubling is noise, so the test calls it a plateau in nearly every draw;
    # a slow steady fall (0.03 per doubling, about 6 standard errors here) is never one, though
    # a comparison of two 5-point means over one doubling misses it in many draws
    flat = [_noisy_run(lambda s: 1.0, 2000, 0.01, seed).plateaued(2.0) for seed in range(50)]
    slow = [_noisy_run(lambda s: 1.5 - 0.03 * math.log2(s), 2000, 0.01, seed).plateaued(2.0)
            for seed in range(50)]
    assert sum(flat) >= 45 and sum(slow) == 0
    # a young curve never counts, however flat
    assert not _noisy_run(lambda s: 1.0, 100, 0.01, 0).plateaued(2.0, min_steps=1000)


def test_an_early_flat_stretch_is_not_a_plateau():
    # a behaviour-cloning curve: stuck at the action marginal for ~5e5 tokens, then learning
    # (s10k's floor 0.6, s30k's 0.4); the flat stretch of the first round looks like a plateau
    def law(n, d):
        floor = 0.6 if n == 10_000 else 0.4
        return floor + (1.05 - floor) / (1.0 + (d / 5e5) ** 4) + 50.0 / d

    young = [_noisy_run(lambda s: law(10_000, s * TPS), 100, SIGMA, seed) for seed in range(20)]
    # without the guard most draws would stop the pair (its fall is about one standard error)
    assert sum(y.plateaued(2.0) for y in young) >= 10
    assert not any(y.plateaued(2.0, min_steps=1000) for y in young)
    plan, history = simulate(SIZES, ProtocolConfig(budget=1e14, min_plateau_steps=1000),
                             law=law)
    assert plan.pairs[0].status == "crossing"
    assert all(d.tokens >= 1000 * TPS for d in plan.decisions.values())


def test_a_gap_that_closes_again_is_not_a_crossing():
    # the larger model dips below the smaller early (a transient) and is above it at the end
    def law(n, d):
        dip = math.exp(-((math.log(d) - math.log(1e5)) ** 2)) if n == 30_000 else 0.0
        return (1.0 if n == 10_000 else 1.2) + 300.0 / d ** 0.5 - dip

    curves = [curve(k, n, 4e5, law) for k, n in SIZES.items()]
    # same compute range: the smaller model trains 3x the tokens
    curves[0] = curve("s10k", 10_000, 1.2e6, law)
    cfg = ProtocolConfig(budget=1e14, min_plateau_steps=10**6)
    small, large = (Size([c], cfg.late_fraction) for c in curves)
    grid = np.linspace(max(small.lo, large.lo), min(small.hi, large.hi), 64)
    assert (small.at(grid) - large.at(grid)).max() > 0.3  # the larger model dipped below
    plan = plan_round(curves, cfg)
    assert plan.pairs[0].status == "open" and not crossings(plan)


def test_a_gap_seen_in_the_larger_models_first_updates_is_not_yet_a_crossing():
    # the larger model dips below the smaller in its first updates and ends above it; its first
    # budget stops inside the dip (50 updates), where the gap exceeds the margin
    def law(n, d):
        dip = math.exp(-4.0 * (math.log(d) - math.log(5e4)) ** 2) if n == 30_000 else 0.0
        return (1.0 if n == 10_000 else 1.2) + 300.0 / d ** 0.5 - dip

    curves = [curve("s10k", 10_000, 1.5e5, law), curve("s30k", 30_000, 5e4, law)]
    late = 10**6  # no plateaus here
    early = plan_round(curves, ProtocolConfig(budget=1e14, min_crossing_steps=0,
                                              min_plateau_steps=late))
    assert early.pairs[0].status == "crossing"  # what the first updates alone would say
    plan = plan_round(curves, ProtocolConfig(budget=1e14, min_plateau_steps=late))
    assert plan.pairs[0].status == "open" and plan.decisions["s30k"].extend
    assert plan.pairs[0].target_flops >= 2 * 6.0 * 30_000 * 5e4
    # extended to that compute, the pair is seen for what it is: the larger model is above
    t = plan.pairs[0].target_flops
    grown = [curve("s10k", 10_000, t / 6e4, law), curve("s30k", 30_000, t / 1.8e5, law)]
    again = plan_round(grown, ProtocolConfig(budget=1e14, min_plateau_steps=late))
    assert again.pairs[0].status == "open" and not crossings(again)


def test_budget_shares_keep_a_costly_task_its_part_of_the_budget():
    from scaling.study.budget_tasks import plan_tasks

    # two tasks at their first round; "big" needs extensions 10x dearer than "cheap"
    curves = {"cheap": task_runs("cheap", 1.0), "big": task_runs("big", 10.0)}
    asked = {t: plan_round(cs, ProtocolConfig(budget=1e20)).planned for t, cs in curves.items()}
    used = {t: spent(cs, "flops") for t, cs in curves.items()}
    budget = sum(used.values()) + asked["big"] + 0.5 * asked["cheap"]
    cfg = ProtocolConfig(budget=budget)
    # in order: the cheap task plans first and leaves the big one less than it asks for
    plain = plan_tasks(curves, cfg)
    assert plain["cheap"].planned == pytest.approx(asked["cheap"])
    assert plain["big"].planned < asked["big"]
    # with a share that covers what "big" asks, it is paid first and the cheap task waits
    big = (used["big"] + asked["big"]) / budget
    shared = plan_tasks(curves, cfg, {"cheap": 1.0 - big, "big": big})
    assert shared["big"].planned == pytest.approx(asked["big"])
    assert shared["cheap"].planned < asked["cheap"]
    assert sum(used.values()) + sum(p.planned for p in shared.values()) <= budget * (1 + 1e-12)
    assert any(d.reason == "budget" for d in shared["cheap"].decisions.values())
    # a task that still asks for more keeps its whole share, even where it asks little now
    roomy = plan_tasks(curves, cfg, {"cheap": 0.1, "big": 0.9})
    assert used["cheap"] + roomy["cheap"].planned <= 0.1 * budget * (1 + 1e-12)
    # a task that asks for nothing more (one size: no pair to cross) leaves its share to others
    solo = {"solo": [curves["cheap"][0]], "big": curves["big"]}
    cfg2 = ProtocolConfig(budget=used["big"] + used["cheap"] / 2 + asked["big"])
    freed = plan_tasks(solo, cfg2, {"solo": 0.5, "big": 0.5})
    assert freed["solo"].done and freed["big"].planned == pytest.approx(asked["big"])


def test_a_size_with_too_few_points_is_extended_to_its_neighbours_compute():
    # The largest size's first budget holds a single logged point: its pair cannot be compared,
    # so without a request of its own it would wait for ever and its neighbours with it.
    runs = [curve("s10k", 10_000, 2e5), curve("s30k", 30_000, 2e5), curve("s100k", 100_000, TPS)]
    assert len(runs[2].flops) == 1
    plan = plan_round(runs, ProtocolConfig(budget=1e15))
    pair = next(p for p in plan.pairs if p.large == "s100k")
    assert pair.status == "no overlap" and pair.target_flops == pytest.approx(max(runs[1].flops))
    d = plan.decisions["s100k"]
    assert d.extend and d.reason == "extended" and "too few points" in d.detail
    assert 6.0 * 100_000 * d.tokens >= max(runs[1].flops)
    # both curves too short: both grow from the larger compute reached
    short = [curve("s10k", 10_000, TPS), curve("s30k", 30_000, TPS)]
    plan = plan_round(short, ProtocolConfig(budget=1e15))
    assert all(plan.decisions[k].extend for k in ("s10k", "s30k"))


def test_the_run_that_lags_behind_its_pair_is_paid_first():
    # s30k's curve ends at a third of s10k's compute, and the budget pays for one extension: the
    # pair compares only as far as both curves reach, so s30k's extension is the one that counts
    runs = [curve("s10k", 10_000, 8e5), curve("s30k", 30_000, 9e4)]
    assert crossing_compute(10_000, 30_000) > 6.0 * 10_000 * 8e5  # not crossed yet
    free = ProtocolConfig(budget=1e20)
    asked = {k: d.tokens for k, d in plan_round(runs, free).decisions.items()}
    cost = {r.size: 6.0 * r.params * (asked[r.size] - r.tokens) for r in runs}
    assert cost["s30k"] > cost["s10k"] > 0
    cfg = ProtocolConfig(budget=spent(runs, "flops") + cost["s30k"])
    plan = plan_round(runs, cfg)
    assert plan.pairs[0].status == "open"
    assert plan.decisions["s30k"].extend and plan.decisions["s30k"].tokens == asked["s30k"]
    lagged = plan.decisions["s10k"]
    assert not lagged.extend and lagged.reason == "budget"
    assert lagged.cost == pytest.approx(cost["s10k"])
    assert list(plan.decisions) == ["s10k", "s30k"]  # reported by size, whatever the order paid


def test_a_share_no_budget_left_could_pay_for_goes_to_the_others():
    from scaling.study.budget_tasks import plan_tasks

    curves = {"big": task_runs("big", 10.0), "cheap": task_runs("cheap", 1.0)}
    asked = {t: plan_round(cs, ProtocolConfig(budget=1e20)).planned for t, cs in curves.items()}
    used = {t: spent(cs, "flops") for t, cs in curves.items()}
    budget = sum(used.values()) + 1.01 * asked["cheap"]
    # "big" holds what it spent and half of what "cheap" asks: too little for any of its own
    # extensions, and the whole study has less left than its cheapest one costs
    big = (used["big"] + 0.5 * asked["cheap"]) / budget
    plans = plan_tasks(curves, ProtocolConfig(budget=budget), {"big": big, "cheap": 1.0 - big})
    refused = [d for d in plans["big"].decisions.values() if d.reason == "budget"]
    assert plans["big"].planned == 0 and refused
    assert min(d.cost for d in refused) > budget - sum(used.values())
    # so its unspent share pays for what "cheap" asks, which its own share could not
    assert plans["cheap"].planned == pytest.approx(asked["cheap"])
    alone = plan_round(curves["cheap"], ProtocolConfig(budget=(1.0 - big) * budget))
    assert alone.planned < asked["cheap"]
    assert sum(used.values()) + sum(p.planned for p in plans.values()) <= budget * (1 + 1e-12)


def test_shares_that_pay_for_nothing_are_pooled():
    from scaling.study.budget_tasks import plan_tasks

    curves = {"one": task_runs("one", 1.0), "two": task_runs("two", 1.0)}
    free = {t: plan_round(cs, ProtocolConfig(budget=1e20)) for t, cs in curves.items()}
    cheapest = min(6.0 * r.params * (free["one"].decisions[r.name].tokens - r.tokens)
                   for r in curves["one"] if free["one"].decisions[r.name].extend)
    used = {t: spent(cs, "flops") for t, cs in curves.items()}
    # each share leaves 60% of the cheapest extension: neither pays for anything alone, but what
    # the two leave together does, so the study does not end with that budget unspent
    budget = sum(used.values()) + 1.2 * cheapest
    shares = {t: (used[t] + 0.6 * cheapest) / budget for t in curves}
    for t, cs in curves.items():
        assert plan_round(cs, ProtocolConfig(budget=shares[t] * budget)).planned == 0
    plans = plan_tasks(curves, ProtocolConfig(budget=budget), shares)
    assert plans["one"].planned == pytest.approx(cheapest) and not plans["one"].done
    assert plans["two"].planned == 0 and plans["two"].done  # the first task in order is paid
    assert any(d.reason == "budget" for d in plans["two"].decisions.values())
    assert sum(used.values()) + sum(p.planned for p in plans.values()) <= budget * (1 + 1e-12)


def test_a_share_others_have_spent_is_not_spent_twice():
    from scaling.study.budget_tasks import plan_tasks

    # "big" was paid beyond its share in earlier rounds (from a share another task released);
    # "small" asks for an extension that fits its own share but not what the study has left
    curves = {"small": task_runs("small", 1.0), "big": task_runs("big", 10.0)}
    asked = plan_round(curves["small"], ProtocolConfig(budget=1e20)).planned
    used = {t: spent(cs, "flops") for t, cs in curves.items()}
    budget = used["big"] + used["small"] + 0.5 * asked
    shares = {"small": (used["small"] + 2.0 * asked) / budget}
    shares["big"] = 1.0 - shares["small"]
    assert used["big"] > shares["big"] * budget  # "big" has spent more than its share
    assert plan_round(curves["small"], ProtocolConfig(budget=shares["small"] * budget)).planned \
        == pytest.approx(asked)  # the share alone would pay for the whole request
    plans = plan_tasks(curves, ProtocolConfig(budget=budget), shares)
    assert sum(used.values()) + sum(p.planned for p in plans.values()) <= budget * (1 + 1e-12)
    assert any(d.reason == "budget" for d in plans["small"].decisions.values())


def _shifted_run(size, n, tokens, offset):
    """~50 log-spaced points of one loss-vs-compute law, lowered by ``offset``, noise ±SIGMA."""
    steps = np.unique(np.geomspace(1, tokens / TPS, 60).astype(int))
    c = 6.0 * n * steps * TPS
    noise = SIGMA * (-1.0) ** np.arange(steps.size)[::-1]  # the same phase at both curves' ends
    loss = 1.0 + 0.5 / (c / 6e4) ** 0.3 - offset + noise
    return RunCurve(name=size, size=size, params=n, flops=list(c), loss=list(loss),
                    tokens=float(steps[-1] * TPS), inputs_per_update=TPS)


@pytest.mark.parametrize("fraction, status", [(0.5, "open"), (3.0, "crossing")])
def test_a_gap_inside_the_pairs_noise_margin_is_not_a_crossing(fraction, status):
    # two sizes on one curve (level), then the larger lowered by a fraction of the pair's margin
    cfg = ProtocolConfig(budget=1e14, min_plateau_steps=10**6)
    level = plan_round([_shifted_run("s10k", 10_000, 1.2e6, 0.0),
                        _shifted_run("s30k", 30_000, 4e5, 0.0)], cfg).pairs[0]
    assert level.margin > 0 and level.status == "open"
    pair = plan_round([_shifted_run("s10k", 10_000, 1.2e6, 0.0),
                       _shifted_run("s30k", 30_000, 4e5, fraction * level.margin)], cfg).pairs[0]
    assert pair.margin == pytest.approx(level.margin)  # a shift leaves the noise as it was
    assert pair.status == status
