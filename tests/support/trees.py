"""The small dependency tree the install tests resolve, and what a correct resolver picks."""

from __future__ import annotations

from tests.support.dists import make_sdist, make_wheel
from tests.support.fakeupstream import FakeUpstream

# app -> (liba, libb>=2), liba -> libc: the versions pip and uv must choose.
EXPECTED = {"app": "1.0", "liba": "1.0", "libb": "2.1", "libc": "0.1"}


def publish_app_tree(upstream: FakeUpstream) -> FakeUpstream:
    """The tree, plus versions that must not be chosen: too old, yanked, requires-python."""
    upstream.publish(make_wheel("app", "1.0", requires_dist=["liba", "libb>=2"]))
    upstream.publish(make_sdist("app", "1.0"))
    upstream.publish(make_wheel("liba", "0.9"))
    upstream.publish(make_wheel("liba", "1.0", requires_dist=["libc"]))
    upstream.publish(make_wheel("libb", "1.5"))
    upstream.publish(make_wheel("libb", "2.1"))
    upstream.publish(make_wheel("libb", "3.0", requires_python=">=99"))
    upstream.publish(make_wheel("libc", "0.1"))
    upstream.publish(make_wheel("libc", "0.2"))
    upstream.yank("libc", "0.2")
    return upstream
