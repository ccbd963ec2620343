"""The C allocator, told to hand big buffers back to the system once they are freed.

A server streams files in buffers of a few hundred kilobytes from 16 threads.  glibc
serves such buffers with mmap at first, but each one freed raises its threshold, until
they come from per-thread heaps that it seldom trims: the process keeps the memory of
its busiest moment (a cold install grew a server by 75 MB and never gave it back).
A fixed threshold keeps every buffer of 128 KiB or more in mmap, returned when freed.
"""

from __future__ import annotations

import ctypes
import logging
import sys

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number
MMAP_THRESHOLD = 128 * 1024  # glibc's own starting value, kept fixed


def return_big_buffers() -> bool:
    """Fix glibc's mmap threshold; False where there is no glibc ``mallopt`` to tell."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    applied = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    if not applied:
        log.info("the C allocator did not take a fixed mmap threshold; memory may stay high")
    return applied
