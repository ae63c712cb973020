"""An exclusive, pid-recording lock on a directory that one process writes at a time.

Two ``embscale train`` processes on one run directory would interleave their metrics (a fit would
count the points twice), and two encoders of one shard directory would race on its parts. The
writer holds ``<dir>/.lock`` for its lifetime:

- the lock is a POSIX ``fcntl.flock`` on that file, so the kernel releases it when the holder
  exits for any reason (``kill -9`` included): a lock is *stale* exactly when its recorded pid is
  no longer alive, and the next process takes it over with a warning;
- the file records the holder's pid, host and start time, so a refused process can say who holds
  the directory.

Example:
    with DirLock("runs/demo/wm-s100k", what="run directory"):
        ...  # write the run
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import time
from pathlib import Path

from offline_data.atomic import make_parent

logger = logging.getLogger(__name__)

LOCK_NAME = ".lock"


class DirectoryInUseError(OSError):
    """Another live process holds the directory's lock (an ``OSError``, like ``EBUSY``)."""


def pid_alive(pid: int) -> bool:
    """True when a process with this pid exists on this machine.

    >>> pid_alive(os.getpid())
    True
    """
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def read_holder(path: str | os.PathLike) -> dict:
    """The holder record of a lock file (``{}`` when absent or unreadable)."""
    try:
        return json.loads(Path(path).read_text() or "{}")
    except (OSError, ValueError):
        return {}


class DirLock:
    """Exclusive lock on ``directory`` (created if missing), recording this process's pid.

    Args:
        directory: the directory to hold.
        what: how messages name it ("run directory", "token shard directory").
        lock_path: the lock file (default ``<directory>/.lock``).

    Raises:
        DirectoryInUseError: on ``acquire`` when another live process holds it.
    """

    def __init__(self, directory: str | os.PathLike, what: str = "directory",
                 lock_path: str | os.PathLike | None = None):
        self.directory = Path(directory)
        self.what = what
        self.path = Path(lock_path) if lock_path else self.directory / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> DirLock:
        """Take the lock or raise ``DirectoryInUseError`` naming the holder."""
        if self._fd is not None:
            return self
        make_parent(self.path)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = read_holder(self.path)
            who = (f"process {holder['pid']} on {holder.get('host', '?')} since "
                   f"{holder.get('started', '?')}" if "pid" in holder else "another process")
            raise DirectoryInUseError(
                f"{self.what} {self.directory} is in use by {who} (lock {self.path}); wait for "
                f"it to finish or use another directory") from None
        old = read_holder(self.path)
        if old.get("pid") and old.get("pid") != os.getpid():
            # Nobody holds the flock, so the recorded holder exited without releasing it.
            state = "no longer running" if not pid_alive(int(old["pid"])) else "not holding it"
            logger.warning("recovered a stale lock on %s %s: process %s is %s", self.what,
                           self.directory, old["pid"], state)
        record = {"pid": os.getpid(), "host": socket.gethostname(),
                  "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        """Give the lock up and clear the holder record (safe to call twice)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
        except OSError:
            pass
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def __enter__(self) -> DirLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def __del__(self):  # a lock object dropped without release() must not leak its fd
        if getattr(self, "_fd", None) is not None:
            try:
                self.release()
            except OSError:
                pass
