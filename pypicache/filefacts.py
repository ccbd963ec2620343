"""A distribution file's facts: the one type every part passes around, and its one mapper.

The upstream's page, a database row, a rendered page, a bundle and the admin's
reports all speak of the same twelve facts about a file.  They are declared here
once and copied field by field nowhere else, so a new fact is one line here, one
column in ``models.File`` and a migration.
"""

from __future__ import annotations

from datetime import datetime
from operator import attrgetter
from typing import Any, TypeVar

import msgspec

from pypicache.models import File

# The ``provenance`` of a file whose upload carried attestations: its document is stored here.
UPLOADED = "uploaded"


class FileFacts(msgspec.Struct, frozen=True, gc=False):
    """What an index says about one file, detached from any database session.

    A struct, not a dataclass: made in a tenth of the time (a big page makes 11,000), and
    left out of Python's cycle collections (texts, numbers and times are never part
    of a cycle), which walked every cached page's facts otherwise.
    """

    filename: str
    version: str | None
    sha256: str | None
    size: int | None
    requires_python: str | None
    yanked: bool
    yanked_reason: str | None
    upload_time: datetime | None  # naive UTC
    has_metadata: bool
    metadata_sha256: str | None
    upstream_url: str | None  # where the bytes come from; None for files uploaded here
    # Where its PEP 740 provenance comes from: the upstream's URL of it, or UPLOADED for
    # attestations that came with an upload here; None: the file has none.
    provenance: str | None

    def keeping_known(self, previous: FileFacts) -> FileFacts:
        """These facts, with the hash and size ``previous`` knew where these leave them out.

        An upstream page without hashes or sizes does not make us forget the ones
        learned from the bytes; a page that stops offering metadata drops its hash.
        """
        sha256 = self.sha256 or previous.sha256
        size = self.size if self.size is not None else previous.size
        metadata_sha256 = self.metadata_sha256 or (
            previous.metadata_sha256 if self.has_metadata else None
        )
        if (sha256, size, metadata_sha256) == (self.sha256, self.size, self.metadata_sha256):
            return self  # nothing to keep: the common case, 11,000 times on a big page
        return msgspec.structs.replace(
            self, sha256=sha256, size=size, metadata_sha256=metadata_sha256
        )


FACT_FIELDS: tuple[str, ...] = FileFacts.__struct_fields__
_read = attrgetter(*FACT_FIELDS)

Facts = TypeVar("Facts", bound=FileFacts)


def facts_of(source: File | FileFacts, kind: type[Facts] = FileFacts, **more: Any) -> Facts:
    """The facts of a row (or of other facts), as ``kind`` with the fields only it has."""
    return kind(*_read(source), **more)


def fact_values(facts: FileFacts) -> dict[str, Any]:
    """The facts as column values, for statements that write many rows at once."""
    return dict(zip(FACT_FIELDS, _read(facts), strict=True))


def write_facts(row: File, facts: FileFacts) -> None:
    """Make the row say what ``facts`` say; the row's own bookkeeping stays as it is."""
    for name, value in fact_values(facts).items():
        setattr(row, name, value)


def new_row(facts: FileFacts, **bookkeeping: Any) -> File:
    """A row for a file the project did not list yet (``origin``, ``cached_at``: the row's own)."""
    row = File(**bookkeeping)
    write_facts(row, facts)
    return row
