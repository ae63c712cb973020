"""A study stage killed with SIGKILL leaves nothing half-made, and its rerun gives the same data."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from scaling.cli import main as embscale
from scaling.study.presets import quick_study
from scaling.study.spec import DatasetSpec

ROOT = Path(__file__).resolve().parents[2]


def _spec(tmp_path, dataset_id, name):
    spec = dataclasses.replace(
        quick_study(), name=name, runs_dir=str(tmp_path / "runs"),
        dataset=DatasetSpec(id=dataset_id, collect=True, episodes=10, max_episode_steps=400,
                            max_total_steps=4000))
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(spec.to_dict()))
    return path


def _episodes(dataset_id):
    from offline_data.datasets import load_dataset

    ds = load_dataset(dataset_id)
    return [(ep.observations, ep.actions, ep.rewards) for ep in ds.iterate_episodes()]


@pytest.mark.slow
def test_kill_9_in_the_dataset_stage_then_rerun(tmp_path, minari_datasets_path):
    killed = _spec(tmp_path, "embscale/breakout/killed-v0", "killed")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
           "MINARI_DATASETS_PATH": str(minari_datasets_path)}
    proc = subprocess.Popen([sys.executable, "-m", "scaling.cli", "-q", "study", "--spec",
                             str(killed), "--stages", "dataset", "--no-progress"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not list((minari_datasets_path / ".embscale-staging").rglob("part-*")):
            assert proc.poll() is None, "the stage ended before it could be killed"
            assert time.time() < deadline, "the stage wrote no episode within 120 s"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    assert not (minari_datasets_path / "embscale" / "breakout" / "killed-v0").exists()
    assert not (tmp_path / "runs" / "killed" / "dataset.json").exists()
    assert embscale(["-q", "study", "--spec", str(killed), "--stages", "dataset",
                     "--no-progress"]) == 0
    reference = _spec(tmp_path, "embscale/breakout/reference-v0", "reference")
    assert embscale(["-q", "study", "--spec", str(reference), "--stages", "dataset",
                     "--no-progress"]) == 0
    got, want = _episodes("embscale/breakout/killed-v0"), _episodes(
        "embscale/breakout/reference-v0")
    assert len(got) == len(want) > 1
    for a, b in zip(got, want, strict=True):
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, y)
