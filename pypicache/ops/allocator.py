"""The C allocator, told to keep few heaps and to give big buffers back, so that memory
freed by one thread serves the next and a big page's buffers do not stay.

A server streams files from 16 threads in buffers of hundreds of kilobytes.  glibc gives
threads heaps of their own (up to eight per core) and seldom trims them, so a process
keeps the memory of its busiest moment in every heap: a cold install and hot downloads
grew a server from 100 to 246 MB.  With two heaps it peaked at 170 MB, as fast.

glibc also raises its mmap threshold to the size of each mapped buffer it frees, so
after the first big page (7 MB of JSON for 11,000 files, read, decoded, rendered) every
later one is carved from a heap and its memory stays there.  A fixed threshold of 1 MiB,
above the 256 KiB buffers files stream in, keeps big buffers mapped and returned when
freed (the PyPI-sized pages took a server to 142 MB instead of 150); fixing it also
fixes the trim threshold, which at its 128 KiB default gave the heaps back and took them
again on every few downloads (a fifth off hot files' throughput), hence 16 MiB.
"""

from __future__ import annotations

import ctypes
import logging
import sys

log = logging.getLogger(__name__)

# glibc's mallopt parameter numbers.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
ARENAS = 2
MMAP_THRESHOLD = 1024 * 1024
TRIM_THRESHOLD = 16 * 1024 * 1024


def share_heaps() -> bool:
    """Cap glibc's heaps at ARENAS and fix its thresholds; False where there is no glibc
    ``mallopt`` to tell, or it refused one of them."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    applied = all(
        [
            mallopt(M_ARENA_MAX, ARENAS),
            mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD),
            mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD),
        ]
    )
    if not applied:
        log.info("the C allocator did not take its settings; memory may stay high")
    return applied
