"""An index that follows the fake upstream's changelog, and waiting for it to catch up."""

from __future__ import annotations

import requests

from tests.conftest import RunningIndex
from tests.support.fakeupstream import FakeUpstream
from tests.support.waiting import wait_until


def follow_settings(upstream: FakeUpstream, **overrides: str) -> dict[str, str]:
    """Settings that make an index follow the fake upstream's changelog quickly."""
    return {
        "pypicache.changelog_url": upstream.xmlrpc_url,
        "pypicache.follow_method": "auto",
        "pypicache.follow_interval": "0.2",
        "pypicache.changelog_min_interval": "0",
        # Pages stay fresh for an hour: whatever changes them here is the follower.
        "pypicache.page_ttl": "3600",
        **overrides,
    }


def status(index: RunningIndex) -> dict:
    """The index's /api/status report."""
    return requests.get(index.url + "/api/status", timeout=10).json()


def caught_up(index: RunningIndex, upstream: FakeUpstream, timeout: float = 15) -> bool:
    """Wait until the index's watermark reaches the upstream's last serial."""
    return wait_until(lambda: status(index)["watermark"] == upstream.serial, timeout)
