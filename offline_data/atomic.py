"""Atomic writes: a file or directory appears complete under its final name, or not at all."""

from __future__ import annotations

import contextlib
import fnmatch
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

logger = logging.getLogger(__name__)

# the end of the names atomic_file and atomic_dir give their temporary files and directories
# (tempfile's 8 random characters): ".<name>.XXXXXXXX.tmp" beside the target
_TEMP_SUFFIX = r"[a-z0-9_]{8}\.tmp"


def check_parent(path: str | os.PathLike) -> None:
    """Raise ``NotADirectoryError`` when an existing ancestor of ``path`` is a file.

    Called before long work, so an output path under a file fails at once, naming the file.
    """
    for ancestor in Path(path).parents:
        if ancestor.exists():
            if not ancestor.is_dir():
                raise NotADirectoryError(f"cannot write {path}: {ancestor} is a file, not a "
                                         "directory; pick an output path outside it")
            return


def check_output_file(path: str | os.PathLike, flag: str, suffix: str) -> None:
    """Refuse an output file ``path`` that is a directory or lies under a file, before the work.

    ``flag`` names the option in the message (``--video``), ``suffix`` the kind of file
    (``.mp4``) its example names.
    """
    if Path(path).is_dir():
        raise IsADirectoryError(f"{flag} {path} is a directory; give a file path, e.g. "
                                f"{Path(path) / ('out' + suffix)}")
    check_parent(path)


def check_output_dir(path: str | os.PathLike, flag: str) -> None:
    """Refuse an output directory ``path`` that is a file or lies under one, before the work.

    ``flag`` names the option in the message (``--out``); a missing directory is fine (it is
    created), so only the nearest part of the path that exists is judged.
    """
    path = Path(path)
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                what = "is" if p == path else f"lies under {p}, which is"
                raise NotADirectoryError(f"{flag} {path} {what} a file, not a directory; give a "
                                         "directory path (a missing one is created)")
            return


def make_parent(path: str | os.PathLike) -> None:
    """Create ``path``'s parent directories, with a clear error when one of them is a file."""
    check_parent(path)
    Path(path).parent.mkdir(parents=True, exist_ok=True)


def fsync_path(path: str | os.PathLike) -> None:
    """Flush a file's or a directory's contents (a rename's entry, for a directory) to disk.

    A rename is atomic but not durable: after a power cut the new name may point at a file whose
    data never reached the disk. Committing = fsync the file, rename, fsync the directory.
    """
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if os.path.isdir(path) else 0))
    try:
        os.fsync(fd)
    except OSError:  # some file systems cannot fsync directories; the data is still flushed
        pass
    finally:
        os.close(fd)


def fsync_tree(root: str | os.PathLike) -> None:
    """``fsync_path`` every file and directory under ``root`` (before it is renamed into place)."""
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            fsync_path(os.path.join(dirpath, name))
        fsync_path(dirpath)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``.

    The temporary file lives in the same directory so the final ``os.replace`` is atomic on
    POSIX. On any exception (including ``KeyboardInterrupt``) the temporary file is removed and
    ``path`` is left untouched.
    """
    path = Path(path)
    make_parent(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        fsync_path(tmp_path)
        os.replace(tmp_path, path)
        fsync_path(path.parent)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def remove_stale_temp_files(directory: str | os.PathLike) -> list[Path]:
    """Remove :func:`atomic_file`'s temporary files (``.<name>.XXXXXXXX.tmp``) in ``directory``.

    A kill during a write leaves one behind. Call only as the directory's only writer (holding
    its lock): a live writer's temporary file looks the same.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    stale = [p for p in directory.iterdir()
             if p.is_file() and re.fullmatch(rf"\..+\.{_TEMP_SUFFIX}", p.name)]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Remove :func:`atomic_dir`'s leftovers of ``path``: ``.<name>.XXXXXXXX.tmp``, ``.<name>.old``.

    Call only while holding ``path``'s lock (or as its only writer): a live writer's temporary
    directory looks the same.
    """
    path = Path(path)
    if not path.parent.is_dir():
        return []
    pattern = re.compile(rf"\.{re.escape(path.name)}\.({_TEMP_SUFFIX}|old)")
    removed = [p for p in path.parent.iterdir() if pattern.fullmatch(p.name)]
    for p in removed:
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    if removed:
        logger.warning("removed %d temporary directories left by a killed run of %s",
                       len(removed), path)
    return removed


def check_replaceable(path: str | os.PathLike, marker: str, allowed: Iterable[str],
                      what: str = "directory") -> None:
    """Raise unless ``path`` is a directory this suite wrote and holds nothing else.

    ``--overwrite`` may only ever replace the suite's own output: a directory whose ``marker``
    file is present and whose every entry is one of ``allowed`` (glob patterns). Anything
    else -- a file, a directory of the user's own files, one with extra files added -- is
    refused, so a mistyped ``--out`` never deletes someone's work.

    Raises:
        FileExistsError: naming the path, why it is refused and the fix.
    """
    path = Path(path)
    if not path.is_dir():
        raise FileExistsError(f"--out {path} exists and is not a directory; refusing to replace "
                              "it: pick another --out")
    if not (path / marker).is_file():
        raise FileExistsError(f"refusing to replace {path}: it is not a {what} written by "
                              f"embscale (it has no {marker}); pick another --out, or remove it "
                              "yourself if you mean to")
    patterns = tuple(allowed) + (marker,)
    foreign = sorted(p.name for p in path.iterdir()
                     if not any(fnmatch.fnmatchcase(p.name, pat) for pat in patterns))
    if foreign:
        raise FileExistsError(f"refusing to replace {path}: besides the {what} it holds other "
                              f"files ({', '.join(foreign[:5])}); move them away or pick "
                              "another --out")


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, overwrite: bool = False, marker: str | None = None,
               allowed: Iterable[str] = (), what: str = "directory") -> Iterator[Path]:
    """Yield a temporary directory beside ``path``; on success move it to ``path``.

    Args:
        path: final directory.
        overwrite: replace an existing ``path``; otherwise an existing one raises
            ``FileExistsError`` before any work is done.
        marker: with ``overwrite``, an existing ``path`` is replaced only when it holds this
            file and no entries other than ``allowed`` (see :func:`check_replaceable`); without
            a marker an existing ``path`` is never replaced.
        allowed: glob patterns of the entries the suite itself writes in ``path``.
        what: how messages name the directory.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; pass --overwrite to replace it")
    if path.exists():
        if marker is None:
            raise FileExistsError(f"{path} already exists and cannot be replaced safely; "
                                  "remove it yourself or pick another output path")
        check_replaceable(path, marker, allowed, what)
    make_parent(path)
    tmp_path = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp_path
        fsync_tree(tmp_path)
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp_path, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp_path, path)
        fsync_path(path.parent)
    except BaseException:
        shutil.rmtree(tmp_path, ignore_errors=True)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_file(path) as tmp:
        tmp.write_text(text)
