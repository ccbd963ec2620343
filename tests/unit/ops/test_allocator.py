"""The C allocator takes the cap on its heaps and its thresholds where it is glibc's."""

from __future__ import annotations

import platform

import pytest

from pypicache.ops.allocator import share_heaps


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt only")
def test_glibc_takes_the_cap():
    assert share_heaps() is True
