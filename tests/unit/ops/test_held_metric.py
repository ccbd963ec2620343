"""pypicache_policy_held_files: one gauge per reason, counted at most every few seconds."""

from __future__ import annotations

import time

from prometheus_client import generate_latest

from pypicache.ops.metrics import Metrics


def scrape(metrics: Metrics) -> list[str]:
    text = generate_latest(metrics.registry).decode()
    return [line for line in text.splitlines() if line.startswith("pypicache_policy_held_files")]


def test_every_reason_is_a_sample_and_scrapes_within_max_age_count_once():
    calls: list[float] = []

    def count() -> dict[str, int]:
        calls.append(time.monotonic())
        return {"cooldown": 3, "block": 1}

    metrics = Metrics()
    metrics.watch_held(count, ("cooldown", "cutoff", "block"), max_age=3600)
    assert calls == [], "registering counts nothing"
    lines = scrape(metrics)
    assert lines == [
        'pypicache_policy_held_files{reason="cooldown"} 3.0',
        'pypicache_policy_held_files{reason="cutoff"} 0.0',
        'pypicache_policy_held_files{reason="block"} 1.0',
    ]
    scrape(metrics)
    assert len(calls) == 1


def test_a_scrape_after_max_age_counts_again():
    counts = iter([{"cutoff": 1}, {"cutoff": 2}])
    metrics = Metrics()
    metrics.watch_held(lambda: next(counts), ("cutoff",), max_age=0)
    assert scrape(metrics) == ['pypicache_policy_held_files{reason="cutoff"} 1.0']
    assert scrape(metrics) == ['pypicache_policy_held_files{reason="cutoff"} 2.0']
