"""Interrupting a collection (SIGKILL or Ctrl-C) must leave no dataset behind."""

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import gymnasium as gym
import minari
import pytest

from offline_data.collect import RandomPolicy, collect
from offline_data.datasets import list_dataset_ids
from tests.helpers.pixel_envs import PIXEL_ID

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

SCRIPT = textwrap.dedent(f"""
    import signal, sys, time
    # Ctrl-C as in a terminal: a shell's background job (CI, `cmd &`) starts with SIGINT
    # ignored, and Python then installs no KeyboardInterrupt handler.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.path[:0] = [{str(ROOT)!r}]
    from tests.helpers import pixel_envs
    pixel_envs.register()
    import gymnasium as gym
    from offline_data.collect import RandomPolicy, collect

    class Slow(RandomPolicy):
        def predict(self, *args, **kwargs):
            time.sleep(0.001)
            return super().predict(*args, **kwargs)

    env = gym.make({PIXEL_ID!r})
    collect(env, Slow(env.action_space), 100000, "embscale/pixel/killed-v0", progress=False)
""")


def _start_and_wait_for_data(root: Path) -> subprocess.Popen:
    # -X faulthandler: a process that hangs instead of exiting can be made to print its stacks
    proc = subprocess.Popen([sys.executable, "-X", "faulthandler", "-c", SCRIPT],
                            env={**os.environ, "MINARI_DATASETS_PATH": str(root)},
                            stderr=open(root / "collect.stderr", "w"))
    deadline = time.time() + 90
    while time.time() < deadline:
        staged = list((root / ".embscale-staging").rglob("part-*"))
        if len(staged) >= 2:  # episodes already on disk when we interrupt
            return proc
        assert proc.poll() is None, "collection exited early"
        time.sleep(0.1)
    proc.kill()
    pytest.fail("collection wrote nothing within 90 s")


def _minari_cli(root: Path, *args: str) -> str:
    exe = shutil.which("minari", path=str(Path(sys.executable).parent))
    out = subprocess.run([exe, *args], env={**os.environ, "MINARI_DATASETS_PATH": str(root),
                         "COLUMNS": "200"}, capture_output=True, text=True, check=True)
    return out.stdout


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_interrupted_collection_leaves_no_dataset(minari_datasets_path, sig):
    proc = _start_and_wait_for_data(minari_datasets_path)
    proc.send_signal(sig)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)  # faulthandler prints every thread's stack
        proc.wait(timeout=30)
        stacks = (minari_datasets_path / "collect.stderr").read_text()[-6000:]
        pytest.fail(f"collection did not exit within 60 s of {sig.name}; its stacks:\n{stacks}")
    assert proc.returncode != 0
    assert list_dataset_ids() == []
    assert minari.list_local_datasets() == {}
    assert not (minari_datasets_path / "embscale/pixel/killed-v0").exists()
    listing = _minari_cli(minari_datasets_path, "list", "local")
    assert "killed" not in listing and "Number of datasets: 0" in listing
    staging = minari_datasets_path / ".embscale-staging"
    if sig == signal.SIGINT:  # Ctrl-C: cleaned up on the way out
        assert not staging.exists() or not any(staging.iterdir())
    # The same id can be collected afterwards, and the dead process's staging dir is swept.
    env = gym.make(PIXEL_ID)
    ds = collect(env, RandomPolicy(env.action_space), 1, "embscale/pixel/killed-v0", progress=False)
    assert ds.total_episodes == 1
    assert not any(staging.iterdir()) if staging.exists() else True
    if sig == signal.SIGKILL:  # once is enough: minari's own CLI reads what we wrote
        shown = _minari_cli(minari_datasets_path, "show", "embscale/pixel/killed-v0")
        assert "Total Episodes" in shown and "embscale-test/Pixel-v0" in shown
