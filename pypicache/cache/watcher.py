"""What other processes changed: their page changes end this process's copies at once.

Every change to a page takes the next serial of this index's own serial space
(``cache.changes``), whichever process made it.  A process reads the changes after
the last one it saw every ``INTERVAL`` seconds and drops its in-memory copy of each
page named, so a file the follower withdrew, a new hash or an upload in one process
is not served from another's memory until its ``page_ttl`` runs out.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sqlalchemy.exc import SQLAlchemyError

from pypicache.cache.changes import PAGE, last_serial, made_here, since
from pypicache.db import Database

log = logging.getLogger(__name__)

# Seconds between two looks at the changes: one read by primary key, cheap enough.
INTERVAL = 1.0


class ChangeWatcher:
    """A thread that calls ``forget(name)`` for every page another process changed."""

    def __init__(
        self, database: Database, forget: Callable[[str], None], interval: float = INTERVAL
    ) -> None:
        self._database = database
        self._forget = forget
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._serial: int | None = None

    def start(self) -> None:
        try:
            self.look()  # where to start: what came before is in no memory yet
        except SQLAlchemyError as exc:
            log.warning("could not read the changes of other processes: %s", exc)
        self._thread = threading.Thread(target=self._run, name="change-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        failing = False
        while not self._stop.wait(self._interval):
            try:
                self.look()
            except SQLAlchemyError as exc:
                # The database is down or locked: pages stay as the TTL has them; try again,
                # with one line per outage, not one a second.
                if not failing:
                    log.warning("could not read the changes of other processes: %s", exc)
                failing = True
            else:
                if failing:
                    log.info("reading the changes of other processes again")
                failing = False

    def look(self) -> int:
        """Forget every page changed since the last look; how many changes there were."""
        seen = 0
        with self._database.unit_of_work() as db:
            if self._serial is None:
                self._serial = last_serial(db)
                return 0
            while True:
                entries = since(db, self._serial, PAGE)
                for entry in entries:
                    if not made_here(self._database.engine, entry.serial):
                        self._forget(entry.name)  # this process's own changes show already
                seen += len(entries)
                if entries:
                    self._serial = entries[-1].serial
                if len(entries) < PAGE:
                    return seen
