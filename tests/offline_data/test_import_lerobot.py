import json

import numpy as np
import pytest
from PIL import Image

from offline_data.datasets import dataset_discretizer, episode_metadata
from offline_data.importers.lerobot import LeRobotImportConfig, import_lerobot
from offline_data.reader import read_episode
from tests.helpers.lerobot import CAMERA, TASKS, episode_table, frame, write_lerobot

LENGTHS = [7, 5, 9]


@pytest.mark.parametrize("version", ["v2.1", "v3.0"])
def test_import_lerobot_layouts(tmp_path, version):
    root = write_lerobot(tmp_path / "ds", version, LENGTHS, size=(24, 40))
    ds = import_lerobot(root, f"embscale/so100/lerobot{version[1]}-v0",
                        LeRobotImportConfig(size="24x40"), progress=False)
    assert ds.total_episodes == 3 and ds.total_steps == sum(n - 1 for n in LENGTHS)
    d = dataset_discretizer(ds)
    assert d.vocab_sizes == (500,) * 3  # continuous arm: RT-1's 500 buckets by default
    metas = episode_metadata(ds)
    for e, n in enumerate(LENGTHS):
        ep = read_episode(ds, e)
        assert ep.observations.shape == (n, 24, 40, 3)
        for i in range(n):  # lossless video: the exact frame of each row
            np.testing.assert_array_equal(ep.observations[i], frame(e, i, (24, 40)))
        table = episode_table(e, n, 10.0, 3, 0, 0, done=(e % 2 == 0))
        np.testing.assert_array_equal(ep.actions, table["action"][:-1])
        # The last row's reward ends the last transition (its next frame is not recorded).
        assert ep.rewards.sum() == pytest.approx(e + 1) and ep.rewards[-1] == e + 1
        assert bool(ep.terminations[-1]) == (e % 2 == 0)
        assert bool(ep.truncations[-1]) == (e % 2 == 1)
        assert metas[e]["tasks"] == [TASKS[e % 2]] and metas[e]["episode_index"] == e
        err = np.abs(d.decode(d.encode(ep.actions)) - ep.actions)
        assert err.max() <= 5.0 / 500 / 2 + 1e-4  # half a bucket of the data's range
    assert ds.storage.metadata["tasks"] == sorted(TASKS)
    assert ds.storage.metadata["lerobot_codebase_version"] == version


def test_lerobot_resampled_and_resized(tmp_path):
    root = write_lerobot(tmp_path / "ds", "v3.0", [20, 11], fps=10.0, size=(24, 40), per_file=2)
    ds = import_lerobot(root, "embscale/so100/slow-v0",
                        LeRobotImportConfig(rate=5.0, size=(12, 20), buckets=11), progress=False)
    ep = read_episode(ds, 1)
    rows = np.arange(0, 11, 2)  # 5 Hz from 10 Hz: every second row, t = 0 .. 1.0 s
    assert ep.observations.shape == (len(rows), 12, 20, 3)
    for k, i in enumerate(rows):
        expect = np.asarray(Image.fromarray(frame(1, i, (24, 40))).resize((20, 12),
                                                                          Image.BILINEAR))
        np.testing.assert_array_equal(ep.observations[k], expect)
    table = episode_table(1, 11, 10.0, 3, 0, 0, done=False)
    np.testing.assert_array_equal(ep.actions, table["action"][rows[:-1]])
    assert ep.rewards.sum() == pytest.approx(2.0)  # the reward on row 10 is kept
    assert dataset_discretizer(ds).vocab_sizes == (11, 11, 11)


def test_lerobot_errors(tmp_path):
    root = write_lerobot(tmp_path / "ds", "v2.1", [6, 6], video_frames={1: 4})
    with pytest.raises(ValueError, match=r"camera 'observation.images.wrist'.*"
                                         r"\['observation.images.top'\]"):
        import_lerobot(root, "embscale/so100/a-v0", LeRobotImportConfig(
            camera="observation.images.wrist"), progress=False)
    with pytest.raises(ValueError, match="video is shorter than its table"):
        import_lerobot(root, "embscale/so100/b-v0", LeRobotImportConfig(camera=CAMERA),
                       progress=False)
    info = json.loads((root / "meta" / "info.json").read_text())
    info["codebase_version"] = "v1.6"
    (root / "meta" / "info.json").write_text(json.dumps(info))
    with pytest.raises(ValueError, match=r"codebase_version 'v1.6'.*v2.0, v2.1, v3.0"):
        import_lerobot(root, "embscale/so100/c-v0", progress=False)
    with pytest.raises(FileNotFoundError, match="not a LeRobot dataset"):
        import_lerobot(tmp_path, "embscale/so100/d-v0", progress=False)
    with pytest.raises(ValueError, match="size='12y5'"):
        LeRobotImportConfig(size="12y5")


def test_frame_stream_takes_repeats_and_refuses_going_back(tmp_path):
    from offline_data.importers.video import FrameStream
    from tests.helpers.lerobot import write_video

    write_video(tmp_path / "v.mp4", [frame(0, i, (16, 24)) for i in range(6)], fps=10)
    with FrameStream(tmp_path / "v.mp4", (16, 24)) as video:
        got = video.take([1, 1, 3])
        again = video.take([3, 5])  # the boundary frame of the previous call, then on
        for f, i in zip([*got, *again], [1, 1, 3, 3, 5], strict=True):
            np.testing.assert_array_equal(f, frame(0, i, (16, 24)))
        with pytest.raises(ValueError, match="increasing order"):
            video.take([2])
        with pytest.raises(ValueError, match="has 6 frames, but frame 9"):
            video.take([9])


def test_lerobot_layout_errors_without_videos(tmp_path):
    from offline_data.importers.lerobot_layout import episode_refs, read_layout

    root = write_lerobot(tmp_path / "ds", "v2.1", [4])
    (root / "meta" / "episodes.jsonl").unlink()
    with pytest.raises(FileNotFoundError, match="episodes.jsonl is missing"):
        episode_refs(read_layout(root), CAMERA)
    info = json.loads((root / "meta" / "info.json").read_text())
    info["features"][CAMERA]["dtype"] = "image"  # frames stored inside the parquet tables
    (root / "meta" / "info.json").write_text(json.dumps(info))
    with pytest.raises(ValueError, match=r"no camera as mp4.*\['observation.images.top'\]"):
        read_layout(root).check_camera(None)


def test_lerobot_rate_must_be_finite_and_not_absurdly_high(tmp_path):
    root = write_lerobot(tmp_path / "ds", "v3.0", [5, 6], size=(24, 40))  # 10 fps
    with pytest.raises(ValueError, match=r"rate=inf \(--rate\) must be a finite number > 0"):
        LeRobotImportConfig(rate=float("inf"))
    for rate in (1e308, 101.0):
        with pytest.raises(ValueError, match=r"\(--rate\) is more than 10x the fps \(10\) of .*"
                                             r"give at most 100 Hz"):
            import_lerobot(root, "embscale/so100/fast-v0", LeRobotImportConfig(rate=rate),
                           progress=False)
    ds = import_lerobot(root, "embscale/so100/fast-v0", LeRobotImportConfig(rate=100.0),
                        progress=False)
    assert ds.total_episodes == 2
