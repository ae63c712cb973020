import gc
import subprocess
import sys

import gymnasium
import numpy as np
import pytest

pytest.importorskip("gymnasium_robotics")

from gymnasium.utils.env_checker import check_env  # noqa: E402
from stable_baselines3.common.env_checker import check_env as sb3_check_env  # noqa: E402

import envs  # noqa: E402
from tests.helpers.triton_env import ROOT, env_with_triton  # noqa: E402

pytestmark = pytest.mark.robotics


def test_fetch_passes_gymnasium_and_sb3_checkers():
    env = envs.make("embscale/FetchPickAndPlace-v0")
    check_env(env.unwrapped)
    # gymnasium's checker built and dropped a second rendering env: rendering must survive it.
    sb3_check_env(env.unwrapped, warn=True)
    env.close()


def test_fetch_image_observation_and_state_info():
    env = envs.make("embscale/FetchPickAndPlace-v0", size=32)
    assert env.observation_space == gymnasium.spaces.Box(0, 255, (32, 32, 3), np.uint8)
    assert env.action_space.shape == (4,)
    obs, info = env.reset(seed=0)
    assert obs.shape == (32, 32, 3) and obs.dtype == np.uint8 and obs.any()
    assert info["state"]["observation"].shape == (25,)
    assert info["state"]["desired_goal"].shape == (3,)
    assert info["is_success"] in (0.0, 1.0)
    steps = 0
    truncated = False
    while not truncated:
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        steps += 1
        assert not terminated
    assert steps == 50
    np.testing.assert_array_equal(
        env.unwrapped.get_state()["observation"], info["state"]["observation"]
    )
    env.close()


def test_fetch_renders_with_several_envs_in_one_process():
    a = envs.make("embscale/FetchPickAndPlace-v0", size=16)
    a.reset(seed=0)
    b = envs.make("embscale/FetchPickAndPlace-v0", size=16)
    b.reset(seed=1)
    del b
    gc.collect()  # freeing b's renderer released the GL context a renders with
    for _ in range(2):
        assert a.step(a.action_space.sample())[0].any()
    a.close()


def test_fetch_bad_kwargs():
    with pytest.raises(ValueError, match="reward_type"):
        envs.make("embscale/FetchPickAndPlace-v0", reward_type="shaped")
    with pytest.raises(ValueError, match="size"):
        envs.make("embscale/FetchPickAndPlace-v0", size=4)


def test_mujoco_gl_default_follows_pyopengl_platform(monkeypatch):
    from envs.fetch import ensure_mujoco_gl

    monkeypatch.delenv("MUJOCO_GL", raising=False)
    monkeypatch.setenv("PYOPENGL_PLATFORM", "egl")
    assert ensure_mujoco_gl() == "egl"
    monkeypatch.setenv("MUJOCO_GL", "osmesa")
    assert ensure_mujoco_gl() == "osmesa"  # an explicit choice is kept


FETCH_THEN_COMPILE = """
import torch, envs
env = envs.make("embscale/FetchPickAndPlace-v0", size=16)
env.reset(seed=0)
env.close()
print("compiled", torch.compile(lambda x: x * 2 + 1)(torch.ones(2)).tolist())
"""


def test_rendering_with_osmesa_then_compiling_where_triton_is_installed():
    # Triton loaded after OSMesa crashed the process at the compiler's first use (both carry
    # LLVM); the env loads Triton first
    env = env_with_triton(MUJOCO_GL="osmesa", PYOPENGL_PLATFORM="osmesa")
    done = subprocess.run([sys.executable, "-c", FETCH_THEN_COMPILE], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert "compiled [3.0, 3.0]" in done.stdout
