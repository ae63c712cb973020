"""Encoding survives kill -9, stale or foreign parts, and never replaces a user's directory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers.tokenizers import TINY_VQ, make_dataset, one_torch_thread
from worldmodels import encode_parts
from worldmodels.tokenize_dataset import encode_dataset
from worldmodels.tokenizer import VQVAE, VQConfig, save_tokenizer

ROOT = Path(__file__).resolve().parents[2]
DATASET = "embscale/synthetic/random-v0"
OTHER = "embscale/synthetic/other-v0"


@pytest.fixture(autouse=True)
def _one_thread():
    with one_torch_thread():
        yield


def _tokenizer(path):
    torch.manual_seed(0)
    model = VQVAE(VQConfig(image_height=16, image_width=16, tokens_per_frame=4, **TINY_VQ))
    model.eval()
    save_tokenizer(model, path)


def _same(a, b):
    assert a.header.splits == b.header.splits
    for split in a.header.splits:
        for x, y in zip(a.split(split), b.split(split), strict=True):
            np.testing.assert_array_equal(x, y)


def test_stale_and_foreign_parts_are_never_merged(tmp_path, monkeypatch):
    make_dataset(DATASET, size=16)
    make_dataset(OTHER, size=16, seed=5)
    _tokenizer(tmp_path / "tok.pt")
    single = encode_dataset(tmp_path / "tok.pt", DATASET, tmp_path / "single", progress=False)
    out = tmp_path / "multi"
    # A killed run on another dataset left a finished rank-0 part, with its own nonce.
    monkeypatch.setenv("EMBSCALE_ENCODE_NONCE", "killed-run")
    encode_dataset(tmp_path / "tok.pt", OTHER, out, rank=1, world_size=2, progress=False)
    stale_tmp = tmp_path / ".multi.abcd1234.tmp"
    stale_tmp.mkdir()  # and a half-written output of a killed merge
    monkeypatch.setenv("EMBSCALE_ENCODE_NONCE", "this-run")
    result = {}
    rank0 = threading.Thread(target=lambda: result.update(shards=encode_dataset(
        tmp_path / "tok.pt", DATASET, out, rank=0, world_size=2, progress=False,
        wait_timeout_s=120)))
    rank0.start()
    tag0 = tmp_path / ".multi.parts" / "rank-0.tag.json"
    deadline = time.time() + 60
    while not tag0.exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(1.5)  # rank 0 polls every second: it must keep waiting past the stale part
    assert tag0.exists() and not out.exists() and rank0.is_alive()
    encode_dataset(tmp_path / "tok.pt", DATASET, out, rank=1, world_size=2, progress=False)
    rank0.join(timeout=120)
    merged = result["shards"]
    _same(merged, single)
    assert merged.header.dataset_id == DATASET
    assert not stale_tmp.exists() and not (tmp_path / ".multi.parts").exists()


def test_a_part_of_this_run_naming_another_dataset_is_refused(tmp_path):
    part = tmp_path / ".out.parts" / "rank-1"
    part.mkdir(parents=True)
    (part / "header.json").write_text("{}")
    encode_parts.write_tag(part, OTHER, "nonce-1")
    assert not encode_parts.part_ready(part, DATASET, "another-nonce")  # stale: wait
    with pytest.raises(ValueError, match=r"rank-1 is of dataset 'embscale/synthetic/other-v0'"):
        encode_parts.part_ready(part, DATASET, "nonce-1")


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc to find the workers")
def test_kill_9_during_a_multi_worker_encode(tmp_path, minari_datasets_path):
    """The workers die with their parent; the next run cleans up and gives the same shards."""
    make_dataset(DATASET, num_episodes=8, steps=40, size=16)
    _tokenizer(tmp_path / "tok.pt")
    out = tmp_path / "tokens"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
           "MINARI_DATASETS_PATH": str(minari_datasets_path)}
    argv = [sys.executable, "-m", "scaling.cli", "tokenizer", "encode", "--tokenizer",
            str(tmp_path / "tok.pt"), "--dataset", DATASET, "--out", str(out), "--workers", "2",
            "--batch-size", "1", "--device", "cpu", "--no-progress"]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        workers: list[int] = []
        while len(workers) < 2 and proc.poll() is None and time.time() < deadline:
            # the pool's workers (the spawn machinery may add a resource tracker)
            workers = [p for p in _children(proc.pid)
                       if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()]
            time.sleep(0.05)
        assert len(workers) == 2, "the encode finished or failed before it was killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    deadline = time.time() + 30
    while any(_alive(p) for p in workers) and time.time() < deadline:
        time.sleep(0.1)
    assert not any(_alive(p) for p in workers), "worker processes outlived their parent"
    assert not (out / "header.json").exists()
    shards = encode_dataset(tmp_path / "tok.pt", DATASET, out, num_workers=2, progress=False)
    single = encode_dataset(tmp_path / "tok.pt", DATASET, tmp_path / "single", progress=False)
    _same(shards, single)
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".tokens.")
                 and p.name != ".tokens.lock"]
    assert leftovers == []


PARENT = """
import os, sys, time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from offline_data.processes import die_with_parent

if __name__ == "__main__":
    with ProcessPoolExecutor(1, mp_context=get_context("spawn"), initializer=die_with_parent,
                             initargs=(os.getpid(),)) as pool:
        pool.submit(time.sleep, 1000)
        time.sleep(1000)
"""


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc to find the worker")
def test_a_busy_worker_dies_with_its_killed_parent(tmp_path):
    """Without ``die_with_parent`` this worker would sleep on, orphaned, for 1000 s."""
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, str(script)], env=env)
    try:
        deadline, workers = time.time() + 60, []
        while not workers and time.time() < deadline:
            workers = [p for p in _children(proc.pid)
                       if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()]
            time.sleep(0.05)
        assert workers
        time.sleep(0.5)  # let it reach time.sleep(1000)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    deadline = time.time() + 10
    while any(_alive(p) for p in workers) and time.time() < deadline:
        time.sleep(0.05)
    assert not any(_alive(p) for p in workers), "the worker outlived its parent"


def test_encode_overwrite_replaces_shards_but_never_a_users_directory(tmp_path, capsys):
    from scaling.cli import main as embscale

    make_dataset(DATASET, size=16)
    _tokenizer(tmp_path / "tok.pt")
    user = tmp_path / "mine"
    user.mkdir()
    (user / "thesis.tex").write_text("years of work")
    argv = ["tokenizer", "encode", "--tokenizer", str(tmp_path / "tok.pt"), "--dataset",
            DATASET, "--no-progress", "--overwrite", "--out"]
    assert embscale([*argv, str(user)]) == 2
    assert "refusing to replace" in capsys.readouterr().err
    assert (user / "thesis.tex").read_text() == "years of work"
    assert embscale([*argv, str(tmp_path / "tokens")]) == 0  # new
    assert embscale([*argv, str(tmp_path / "tokens")]) == 0  # replaced: the suite's own
    assert (tmp_path / "tokens" / "header.json").is_file()


CTRL_C_PARENT = """
import os, signal, sys, time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from offline_data.processes import die_with_parent_quietly

if __name__ == "__main__":
    # as in a terminal, even when the tests run in a background job (which ignores SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with ProcessPoolExecutor(1, mp_context=get_context("spawn"),
                                 initializer=die_with_parent_quietly,
                                 initargs=(os.getpid(),)) as pool:
            pool.submit(time.sleep, 0).result()  # the worker is up
            print("ready", flush=True)
            time.sleep(1000)  # the worker waits for its next part
    except KeyboardInterrupt:
        print("parent interrupted", file=sys.stderr)
"""


def test_ctrl_c_stops_encode_workers_without_their_tracebacks(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(CTRL_C_PARENT)
    proc = subprocess.Popen([sys.executable, str(script)], env={**os.environ,
                            "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.5)
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole process group
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert "parent interrupted" in err and "Traceback" not in err, err
