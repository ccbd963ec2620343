"""The recent past the dashboard charts: follower lag, cache lookups and upstream bytes.

A sample every ``chart_interval`` seconds, kept in memory for the last few
hundred intervals.  Counters are this process's (since it started); the lag
is the deployment's, read from the follower's row.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from pypicache.db import Database
from pypicache.models import FollowerState, utcnow
from pypicache.ops.metrics import Metrics

log = logging.getLogger(__name__)

KEEP = 360  # samples: six hours at the default interval of a minute


@dataclass(frozen=True)
class Sample:
    at: datetime  # naive UTC, like every stored timestamp
    lag_serials: int | None  # None: no watermark yet
    hits: float  # cumulative since start, as the counters are
    misses: float
    upstream_bytes: float


class History:
    def __init__(
        self,
        database: Database,
        metrics: Metrics,
        interval: float,
        upstream: str,
        keep: int = KEEP,
    ) -> None:
        """``upstream``: whose follower's lag the charts draw (the first upstream's)."""
        self.interval = interval
        self._upstream = upstream
        self._database = database
        self._metrics = metrics
        self._samples: deque[Sample] = deque(maxlen=keep)
        self._lock = threading.Lock()  # a deque must not change while it is copied
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="history", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def samples(self) -> list[Sample]:
        """What was recorded, and a sample of right now to end the charts with."""
        with self._lock:
            recorded = list(self._samples)
        return [*recorded, self.take()]

    def take(self) -> Sample:
        totals = self._metrics.cache_totals()
        return Sample(
            at=utcnow(),
            lag_serials=self._lag(),
            hits=totals.get("hit", 0.0) + totals.get("stale", 0.0),
            misses=totals.get("miss", 0.0),
            upstream_bytes=self._metrics.upstream_bytes_total(),
        )

    def _run(self) -> None:
        while True:
            try:
                sample = self.take()
                with self._lock:
                    self._samples.append(sample)
            except Exception:  # a chart with a gap is better than no more samples
                log.exception("could not sample the dashboard's history")
            if self._stop.wait(self.interval):
                return

    def _lag(self) -> int | None:
        with self._database.unit_of_work() as db:
            state = db.scalar(select(FollowerState).where(FollowerState.upstream == self._upstream))
            if state is None or state.watermark is None:
                return None
            return max((state.upstream_serial or 0) - state.watermark, 0)
