"""``--overwrite`` replaces only a directory the suite wrote; a user's files are never removed."""

from __future__ import annotations

import pytest

from offline_data.atomic import atomic_dir, check_parent, check_replaceable
from offline_data.token_writer import replaceable_shards

SHARDS = replaceable_shards()


def _user_dir(path):
    path.mkdir()
    (path / "thesis.tex").write_text("years of work")
    (path / "data").mkdir()
    (path / "data" / "raw.csv").write_text("1,2,3")
    return path


def _suite_shards(path):
    path.mkdir()
    (path / "header.json").write_text("{}")
    for split in ("train", "val"):
        (path / split).mkdir()
        (path / split / "frame_tokens.npy").write_bytes(b"x")
    return path


def _files(path):
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def test_a_users_directory_is_refused_and_left_intact(tmp_path):
    user = _user_dir(tmp_path / "mine")
    before = _files(user)
    with pytest.raises(FileExistsError, match=r"refusing to replace .*mine.*no header\.json"):
        with atomic_dir(user, overwrite=True, **SHARDS) as tmp:
            (tmp / "header.json").write_text("{}")
    assert _files(user) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left


def test_the_suites_directory_with_extra_files_is_refused(tmp_path):
    shards = _suite_shards(tmp_path / "tokens")
    (shards / "notes.md").write_text("my notes on these tokens")
    with pytest.raises(FileExistsError, match=r"holds other files \(notes\.md\)"):
        check_replaceable(shards, **SHARDS)
    assert (shards / "notes.md").read_text() == "my notes on these tokens"


def test_the_suites_own_directory_is_replaced(tmp_path):
    shards = _suite_shards(tmp_path / "tokens")
    with atomic_dir(shards, overwrite=True, **SHARDS) as tmp:
        (tmp / "header.json").write_text('{"new": true}')
    assert _files(shards) == ["header.json"]
    assert (shards / "header.json").read_text() == '{"new": true}'


def test_a_file_and_an_unmarked_overwrite_are_refused(tmp_path):
    (tmp_path / "f").write_text("a file")
    with pytest.raises(FileExistsError, match="not a directory"):
        check_replaceable(tmp_path / "f", **SHARDS)
    user = _user_dir(tmp_path / "mine")
    with pytest.raises(FileExistsError, match="cannot be replaced safely"):
        with atomic_dir(user, overwrite=True):
            pass
    assert (user / "thesis.tex").exists()


def test_an_output_under_a_file_is_named(tmp_path):
    (tmp_path / "f").write_text("a file")
    with pytest.raises(NotADirectoryError, match=r"f is a file, not a directory"):
        check_parent(tmp_path / "f" / "sub" / "out")


def test_a_study_fit_directory_may_be_refitted(tmp_path):
    from scaling.fitting import FIT_DIR

    fit = tmp_path / "fits" / "wm-token"
    fit.mkdir(parents=True)
    for name in ("fit.json", "table.md", "scaling_fit.png", "advice.json"):
        (fit / name).write_text("{}")
    check_replaceable(fit, **FIT_DIR)  # the fit's own files and the study's advice
    (fit / "thesis.tex").write_text("mine")
    with pytest.raises(FileExistsError, match="thesis.tex"):
        check_replaceable(fit, **FIT_DIR)


def test_commits_are_fsynced(tmp_path, monkeypatch):
    import os

    from offline_data.atomic import atomic_file

    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(os.readlink(f"/proc/self/fd/{fd}"))
                        or real(fd))
    with atomic_file(tmp_path / "ckpt.pt") as tmp:
        tmp.write_bytes(b"weights")
    with atomic_dir(tmp_path / "shards") as tmp:
        (tmp / "header.json").write_text("{}")
    names = [os.path.basename(p) for p in synced]
    assert any(n.startswith(".ckpt.pt.") for n in names)  # the file, before its rename
    assert "header.json" in names  # every file of a directory, before its rename
    assert str(tmp_path) in synced  # the directory holding the new names
