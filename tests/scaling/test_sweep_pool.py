"""Several runs per worker process: same results, no per-run process start."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import threading
import time

import pytest

from scaling.study import sweep_pool
from scaling.study.sweep import DONE_FILE, RunSpec, SweepError, prepare_runs, run_status
from tests.helpers.token_shards import write_shards

ENTRY = "tests.helpers.sweep_fake_trainer:train"


def _runs(root, sizes=("a", "b", "c"), data="tokens", **kw):
    return [RunSpec(name=f"wm-token-{s}-seed0", task="wm-token", size=s, seed=0,
                    out_dir=str(root / f"wm-token-{s}-seed0"), data=data, params=1000 * (i + 1),
                    **kw) for i, s in enumerate(sizes)]


def test_a_pool_keeps_its_workers_for_every_round(tmp_path):
    with sweep_pool.WorkerPool(2, cores=2, entry=ENTRY) as pool:
        first = _runs(tmp_path, sizes=("a", "b", "c"), tokens=500)
        assert pool.run(first) == {r.name: "finished" for r in first}
        workers = {w.pid for w in pool.workers}
        second = _runs(tmp_path, sizes=("d", "e"), tokens=500)
        assert pool.run(second) == {r.name: "finished" for r in second}
        assert {w.pid for w in pool.workers} == workers and len(workers) == 2
        pids = {json.loads((r.run_dir / DONE_FILE).read_text())["pid"] for r in first + second}
        assert pids <= workers  # every run was trained by one of the two first workers
        procs = list(pool.workers)
    assert all(p.poll() is not None for p in procs)  # closing the pool ends its workers


def test_a_pool_shows_its_runs_as_they_finish(tmp_path, capsys):
    runs = _runs(tmp_path, tokens=500)
    with sweep_pool.WorkerPool(2, cores=2, entry=ENTRY, progress=True) as pool:
        pool.run(runs[:1])
        capsys.readouterr()
        pool.run(runs, desc="round 2")  # the run trained before counts as done
    err = capsys.readouterr().err
    assert "round 2:  33%" in err and "1/3" in err and "3/3" in err
    with sweep_pool.WorkerPool(2, cores=2, entry=ENTRY) as pool:  # no bar unless asked for
        pool.run(_runs(tmp_path / "quiet", tokens=500))
    assert "run/s" not in capsys.readouterr().err


def test_a_worker_that_dies_while_idle_is_not_counted_as_a_run(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FAKE_STEP_S", "0.05")
    short, long = _runs(tmp_path, sizes=("a",), tokens=200)[0], _runs(tmp_path, sizes=("b",))[0]
    long = dataclasses.replace(long, tokens=4000)  # 40 steps: busy long after the short one

    def kill_the_idle_worker():  # the worker that trained the short run waits for another
        done = short.run_dir / DONE_FILE
        while not done.is_file():
            time.sleep(0.01)
        time.sleep(0.5)  # its line is read: the worker is idle (the long run has 1.5 s to go)
        os.kill(json.loads(done.read_text())["pid"], signal.SIGKILL)

    killer = threading.Thread(target=kill_the_idle_worker)
    with sweep_pool.WorkerPool(2, cores=2, entry=ENTRY, progress=True) as pool:
        killer.start()
        assert pool.run([long, short]) == {long.name: "finished", short.name: "finished"}
        killer.join()
    err = capsys.readouterr().err
    assert "2/2" in err.rstrip().split("\r")[-1]  # tqdm drops "n/total" once n passes total


def test_dead_workers_fail_their_runs_and_a_rerun_resumes_them(tmp_path, monkeypatch):
    runs = _runs(tmp_path, sizes=("a", "b", "c"), tokens=500)
    monkeypatch.setenv("FAKE_CRASH_AT", "2")  # the fake trainer exits its process at step 2
    with pytest.raises(SweepError, match="3 run\\(s\\) failed"):
        sweep_pool.run_pooled_sweep(runs, parallel=2, cores=2, entry=ENTRY)
    monkeypatch.delenv("FAKE_CRASH_AT")
    assert sweep_pool.run_pooled_sweep(runs, parallel=2, cores=2, entry=ENTRY) == {
        r.name: "finished" for r in runs}
    for r in runs:  # resumed from the step-2 checkpoint: every step logged once
        lines = (r.run_dir / "metrics.jsonl").read_text().splitlines()
        steps = [json.loads(x)["step"] for x in lines]
        assert steps == [1, 2, 3, 4, 5]


def test_pooled_sweep_trains_every_run_in_two_workers(tmp_path):
    runs = _runs(tmp_path, tokens=500)
    status = sweep_pool.run_pooled_sweep(runs, parallel=2, cores=2, entry=ENTRY)
    assert status == {r.name: "finished" for r in runs}
    for r in runs:
        assert len((r.run_dir / "metrics.jsonl").read_text().splitlines()) == 5
        assert json.loads((r.run_dir / DONE_FILE).read_text())["threads"] == "1"
        assert (r.run_dir / "train.log").is_file()


def test_a_run_trained_after_another_in_one_process_gives_the_same_metrics(tmp_path):
    write_shards(tmp_path / "shards")
    over = {"seq_len": 3, "tensorboard": False, "warmup_steps": 2}
    first, second = _runs(tmp_path / "pool", sizes=("s10k", "s30k"), data=str(tmp_path / "shards"),
                          tokens=6 * 4096, overrides=over)
    (alone,) = _runs(tmp_path / "alone", sizes=("s30k",), data=str(tmp_path / "shards"),
                     tokens=6 * 4096, overrides=over)
    prepare_runs([first, second, alone])
    assert sweep_pool.main([str(alone.run_dir / "run_spec.json")]) == 0
    assert sweep_pool.main([str(r.run_dir / "run_spec.json") for r in (first, second)]) == 0
    assert all(run_status(r) == "finished" for r in (first, second, alone))

    def metrics(run):
        return [{k: v for k, v in json.loads(x).items() if k != "tokens_per_s"}
                for x in (run.run_dir / "metrics.jsonl").read_text().splitlines()]

    assert metrics(second) == metrics(alone)
