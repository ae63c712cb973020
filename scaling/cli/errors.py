"""How the ``embscale`` command reports errors: one line, the traceback only with ``--debug``.

Errors of ours name the file or argument and the fix; a traceback would bury that line. Every
exception that reaches the top becomes one line on stderr:

- bad input (``ValueError``, ``TypeError``, ``OSError`` such as a missing file or a directory in
  use, ``ImportError`` of an optional part, ``LookupError``) exits with status 2;
- anything else is a fault of the suite: one line that says so, exit status 1;
- Ctrl-C exits with status 130 after one line.

``--debug`` (or ``-v``) re-raises instead, so the traceback is there when it is wanted.
"""

from __future__ import annotations

import argparse
import errno
import sys
from collections.abc import Callable
from typing import Any, NoReturn

USER_ERRORS = (ValueError, TypeError, OSError, ImportError, LookupError)
"""Exceptions raised for bad input: exit status 2."""


def one_line(error: BaseException) -> str:
    r"""The exception's message on one line (its type when it has no message).

    >>> one_line(ValueError("bad --lr\n  use a finite value"))
    'bad --lr; use a finite value'
    >>> one_line(OSError(30, "Read-only file system", "runs"))[:53]
    "[Errno 30] Read-only file system: 'runs'; write somew"
    """
    text = "; ".join(part.strip() for part in str(error).splitlines() if part.strip())
    if isinstance(error, KeyError) and error.args:
        text = f"missing key {error.args[0]!r}"
    if isinstance(error, OSError) and error.errno == errno.EROFS:
        text += ("; write somewhere writable (the output option, or for caches "
                 "EMBSCALE_CACHE / EMBSCALE_FRAMES_DIR and MINARI_DATASETS_PATH)")
    elif isinstance(error, OSError) and error.errno in (errno.EACCES, errno.EPERM):
        text += "; check that path's permissions, or give another path"
    return text or type(error).__name__


def run_command(func: Callable[[Any], Any], args: Any, debug: bool = False,
                prog: str = "embscale") -> int:
    """Call ``func(args)``; print any error as one line and return the exit status.

    Args:
        func: a subcommand's handler.
        args: its parsed arguments.
        debug: re-raise instead, for the full traceback.
        prog: the command name that starts the line.
    """
    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"{prog}: interrupted; finished work is kept: run the same command again to "
              "continue", file=sys.stderr)
        return 130
    except USER_ERRORS as e:
        if debug:
            raise
        print(f"{prog}: error: {one_line(e)}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - the top level: one line, never a traceback
        if debug:
            raise
        print(f"{prog}: error: unexpected {type(e).__name__}: {one_line(e)} (a fault of "
              f"{prog}, not of your input; rerun with --debug for the traceback and report it)",
              file=sys.stderr)
        return 1


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line naming the argument, then exit 2."""

    def error(self, message: str) -> NoReturn:
        """Print ``<prog>: error: <message> (see <prog> --help)`` and exit with status 2."""
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")
