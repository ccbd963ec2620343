"""The provenance cache: a file's PEP 740 provenance, from the database or fetched once.

A document is stored with its file's row and for the bytes it was fetched for: when
the upstream's hash of the file changes, or the file leaves its page, the document
goes (pagestore), and one that no longer matches the page is never served.
"""

from __future__ import annotations

import logging
from typing import Protocol

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from pypicache.cache.keyedlocks import KeyedLocks
from pypicache.db import Database
from pypicache.errors import FileNotFound, UpstreamUnavailable
from pypicache.filefacts import UPLOADED, FileFacts
from pypicache.models import File, Project, ProvenanceDocument, utcnow
from pypicache.upstream.client import UpstreamClient
from pypicache.upstream.entries import InvalidPage
from pypicache.upstream.provenance import MAX_DOCUMENT_BYTES, InvalidProvenance, checked_document

log = logging.getLogger(__name__)

# What PyPI's integrity API answers to (its own type first), and plain JSON.
ACCEPT = "application/vnd.pypi.integrity.v1+json, application/json;q=0.9"


class Clients(Protocol):
    """Where a source fetches what its pages link to (an IndexService)."""

    def client_for(self, name: str) -> UpstreamClient | None: ...


class ProvenanceCache:
    """Serves the provenance of files as their pages list them (``FileFacts.provenance``)."""

    def __init__(self, database: Database, locks: KeyedLocks) -> None:
        self._database = database
        self._locks = locks

    def document(self, source: str, clients: Clients, project: str, facts: FileFacts) -> bytes:
        """The provenance document of ``facts``' file on ``source``'s page of ``project``.

        FileNotFound (404) when the file has none; UpstreamUnavailable (502) when it is
        not stored and the upstream cannot give a valid one now.
        """
        if facts.provenance is None:
            raise FileNotFound(f"{facts.filename} has no provenance")
        found = self._stored(source, project, facts)
        if found is not None:
            return found
        if facts.provenance == UPLOADED:
            raise FileNotFound(f"the provenance of {facts.filename} is not stored here")
        client = clients.client_for(project)
        if client is None:
            raise UpstreamUnavailable(f"no upstream to fetch the provenance of {facts.filename}")
        with self._locks.hold(f"provenance:{source}/{project}/{facts.filename}"):
            found = self._stored(source, project, facts)  # fetched while we waited
            if found is not None:
                return found
            document = self._fetch(client, facts.provenance, facts.filename)
            self._store(source, project, facts, document)
        return document

    def _fetch(self, client: UpstreamClient, url: str, filename: str) -> bytes:
        body = client.fetch_document(
            url, kind="provenance", accept=ACCEPT, max_bytes=MAX_DOCUMENT_BYTES
        )
        try:
            return checked_document(body)
        except InvalidProvenance as exc:
            log.warning("upstream provenance of %s at %s refused: %s", filename, url, exc)
            why = f"the upstream's provenance of {filename} is invalid: {exc}"
            raise InvalidPage(why) from None

    def _stored(self, source: str, project: str, facts: FileFacts) -> bytes | None:
        """The document stored for exactly these bytes and this provenance, if any."""
        where_from = (
            ProvenanceDocument.source_url.is_(None)
            if facts.provenance == UPLOADED
            else ProvenanceDocument.source_url == facts.provenance
        )
        same_bytes = (
            ProvenanceDocument.file_sha256.is_(None)
            if facts.sha256 is None
            else ProvenanceDocument.file_sha256 == facts.sha256
        )
        with self._database.unit_of_work() as db:
            return db.scalar(
                select(ProvenanceDocument.document)
                .join(File, File.id == ProvenanceDocument.file_id)
                .join(Project, Project.id == File.project_id)
                .where(
                    Project.source == source,
                    Project.name == project,
                    File.filename == facts.filename,
                    where_from,
                    same_bytes,
                )
            )

    def _store(self, source: str, project: str, facts: FileFacts, document: bytes) -> None:
        """Keep the document, if the file's row still says what ``facts`` say (the page
        may have changed while it was fetched: then it is served once, not kept)."""
        try:
            with self._database.unit_of_work() as db:
                row = db.execute(
                    select(File.id, File.sha256, File.provenance)
                    .join(Project, Project.id == File.project_id)
                    .where(
                        Project.source == source,
                        Project.name == project,
                        File.filename == facts.filename,
                    )
                ).first()
                if row is None or (row.sha256, row.provenance) != (facts.sha256, facts.provenance):
                    return
                db.execute(delete(ProvenanceDocument).where(ProvenanceDocument.file_id == row.id))
                db.add(
                    ProvenanceDocument(
                        file_id=row.id,
                        file_sha256=facts.sha256,
                        source_url=facts.provenance,
                        document=document,
                        stored_at=utcnow(),
                    )
                )
        except IntegrityError:
            # Another process stored it a moment ago (or the row went): theirs stands.
            log.info("provenance of %s/%s stored elsewhere meanwhile", project, facts.filename)
