"""The login limiter: counts per user and address, windows that pass, memory that stays bounded."""

from __future__ import annotations

import pytest

from pypicache.auth.ratelimit import LoginLimiter, address_key_of
from pypicache.errors import RateLimited


class Clock:
    """The limiter's time, moved by the test instead of waited for."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fail(limiter: LoginLimiter, times: int, user: str | None, address: str | None) -> None:
    for _ in range(times):
        limiter.begin(user, address)


def test_a_user_is_limited_after_its_failures_until_the_window_passes():
    clock = Clock()
    limiter = LoginLimiter(per_user=3, per_address=100, window=60, clock=clock)
    fail(limiter, 3, "alice", "10.0.0.1")
    with pytest.raises(RateLimited) as refused:
        limiter.begin("alice", "10.0.0.2")  # another address does not help
    assert refused.value.retry_after == 60
    limiter.begin("bob", "10.0.0.1")  # other users are not locked out
    clock.now += 45
    with pytest.raises(RateLimited) as refused:
        limiter.begin("alice", "10.0.0.3")
    assert refused.value.retry_after == 15
    clock.now += 15
    limiter.begin("alice", "10.0.0.3")


def test_an_address_is_limited_whichever_names_it_tries():
    limiter = LoginLimiter(per_user=100, per_address=5, clock=Clock())
    for i in range(5):
        limiter.begin(f"user{i}", "192.0.2.7")
    with pytest.raises(RateLimited):
        limiter.begin("root", "192.0.2.7")
    limiter.begin("root", "192.0.2.8")


def test_success_resets_the_user_and_gives_the_address_its_try_back():
    limiter = LoginLimiter(per_user=3, per_address=3, clock=Clock())
    fail(limiter, 2, "alice", "10.0.0.1")
    limiter.begin("alice", "10.0.0.1")
    limiter.succeeded("alice", "10.0.0.1")
    fail(limiter, 2, "alice", "10.0.0.9")  # the user counts from zero again
    limiter.begin("carol", "10.0.0.1")  # the address has had 2 failures, not 3
    with pytest.raises(RateLimited):
        limiter.begin("dave", "10.0.0.1")


def test_an_ipv6_host_is_counted_by_its_64_and_a_mapped_ipv4_as_itself():
    assert address_key_of("2001:db8::1") == address_key_of("2001:db8::ffff:1")
    assert address_key_of("2001:db8::1") != address_key_of("2001:db8:0:1::1")
    assert address_key_of("::ffff:192.0.2.1") == address_key_of("192.0.2.1")
    assert address_key_of(None) is None
    assert address_key_of("not an address") == "address not an address"


def test_spraying_addresses_and_names_keeps_memory_bounded():
    clock = Clock()
    limiter = LoginLimiter(per_user=5, per_address=5, max_entries=1000, clock=clock)
    for i in range(20_000):
        limiter.begin(f"name{i}", f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}")
        clock.now += 0.001
    users, addresses = limiter.sizes()
    assert users <= 1000
    assert addresses <= 1000
