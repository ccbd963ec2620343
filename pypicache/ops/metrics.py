"""Prometheus metrics: counters the code bumps, and gauges read from the database at scrape."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from pypicache.db import Database
from pypicache.models import File, FollowerState, utcnow

# Seconds a scrape serves the held-files counts read last: judging the candidates is work.
HELD_MAX_AGE = 5.0
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Metrics:
    """One registry per app, so several apps in one process (tests) never collide."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.requests = Counter(
            "pypicache_http_requests",
            "HTTP requests answered, by route, method and status.",
            ["route", "method", "status"],
            registry=registry,
        )
        self.duration = Histogram(
            "pypicache_http_request_duration_seconds",
            "Time to answer a request (to the last byte for streamed and file responses).",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.served_bytes = Counter(
            "pypicache_http_response_bytes",
            "Body bytes sent to clients, by route.",
            ["route"],
            registry=registry,
        )
        self.cache = Counter(
            "pypicache_cache_lookups",
            "Pages, files and metadata asked for: hit (cached), miss (fetched), stale.",
            ["kind", "result"],
            registry=registry,
        )
        self.upstream_requests = Counter(
            "pypicache_upstream_requests",
            "Requests sent to the upstream, by kind (page, file, list, serials, changelog).",
            ["kind"],
            registry=registry,
        )
        self.upstream_bytes = Counter(
            "pypicache_upstream_bytes",
            "Bytes received from the upstream, by kind.",
            ["kind"],
            registry=registry,
        )
        self.upstream_errors = Counter(
            "pypicache_upstream_errors",
            "Upstream failures, by kind and reason "
            "(timeout, connection, status, invalid, hash, refused, redirects).",
            ["kind", "reason"],
            registry=registry,
        )
        self.upstream_invalid_entries = Counter(
            "pypicache_upstream_invalid_entries",
            "Upstream entries left out as invalid, by reason (digest, filename, duplicate, name).",
            ["reason"],
            registry=registry,
        )
        self.uploads = Counter(
            "pypicache_uploads",
            "Uploads, by result (stored, duplicate, rejected).",
            ["result"],
            registry=registry,
        )

    def watch_database(self, database: Database, upstream: str) -> None:
        """Serials of the follower of ``upstream`` (the first one), and the store's size."""
        self.registry.register(DatabaseCollector(database, upstream))

    def watch_held(
        self,
        count: Callable[[], Mapping[str, int]],
        reasons: Sequence[str],
        max_age: float = HELD_MAX_AGE,
    ) -> None:
        """Files the supply-chain rules hold back, by reason: ``count()`` at most every
        ``max_age`` seconds."""
        self.registry.register(HeldFilesCollector(count, reasons, max_age))

    def cache_totals(self) -> dict[str, float]:
        """Lookups of every kind since start, by result ("hit", "miss", "stale")."""
        totals: dict[str, float] = {}
        for family in self.cache.collect():
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    result = sample.labels["result"]
                    totals[result] = totals.get(result, 0.0) + sample.value
        return totals

    def upstream_bytes_total(self) -> float:
        """Bytes received from the upstream since start, all kinds."""
        return sum(
            sample.value
            for family in self.upstream_bytes.collect()
            for sample in family.samples
            if sample.name.endswith("_total")
        )

    def cache_counter(self, kind: str, result: str) -> Callable[[], None]:
        """A bound ``inc`` for the hot path: label lookup once, not per request."""
        return self.cache.labels(kind, result).inc


class DatabaseCollector(Collector):
    """Follower serials and blob store size, read when Prometheus scrapes."""

    def __init__(self, database: Database, upstream: str) -> None:
        self._database = database
        self._upstream = upstream

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._database.unit_of_work() as db:
            state = db.scalar(select(FollowerState).where(FollowerState.upstream == self._upstream))
            files, size = db.execute(
                select(func.count(File.id), func.coalesce(func.sum(File.size), 0)).where(
                    File.cached_at.is_not(None)
                )
            ).one()
        yield _gauge("pypicache_store_files", "Distribution files in the blob store.", files)
        yield _gauge("pypicache_store_bytes", "Bytes of distribution files in the store.", size)
        if state is None or state.watermark is None:
            return
        yield _gauge(
            "pypicache_follower_watermark",
            "Serial up to which every upstream change to a cached project is in the cache.",
            state.watermark,
        )
        upstream = state.upstream_serial or state.watermark
        yield _gauge("pypicache_upstream_serial", "The upstream's serial, last seen.", upstream)
        yield _gauge(
            "pypicache_follower_lag_serials",
            "Upstream serials not yet in the cache.",
            max(upstream - state.watermark, 0),
        )
        lag = (utcnow() - state.behind_since).total_seconds() if state.behind_since else 0.0
        yield _gauge(
            "pypicache_follower_lag_seconds", "Seconds the watermark has been behind.", lag
        )
        if state.last_success_at is not None:
            yield _gauge(
                "pypicache_follower_last_success_age_seconds",
                "Seconds since the follower's last successful round.",
                (utcnow() - state.last_success_at).total_seconds(),
            )


class HeldFilesCollector(Collector):
    """Files held back in any index, by reason, counted at most every ``max_age`` seconds
    however often Prometheus (or several of them) scrapes."""

    def __init__(
        self, count: Callable[[], Mapping[str, int]], reasons: Sequence[str], max_age: float
    ) -> None:
        self._count = count
        self._reasons = tuple(reasons)
        self._max_age = max_age
        self._lock = threading.Lock()
        self._counts: Mapping[str, int] = {}
        self._read_at = float("-inf")

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:  # concurrent scrapes wait for one count, not one each
            if time.monotonic() - self._read_at >= self._max_age:
                self._counts = self._count()
                self._read_at = time.monotonic()
            counts = self._counts
        family = GaugeMetricFamily(
            "pypicache_policy_held_files",
            "Files the supply-chain rules hold back in any index, by reason "
            "(cooldown, cutoff, block).",
            labels=["reason"],
        )
        for reason in self._reasons:
            family.add_metric([reason], float(counts.get(reason, 0)))
        yield family


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=float(value))
