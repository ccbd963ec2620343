"""The domain's exceptions; views/errors.py is the one place that maps them to HTTP."""


class PypicacheError(Exception):
    """Base class of everything the domain raises on purpose."""


class SettingsError(PypicacheError):
    """A setting has a value we cannot use; the message names the setting."""


class InvalidName(PypicacheError):
    """A project name that is not a valid name at all (PEP 508 / the name-format spec)."""


class ProjectNotFound(PypicacheError):
    """Neither this index nor its upstream has the project."""


class IndexProblem(PypicacheError):
    """An index cannot be created, changed or deleted that way; the message says why."""


class NotPrivate(ProjectNotFound):
    """No private project has the name: an upstream may have it."""


class FileNotFound(PypicacheError):
    """The project exists but offers no file of that name."""


class NotInSnapshot(FileNotFound):
    """A file uploaded after a snapshot's time: that index did not list it then (404).

    Not 403, which says a rule holds the file and may let it go: the snapshot's
    answer for this URL never changes, as for a file the index never had.
    """


class UpstreamUnavailable(PypicacheError):
    """The upstream failed (connection error, 5xx, garbage) and nothing cached can stand in."""


class UpstreamTimeout(UpstreamUnavailable):
    """The upstream did not answer in time."""


class HashMismatch(PypicacheError):
    """Bytes that do not match the digest the page advertised; they are never stored."""


class ChangelogUnavailable(PypicacheError):
    """The upstream's change feed failed or does not exist; the follower retries later."""

    retry_after: float | None = None  # the upstream asked us to wait (rate limit)


class AccountError(PypicacheError):
    """A user or token operation that cannot be done (unknown user, name taken, ...)."""


class RateLimited(PypicacheError):
    """Too many failed logins for this user name or client address: try later (429)."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many failed logins: try again in {retry_after} s")
        self.retry_after = retry_after


class Forbidden(PypicacheError):
    """Authenticated, but not allowed to do this (403)."""


class StorageUnavailable(PypicacheError):
    """The blob store failed (object store unreachable, a write that did not verify)."""


class StorageFull(StorageUnavailable):
    """The blob store's disk or quota is full (ENOSPC, EDQUOT, EFBIG); nothing was stored."""


class DatabaseUnavailable(PypicacheError):
    """The database refused a read or write (locked, full, read-only, gone); retry later."""


class InvalidDigest(PypicacheError, ValueError):
    """A value used as a blob name that is not a sha256 hex digest; it names nothing."""


class FillStopped(PypicacheError):
    """The server is shutting down; the partial download was discarded."""


class UploadRejected(PypicacheError):
    """An upload we refuse; `status` and `message` are what twine shows the user."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class FileExists(UploadRejected):
    """Other bytes under a filename already uploaded: refused, and an alarm."""

    def __init__(self, message: str, *, project: str, filename: str) -> None:
        super().__init__(message)
        self.project = project
        self.filename = filename


class BundleError(PypicacheError):
    """A bundle we cannot write or will not import; the message says why."""


class Held(PypicacheError):
    """A file a rule holds back (the cooldown, the cutoff, a block): 403 with the reason."""


class NotAllowed(ProjectNotFound):
    """A project an allowlist leaves out: as if it did not exist (404), with the reason."""
