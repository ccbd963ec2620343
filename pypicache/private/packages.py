"""Private packages: uploads, yanks, deletes and the per-project settings that guard names."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import BinaryIO

import msgspec
from packaging.utils import canonicalize_name, canonicalize_version
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from pypicache.auth.accounts import Identity
from pypicache.cache.blobs import Blobs
from pypicache.cache.changes import REMOVE, record_change
from pypicache.cache.indexes import MAIN, Indexes
from pypicache.cache.keyedlocks import KeyedLocks
from pypicache.cache.router import Router
from pypicache.db import Database
from pypicache.errors import (
    FileExists,
    FileNotFound,
    Forbidden,
    ProjectNotFound,
    UploadRejected,
    UpstreamUnavailable,
)
from pypicache.filefacts import new_row
from pypicache.models import (
    Alarm,
    AuditEntry,
    DeletedFilename,
    File,
    Project,
    ProjectMember,
    ProvenanceDocument,
    User,
    utcnow,
)
from pypicache.private.distfiles import ValidUpload
from pypicache.settings import Settings
from pypicache.storage.local import BlobStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pushed:
    copied: list[str]
    present: list[str]  # with the same bytes already: left as they were


@dataclass(frozen=True)
class Uploaded:
    filename: str
    duplicate: bool  # the same file was there already (twine retries): nothing changed


class PrivatePackages:
    def __init__(
        self,
        settings: Settings,
        database: Database,
        indexes: Indexes,
        blobs: Blobs,
        store: BlobStore,
        locks: KeyedLocks,
    ) -> None:
        self._settings = settings
        self._indexes = indexes
        self._blobs = blobs
        self._store = store
        self._locks = locks
        self._database = database

    # -- uploads ---------------------------------------------------------------------------

    def upload(
        self, upload: ValidUpload, content: BinaryIO, who: Identity, *, index: str = MAIN
    ) -> Uploaded:
        """Store a validated upload in ``index``; every refusal happens before a byte is
        stored."""
        view = self._view(index)
        if not self._indexes.info(index).may_upload(who.name, admin=who.is_admin):
            raise Forbidden(
                f"The user '{who.name}' isn't allowed to upload to the index '{index}'."
            )
        source = view.private.name
        with self._locks.hold(upload.project):
            upstream_has = self._upstream_has(view, upload.project)
            try:
                with self._database.unit_of_work() as db:
                    project = self._project(db, upload.project, source)
                    self._check_may_upload(
                        db, upload.project, project, who, upstream_has=upstream_has
                    )
                    duplicate = self._check_file(db, project, upload)
            except FileExists as conflict:
                self._alarm_conflict(conflict, who)
                raise
            if duplicate:
                return Uploaded(upload.filename, duplicate=True)
            stored = self._store_blobs(upload, content)
            try:
                with self._database.unit_of_work() as db:
                    self._record_upload(db, source, upload, who, upstream_has=upstream_has)
            except Exception:
                self._blobs.drop_unreferenced(stored)  # nothing may refer to them: no trace left
                raise
            view.forget(upload.project)
        log.info("%s uploaded %s", who.name, upload.filename)
        return Uploaded(upload.filename, duplicate=False)

    def _view(self, index: str) -> Router:
        try:
            return self._indexes.view(index)
        except KeyError:
            raise UploadRejected(f"There is no index named '{index}'.", status=404) from None

    def _upstream_has(self, view: Router, name: str) -> bool:
        """Whether a base the name may come from offers it: an index below with a private
        project of that name, an upstream that cached it, or one whose page answers 200
        (False for a name that is private in ``view`` already).

        A name unknown to the cache is looked up; 404 or 410 means it is free, and a
        failure refuses the upload rather than guess (an outage must not open the name).
        """
        below, candidates = view.reachable(name)
        with self._database.unit_of_work() as db:
            known = set(db.scalars(select(Project.source).where(Project.name == name)))
        if view.private.name in known:
            return False
        if any(source.name in known for source in (*(v.private for v in below), *candidates)):
            return True
        for source in candidates:
            upstream = source.index.upstream
            if upstream is None:
                continue
            try:
                upstream.fetch_project(name)
            except ProjectNotFound:
                continue
            except UpstreamUnavailable as exc:
                log.warning(
                    "cannot check the upstream %s for upload to %s: %s", source.name, name, exc
                )
                raise UploadRejected(
                    f"Cannot check the upstream index for '{name}' ({exc}); try again later.",
                    status=503,
                ) from None
            return True
        return False

    def _check_may_upload(
        self, db: Session, name: str, project: Project | None, who: Identity, *, upstream_has: bool
    ) -> None:
        """Members upload to a private project; only an admin makes an upstream name private.

        Claiming an upstream name hides the upstream's files from every client of this
        index, so an uploader may create only names the upstream does not have.
        """
        if project is not None and project.private:
            if who.is_admin or db.get(ProjectMember, (project.id, who.user_id)) is not None:
                return
            raise Forbidden(
                f"The user '{who.name}' isn't allowed to upload to project '{project.name}'."
            )
        if upstream_has and not who.is_admin:
            raise Forbidden(
                f"The upstream index has a project '{name}': only an admin may claim its "
                "name for private uploads."
            )

    def _alarm_conflict(self, conflict: FileExists, who: Identity) -> None:
        with self._database.unit_of_work() as db:
            db.add(
                Alarm(
                    at=utcnow(),
                    kind="upload-conflict",
                    project=conflict.project,
                    filename=conflict.filename,
                    detail=f"{who.name} uploaded other bytes: {conflict.message}",
                )
            )

    def _check_file(self, db: Session, project: Project | None, upload: ValidUpload) -> bool:
        """True for an identical re-upload; raises for every conflict."""
        if db.get(DeletedFilename, upload.filename) is not None:
            raise UploadRejected(
                "This filename was previously used by a file that has since been deleted. "
                "Use a different version."
            )
        if project is None or not project.private:
            return False
        existing = next(
            (f for f in project.files if f.origin == "private" and f.filename == upload.filename),
            None,
        )
        if existing is not None:
            if existing.sha256 == upload.sha256:
                return True
            if not self._settings.allow_overwrite:
                raise FileExists(
                    f"File already exists ('{upload.filename}', with sha256 hash "
                    f"'{existing.sha256}'). Use a new version number.",
                    project=project.name,
                    filename=upload.filename,
                )
        same_bytes = next(
            (f for f in project.files if f.origin == "private" and f.sha256 == upload.sha256),
            None,
        )
        if same_bytes is not None and same_bytes.filename != upload.filename:
            raise UploadRejected(
                f"File already exists ('{same_bytes.filename}', with sha256 hash "
                f"'{upload.sha256}'). The same file cannot be uploaded under another name."
            )
        if upload.filetype == "sdist" and any(
            f.origin == "private"
            and f.filename != upload.filename
            and f.filename.endswith(".tar.gz")
            and canonicalize_version(f.version or "") == canonicalize_version(upload.version)
            for f in project.files
        ):
            raise UploadRejected("Only one sdist may be uploaded per release.")
        return False

    def _store_blobs(self, upload: ValidUpload, content: BinaryIO) -> set[str]:
        """Store the file and its metadata; on any failure neither is left (507 when full)."""
        stored: set[str] = set()
        try:
            content.seek(0)
            stored.add(
                self._store_blob(iter(lambda: content.read(1024 * 1024), b""), upload.sha256)
            )
            if upload.metadata is not None:
                stored.add(self._store_blob([upload.metadata], upload.metadata_sha256))
        except BaseException:
            try:
                self._blobs.drop_unreferenced(
                    stored
                )  # nothing refers to them yet, unless stored before
            except Exception:
                log.exception("could not drop the blobs of the failed upload %s", upload.filename)
            raise
        return stored

    def _store_blob(self, chunks: Iterable[bytes], sha256: str | None) -> str:
        writer = self._store.writer()
        try:
            for chunk in chunks:
                writer.write(chunk)
            return writer.commit(sha256)
        except BaseException:
            writer.abort()
            raise

    def _record_upload(
        self, db: Session, source: str, upload: ValidUpload, who: Identity, *, upstream_has: bool
    ) -> None:
        now = utcnow()
        project = self._project(db, upload.project, source)
        # Again in this transaction: another process may have cached or created it meanwhile.
        self._check_may_upload(db, upload.project, project, who, upstream_has=upstream_has)
        if project is None:
            project = Project(
                source=source,
                name=upload.project,
                display_name=upload.name,
                files=[],
                versions=[],
                checked_at=now,
            )
            db.add(project)
            self._claim(db, project, who, upstream=upstream_has)
        if not db.get(ProjectMember, (project.id, who.user_id)) and not who.is_admin:
            db.add(ProjectMember(project_id=project.id, user_id=who.user_id))
        replaced = [f for f in project.files if f.filename == upload.filename]
        for old in replaced:
            project.files.remove(old)  # an allowed overwrite; its provenance goes with it
        if replaced:
            db.flush()  # deleted before the new row is inserted: one row per filename
        row = new_row(upload.facts(now), origin="private", cached_at=now)
        project.files.append(row)
        if upload.provenance is not None:
            db.flush()  # the row's id
            db.add(
                ProvenanceDocument(
                    file_id=row.id,
                    file_sha256=upload.sha256,
                    source_url=None,
                    document=upload.provenance,
                    stored_at=now,
                )
            )
        project.versions = sorted(set(project.versions or ()) | {upload.version})
        record_change(db, project.name)
        db.add(
            AuditEntry(
                at=now,
                action="upload",
                project=project.name,
                filename=upload.filename,
                new_sha256=upload.sha256,
                actor=who.name,
            )
        )

    def _claim(self, db: Session, project: Project, who: Identity, *, upstream: bool) -> None:
        """A name becomes private: the upstreams' projects of that name are hidden from now on.

        ``upstream`` says an upstream has the name: every client of this index now gets
        the private project instead, which an operator must know about (an alarm).
        """
        project.private = True
        project.merge_upstream = False
        db.flush()
        db.add(
            AuditEntry(
                at=utcnow(),
                action="claim",
                project=project.name,
                actor=who.name,
                detail="private from now on; the upstreams' project of that name is hidden",
            )
        )
        if upstream:
            db.add(
                Alarm(
                    at=utcnow(),
                    kind="upstream-claim",
                    project=project.name,
                    detail=f"{who.name} made the upstream's project private: "
                    "its files are hidden from every client of this index",
                )
            )
            log.warning("%s claimed the upstream name %s", who.name, project.name)

    # -- admin operations ------------------------------------------------------------------

    def push(self, source: str, dest: str, project: str, version: str, *, actor: str) -> Pushed:
        """Copy a release's files as ``source`` serves them into the private projects of
        ``dest``: the same bytes, never fetched again, never stored twice.

        Every file must be in the store already.  Refused as a whole, before anything
        changes, when ``dest`` has other bytes under one of the filenames (or had, and
        deleted them); files it has with the same bytes are left as they are.
        """
        name = canonicalize_name(project)
        wanted = canonicalize_version(version)
        try:
            page = self._view(source).project_page(name).page
        except ProjectNotFound:
            raise FileNotFound(f"{source} has no project {name}") from None
        files = [f for f in page.files.values() if canonicalize_version(f.version or "") == wanted]
        if not files:
            raise FileNotFound(f"{source} has no files of {name} {version}")
        for facts in files:
            if facts.sha256 is None or not self._store.exists(facts.sha256):
                raise UploadRejected(
                    f"{facts.filename} is not stored here yet (download it once through "
                    f"{source}): a push copies stored bytes only"
                )
        target = self._view(dest)
        with self._locks.hold(name), self._database.unit_of_work() as db:
            row = self._project(db, name, target.private.name)
            have = {f.filename: f for f in row.files} if row is not None else {}
            for facts in files:
                if db.get(DeletedFilename, facts.filename) is not None:
                    raise FileExists(
                        f"{facts.filename} was deleted from {dest}: it never comes back",
                        project=name,
                        filename=facts.filename,
                    )
                there = have.get(facts.filename)
                if there is not None and there.sha256 != facts.sha256:
                    raise FileExists(
                        f"{dest} has other bytes under {facts.filename} "
                        f"(sha256 {there.sha256}); nothing was pushed",
                        project=name,
                        filename=facts.filename,
                    )
            now = utcnow()
            if row is None:
                row = Project(
                    source=target.private.name,
                    name=name,
                    display_name=page.data.display_name,
                    private=True,
                    files=[],
                    versions=[],
                    checked_at=now,
                )
                db.add(row)
            added = []
            for facts in files:
                if facts.filename in have:
                    continue
                keep_metadata = bool(
                    facts.metadata_sha256 and self._store.exists(facts.metadata_sha256)
                )
                copied = msgspec.structs.replace(
                    facts,
                    upstream_url=None,
                    provenance=None,  # its document is the source's: not copied
                    has_metadata=keep_metadata,
                    metadata_sha256=facts.metadata_sha256 if keep_metadata else None,
                )
                row.files.append(new_row(copied, origin="private", cached_at=now))
                added.append(facts.filename)
            row.versions = sorted(set(row.versions or ()) | {f.version for f in files if f.version})
            if added:
                record_change(db, name)
            db.add(
                AuditEntry(
                    at=now,
                    action="push",
                    project=name,
                    actor=actor,
                    detail=f"{version} from {source} to {dest}: {', '.join(added) or 'all there'}",
                )
            )
        target.forget(name)
        return Pushed(added, [f.filename for f in files if f.filename in have])

    def set_yanked(
        self,
        project: str,
        target: str,
        *,
        yanked: bool,
        reason: str | None,
        actor: str,
        index: str = MAIN,
    ) -> list[str]:
        """Yank or unyank a private file, or every file of a version; returns the filenames."""
        name = canonicalize_name(project)
        view = self._view(index)
        with self._database.unit_of_work() as db:
            row = self._private_project(db, name, view)
            files = [
                f
                for f in row.files
                if f.origin == "private"
                and (
                    f.filename == target
                    or canonicalize_version(f.version or "") == canonicalize_version(target)
                )
            ]
            if not files:
                raise FileNotFound(f"{name} has no private file or version {target!r}")
            for f in files:
                f.yanked = yanked
                f.yanked_reason = reason if yanked else None
                db.add(
                    AuditEntry(
                        at=utcnow(),
                        action="yank" if yanked else "unyank",
                        project=name,
                        filename=f.filename,
                        actor=actor,
                        detail=reason,
                    )
                )
            changed = [f.filename for f in files]
            record_change(db, name)
        view.forget(name)
        return changed

    def delete_file(self, project: str, filename: str, *, actor: str, index: str = MAIN) -> None:
        name = canonicalize_name(project)
        view = self._view(index)
        with self._database.unit_of_work() as db:
            row = self._private_project(db, name, view)
            found = [f for f in row.files if f.origin == "private" and f.filename == filename]
            if not found:
                raise FileNotFound(f"{name} has no private file {filename!r}")
            blobs = self._delete_files(db, row, found, actor)
            row.versions = sorted({f.version for f in row.files if f.version})
            record_change(db, name)
        view.forget(name)
        self._blobs.drop_unreferenced(blobs)

    def delete_project(self, project: str, *, actor: str, index: str = MAIN) -> None:
        name = canonicalize_name(project)
        view = self._view(index)
        with self._database.unit_of_work() as db:
            row = self._private_project(db, name, view)
            blobs = self._delete_files(
                db, row, [f for f in row.files if f.origin == "private"], actor
            )
            db.add(AuditEntry(at=utcnow(), action="delete-project", project=name, actor=actor))
            db.delete(row)
            record_change(db, name, REMOVE)
        view.forget(name)
        self._blobs.drop_unreferenced(blobs)

    def _delete_files(
        self, db: Session, project: Project, files: list[File], actor: str
    ) -> set[str]:
        blobs: set[str] = set()
        now = utcnow()
        for f in files:
            # A tombstone: the filename can never come back with other bytes.
            db.merge(DeletedFilename(filename=f.filename, project=project.name, deleted_at=now))
            db.add(
                AuditEntry(
                    at=now,
                    action="delete",
                    project=project.name,
                    filename=f.filename,
                    old_sha256=f.sha256,
                    actor=actor,
                )
            )
            blobs.update(sha for sha in (f.sha256, f.metadata_sha256) if sha)
            project.files.remove(f)
        return blobs

    def set_merge_upstream(
        self, project: str, merge: bool, *, actor: str, index: str = MAIN
    ) -> None:
        name = canonicalize_name(project)
        view = self._view(index)
        with self._database.unit_of_work() as db:
            row = self._private_project(db, name, view)
            row.merge_upstream = merge
            row.checked_at = None  # fetch the upstream part (or drop it) on the next request
            if not merge:
                for f in [f for f in row.files if f.origin == "upstream"]:
                    row.files.remove(f)
                row.upstream_etag = None
                row.last_serial = None
            record_change(db, name)
            db.add(
                AuditEntry(
                    at=utcnow(),
                    action="merge-upstream" if merge else "no-merge-upstream",
                    project=name,
                    actor=actor,
                )
            )
        view.forget(name)

    def grant(self, project: str, user: str, *, actor: str, index: str = MAIN) -> None:
        name = canonicalize_name(project)
        view = self._view(index)
        with self._database.unit_of_work() as db:
            row = self._private_project(db, name, view)
            member = db.scalar(select(User).where(User.name == user))
            if member is None:
                raise FileNotFound(f"no user named {user!r}")
            if db.get(ProjectMember, (row.id, member.id)) is None:
                db.add(ProjectMember(project_id=row.id, user_id=member.id))
                db.add(
                    AuditEntry(at=utcnow(), action="grant", project=name, actor=actor, detail=user)
                )

    def _project(self, db: Session, name: str, source: str) -> Project | None:
        return db.scalar(
            select(Project)
            .where(Project.source == source, Project.name == name)
            .options(selectinload(Project.files))
        )

    def _private_project(self, db: Session, name: str, view: Router) -> Project:
        project = self._project(db, name, view.private.name)
        if project is None or not project.private:
            raise ProjectNotFound(name)
        return project
