"""Worker processes that never outlive their parent.

Example:
    ProcessPoolExecutor(2, mp_context=get_context("spawn"), initializer=die_with_parent,
                        initargs=(os.getpid(),))
"""

from __future__ import annotations

import ctypes
import os
import signal
import threading
import time

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent(parent_pid: int) -> None:
    """Worker initializer: exit when the parent process dies (``kill -9`` included).

    On Linux the kernel sends SIGKILL at the parent's death (``PR_SET_PDEATHSIG``); elsewhere,
    and as a backstop, a daemon thread exits once the worker has been re-parented.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="die-with-parent").start()


def die_with_parent_quietly(parent_pid: int) -> None:
    """:func:`die_with_parent`, and on Ctrl-C exit at once without a traceback of our own.

    Ctrl-C reaches every process of the terminal's group: the parent reports it, and a worker
    whose unfinished output its parent's next run removes needs to say nothing.
    """
    die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, lambda *_: os._exit(130))

