"""Run small fits with single-threaded BLAS.

The fits here solve problems of five parameters: OpenBLAS threads bring no speed to them, and on
a busy machine waking them in every L-BFGS iteration makes a fit ten times slower. This does what
``threadpoolctl`` does, for OpenBLAS only, with the standard library.
"""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import sys
from collections.abc import Iterator

_SUFFIXES = ("", "64_", "_64_")
# Set while a block is active, so nested fits (bootstrap refits) skip the library scan.
_ACTIVE: contextvars.ContextVar[bool] = contextvars.ContextVar("single_threaded_blas",
                                                               default=False)
_PREFIXES = ("openblas", "scipy_openblas")


def _openblas_handles() -> list[tuple[object, object]]:
    """``(get, set)`` thread functions of every OpenBLAS loaded in this process."""
    if not sys.platform.startswith("linux"):
        return []
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "openblas" in line.lower()}
    except OSError:
        return []
    out = []
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for pre in _PREFIXES:
            found = False
            for suf in _SUFFIXES:
                get = getattr(lib, f"{pre}_get_num_threads{suf}", None)
                set_ = getattr(lib, f"{pre}_set_num_threads{suf}", None)
                if get is not None and set_ is not None:
                    out.append((get, set_))
                    found = True
                    break
            if found:
                break
    return out


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Limit every loaded OpenBLAS to one thread inside the block, then restore it."""
    if _ACTIVE.get():
        yield
        return
    token = _ACTIVE.set(True)
    handles = _openblas_handles()
    saved = []
    for get, set_ in handles:
        try:
            saved.append((set_, int(get())))
            set_(1)
        except Exception:  # noqa: BLE001 - an unexpected ABI: leave that library alone
            continue
    try:
        yield
    finally:
        for set_, n in saved:
            set_(n)
        _ACTIVE.reset(token)
