"""This index's own serial space: what changed under which name, in order (chaining).

Each change takes the next serial in the transaction that makes it, and holds the
counter's row until that commits: serials become visible in the order they were
given, so a follower reading past serial S never misses a change numbered below S.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, bindparam, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from pypicache.db import dialect_of
from pypicache.models import Change, ChangeCounter, NameSerial, utcnow

UPDATE = "update"
REMOVE = "remove project"  # PyPI's word: a follower expects a 404 after it
# Entries per answer, as PyPI gives at most.
PAGE = 50_000


# The serials this process gave, per database engine (one per app), so that its watcher
# (cache.watcher) leaves its own pages be: a big first page keeps its bytes once written.
_OWN_KEPT = 10_000  # a rolled-back change's serial is never seen; the oldest are dropped
_own: weakref.WeakKeyDictionary[Engine, OrderedDict[int, None]] = weakref.WeakKeyDictionary()
_own_lock = threading.Lock()
# The serials a transaction gave, by name, in its session's info (with the transaction:
# a session's next one reads them again): the page it renders next carries one without
# reading back what it just wrote.
_GIVEN = "pypicache_serials_given"


def made_here(engine: Engine, serial: int) -> bool:
    """Whether this process gave ``serial`` (asked once per serial: it is forgotten)."""
    with _own_lock:
        own = _own.get(engine)
        return own is not None and own.pop(serial, False) is None


# Built once: building a statement and its cache key cost more than its run, and every
# stored page change runs these.  On the tables, not the mapped classes: none of their
# rows is loaded as an object here, and the ORM's DML path cost more than the statements.
_COUNTER = ChangeCounter.__table__
_NEXT_SERIAL = (
    update(_COUNTER)
    .where(_COUNTER.c.id == 1)
    .values(serial=_COUNTER.c.serial + 1)
    .returning(_COUNTER.c.serial)
)
_CHANGE = insert(Change.__table__).values(
    serial=bindparam("serial"),
    name=bindparam("name"),
    action=bindparam("action"),
    at=bindparam("at"),
)


def _name_serial_statement(dialect: Any) -> Any:
    return (
        dialect.insert(NameSerial.__table__)
        .values(name=bindparam("name"), serial=bindparam("serial"))
        .on_conflict_do_update(
            index_elements=[NameSerial.__table__.c.name], set_={"serial": bindparam("serial")}
        )
    )


_NAME_SERIAL = {
    "postgresql": _name_serial_statement(postgresql),
    "sqlite": _name_serial_statement(sqlite),
}
_SERIAL_OF = select(NameSerial.serial).where(NameSerial.name == bindparam("name"))


def record_change(db: Session, name: str, action: str = UPDATE) -> int:
    """Give the change under ``name`` the next serial; returns it."""
    serial = db.execute(_NEXT_SERIAL).scalar_one()
    db.execute(_CHANGE, {"serial": serial, "name": name, "action": action, "at": utcnow()})
    db.execute(_NAME_SERIAL[dialect_of(db)], {"name": name, "serial": serial})
    _given(db)[name] = serial
    engine = db.get_bind()
    if isinstance(engine, Engine):
        with _own_lock:
            own = _own.setdefault(engine, OrderedDict())
            own[serial] = None
            if len(own) > _OWN_KEPT:
                own.popitem(last=False)
    return serial


def _given(db: Session) -> dict[str, int]:
    transaction = db.get_transaction()
    kept = db.info.get(_GIVEN)
    if kept is None or kept[0] is not transaction:
        kept = db.info[_GIVEN] = (transaction, {})
    return kept[1]


def name_serial(db: Session, name: str) -> int | None:
    """The serial a page of ``name`` carries (None: nothing under it ever changed)."""
    given = _given(db)
    if name in given:
        return given[name]
    return db.scalar(_SERIAL_OF, {"name": name})


def last_serial(db: Session) -> int:
    return db.scalar(select(ChangeCounter.serial).where(ChangeCounter.id == 1)) or 0


@dataclass(frozen=True)
class Entry:
    name: str
    at: datetime
    action: str
    serial: int


def since(db: Session, serial: int, limit: int = PAGE) -> list[Entry]:
    """The changes after ``serial``, oldest first, at most ``limit``."""
    rows = db.scalars(
        select(Change).where(Change.serial > serial).order_by(Change.serial).limit(limit)
    )
    return [Entry(c.name, c.at, c.action, c.serial) for c in rows]


def serials(db: Session, names: Iterable[str] | None = None) -> dict[str, int]:
    """Each name's serial: of ``names``, or of every name that has one."""
    query = select(NameSerial.name, NameSerial.serial)
    if names is not None:
        query = query.where(NameSerial.name.in_(list(names)))
    return {name: serial for name, serial in db.execute(query)}


def max_serial(db: Session) -> int:
    return db.scalar(select(func.max(NameSerial.serial))) or 0
