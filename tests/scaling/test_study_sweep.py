"""Sweep machinery: resumable runs, parallelism, spec-change refusal, job lists.

These tests use a stand-in training entry (tests/helpers/sweep_fake_trainer.py) so that they
check the orchestration alone; the miniature study test runs the real trainer.
"""

from __future__ import annotations

import json

import pytest

from scaling.study.jobs import emit_jobs
from scaling.study.sweep import (
    DONE_FILE,
    RunSpec,
    SpecMismatchError,
    SweepError,
    check_consistent,
    collect_results,
    run_status,
    run_sweep,
)

ENTRY = "tests.helpers.sweep_fake_trainer:train"


def _runs(root, tokens=1000, sizes=("a", "b", "c")):
    return [RunSpec(name=f"wm-token-{s}-seed0", task="wm-token", size=s, seed=0,
                    out_dir=str(root / f"wm-token-{s}-seed0"), data="tokens", tokens=tokens,
                    params=1000 * (i + 1)) for i, s in enumerate(sizes)]


def _steps(run):
    lines = (run.run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(ln)["step"] for ln in lines]


def test_sweep_runs_all_and_skips_finished(tmp_path):
    runs = _runs(tmp_path)
    ended = []
    status = run_sweep(runs, parallel=2, cores=2, entry=ENTRY, progress=False, poll_s=0.05,
                       on_finish=lambda r, rc: ended.append((r.name, rc)))
    assert set(status.values()) == {"finished"}
    assert sorted(ended) == sorted((r.name, 0) for r in runs)
    for r in runs:
        assert _steps(r) == list(range(1, 11))
        assert json.loads((r.run_dir / DONE_FILE).read_text())["threads"] == "1"
    assert collect_results(runs) == [r.run_dir for r in runs]
    # A second sweep starts nothing.
    ended.clear()
    run_sweep(runs, parallel=2, entry=ENTRY, progress=False, poll_s=0.05,
              on_finish=lambda r, rc: ended.append(r.name))
    assert ended == []


def test_sweep_runs_in_parallel(tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_STEP_S", "0.15")
    runs = _runs(tmp_path, sizes=("a", "b"))
    run_sweep(runs, parallel=2, cores=4, entry=ENTRY, progress=False, poll_s=0.05)
    (a, b) = [json.loads((r.run_dir / DONE_FILE).read_text()) for r in runs]
    assert a["threads"] == "2"
    # The two runs' working intervals overlap: they ran at the same time.
    assert a["start"] < b["end"] and b["start"] < a["end"]


def test_interrupted_run_resumes_same_curve(tmp_path, monkeypatch):
    runs = _runs(tmp_path, sizes=("a",))
    monkeypatch.setenv("FAKE_CRASH_AT", "4")
    with pytest.raises(SweepError, match="wm-token-a-seed0.*train.log"):
        run_sweep(runs, parallel=1, entry=ENTRY, progress=False, poll_s=0.05)
    assert run_status(runs[0]) == "interrupted"
    assert _steps(runs[0]) == [1, 2, 3, 4]
    monkeypatch.delenv("FAKE_CRASH_AT")
    run_sweep(runs, parallel=1, entry=ENTRY, progress=False, poll_s=0.05)
    assert run_status(runs[0]) == "finished"
    assert _steps(runs[0]) == list(range(1, 11))


def test_changed_spec_on_interrupted_sweep_is_refused(tmp_path, monkeypatch):
    runs = _runs(tmp_path, sizes=("a", "b"))
    monkeypatch.setenv("FAKE_CRASH_AT", "2")
    with pytest.raises(SweepError):
        run_sweep(runs, parallel=2, entry=ENTRY, progress=False, poll_s=0.05)
    monkeypatch.delenv("FAKE_CRASH_AT")
    changed = _runs(tmp_path, tokens=2000, sizes=("a", "b"))
    with pytest.raises(SpecMismatchError, match=r"(?s)tokens: 1000 -> 2000.*--allow-mixed"):
        run_sweep(changed, parallel=2, entry=ENTRY, progress=False, poll_s=0.05)
    # Adding a new run is not mixing: only started runs are compared.
    extra = _runs(tmp_path, sizes=("a", "b", "c"))
    assert check_consistent(extra) == []
    # Nor is a change of how many checkpoints the later stages read: every one is kept.
    for run in extra:
        run.checkpoints = 8
    assert check_consistent(extra) == []
    # Told to, the sweep keeps the old runs (resumed as they were started).
    problems = check_consistent(changed, allow_mixed=True)
    assert len(problems) == 2
    run_sweep(changed, parallel=2, entry=ENTRY, progress=False, poll_s=0.05, allow_mixed=True)
    assert _steps(changed[0]) == list(range(1, 11))


def test_emit_jobs_formats(tmp_path):
    runs = _runs(tmp_path)
    out = emit_jobs(runs, tmp_path / "jobs.jsonl", fmt="jsonl", nproc_per_node=4)
    jobs = [json.loads(ln) for ln in out.read_text().splitlines()]
    assert [j["name"] for j in jobs] == [r.name for r in reversed(runs)]  # largest first
    prefix = "torchrun --standalone --nproc_per_node=4 -m scaling.study.sweep"
    assert all(j["command"].startswith(prefix) for j in jobs)
    assert all((r.run_dir / "run_spec.json").is_file() for r in runs)
    sh = emit_jobs(runs, tmp_path / "jobs.sh", fmt="torchrun").read_text()
    assert sh.count("torchrun ") == 3
    slurm = emit_jobs(runs, tmp_path / "jobs.slurm", fmt="slurm").read_text()
    assert "#SBATCH --array=0-2" in slurm
    with pytest.raises(ValueError, match="jsonl\\|torchrun\\|slurm"):
        emit_jobs(runs, tmp_path / "x", fmt="pbs")


def test_run_spec_rejects_unknown_keys(tmp_path):
    d = _runs(tmp_path)[0].to_dict()
    d["learning_rate"] = 1e-3
    with pytest.raises(ValueError, match="unknown key.*learning_rate"):
        RunSpec.from_dict(d)


def test_a_killed_sweep_takes_its_run_processes_with_it(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import textwrap
    import time

    (tmp_path / "slow_entry.py").write_text(textwrap.dedent("""
        import os, pathlib, time
        def train(run):
            pathlib.Path(run.run_dir, "pid").write_text(str(os.getpid()))
            time.sleep(120)
            return {}
    """))
    driver = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        from scaling.study.sweep import RunSpec, run_sweep
        run = RunSpec(name="r0", task="wm-token", size="s10k", seed=0, out_dir={str(tmp_path)!r},
                      data="x", tokens=1e3)
        run_sweep([run], parallel=1, entry="slow_entry:train", progress=False, poll_s=0.1)
    """)
    study = subprocess.Popen([sys.executable, "-c", driver])
    pid_file = tmp_path / "pid"  # the run directory is out_dir
    deadline = time.time() + 60
    while not (pid_file.is_file() and pid_file.read_text()) and time.time() < deadline:
        time.sleep(0.1)
    if not pid_file.is_file():
        study.kill()
        pytest.fail("the sweep never started its run")
    child = int(pid_file.read_text())
    os.kill(study.pid, signal.SIGTERM)  # as a scheduler's timeout ends a job: no except runs
    study.wait(timeout=30)
    gone = time.time() + 10
    while time.time() < gone:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(child, signal.SIGKILL)
    pytest.fail(f"run process {child} outlived its killed study")


def test_a_run_that_failed_before_training_is_pending_and_its_error_is_quoted(tmp_path,
                                                                              monkeypatch):
    """A bad config kills a run before its first step: the sweep's one-line error quotes the
    run's last log line, and the run, which trained nothing, may start again on a fixed spec."""
    runs = _runs(tmp_path, sizes=("a",))
    monkeypatch.setenv("FAKE_BAD_CONFIG", "1")
    with pytest.raises(SweepError, match="1 run\\(s\\) failed: wm-token-a-seed0; wm-token-a-seed0 "
                                         "ended with: .*learning rate; read .*train.log"):
        run_sweep(runs, parallel=1, entry=ENTRY, progress=False, poll_s=0.05)
    assert isinstance(SweepError("x"), OSError)  # reported in one line as an input problem
    assert run_status(runs[0]) == "pending"
    (runs[0].run_dir / "metrics.jsonl").write_text('{"step": 0, "tokens": 0}\n')
    assert run_status(runs[0]) == "pending"  # the trainer's line before its first update
    monkeypatch.delenv("FAKE_BAD_CONFIG")
    fixed = _runs(tmp_path, tokens=2000, sizes=("a",))
    run_sweep(fixed, parallel=1, entry=ENTRY, progress=False, poll_s=0.05)
    assert run_status(fixed[0]) == "finished"
