"""Checkpoint evaluations spread over worker processes give what one process gives."""

import os

import pytest

from scaling.study.eval_pool import evaluate_all
from tests.helpers.eval_jobs import square_where


def test_workers_compute_what_one_process_does_each_with_its_share_of_the_cores():
    items = list(range(6))
    alone = dict((x, r[0]) for x, r in evaluate_all(square_where, items, parallel=1))
    got = dict(evaluate_all(square_where, items, parallel=2, cores=2))
    assert {x: r[0] for x, r in got.items()} == alone == {x: x * x for x in items}
    pids = {r[1] for r in got.values()}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2  # in workers, at most two
    assert {r[2] for r in got.values()} == {1}  # 2 cores over 2 workers: one thread each
    assert {r[3] for r in got.values()} == {"PASSIVE"}  # idle OpenMP threads sleep
    # one process (or one job) stays in this process: nothing is started
    ((_, (_, pid, _, _)),) = evaluate_all(square_where, [3], parallel=2)
    assert pid == os.getpid()


def test_a_failing_job_raises_its_own_error():
    with pytest.raises(ValueError, match="negative job -1"):
        list(evaluate_all(square_where, [1, -1, 2], parallel=2, cores=2))
