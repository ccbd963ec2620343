"""Settings: one frozen object parsed once from the ini, the environment and CLI flags."""

from __future__ import annotations

import ast
import importlib.util
import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from pypicache.errors import SettingsError
from pypicache.times import BadTime, parse_duration, parse_moment
from pypicache.upstream.routing import (
    DEFAULT_UPSTREAM,
    Route,
    Upstream,
    normalize_pattern,
    valid_upstream_name,
)
from pypicache.upstream.urlpolicy import IPNetwork, parse_networks

PREFIX = "pypicache."
FOLLOW_METHODS = ("auto", "xmlrpc", "simple-index", "off")
DATABASE_KEY = "sqlalchemy.url"
DATABASE_ENV = "PYPICACHE_DATABASE_URL"
BOTO3_MISSING = "pypicache.storage: s3:// storage needs boto3: pip install 'pypicache[s3]'"

Parse = Callable[[str, str], Any]


@dataclass(frozen=True)
class Setting:
    """One setting: its ini name, its default as the ini spells it, its parser and its help."""

    key: str
    default: str
    parse: Parse  # (key, raw value) -> the typed value; raises SettingsError
    help: str

    @property
    def field(self) -> str:
        """The key of its parsed value in :meth:`Settings.from_mapping` (NAME of pypicache.NAME)."""
        return "database_url" if self.key == DATABASE_KEY else self.key.removeprefix(PREFIX)


def env_name(key: str) -> str:
    """The environment variable that overrides setting ``key``."""
    if key == DATABASE_KEY:
        return DATABASE_ENV
    return key.upper().replace(".", "_")


@dataclass(frozen=True)
class Settings:
    """The typed values of SETTINGS (their help says what each means), plus derived ones."""

    upstream_url: str | None  # the first upstream's
    changelog_url: str | None  # the first upstream's
    upstreams: tuple[Upstream, ...]  # in priority order; at least one
    routes: tuple[Route, ...]
    merge: tuple[str, ...]  # patterns of normalized names
    cooldown: timedelta  # 0: off
    cutoff: datetime | None  # naive UTC
    cooldown_exempt: tuple[str, ...]  # patterns of normalized names
    cooldown_private: bool
    data_dir: Path
    database_url: str
    follow_interval: float
    follow_method: str
    replay_serials: int
    changelog_min_interval: float
    page_ttl: float
    negative_ttl: float
    error_retry_interval: float
    index_ttl: float
    client_max_age: int
    upstream_connect_timeout: float
    upstream_timeout: float
    upstream_retries: int
    upstream_allowed_networks: tuple[IPNetwork, ...]
    migrate_on_start: bool
    read_auth: bool
    log_format: str
    allow_overwrite: bool
    max_upload_size: int
    max_page_bytes: int
    page_cache_bytes: int
    cache_max_bytes: int
    gc_interval: float
    session_secret: str = field(repr=False)
    chart_interval: float
    s3_bucket: str | None  # from pypicache.storage; None: the local blob store
    s3_prefix: str  # from pypicache.storage; keys are <prefix>/ab/cd/<sha256>
    s3_endpoint_url: str | None
    s3_region: str | None
    storage_redirect: bool

    @classmethod
    def from_mapping(
        cls,
        ini: Mapping[str, str],
        environ: Mapping[str, str] | None = None,
        overrides: Mapping[str, str | None] | None = None,
    ) -> Settings:
        """Merge defaults < ini < environment < overrides (CLI flags) and validate."""
        environ = os.environ if environ is None else environ
        raw: dict[str, str] = dict(DEFAULTS)
        given = {k: str(v) for k, v in ini.items() if k.startswith(PREFIX) or k == DATABASE_KEY}
        for key in DEFAULTS:
            value = environ.get(env_name(key))
            if value is not None:
                given[key] = value
        given.update({key: value for key, value in (overrides or {}).items() if value is not None})
        raw.update(given)
        unknown = sorted(k for k in raw if k.startswith(PREFIX) and k not in DEFAULTS)
        if unknown:
            raise SettingsError(f"{unknown[0]}: unknown setting")
        values = {s.field: s.parse(s.key, raw[s.key]) for s in SETTINGS}
        # What one setting's value means can depend on another's:
        values["upstreams"] = _chosen_upstreams(
            values["upstreams"], values["upstream_url"], "pypicache.upstream_url" in given
        )
        values["upstream_url"] = values["upstreams"][0].url
        _check_routes(values["routes"], values["upstreams"])
        values["changelog_url"] = _derived_changelog_url(
            values["changelog_url"], values["upstream_url"]
        )
        values["upstreams"] = _with_changelogs(
            values["upstreams"], values.pop("changelogs"), values["changelog_url"]
        )
        values["database_url"] = values["database_url"] or (
            f"sqlite:///{(values['data_dir'] / 'pypicache.sqlite').absolute()}"
        )
        values["s3_bucket"], values["s3_prefix"] = values.pop("storage")
        if values["storage_redirect"] and values["s3_bucket"] is None:
            raise SettingsError(
                "pypicache.storage_redirect: needs object storage (pypicache.storage = "
                "s3://bucket/prefix); files in the local store are served by pypicache itself"
            )
        return cls(**values)

    @property
    def follow_lease(self) -> float:
        """How long a follower's lease lasts unrenewed before another process takes over."""
        return 3 * self.follow_interval + 5

    @property
    def upstream_wait(self) -> float:
        """Seconds a request waits on the upstream (or on another process asking it): every
        attempt's timeouts, and some slack."""
        return (
            self.upstream_connect_timeout + self.upstream_timeout * (self.upstream_retries + 1) + 5
        )

    @property
    def storage_url(self) -> str | None:
        """The object store location as configured (None: the local store)."""
        if self.s3_bucket is None:
            return None
        return f"s3://{self.s3_bucket}/{self.s3_prefix}"

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def tmp_dir(self) -> Path:
        """Where partial downloads live; on the blob store's filesystem so renames are atomic."""
        return self.data_dir / "tmp"

    @property
    def quarantine_dir(self) -> Path:
        """Where the bytes of files removed upstream are kept: outside the servable store,
        on this host's disk even with an object store (see cache/quarantine.py)."""
        return self.data_dir / "quarantine" / "removed"

    @property
    def index_dir(self) -> Path:
        return self.data_dir / "index"

    def prepare_data_dir(self) -> None:
        local_blobs = () if self.s3_bucket else (self.blob_dir,)  # in the bucket otherwise
        for path in (self.data_dir, *local_blobs, self.tmp_dir, self.index_dir):
            path.mkdir(parents=True, exist_ok=True)


def _upstream_url(key: str, value: str) -> str | None:
    value = value.strip()
    if value.lower() == "none":
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https", "file") or (
        parts.scheme != "file" and not parts.netloc
    ):
        raise SettingsError(
            f"{key}: expected an http(s):// or file:// URL or 'none', got {value!r}"
        )
    if parts.username or parts.password:
        # Credentials would end up in logs and the admin page; take them from netrc instead.
        raise SettingsError(f"{key}: must not contain credentials")
    return value if value.endswith("/") else value + "/"


_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_BUCKET_RESERVED_STARTS = ("xn--", "sthree-", "amzn-s3-demo-")
_BUCKET_RESERVED_ENDS = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
_REGION = re.compile(r"[a-z0-9][a-z0-9-]*[a-z0-9]")


def _upstreams(key: str, value: str) -> tuple[Upstream, ...]:
    """``NAME=URL`` pairs, whitespace-separated, in priority order (empty: not set)."""
    found: list[Upstream] = []
    for pair in value.split():
        name, equals, url = pair.partition("=")
        if not equals or not valid_upstream_name(name):
            raise SettingsError(
                f"{key}: expected NAME=URL pairs, NAME made of a-z, 0-9 and '-' "
                f"(63 at most), got {pair!r}"
            )
        if any(u.name == name for u in found):
            raise SettingsError(f"{key}: the upstream {name!r} is named twice")
        parsed = _upstream_url(key, url)
        if parsed is None:
            raise SettingsError(f"{key}: {name}: expected an http(s):// or file:// URL")
        found.append(Upstream(name, parsed))
    return tuple(found)


def _chosen_upstreams(
    listed: tuple[Upstream, ...], single: str | None, single_given: bool
) -> tuple[Upstream, ...]:
    if not listed:
        return (Upstream(DEFAULT_UPSTREAM, single),)
    if single_given:
        raise SettingsError(
            "pypicache.upstreams and pypicache.upstream_url (serve --upstream) are both set; "
            "name every upstream in pypicache.upstreams and drop pypicache.upstream_url"
        )
    return listed


def _routes(key: str, value: str) -> tuple[Route, ...]:
    """``PATTERN=NAME`` pairs, whitespace-separated; the first matching route wins."""
    found: list[Route] = []
    for pair in value.split():
        pattern, equals, name = pair.partition("=")
        normalized = normalize_pattern(pattern)
        if not equals or normalized is None or not valid_upstream_name(name):
            raise SettingsError(
                f"{key}: expected PATTERN=UPSTREAM pairs (shell-style patterns of project "
                f"names), got {pair!r}"
            )
        found.append(Route(normalized, name))
    return tuple(found)


def _changelogs(key: str, value: str) -> dict[str, str | None]:
    """``NAME=URL|none`` pairs: the XML-RPC changelog of the upstream NAME, or none."""
    found: dict[str, str | None] = {}
    for pair in value.split():
        name, equals, url = pair.partition("=")
        if not equals or not valid_upstream_name(name):
            raise SettingsError(f"{key}: expected NAME=URL or NAME=none pairs, got {pair!r}")
        found[name] = _changelog_url(key, url)
    return found


def _with_changelogs(
    upstreams: tuple[Upstream, ...], given: dict[str, str | None], first: str | None
) -> tuple[Upstream, ...]:
    """Each upstream with its changelog: as given, else the first one's changelog_url,
    else /pypi on its host (the follower finds out whether it answers)."""
    unknown = sorted(set(given) - {u.name for u in upstreams})
    if unknown:
        raise SettingsError(f"pypicache.changelogs: no upstream is named {unknown[0]!r}")
    chosen = []
    for position, upstream in enumerate(upstreams):
        url = given.get(upstream.name, "")
        if url == "":
            url = first if position == 0 else _derived_changelog_url("", upstream.url)
        chosen.append(replace(upstream, changelog_url=url))
    return tuple(chosen)


def _patterns(key: str, value: str) -> tuple[str, ...]:
    """Whitespace-separated shell-style patterns of project names, normalized."""
    found = []
    for pattern in value.split():
        normalized = normalize_pattern(pattern)
        if normalized is None:
            raise SettingsError(f"{key}: {pattern!r} is no pattern of project names")
        found.append(normalized)
    return tuple(found)


def _duration(key: str, value: str) -> timedelta:
    try:
        return parse_duration(value)
    except BadTime as exc:
        raise SettingsError(f"{key}: {exc}") from None


def _moment(key: str, value: str) -> datetime | None:
    if not value.strip():
        return None
    try:
        return parse_moment(value)
    except BadTime as exc:
        raise SettingsError(f"{key}: {exc}") from None


def _check_routes(routes: tuple[Route, ...], upstreams: tuple[Upstream, ...]) -> None:
    names = [u.name for u in upstreams]
    for route in routes:
        if route.upstream not in names:
            raise SettingsError(
                f"pypicache.routes: {route.pattern}={route.upstream}: no upstream is named "
                f"{route.upstream!r} (there are: {', '.join(names)})"
            )


def _storage(key: str, value: str) -> tuple[str | None, str]:
    """(bucket, prefix) of ``s3://bucket/prefix``; (None, "") for the local store."""
    value = value.strip()
    if not value:
        return None, ""
    parts = urlsplit(value)
    if parts.scheme != "s3" or parts.query or parts.fragment or "@" in parts.netloc:
        raise SettingsError(
            "pypicache.storage: expected empty (files under the data dir) or "
            f"s3://bucket/prefix, got {value!r}"
        )
    bucket = parts.netloc
    problem = _bucket_problem(bucket)
    if problem:
        raise SettingsError(f"pypicache.storage: bucket name {bucket!r} {problem}")
    prefix = parts.path.strip("/")
    if prefix and any(part in ("", ".", "..") for part in prefix.split("/")):
        raise SettingsError(f"pypicache.storage: prefix {prefix!r} has an empty or dot segment")
    if importlib.util.find_spec("boto3") is None:
        raise SettingsError(BOTO3_MISSING)
    return bucket, prefix


def _bucket_problem(bucket: str) -> str | None:
    """Why ``bucket`` is not a valid S3 bucket name (None: it is)."""
    if not 3 <= len(bucket) <= 63:
        return "must be 3 to 63 characters long"
    if not _BUCKET.fullmatch(bucket):
        return (
            "may hold only lowercase letters, digits, dots and hyphens, "
            "and must begin and end with a letter or digit"
        )
    if ".." in bucket or ".-" in bucket or "-." in bucket:
        return "must not have two dots, or a dot and a hyphen, next to each other"
    try:
        ipaddress.IPv4Address(bucket)
    except ValueError:
        pass
    else:
        return "must not look like an IP address"
    if bucket.startswith(_BUCKET_RESERVED_STARTS) or bucket.endswith(_BUCKET_RESERVED_ENDS):
        return "uses a prefix or suffix S3 reserves"
    return None


def _endpoint_url(key: str, value: str) -> str | None:
    value = value.strip()
    if not value:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SettingsError(f"pypicache.s3_endpoint_url: expected an http(s):// URL, got {value!r}")
    if parts.username or parts.password:
        raise SettingsError(
            "pypicache.s3_endpoint_url: must not contain credentials "
            "(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or a profile give them)"
        )
    return value.rstrip("/")


def _region(key: str, value: str) -> str | None:
    value = value.strip()
    if not value:
        return None
    if not _REGION.fullmatch(value):
        raise SettingsError(f"pypicache.s3_region: expected a region name, got {value!r}")
    return value


def _changelog_url(key: str, value: str) -> str | None:
    """The URL given, None for 'none', "" for "derive it from the upstream"."""
    value = value.strip()
    if value.lower() == "none":
        return None
    if value:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise SettingsError(f"{key}: expected an http(s):// URL or 'none', got {value!r}")
    return value


def _derived_changelog_url(value: str | None, upstream: str | None) -> str | None:
    if value != "":
        return value
    if upstream is None or urlsplit(upstream).scheme == "file":
        return None
    parts = urlsplit(upstream)
    # PyPI's layout: the XML-RPC changelog lives at /pypi on the index host.
    return urlunsplit((parts.scheme, parts.netloc, "/pypi", "", ""))


def _seconds(minimum: float = 0.001) -> Parse:
    def parse(key: str, raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise SettingsError(f"{key}: expected a number of seconds, got {raw!r}") from None
        if not value >= minimum or value == float("inf"):
            raise SettingsError(f"{key}: must be a number >= {minimum:g}, got {raw!r}")
        return value

    return parse


def _whole_seconds(key: str, raw: str) -> int:
    return int(_seconds(minimum=0)(key, raw))


def _count(key: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{key}: expected a whole number, got {raw!r}") from None
    if value < 0:
        raise SettingsError(f"{key}: must not be negative, got {raw!r}")
    return value


def _networks(key: str, raw: str) -> tuple[IPNetwork, ...]:
    try:
        return parse_networks(raw)
    except ValueError as exc:
        raise SettingsError(f"{key}: {exc}") from None


def _choice(*choices: str) -> Parse:
    def parse(key: str, raw: str) -> str:
        value = raw.strip().lower()
        if value not in choices:
            raise SettingsError(f"{key}: expected one of {', '.join(choices)}, got {raw!r}")
        return value

    return parse


def _bool(key: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("true", "yes", "on", "1"):
        return True
    if value in ("false", "no", "off", "0"):
        return False
    raise SettingsError(f"{key}: expected true or false, got {raw!r}")


def _data_dir(key: str, raw: str) -> Path:
    return Path(raw.strip() or "pypicache-data").expanduser()


def _database_url(key: str, raw: str) -> str:
    """The URL given, or "" for SQLite in the data dir (derived once that is known)."""
    value = raw.strip()
    if value:
        try:
            make_url(value)
        except ArgumentError:
            raise SettingsError(f"{key}: not a database URL: {value!r}") from None
    return value


def _secret(key: str, raw: str) -> str:
    return raw.strip()


_MIB = 1024 * 1024


def _pypi_simple_endpoint() -> str:
    """``pypi_simple.PYPI_SIMPLE_ENDPOINT``, read from the module's source: importing it
    loads its parsers (bs4, lxml, pydantic: 16 MB of every process), which only an HTML
    upstream needs."""
    spec = importlib.util.find_spec("pypi_simple")
    if spec is not None and spec.origin is not None:
        for node in ast.parse(Path(spec.origin).read_bytes()).body:
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and node.target.id == "PYPI_SIMPLE_ENDPOINT"
                and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)
            ):
                return node.value.value
    from pypi_simple import PYPI_SIMPLE_ENDPOINT

    return PYPI_SIMPLE_ENDPOINT


# Every setting we read, the one place each is declared.  The environment
# variable of ``pypicache.NAME`` is ``PYPICACHE_NAME`` (see env_name).
SETTINGS: tuple[Setting, ...] = (
    Setting(
        "pypicache.upstream_url",
        _pypi_simple_endpoint(),
        _upstream_url,
        "The upstream simple index: http(s)://, file:// (a local PEP 503 tree) or none.",
    ),
    Setting(
        "pypicache.changelog_url",
        "",
        _changelog_url,
        "The upstream's XML-RPC changelog; empty: /pypi on the upstream's host; none: none.",
    ),
    Setting(
        "pypicache.upstreams",
        "",
        _upstreams,
        "Several upstreams: NAME=URL pairs in priority order (instead of upstream_url).",
    ),
    Setting(
        "pypicache.changelogs",
        "",
        _changelogs,
        "NAME=URL|none pairs: an upstream's XML-RPC changelog (default /pypi on its host).",
    ),
    Setting(
        "pypicache.merge",
        "",
        _patterns,
        "Patterns of projects whose files are merged from every upstream that has them.",
    ),
    Setting(
        "pypicache.routes",
        "",
        _routes,
        "PATTERN=UPSTREAM pairs: matching projects come from that upstream only.",
    ),
    Setting(
        "pypicache.cooldown",
        "0",
        _duration,
        "Minimum age of an upstream file before it is served (7d, 36h, P7D; 0: off).",
    ),
    Setting(
        "pypicache.cutoff",
        "",
        _moment,
        "An RFC 3339 time: upstream files uploaded after it are held, whatever their age.",
    ),
    Setting(
        "pypicache.cooldown_exempt",
        "",
        _patterns,
        "Patterns of projects the cooldown and the cutoff never hold.",
    ),
    Setting(
        "pypicache.cooldown_private",
        "false",
        _bool,
        "Whether the cooldown and the cutoff hold private packages too.",
    ),
    Setting(
        "pypicache.data_dir",
        "pypicache-data",
        _data_dir,
        "Blobs, temporary downloads and the rendered project list.",
    ),
    Setting(
        DATABASE_KEY,
        "",
        _database_url,
        "The database URL; empty: SQLite at <data_dir>/pypicache.sqlite.",
    ),
    Setting("pypicache.follow_interval", "60", _seconds(), "Seconds between changelog polls."),
    Setting(
        "pypicache.follow_method",
        "auto",
        _choice(*FOLLOW_METHODS),
        "How the follower learns of upstream changes: " + ", ".join(FOLLOW_METHODS) + ".",
    ),
    Setting(
        "pypicache.replay_serials",
        "1000",
        _count,
        "Serials before its watermark the follower reads again after a restart.",
    ),
    Setting(
        "pypicache.changelog_min_interval",
        "1",
        _seconds(minimum=0),
        "Seconds between two XML-RPC calls.",
    ),
    Setting(
        "pypicache.page_ttl",
        "300",
        _seconds(minimum=0),
        "Seconds a cached project page is served before it is revalidated.",
    ),
    Setting(
        "pypicache.negative_ttl",
        "60",
        _seconds(minimum=0),
        "Seconds an upstream 'no such project' is remembered.",
    ),
    Setting(
        "pypicache.error_retry_interval",
        "10",
        _seconds(minimum=0),
        "Seconds to serve a stale page before asking a failing upstream again.",
    ),
    Setting(
        "pypicache.index_ttl",
        "3600",
        _seconds(minimum=0),
        "Seconds between refreshes of the upstream's project list.",
    ),
    Setting(
        "pypicache.client_max_age",
        "60",
        _whole_seconds,
        "Cache-Control max-age sent with project pages, seconds.",
    ),
    Setting(
        "pypicache.upstream_connect_timeout",
        "10",
        _seconds(),
        "Connect timeout for upstream requests, seconds.",
    ),
    Setting(
        "pypicache.upstream_timeout",
        "30",
        _seconds(),
        "Read timeout for upstream requests, seconds.",
    ),
    Setting(
        "pypicache.upstream_retries",
        "2",
        _count,
        "Retries of failed upstream requests, with backoff.",
    ),
    Setting(
        "pypicache.upstream_allowed_networks",
        "",
        _networks,
        "CIDRs file URLs may reach besides public addresses and the upstream's origin.",
    ),
    Setting(
        "pypicache.migrate_on_start",
        "true",
        _bool,
        "Create or upgrade the database schema when the app starts.",
    ),
    Setting("pypicache.read_auth", "false", _bool, "Require credentials for reads."),
    Setting("pypicache.log_format", "text", _choice("text", "json"), "Log lines as text or json."),
    Setting(
        "pypicache.allow_overwrite",
        "false",
        _bool,
        "Let an upload replace a private file of the same name.",
    ),
    Setting(
        "pypicache.max_upload_size",
        str(100 * _MIB),
        _count,
        "Largest file accepted by an upload, bytes.",
    ),
    Setting(
        "pypicache.max_page_bytes",
        str(128 * _MIB),
        _count,
        "Largest upstream project page accepted, bytes after decompression.",
    ),
    Setting(
        "pypicache.page_cache_bytes",
        str(64 * _MIB),
        _count,
        "Bytes of rendered project pages each process keeps in memory.",
    ),
    Setting(
        "pypicache.cache_max_bytes",
        "0",
        _count,
        "Bytes the cached upstream files may take before eviction; 0: unlimited.",
    ),
    Setting("pypicache.gc_interval", "300", _seconds(), "Seconds between two retention rounds."),
    Setting(
        "pypicache.session_secret",
        "",
        _secret,
        "Signs the admin session cookie; empty: generated once, kept in the database.",
    ),
    Setting(
        "pypicache.chart_interval",
        "60",
        _seconds(),
        "Seconds between the samples the dashboard charts.",
    ),
    Setting(
        "pypicache.storage",
        "",
        _storage,
        "Where blobs live: empty for <data_dir>/blobs, or s3://bucket/prefix.",
    ),
    Setting(
        "pypicache.s3_endpoint_url",
        "",
        _endpoint_url,
        "Another S3 server's URL; empty: AWS itself.",
    ),
    Setting("pypicache.s3_region", "", _region, "The bucket's region; empty: boto3's own."),
    Setting(
        "pypicache.storage_redirect",
        "false",
        _bool,
        "Send downloads to presigned object URLs instead of streaming them.",
    ),
)

# Every setting's default as the ini would spell it.
DEFAULTS: dict[str, str] = {s.key: s.default for s in SETTINGS}
