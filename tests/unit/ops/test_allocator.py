"""The C allocator takes the fixed mmap threshold where it is glibc's."""

from __future__ import annotations

import platform

import pytest

from pypicache.ops.allocator import return_big_buffers


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt only")
def test_glibc_takes_the_fixed_threshold():
    assert return_big_buffers() is True
