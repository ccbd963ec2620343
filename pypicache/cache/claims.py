"""Claims: which process of the deployment fetches a missing file or page, held by a lease."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, delete, event, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DatabaseError, DataError, IntegrityError, ProgrammingError
from sqlalchemy.orm import Session

from pypicache.db import Database, dialect_of
from pypicache.errors import DatabaseUnavailable
from pypicache.models import FillClaim, utcnow

log = logging.getLogger(__name__)

# A claim not renewed for this long belongs to a dead process; another one takes over.
CLAIM_LEASE = 10.0
# Seconds between looks at another process's claim: a read by primary key, cheap enough
# that a waiter learns within a few milliseconds that the download or page is done.
WAIT_POLL = 0.02


# Errors that say the query or the data is wrong, not that the database is unwell.
_NOT_AN_OUTAGE = (IntegrityError, ProgrammingError, DataError)


@contextmanager
def database_guard(doing: str) -> Iterator[None]:
    """Turn the database refusing work (locked, full, read-only, gone) into DatabaseUnavailable.

    Loops that wait on the database end on it instead of asking again at once:
    SQLite answers a read-only or full database instantly, and a retry would spin.
    """
    try:
        yield
    except DatabaseError as exc:
        if isinstance(exc, _NOT_AN_OUTAGE):
            raise
        reason = str(exc.orig if exc.orig is not None else exc).splitlines()[0][:200]
        raise DatabaseUnavailable(f"{doing}: {reason}") from exc


def _claim_statement(dialect: Any) -> postgresql.Insert | sqlite.Insert:
    # ON CONFLICT DO NOTHING rather than a failed INSERT: PostgreSQL logs every failed
    # one as an ERROR, and waiters ask several times a second.
    return (
        dialect.insert(_CLAIMS)
        .values(key=bindparam("key"), owner=bindparam("owner"), expires_at=bindparam("expires"))
        .on_conflict_do_nothing(index_elements=[_CLAIMS.c.key])
        .returning(_CLAIMS.c.key)
    )


# Built once per dialect: building a statement and its cache key cost more than its run,
# and every fill claims and releases.  On the table, not the mapped class: no claim is
# ever loaded as an object, and the ORM's bulk path cost a fill a fifth of its CPU.
_CLAIMS = FillClaim.__table__
_CLAIM = {"postgresql": _claim_statement(postgresql), "sqlite": _claim_statement(sqlite)}
_RELEASE = delete(_CLAIMS).where(
    _CLAIMS.c.key == bindparam("key"), _CLAIMS.c.owner == bindparam("owner")
)


class FillClaims:
    """Claims on downloads, shared through the database by every process.

    A process claims a file before it asks the upstream for it; a process that
    finds the file claimed waits for the blob to appear in the shared store
    instead of fetching it too.  A thread renews this process's claims, so a
    slow upstream never makes a live claim lapse and a killed process's claims
    lapse within ``lease`` seconds.  Clocks of the hosts should agree to well
    within the lease (NTP does).
    """

    def __init__(self, database: Database, lease: float = CLAIM_LEASE) -> None:
        self._database = database
        self.lease = lease
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._lock = threading.Lock()
        self._held: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def try_claim(self, key: str) -> bool:
        """Claim ``key`` for this process; False while a live claim of another process has it.

        DatabaseUnavailable when the database refuses the write (SQLite's "database
        is locked" comes only after its busy timeout, so asking again would not help).
        """
        with database_guard(f"claiming {key}"), self._database.unit_of_work() as db:
            claimed = self._insert(db, key)
            if claimed is None:
                # Taken: by a live claim, or by a dead process's, which goes first.
                lapsed = db.execute(
                    delete(FillClaim).where(FillClaim.key == key, FillClaim.expires_at < utcnow())
                )
                if lapsed.rowcount:
                    claimed = self._insert(db, key)
        if claimed is None:
            return False
        with self._lock:
            self._held.add(key)
            self._start_renewing()
        return True

    def _insert(self, db: Session, key: str) -> str | None:
        return db.scalar(
            _CLAIM[dialect_of(db)], {"key": key, "owner": self.owner, "expires": self._expiry()}
        )

    def release(self, key: str) -> None:
        """End this process's claim on ``key``; one it does not hold is nothing to end."""
        with self._lock:
            if key not in self._held:
                return
        try:
            with database_guard(f"releasing {key}"), self._database.unit_of_work() as db:
                self.release_in(db, key)
        except DatabaseUnavailable as exc:
            with self._lock:
                self._held.discard(key)  # not renewed any more: it lapses
            log.warning("could not release the claim; it lapses: %s", exc)

    def release_in(self, db: Session, key: str) -> None:
        """End the claim in the caller's transaction, the one that records what it was for.

        Whoever waits on the claim then finds the result with it, and the work
        costs one write to the database instead of two.  Until that transaction
        commits, this process still holds (and renews) the claim.
        """
        db.execute(_RELEASE, {"key": key, "owner": self.owner})

        def released(_session: Session) -> None:
            with self._lock:
                self._held.discard(key)

        event.listen(db, "after_commit", released, once=True)

    def held_elsewhere(self, key: str) -> bool:
        """Whether another process holds a live claim on ``key``."""
        with database_guard(f"reading the claim on {key}"), self._database.unit_of_work() as db:
            row = db.execute(
                select(FillClaim.owner, FillClaim.expires_at).where(FillClaim.key == key)
            ).first()
        return row is not None and row.owner != self.owner and row.expires_at >= utcnow()

    def live(self, prefix: str) -> set[str]:
        """The keys starting with ``prefix`` that some process (this one too) holds now."""
        guard = database_guard(f"reading the claims on {prefix}*")
        with guard, self._database.unit_of_work() as db:
            keys = db.scalars(
                select(FillClaim.key).where(
                    FillClaim.key.startswith(prefix, autoescape=True),
                    FillClaim.expires_at >= utcnow(),
                )
            )
            return set(keys)

    def wait_while_held(self, key: str, deadline: float, stop: threading.Event) -> bool:
        """Wait until no other process holds ``key``; False at ``deadline`` (monotonic) or stop."""
        while self.held_elsewhere(key):
            if time.monotonic() > deadline or stop.wait(WAIT_POLL):
                return False
        return True

    def _expiry(self) -> datetime:
        return utcnow() + timedelta(seconds=self.lease)

    def _start_renewing(self) -> None:
        if self._thread is None and not self._stop.is_set():
            self._thread = threading.Thread(
                target=self._renew_loop, name="fill-claims", daemon=True
            )
            self._thread.start()

    def _renew_loop(self) -> None:
        failing = False  # logged when renewing starts failing and when it works again
        while not self._stop.wait(self.lease / 4):
            with self._lock:
                held = bool(self._held)
            if not held:
                continue
            try:
                with database_guard("renewing fill claims"), self._database.unit_of_work() as db:
                    db.execute(
                        update(FillClaim)
                        .where(FillClaim.owner == self.owner)
                        .values(expires_at=self._expiry())
                    )
            except DatabaseUnavailable as exc:
                if not failing:
                    log.error("%s; retrying every %.1f s", exc, self.lease / 4)
                failing = True
                continue
            except Exception:
                log.exception("renewing fill claims failed; retrying")
                continue
            if failing:
                log.info("renewing fill claims works again")
            failing = False

    def stop(self) -> None:
        """Stop renewing; claims still held lapse (their fills were stopped first)."""
        self._stop.set()
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join(10)
