import json

import gymnasium as gym
import numpy as np
import pytest

from offline_data.collect import RandomPolicy, collect, resolve_policy
from offline_data.datasets import episode_metadata, load_dataset
from offline_data.defaults import DEFAULTS, build_default_datasets
from offline_data.reader import read_episode
from scaling.cli import main
from tests.helpers.pixel_envs import PIXEL_ARM_ID, PIXEL_ID


def make_random(env, seed=0):
    """A module:factory for --policy."""
    return RandomPolicy(env.action_space, seed=seed)


def test_collect_info_list_cli(capsys):
    assert main(["data", "collect", "--env", PIXEL_ID, "--policy", "random", "--episodes", "2",
                 "--dataset-id", "embscale/pixel/cli-v0", "--no-progress"]) == 0
    assert "wrote embscale/pixel/cli-v0: 2 episodes" in capsys.readouterr().out
    assert main(["data", "info", "embscale/pixel/cli-v0", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["episodes"] == 2 and info["frames"] == info["steps"] + 2
    assert info["action_spec"]["type"] == "categorical" and info["disk_bytes"] > 0
    assert main(["data", "info", "embscale/pixel/cli-v0"]) == 0
    text = capsys.readouterr().out
    assert "returns:" in text and "disk size:" in text
    assert main(["data", "list"]) == 0
    assert "embscale/pixel/cli-v0" in capsys.readouterr().out
    # Unknown id: exit 2 and an error listing what exists.
    assert main(["data", "info", "embscale/pixel/nope-v0"]) == 2
    err = capsys.readouterr().err
    assert "embscale/pixel/nope-v0" in err and "embscale/pixel/cli-v0" in err
    # Existing id: refused without --overwrite.
    assert main(["data", "collect", "--env", PIXEL_ID, "--episodes", "1", "--dataset-id",
                 "embscale/pixel/cli-v0", "--no-progress"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    # Continuous actions without --buckets.
    assert main(["data", "collect", "--env", PIXEL_ARM_ID, "--episodes", "1", "--dataset-id",
                 "embscale/arm/cli-v0", "--no-progress"]) == 2
    assert "discretizer spec" in capsys.readouterr().err
    assert main(["data", "collect", "--env", PIXEL_ARM_ID, "--episodes", "1", "--buckets", "11",
                 "--max-steps", "4", "--dataset-id", "embscale/arm/cli-v0", "--no-progress"]) == 0


def test_policy_factory_string_and_errors():
    env = gym.make(PIXEL_ID)
    policy = resolve_policy("test_data_cli:make_random", env, seed=3)
    assert isinstance(policy, RandomPolicy)
    with pytest.raises(ValueError, match="unknown policy"):
        resolve_policy("greedy", env)
    with pytest.raises(ValueError, match="cannot load policy factory"):
        resolve_policy("no_such_module_xyz:f", env)
    with pytest.raises(ValueError, match="no scripted demonstrator"):
        resolve_policy("scripted", env)
    with pytest.raises(FileNotFoundError, match="stable-baselines3 model"):
        resolve_policy("sb3:PPO:/nonexistent/model.zip", env)
    with pytest.raises(TypeError, match="no predict"):
        collect(env, object(), 1, "embscale/pixel/x-v0", progress=False)


def test_sb3_model_as_policy(tmp_path):
    from stable_baselines3 import PPO

    env = gym.make(PIXEL_ID)
    PPO("MlpPolicy", env, n_steps=16, batch_size=16, seed=0, device="cpu").save(tmp_path / "ppo")
    policy = resolve_policy(f"sb3:{tmp_path / 'ppo.zip'}", env)
    ds = collect(env, policy, 2, "embscale/pixel/ppo-v0", max_steps_per_episode=6, progress=False)
    assert ds.total_steps == sum(len(read_episode(ds, i).actions) for i in range(2))


@pytest.mark.slow
def test_breakout_scripted_collection_replays_bit_identical():
    """Frames stored for the real Breakout env equal what the env produces on replay."""
    ds = collect("embscale/Breakout-v0", resolve_policy("scripted", _breakout(), skill=(0.2, 1.0)),
                 2, "embscale/breakout/tiny-v0", max_steps_per_episode=40, seed=5, progress=False)
    skills = [m["skill"] for m in episode_metadata(ds)]
    assert len(skills) == 2 and all(0.2 <= s <= 1.0 for s in skills)
    env = ds.recover_environment()
    assert env.spec.id == "embscale/Breakout-v0"
    for i in range(2):
        ep = read_episode(ds, i)
        obs, _ = env.reset(seed=5 if i == 0 else None)
        frames = [obs]
        for a in ep.actions:
            frames.append(env.step(int(a))[0])
        np.testing.assert_array_equal(np.stack(frames), ep.observations)
    env.close()


def _breakout():
    import envs

    return envs.make("embscale/Breakout-v0")


def test_defaults_registry_and_errors():
    assert DEFAULTS["breakout"].dataset_id == "embscale/breakout/scripted-v2"
    assert DEFAULTS["fetch"].dataset_id == "embscale/fetch-pick-place/scripted-v0"
    assert DEFAULTS["fetch"].buckets == 500
    with pytest.raises(ValueError, match="unknown default datasets"):
        build_default_datasets(["atari"])
    env = gym.make(PIXEL_ID)
    collect(env, RandomPolicy(env.action_space), 1, "embscale/breakout/scripted-v2",
            progress=False)
    # An existing default is reused, not collected again.
    built = build_default_datasets(["breakout"])
    assert built["breakout"].total_episodes == 1
    assert load_dataset("embscale/breakout/scripted-v2").total_episodes == 1


def test_default_breakout_collection_small(capsys):
    """The default preset runs end to end on the real env (shrunk to a few steps)."""
    from offline_data.defaults import collect_default
    from offline_data.info import dataset_info

    ds = collect_default("breakout", progress=False, num_episodes=2, max_total_steps=60,
                         max_steps_per_episode=30)
    assert ds.id == "embscale/breakout/scripted-v2" and ds.total_steps == 60
    info = dataset_info(ds.id)
    assert info.skill_min is not None and info.env_id == "embscale/Breakout-v1"
    assert main(["data", "defaults", "--only", "breakout", "--no-progress"]) == 0  # reused
    assert "embscale/breakout/scripted-v2" in capsys.readouterr().out


def test_import_rlds_cli(tmp_path, capsys):
    from offline_data.importers.tfrecord import encode_example, write_tfrecord

    rng = np.random.default_rng(0)
    from test_import_rlds import _flat, _rt1_episode

    write_tfrecord(tmp_path / "ep.tfrecord", [encode_example(_flat(_rt1_episode(rng, 4)))])
    assert main(["data", "import", "rlds", "--source", str(tmp_path), "--size", "16",
                 "--dataset-id", "embscale/rt1/cli-v0", "--no-progress"]) == 0
    assert "wrote embscale/rt1/cli-v0: 1 episodes, 3 steps" in capsys.readouterr().out
    assert main(["data", "import", "rlds", "--source", str(tmp_path), "--mapping", "nope.json",
                 "--dataset-id", "embscale/rt1/cli2-v0"]) == 2
    assert "neither a preset" in capsys.readouterr().err


def test_collect_breakout_non_square_size(capsys):
    assert main(["data", "collect", "--env", "embscale/Breakout-v0", "--policy", "scripted",
                 "--episodes", "1", "--max-steps", "12", "--size", "36x60",
                 "--dataset-id", "embscale/breakout/wide-v0", "--no-progress"]) == 0
    ds = load_dataset("embscale/breakout/wide-v0")
    assert read_episode(ds, 0).observations.shape == (13, 36, 60, 3)
    env = ds.recover_environment()  # the JSON spec rebuilds the env at the same size
    assert env.observation_space.shape == (36, 60, 3)
    env.close()
    assert main(["data", "collect", "--env", "embscale/Breakout-v0", "--episodes", "1",
                 "--size", "36y60", "--dataset-id", "embscale/breakout/bad-v0"]) == 2
    assert "HEIGHTxWIDTH" in capsys.readouterr().err


def test_import_lerobot_cli(tmp_path, capsys):
    from tests.helpers.lerobot import write_lerobot

    root = write_lerobot(tmp_path / "ds", "v3.0", [5, 6], size=(24, 40))
    assert main(["data", "import", "lerobot", str(root), "--dataset-id", "embscale/so100/cli-v0",
                 "--size", "12x20", "--buckets", "64", "--no-progress"]) == 0
    assert "wrote embscale/so100/cli-v0: 2 episodes, 9 steps" in capsys.readouterr().out
    ds = load_dataset("embscale/so100/cli-v0")
    assert read_episode(ds, 1).observations.shape == (6, 12, 20, 3)
    assert main(["data", "import", "lerobot", str(root), "--dataset-id", "embscale/so100/x-v0",
                 "--camera", "wrist"]) == 2
    assert "observation.images.top" in capsys.readouterr().err


def test_list_survives_a_foreign_dataset_in_the_minari_root(capsys):
    import warnings

    import minari
    from gymnasium import spaces
    from minari.data_collector.episode_buffer import EpisodeBuffer

    # Another Minari user's dataset (vector observations, continuous actions), as D4RL's.
    buf = EpisodeBuffer(id=0, observations=np.zeros((4, 3), np.float32),
                        actions=np.zeros((3, 2), np.float32), rewards=np.zeros(3),
                        terminations=np.zeros(3, bool), truncations=np.r_[False, False, True])
    with warnings.catch_warnings():  # minari warns about its unset optional fields
        warnings.simplefilter("ignore")
        minari.create_dataset_from_buffers(
            "other/door/human-v0", [buf], observation_space=spaces.Box(-1, 1, (3,), np.float32),
            action_space=spaces.Box(-1, 1, (2,), np.float32), algorithm_name="x", author="x",
            author_email="x@x", code_permalink="x", data_format="arrow")
    assert main(["data", "collect", "--env", PIXEL_ID, "--episodes", "1", "--max-steps", "4",
                 "--dataset-id", "embscale/pixel/mine-v0", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert "embscale/pixel/mine-v0" in out and " 1 ep " in out
    assert "other/door/human-v0" in out
    assert "not an embscale dataset (ValueError: " in out and "action_discretizer" in out


@pytest.mark.parametrize("option,value,message", [
    ("--rate", "inf", "argument --rate: 'inf' is not finite"),
    ("--rate", "nan", "argument --rate: 'nan' is not finite"),
    ("--rate", "0", "argument --rate: '0' must be > 0"),
    ("--buckets", "0", "argument --buckets: '0' must be an integer >= 1"),
    ("--buckets", "2.5", "argument --buckets: '2.5' is not an integer"),
])
def test_import_lerobot_cli_refuses_bad_numbers(tmp_path, capsys, option, value, message):
    from tests.helpers.lerobot import write_lerobot

    root = write_lerobot(tmp_path / "ds", "v3.0", [5, 6], size=(24, 40))
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "import", "lerobot", str(root), "--dataset-id", "embscale/so100/bad-v0",
              option, value, "--no-progress"])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_import_lerobot_cli_refuses_an_absurd_rate(tmp_path, capsys):
    from tests.helpers.lerobot import write_lerobot

    root = write_lerobot(tmp_path / "ds", "v3.0", [5, 6], size=(24, 40))
    assert main(["data", "import", "lerobot", str(root), "--dataset-id", "embscale/so100/x-v0",
                 "--rate", "1e308", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "(--rate) is more than 10x the fps" in err and "a fault of embscale" not in err
