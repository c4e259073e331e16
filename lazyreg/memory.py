"""What a server process does to hold less memory: few malloc arenas, a trimmed heap.

glibc gives each thread that allocates its own heap (arena); the database's
worker threads would each keep one, mostly empty, for the life of the
process. `few_arenas` (before any thread starts) caps them at ARENAS; `trim`
(once started) collects start-up's garbage and gives the heap's free pages
back. Both do nothing where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc

M_ARENA_MAX = -8  # glibc's mallopt parameter
ARENAS = 2


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None


def few_arenas() -> None:
    libc = _libc()
    if libc is not None and hasattr(libc, "mallopt"):
        libc.mallopt(M_ARENA_MAX, ARENAS)


def trim() -> None:
    gc.collect()
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)
