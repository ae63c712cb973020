import csv

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from offline_data.datasets import dataset_discretizer, load_dataset
from offline_data.importers.gameplay import (
    GameplayImportConfig,
    import_episode,
    import_gameplay,
)
from offline_data.reader import read_episode

FPS = 60


def _frame(i: int, size: int = 32) -> np.ndarray:
    rng = np.random.default_rng(i)
    f = np.zeros((size, size, 3), np.uint8)
    f[..., 0] = (i * 3) % 256  # frame index readable in the red channel
    f[..., 1] = rng.integers(0, 255, (size, size), dtype=np.uint8) // 4
    f[: size // 2, : size // 2, 2] = 200
    return f


def _write_video(path, n: int, size: int = 32):
    # libx264rgb with qp 0 is lossless RGB, so decoded frames equal what was written.
    writer = imageio_ffmpeg.write_frames(str(path), (size, size), fps=FPS, codec="libx264rgb",
                                         quality=None,
                                         pix_fmt_out="rgb24", macro_block_size=1,
                                         output_params=["-qp", "0", "-preset", "ultrafast"])
    writer.send(None)
    for i in range(n):
        writer.send(_frame(i, size))
    writer.close()


def _write_log(path, t0: float, t1: float, hz: float = 117.3, reward_every: int = 0):
    # 117.3 Hz: no log time falls exactly on a 10 Hz sample boundary (no rounding ties).
    times = np.round(np.arange(t0, t1, 1.0 / hz), 6)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["timestamp", "jump", "move_x", "reward"])
        for k, t in enumerate(times):
            jump = 1 if k % 37 == 5 else 0  # one-sample taps, shorter than a 10 Hz step
            reward = 1.0 if reward_every and k % reward_every == 0 else 0.0
            w.writerow([f"{t:.6f}", jump, f"{np.sin(t):.4f}", reward])
    return times


def test_gameplay_episode_resampled_by_timestamp(tmp_path):
    video, log = tmp_path / "ep0.mp4", tmp_path / "ep0.csv"
    _write_video(video, n=180)  # 3.0 s at 60 fps
    times = _write_log(log, 0.5, 4.0, reward_every=50)  # overlaps the video on [0.5, 3.0]
    cfg = GameplayImportConfig(rate=10.0, size=16)
    ep = import_episode(video, log, cfg)
    sample_t = 0.5 + 0.1 * np.arange(len(ep.observations))
    assert len(ep.observations) == 26  # 0.5 .. 3.0 s at 10 Hz
    for k, t in enumerate(sample_t):
        i = int(np.floor(t * FPS + 1e-6))
        i = min(i, 179)
        expected = np.asarray(Image.fromarray(_frame(i)).resize((16, 16), Image.BILINEAR))
        np.testing.assert_array_equal(ep.observations[k], expected)
    # Axis: the value logged at (or just before) each sample time.
    held = np.searchsorted(times, sample_t[:-1], side="right") - 1
    np.testing.assert_allclose(ep.actions[:, 1], np.round(np.sin(times[held]), 4), atol=1e-6)
    # Button: pressed if tapped anywhere within the 0.1 s step.
    taps = times[np.arange(len(times)) % 37 == 5]
    for k, t in enumerate(sample_t[:-1]):
        expect = float(np.any((taps >= times[held[k]]) & (taps < t + 0.1)))
        assert ep.actions[k, 0] == expect
    assert ep.actions[:, 0].sum() >= 5
    assert ep.rewards.sum() > 0 and ep.truncations[-1] and not ep.terminations.any()


def test_import_gameplay_dataset_and_discretizer(tmp_path):
    for e in range(2):
        _write_video(tmp_path / f"run{e}.mp4", n=90 + 30 * e)
        _write_log(tmp_path / f"run{e}.csv", 0.0, 2.0)
    ds = import_gameplay(tmp_path, "embscale/mygame/human-v0",
                         GameplayImportConfig(rate=10.0, size=16), progress=False)
    assert ds.total_episodes == 2
    assert load_dataset("embscale/mygame/human-v0").observation_space.shape == (16, 16, 3)
    d = dataset_discretizer(ds)
    assert d.vocab_sizes == (2, 11)  # jump button, move_x axis; the reward column is no action
    ep = read_episode(ds, 0)
    tokens = d.encode(ep.actions)
    np.testing.assert_array_equal(d.decode(tokens)[:, 0], ep.actions[:, 0])


def test_non_overlapping_timestamps_are_refused(tmp_path):
    video, log = tmp_path / "ep.mp4", tmp_path / "ep.csv"
    _write_video(video, n=60)  # 1 s
    _write_log(log, 5.0, 6.0)
    with pytest.raises(ValueError, match="do not overlap"):
        import_episode(video, log)
    # The fix named in the message works: shift the log onto the video's clock.
    ep = import_episode(video, log, GameplayImportConfig(time_offset=-5.0, size=16))
    assert len(ep.observations) == 10


def test_bad_logs(tmp_path):
    video = tmp_path / "ep.mp4"
    _write_video(video, n=30)
    bad = tmp_path / "ep.csv"
    bad.write_text("time,jump\n0.0,1\n")
    with pytest.raises(ValueError, match="no 'timestamp' column"):
        import_episode(video, bad)
    bad.write_text("timestamp,stick\n0.0,3.5\n0.4,0.0\n")
    with pytest.raises(ValueError, match=r"leave \[-1, 1\]"):
        import_episode(video, bad)
    with pytest.raises(FileNotFoundError, match="not a directory"):
        import_gameplay(tmp_path / "nothing", "embscale/x/y-v0")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="pairs"):
        import_gameplay(tmp_path / "empty", "embscale/x/y-v0")


def _write_columns(path, columns, values):
    """A 1 s log at 100 Hz with the same value per column in every row."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(columns)
        for t in np.arange(0, 1.0, 0.01):
            row = {"timestamp": f"{t:.3f}", **values}
            w.writerow([row[c] for c in columns])


def test_logs_with_reordered_columns_are_matched_by_name(tmp_path):
    values = {"jump": 1, "move_x": "-0.8"}
    for e, cols in enumerate([["timestamp", "jump", "move_x"], ["timestamp", "move_x", "jump"]]):
        _write_video(tmp_path / f"run{e}.mp4", n=60)
        _write_columns(tmp_path / f"run{e}.csv", cols, values)
    ds = import_gameplay(tmp_path, "embscale/g/order-v0", GameplayImportConfig(size=16),
                         progress=False)
    for i in range(2):  # (jump, move_x) in the first log's order, whatever the file's order
        np.testing.assert_allclose(read_episode(ds, i).actions[0], [1.0, -0.8])


def test_logs_with_other_columns_or_buttons_are_refused(tmp_path):
    for e in range(2):
        _write_video(tmp_path / f"run{e}.mp4", n=60)
    _write_columns(tmp_path / "run0.csv", ["timestamp", "jump", "move_x"],
                   {"jump": 1, "move_x": "-0.8"})
    _write_columns(tmp_path / "run1.csv", ["timestamp", "jump", "move_y"],
                   {"jump": 1, "move_y": "0.5"})
    with pytest.raises(ValueError, match=r"run1\.csv has action columns \['jump', 'move_y'\] "
                                         r"but the first log has \['jump', 'move_x'\]"):
        import_gameplay(tmp_path, "embscale/g/cols-v0", GameplayImportConfig(size=16),
                        progress=False)
    _write_columns(tmp_path / "run1.csv", ["timestamp", "move_x", "jump"],
                   {"jump": "0.5", "move_x": "-0.8"})
    with pytest.raises(ValueError, match=r"run1\.csv: columns \['jump'\] are buttons"):
        import_gameplay(tmp_path, "embscale/g/buttons-v0", GameplayImportConfig(size=16),
                        progress=False)


@pytest.mark.parametrize("reward,message", [
    ("n/a", r"ep\.csv row 4 \(after the header\), column 'reward' holds 'n/a', not a number"),
    ("nan", r"ep\.csv has a non-finite value \(nan\) in column 'reward' \(row 4 after"),
    ("inf", r"ep\.csv has a non-finite value \(inf\) in column 'reward' \(row 4 after"),
])
def test_bad_rewards_are_refused_with_file_row_and_column(tmp_path, reward, message):
    video, log = tmp_path / "ep.mp4", tmp_path / "ep.csv"
    _write_video(video, n=60)
    rows = "".join(f"{t:.2f},1,{reward if k == 3 else 0}\n"
                   for k, t in enumerate(np.arange(0, 1.0, 0.05)))
    log.write_text("timestamp,jump,reward\n" + rows)
    with pytest.raises(ValueError, match=message):
        import_episode(video, log, GameplayImportConfig(size=16))
    log.write_text("timestamp,jump,terminated\n" + rows)  # parsed the same way
    with pytest.raises(ValueError, match=message.replace("'reward'", "'terminated'")):
        import_episode(video, log, GameplayImportConfig(size=16))
