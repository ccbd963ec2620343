"""The C allocator, told to keep few heaps, so that memory freed by one thread serves the next.

A server streams files from 16 threads in buffers of hundreds of kilobytes.  glibc gives
threads heaps of their own (up to eight per core) and seldom trims them, so a process
keeps the memory of its busiest moment in every heap: a cold install and hot downloads
grew a server from 100 to 246 MB.  With two heaps it peaked at 170 MB, as fast.  (A fixed
mmap threshold returned even more, down to 158 MB, but halved the throughput of big
files: every buffer became a fresh mapping.)
"""

from __future__ import annotations

import ctypes
import logging
import sys

log = logging.getLogger(__name__)

M_ARENA_MAX = -8  # glibc's mallopt parameter number
ARENAS = 2


def share_heaps() -> bool:
    """Cap glibc's heaps at ARENAS; False where there is no glibc ``mallopt`` to tell."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    applied = bool(mallopt(M_ARENA_MAX, ARENAS))
    if not applied:
        log.info("the C allocator did not take a cap on its heaps; memory may stay high")
    return applied
