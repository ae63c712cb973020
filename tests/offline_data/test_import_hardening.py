"""Gameplay imports refuse non-finite inputs and warn (or refuse) when video and log diverge."""

from __future__ import annotations

import logging

import pytest
from test_import_gameplay import _write_log, _write_video

from offline_data.importers.gameplay import GameplayImportConfig, import_episode

CFG = GameplayImportConfig(size=16)


@pytest.mark.parametrize("value,message", [
    ("nan", r"non-finite value \(nan\) in column 'stick'"),
    ("inf", r"non-finite value \(inf\) in column 'stick'"),
    ("5", r"'stick'\] of .* leave \[-1, 1\]"),
    ("-7", r"'stick'\] of .* leave \[-1, 1\]"),
])
def test_axis_values_outside_the_action_space_are_refused(tmp_path, value, message):
    video, log = tmp_path / "ep.mp4", tmp_path / "ep.csv"
    _write_video(video, n=30)
    log.write_text(f"timestamp,stick\n0.0,0.5\n0.2,{value}\n0.4,0.0\n")
    with pytest.raises(ValueError, match=message):
        import_episode(video, log, CFG)


def test_a_long_log_with_a_short_video_is_refused(tmp_path):
    video, log = tmp_path / "ep.mp4", tmp_path / "ep.csv"
    _write_video(video, n=120)  # 2 s
    _write_log(log, 0.0, 100.0)
    with pytest.raises(ValueError, match=r"overlap for only 2\.0 s \(2% of the longer\)"):
        import_episode(video, log, CFG)


def test_a_partial_overlap_warns_with_the_overlap(tmp_path, caplog):
    video, log = tmp_path / "ep.mp4", tmp_path / "ep.csv"
    _write_video(video, n=120)  # 2 s
    _write_log(log, 0.0, 1.4)
    with caplog.at_level(logging.WARNING):
        ep = import_episode(video, log, CFG)
    assert "overlap for only 1.4 s (70% of the longer)" in caplog.text
    assert len(ep.actions) >= 13
