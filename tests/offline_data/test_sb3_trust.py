"""SB3 zips: loaded with the named algorithm; the weights-only path never runs code from a zip."""

from __future__ import annotations

import base64
import json
import pickle
import zipfile

import gymnasium as gym
import numpy as np
import pytest

from offline_data.collect import resolve_policy
from tests.helpers.pixel_envs import PIXEL_ID


class _Payload:
    """Unpickling this creates a file: a stand-in for code hidden in a crafted zip."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _ppo_zip(tmp_path, env):
    from stable_baselines3 import PPO

    model = PPO("MlpPolicy", env, n_steps=16, batch_size=16, seed=0, device="cpu")
    model.save(tmp_path / "ppo")
    return tmp_path / "ppo.zip", model


def _crafted(src, dst, marker):
    with zipfile.ZipFile(src) as z:
        files = {name: z.read(name) for name in z.namelist()}
    data = json.loads(files["data"])
    data["observation_space"][":serialized:"] = base64.b64encode(
        pickle.dumps(_Payload(marker))).decode()
    files["data"] = json.dumps(data).encode()
    with zipfile.ZipFile(dst, "w") as z:
        for name, blob in files.items():
            z.writestr(name, blob)
    return dst


def test_weights_only_path_matches_the_full_load_and_runs_no_code(tmp_path):
    env = gym.make(PIXEL_ID)
    path, model = _ppo_zip(tmp_path, env)
    full = resolve_policy(f"sb3:PPO:{path}", env)
    safe = resolve_policy(f"sb3-weights:PPO:{path}", env)
    obs = np.stack([env.reset(seed=i)[0] for i in range(5)])
    np.testing.assert_array_equal(full.predict(obs, deterministic=True)[0],
                                  safe.predict(obs, deterministic=True)[0])
    marker = tmp_path / "code-ran"
    crafted = _crafted(path, tmp_path / "crafted.zip", marker)
    resolve_policy(f"sb3-weights:PPO:{crafted}", env)  # reads JSON and tensors only
    assert not marker.exists()
    with pytest.raises(ValueError, match="crafted.zip"):  # one line naming the file...
        resolve_policy(f"sb3:PPO:{crafted}", env)
    assert marker.exists()  # ...but the trusted path did run the zip's code, as documented


def test_the_algorithm_is_named_or_read_from_plain_json(tmp_path):
    env = gym.make(PIXEL_ID)
    path, _ = _ppo_zip(tmp_path, env)
    assert type(resolve_policy(f"sb3:{path}", env)).__name__ == "PPO"
    with pytest.raises(ValueError, match="unknown stable-baselines3 algorithm 'XYZ'"):
        resolve_policy(f"sb3:XYZ:{path}", env)
    (tmp_path / "junk.zip").write_bytes(b"PK not really")
    with pytest.raises(ValueError, match="junk.zip is not a stable-baselines3 model zip"):
        resolve_policy(f"sb3-weights:PPO:{tmp_path / 'junk.zip'}", env)
