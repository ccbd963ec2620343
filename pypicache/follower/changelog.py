"""The upstream's XML-RPC changelog (``changelog_last_serial``, ``changelog_since_serial``)."""

from __future__ import annotations

import re
import time
import xmlrpc.client
from dataclasses import dataclass
from typing import TYPE_CHECKING
from xml.parsers.expat import ExpatError

import requests
from packaging.utils import canonicalize_name

from pypicache.errors import ChangelogUnavailable
from pypicache.upstream.entries import checked_serial

if TYPE_CHECKING:
    from pypicache.ops.metrics import Metrics

RATE_LIMITED = -32500


@dataclass(frozen=True)
class ChangelogEntry:
    name: str  # normalized: the changelog carries display names
    version: str | None
    timestamp: int
    action: str
    serial: int


@dataclass(frozen=True)
class Withdrawal:
    """What a changelog entry says the upstream removed: the project, a release or a file;
    or, ``added``, a file it (re)added: a file removed and added again was replaced, which
    the refetch handles (hashes rule), so it is not withdrawn."""

    project: bool = False
    version: str | None = None
    filename: str | None = None
    added: bool = False


# Warehouse's journal actions for removals; the filename follows "remove file ".
_REMOVE_FILE = "remove file "
_ADD_FILE = " file "  # "add <python version> file <filename>"
# A filename as a page may list it: one path segment, no control characters.
_FILENAME = re.compile(r"[^/\\\x00-\x1f\x7f]{1,255}")


def withdrawal(entry: ChangelogEntry) -> Withdrawal | None:
    """The removal an entry announces, or None; anything unreadable is no removal (the
    refetch the entry triggers still brings the page up to date)."""
    action = entry.action
    if action == "remove project":
        return Withdrawal(project=True)
    if action == "remove release":
        return Withdrawal(version=entry.version) if entry.version else None
    added = action.startswith("add ") and _ADD_FILE in action
    if added or action.startswith(_REMOVE_FILE):
        filename = action.split(_ADD_FILE, 1)[1] if added else action[len(_REMOVE_FILE) :]
        if _FILENAME.fullmatch(filename) and filename not in (".", ".."):
            return Withdrawal(filename=filename, added=added)
    return None


class XmlRpcChangelog:
    def __init__(
        self,
        url: str,
        *,
        connect_timeout: float,
        read_timeout: float,
        metrics: Metrics | None = None,
    ) -> None:
        self.url = url
        self.metrics = metrics
        self.timeout = (connect_timeout, read_timeout)
        self.session = requests.Session()
        self.exchanged_at = 0.0  # time.monotonic() when the last call's answer was in (or failed)

    def close(self) -> None:
        self.session.close()

    def last_serial(self) -> int:
        result = self._call("changelog_last_serial")
        serial = checked_serial(result)
        if serial is None:
            raise ChangelogUnavailable(f"changelog_last_serial returned {result!r:.100}")
        return serial

    def since(self, serial: int) -> list[ChangelogEntry]:
        """Entries after ``serial``, oldest first; PyPI returns at most 50,000 per call."""
        rows = self._call("changelog_since_serial", serial)
        if not isinstance(rows, list):
            raise ChangelogUnavailable(f"changelog_since_serial returned {type(rows).__name__}")
        entries = []
        for row in rows:
            try:
                name, version, timestamp, action, entry_serial = row
                entries.append(
                    ChangelogEntry(
                        canonicalize_name(str(name)),
                        None if version is None else str(version),
                        int(timestamp),
                        str(action),
                        _entry_serial(entry_serial),
                    )
                )
            except (TypeError, ValueError) as exc:
                raise ChangelogUnavailable(f"unreadable changelog row {row!r:.200}") from exc
        return sorted(entries, key=lambda e: e.serial)

    def _call(self, method: str, *params: object) -> object:
        try:
            return self._request(method, *params)
        except ChangelogUnavailable:
            if self.metrics is not None:
                self.metrics.upstream_errors.labels("changelog", "failed").inc()
            raise

    def _request(self, method: str, *params: object) -> object:
        if self.metrics is not None:
            self.metrics.upstream_requests.labels("changelog").inc()
        body = xmlrpc.client.dumps(params, method, allow_none=True)
        try:
            response = self.session.post(
                self.url,
                data=body.encode(),
                headers={"Content-Type": "text/xml"},
                timeout=self.timeout,
            )
        except requests.RequestException as exc:
            raise ChangelogUnavailable(f"{method}: {exc}") from exc
        finally:
            self.exchanged_at = time.monotonic()  # what follows is ours, not the upstream's
        with response:
            if response.status_code != 200:
                raise ChangelogUnavailable(f"{method}: HTTP {response.status_code}")
            try:
                (result,), _ = xmlrpc.client.loads(response.content, use_builtin_types=True)
            except xmlrpc.client.Fault as fault:
                error = ChangelogUnavailable(
                    f"{method}: fault {fault.faultCode}: {fault.faultString}"
                )
                if fault.faultCode == RATE_LIMITED:
                    reset = re.search(r"reset in (\d+) seconds", fault.faultString)
                    error.retry_after = float(reset.group(1)) if reset else 60.0
                raise error from fault
            except (ExpatError, ValueError, xmlrpc.client.ResponseError) as exc:
                raise ChangelogUnavailable(f"{method}: unreadable answer: {exc}") from exc
        return result


def _entry_serial(value: object) -> int:
    serial = checked_serial(value)
    if serial is None:
        raise ValueError(f"serial {value!r:.100} is not one we can store")
    return serial
