"""The tables: projects and their files, as the index knows them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Stable constraint names, so migrations read the same on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
# Lengths of the columns uploads are stored in; distfiles refuses anything longer.
NAME_LENGTH = 255
VERSION_LENGTH = 255
FILENAME_LENGTH = 512
# Validators the upstream chooses: HTTP puts no limit on their length.  SQLite never enforced
# the 255 either; PostgreSQL would refuse a longer one, and with it the whole page.
ETAG = String(255).with_variant(Text(), "postgresql")
# ``info`` key of a schema object that exists on one kind of database only (its dialect name).
ONLY_ON = "pypicache.only_on"
# The source of an index's private projects' rows is "@" and its name; upstream names never
# start with "@".  The index main's are /simple/'s.
PRIVATE_PREFIX = "@"
PRIVATE_SOURCE = PRIVATE_PREFIX + "main"
SOURCE_LENGTH = 64


def utcnow() -> datetime:
    """Naive UTC, the way every timestamp is stored."""
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def exists_on(dialect_name: str) -> Callable[..., bool]:
    """Alembic's ``include_object`` for one database: leaves out what only others have."""

    def include(obj: Any, _name: str | None, _type: str, _reflected: bool, _other: Any) -> bool:
        return getattr(obj, "info", {}).get(ONLY_ON, dialect_name) == dialect_name

    return include


class Project(Base):
    """A project page as last seen on one upstream, or a private project."""

    __tablename__ = "projects"
    __table_args__ = (
        # One row per name and source: each upstream's page of a name is cached apart.
        UniqueConstraint("source", "name"),
        # The admin page's search matches parts of names (LIKE '%term%'), which no b-tree
        # helps; trigrams do, on PostgreSQL.  SQLite scans the table, fine at its scale.
        Index(
            "ix_projects_name_trgm",
            "name",
            postgresql_using="gin",
            postgresql_ops={"name": "gin_trgm_ops"},
            info={ONLY_ON: "postgresql"},
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # The upstream (by its configured name) whose page this row caches, or PRIVATE_SOURCE.
    source: Mapped[str] = mapped_column(String(SOURCE_LENGTH))
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), index=True)  # normalized
    display_name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    # The upstream's X-PyPI-Last-Serial for the page we stored, when it sent one.
    last_serial: Mapped[int | None] = mapped_column(BigInteger)
    upstream_etag: Mapped[str | None] = mapped_column(ETAG)
    # When the upstream last confirmed this page (200 or 304); drives TTL revalidation.
    checked_at: Mapped[datetime | None] = mapped_column(DateTime)
    versions: Mapped[list[str]] = mapped_column(JSON, default=list)
    status: Mapped[str | None] = mapped_column(String(32))
    status_reason: Mapped[str | None] = mapped_column(Text)
    # A private project shadows the upstream project of the same name (dependency
    # confusion): upstream files are merged into its page only if an admin allows it.
    private: Mapped[bool] = mapped_column(Boolean, default=False)
    merge_upstream: Mapped[bool] = mapped_column(Boolean, default=False)

    files: Mapped[list[File]] = relationship(
        back_populates="project", cascade="all, delete-orphan", passive_deletes=True
    )


class File(Base):
    """One distribution file offered on a project page."""

    __tablename__ = "files"
    __table_args__ = (UniqueConstraint("project_id", "filename"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    # Indexed by the unique (project_id, filename) constraint.
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    filename: Mapped[str] = mapped_column(String(FILENAME_LENGTH))
    version: Mapped[str | None] = mapped_column(String(VERSION_LENGTH))
    sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    size: Mapped[int | None] = mapped_column(BigInteger)
    requires_python: Mapped[str | None] = mapped_column(Text)
    yanked: Mapped[bool] = mapped_column(Boolean, default=False)
    yanked_reason: Mapped[str | None] = mapped_column(Text)
    upload_time: Mapped[datetime | None] = mapped_column(DateTime, index=True)
    # The upstream gave no upload time: ``upload_time`` is when this index first saw the file.
    upload_time_seen: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    has_metadata: Mapped[bool] = mapped_column(Boolean, default=False)
    # Indexed: evicting or verifying a blob asks which other files' metadata it is.
    metadata_sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    upstream_url: Mapped[str | None] = mapped_column(Text)
    # The upstream's URL of the file's PEP 740 provenance, or "uploaded" (FileFacts).
    provenance: Mapped[str | None] = mapped_column(Text)
    # "upstream" (cached, may be invalidated) or "private" (uploaded here, never touched
    # by the cache machinery).
    origin: Mapped[str] = mapped_column(String(16), default="upstream")
    # When the blob for the current sha256 was stored; None while it is not cached.
    # Indexed: most rows are listed, not cached, and retention reads only the cached ones.
    cached_at: Mapped[datetime | None] = mapped_column(DateTime, index=True)
    # When the blob was last filled or served (retention evicts the least recently used).
    # Written in batches, so it may lag a few minutes; None: not recorded since cached.
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime)

    project: Mapped[Project] = relationship(back_populates="files")


class ProvenanceDocument(Base):
    """A file's PEP 740 provenance object as served: fetched once from the upstream, or
    built from the attestations uploaded with the file.

    It goes with its file's row, and counts only for the bytes it was stored for: a
    file whose hash changed never shows the old file's provenance.
    """

    __tablename__ = "provenance_documents"

    file_id: Mapped[int] = mapped_column(
        ForeignKey("files.id", ondelete="CASCADE"), primary_key=True
    )
    # None: the page gave no hash for the file (nor did its bytes, yet).
    file_sha256: Mapped[str | None] = mapped_column(String(64))
    # Where it was fetched from (the file's ``provenance`` then); None: uploaded here.
    source_url: Mapped[str | None] = mapped_column(Text)
    document: Mapped[bytes] = mapped_column(LargeBinary)
    stored_at: Mapped[datetime] = mapped_column(DateTime)


class IndexDefinition(Base):
    """A named index: its bases in order and who may upload to its private projects.

    Stored here so that every host of a deployment serves the same indexes.  Its
    private projects are the rows whose source is ``@<name>``.
    """

    __tablename__ = "indexes"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(SOURCE_LENGTH), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    # Upstream and index names, in the order they are asked; None: every upstream, in
    # priority order (the index main).
    bases: Mapped[list[str] | None] = mapped_column(JSON)
    # User names that may upload besides admins; None: any user (the index main).
    uploaders: Mapped[list[str] | None] = mapped_column(JSON)
    # Reads need a login here even where pypicache.read_auth lets anyone read.
    read_auth: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Seconds a new upstream file is held here; None: pypicache.cooldown's.
    cooldown: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)


class PolicyRule(Base):
    """A rule applied when answering: a block, an allowlist pattern, or a release let through.

    Stored here so that every host applies the same rules; a rule ends by being
    revoked (kept, for the audit) or when its ``until`` passes.
    """

    __tablename__ = "policy_rules"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))  # block, allow-only, allow-release
    # The index it applies to; None: every index, /u/<upstream>/ included.
    index: Mapped[str | None] = mapped_column(String(SOURCE_LENGTH))
    # A PEP 508 requirement (block), a pattern (allow-only), PROJECT==VERSION (allow-release).
    subject: Mapped[str] = mapped_column(String(512))
    reason: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    until: Mapped[datetime | None] = mapped_column(DateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime, index=True)
    revoked_by: Mapped[str | None] = mapped_column(String(100))


class Change(Base):
    """A change to what this index serves under a name, in its own serial space.

    What a downstream index or mirror follows (``/pypi``'s XML-RPC changelog): private
    uploads, yanks, deletes, and every change to a cached upstream page.
    """

    __tablename__ = "changes"

    serial: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    action: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(DateTime)


class NameSerial(Base):
    """The serial of the newest change under each name: the serial its pages carry."""

    __tablename__ = "name_serials"

    name: Mapped[str] = mapped_column(String(NAME_LENGTH), primary_key=True)
    serial: Mapped[int] = mapped_column()


class ChangeCounter(Base):
    """The last serial given out; its one row is locked by each change until it commits,
    so serials become visible in the order they were given."""

    __tablename__ = "change_counter"

    id: Mapped[int] = mapped_column(primary_key=True)
    serial: Mapped[int] = mapped_column()


class FollowerState(Base):
    """A changelog follower's bookkeeping: one row per upstream, shared by every process."""

    __tablename__ = "follower_state"

    id: Mapped[int] = mapped_column(primary_key=True)
    upstream: Mapped[str] = mapped_column(String(SOURCE_LENGTH), unique=True)
    # Every upstream change up to this serial is in the cache (the consistency promise).
    watermark: Mapped[int | None] = mapped_column(BigInteger)
    # How far the changelog has been read; changes past the watermark wait in dirty_projects.
    read_serial: Mapped[int | None] = mapped_column(BigInteger)
    upstream_serial: Mapped[int | None] = mapped_column(BigInteger)
    # Since when the watermark has been behind the upstream (None: caught up).
    behind_since: Mapped[datetime | None] = mapped_column(DateTime)
    method: Mapped[str | None] = mapped_column(String(32))
    index_etag: Mapped[str | None] = mapped_column(ETAG)
    last_poll_at: Mapped[datetime | None] = mapped_column(DateTime)
    last_success_at: Mapped[datetime | None] = mapped_column(DateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_at: Mapped[datetime | None] = mapped_column(DateTime)
    # The lease: exactly one process follows; another takes over when it expires.
    leader: Mapped[str | None] = mapped_column(String(255))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime)


class DirtyProject(Base):
    """A cached project an upstream's changelog says changed, not yet refetched at that
    serial."""

    __tablename__ = "dirty_projects"

    upstream: Mapped[str] = mapped_column(String(SOURCE_LENGTH), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    required_serial: Mapped[int] = mapped_column(BigInteger)
    # The newest change was a removal: an upstream 404 is then the expected answer.
    removed: Mapped[bool] = mapped_column(Boolean, default=False)
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text)


class AuditEntry(Base):
    """What happened to the cache and why: invalidations, removals (and later uploads)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime, index=True)
    action: Mapped[str] = mapped_column(String(64))
    project: Mapped[str] = mapped_column(String(255), index=True)
    filename: Mapped[str | None] = mapped_column(String(512))
    old_sha256: Mapped[str | None] = mapped_column(String(64))
    new_sha256: Mapped[str | None] = mapped_column(String(64))
    serial: Mapped[int | None] = mapped_column(BigInteger)
    detail: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str | None] = mapped_column(String(100))  # None: the cache machinery


class Alarm(Base):
    """Something an operator must look at (a file replaced upstream, ...) until acknowledged."""

    __tablename__ = "alarms"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime)
    kind: Mapped[str] = mapped_column(String(64))
    project: Mapped[str] = mapped_column(String(255))
    filename: Mapped[str | None] = mapped_column(String(512))
    detail: Mapped[str] = mapped_column(Text)
    acknowledged_at: Mapped[datetime | None] = mapped_column(DateTime, index=True)


class User(Base):
    """Someone who uploads (or, with read_auth, reads); admins manage everything."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    # Part of every admin session's ticket: logging out (or a new password) counts it up,
    # which ends that user's sessions on every host, copied cookies included.
    session_epoch: Mapped[int] = mapped_column(default=0, server_default="0")

    tokens: Mapped[list[ApiToken]] = relationship(
        back_populates="user", cascade="all, delete-orphan", passive_deletes=True
    )


class ApiToken(Base):
    """An API token; only its sha256 is kept, the token itself is shown once."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(32))  # enough to recognise it in a list
    description: Mapped[str | None] = mapped_column(Text)
    # The one index this token reads and uploads to; None: wherever its user may.
    index: Mapped[str | None] = mapped_column(String(SOURCE_LENGTH))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime)

    user: Mapped[User] = relationship(back_populates="tokens")


class ProjectMember(Base):
    """A user who may upload to a private project (its creator, or granted by an admin)."""

    __tablename__ = "project_members"

    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class DeletedFilename(Base):
    """A private filename once used: never again with other bytes (immutable caching)."""

    __tablename__ = "deleted_filenames"

    filename: Mapped[str] = mapped_column(String(512), primary_key=True)
    project: Mapped[str] = mapped_column(String(255))
    deleted_at: Mapped[datetime] = mapped_column(DateTime)


class FillClaim(Base):
    """A download in progress somewhere in the deployment: the others wait for its blob.

    Several processes share one blob store; without this they would all fetch a file
    they miss at the same moment.  The claim lapses when its process stops renewing it
    (killed), so another one takes the download over.
    """

    __tablename__ = "fill_claims"

    # project/filename, or ":job" for work one process of the deployment does at a time.
    key: Mapped[str] = mapped_column(String(800), primary_key=True)
    owner: Mapped[str] = mapped_column(String(255))
    expires_at: Mapped[datetime] = mapped_column(DateTime)


class AppSecret(Base):
    """A secret every process of the deployment must share (the admin session's signing key)."""

    __tablename__ = "app_secrets"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
