"""Settings: one frozen object parsed once from the ini, the environment and CLI flags."""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from pypi_simple import PYPI_SIMPLE_ENDPOINT
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from pypicache.errors import SettingsError
from pypicache.upstream.urlpolicy import IPNetwork, parse_networks

PREFIX = "pypicache."
FOLLOW_METHODS = ("auto", "xmlrpc", "simple-index", "off")
DATABASE_KEY = "sqlalchemy.url"
DATABASE_ENV = "PYPICACHE_DATABASE_URL"
BOTO3_MISSING = "pypicache.storage: s3:// storage needs boto3: pip install 'pypicache[s3]'"

# Every setting we read, with its default as the ini would spell it.  The
# environment variable of ``pypicache.NAME`` is ``PYPICACHE_NAME``.
DEFAULTS: dict[str, str] = {
    "pypicache.upstream_url": PYPI_SIMPLE_ENDPOINT,
    "pypicache.changelog_url": "",
    "pypicache.data_dir": "pypicache-data",
    "pypicache.follow_interval": "60",
    "pypicache.follow_method": "auto",
    "pypicache.replay_serials": "1000",
    "pypicache.changelog_min_interval": "1",
    "pypicache.page_ttl": "300",
    "pypicache.negative_ttl": "60",
    "pypicache.error_retry_interval": "10",
    "pypicache.index_ttl": "3600",
    "pypicache.client_max_age": "60",
    "pypicache.upstream_connect_timeout": "10",
    "pypicache.upstream_timeout": "30",
    "pypicache.upstream_retries": "2",
    "pypicache.upstream_allowed_networks": "",  # CIDRs file URLs may reach besides public
    "pypicache.migrate_on_start": "true",
    "pypicache.read_auth": "false",
    "pypicache.log_format": "text",
    "pypicache.allow_overwrite": "false",
    "pypicache.max_upload_size": str(100 * 1024 * 1024),
    "pypicache.max_page_bytes": str(128 * 1024 * 1024),
    "pypicache.page_cache_bytes": str(64 * 1024 * 1024),
    "pypicache.cache_max_bytes": "0",
    "pypicache.gc_interval": "300",
    "pypicache.session_secret": "",
    "pypicache.chart_interval": "60",
    "pypicache.storage": "",  # empty: files under data_dir/blobs; s3://bucket/prefix
    "pypicache.s3_endpoint_url": "",  # empty: AWS itself
    "pypicache.s3_region": "",
    "pypicache.storage_redirect": "false",
}


def env_name(key: str) -> str:
    """The environment variable that overrides setting ``key``."""
    if key == DATABASE_KEY:
        return DATABASE_ENV
    return key.upper().replace(".", "_")


@dataclass(frozen=True)
class Settings:
    upstream_url: str | None
    changelog_url: str | None
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
    # Networks (besides public addresses and the upstream's origin) file URLs may reach.
    upstream_allowed_networks: tuple[IPNetwork, ...]
    migrate_on_start: bool
    read_auth: bool
    log_format: str
    allow_overwrite: bool
    max_upload_size: int
    max_page_bytes: int  # an upstream page larger than this, decompressed, is refused
    page_cache_bytes: int  # the rendered pages a process keeps in memory, at most
    cache_max_bytes: int  # 0: unlimited
    gc_interval: float
    # Signs the admin page's session cookie; empty: generated once, kept in the data dir.
    session_secret: str = field(repr=False)
    chart_interval: float  # seconds between the samples the dashboard charts
    s3_bucket: str | None  # None: the local blob store under data_dir/blobs
    s3_prefix: str  # keys are <prefix>/ab/cd/<sha256> ("" : no prefix)
    s3_endpoint_url: str | None  # None: AWS's own endpoint for the region
    s3_region: str | None
    storage_redirect: bool  # send clients to presigned object URLs instead of streaming

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
        raw.update({k: str(v) for k, v in ini.items() if k.startswith(PREFIX) or k == DATABASE_KEY})
        for key in [*DEFAULTS, DATABASE_KEY]:
            value = environ.get(env_name(key))
            if value is not None:
                raw[key] = value
        for key, value in (overrides or {}).items():
            if value is not None:
                raw[key] = value
        unknown = sorted(k for k in raw if k.startswith(PREFIX) and k not in DEFAULTS)
        if unknown:
            raise SettingsError(f"{unknown[0]}: unknown setting")

        upstream = _upstream_url(raw["pypicache.upstream_url"])
        data_dir = Path(raw["pypicache.data_dir"].strip() or "pypicache-data").expanduser()
        database_url = raw.get(DATABASE_KEY, "").strip() or (
            f"sqlite:///{(data_dir / 'pypicache.sqlite').absolute()}"
        )
        try:
            make_url(database_url)
        except ArgumentError:
            raise SettingsError(f"{DATABASE_KEY}: not a database URL: {database_url!r}") from None
        bucket, prefix = _storage(raw["pypicache.storage"])
        redirect = _bool(raw, "pypicache.storage_redirect")
        if redirect and bucket is None:
            raise SettingsError(
                "pypicache.storage_redirect: needs object storage (pypicache.storage = "
                "s3://bucket/prefix); files in the local store are served by pypicache itself"
            )
        return cls(
            upstream_url=upstream,
            changelog_url=_changelog_url(raw["pypicache.changelog_url"], upstream),
            data_dir=data_dir,
            database_url=database_url,
            follow_interval=_seconds(raw, "pypicache.follow_interval"),
            follow_method=_choice(raw, "pypicache.follow_method", FOLLOW_METHODS),
            replay_serials=_count(raw, "pypicache.replay_serials"),
            changelog_min_interval=_seconds(raw, "pypicache.changelog_min_interval", minimum=0),
            page_ttl=_seconds(raw, "pypicache.page_ttl", minimum=0),
            negative_ttl=_seconds(raw, "pypicache.negative_ttl", minimum=0),
            error_retry_interval=_seconds(raw, "pypicache.error_retry_interval", minimum=0),
            index_ttl=_seconds(raw, "pypicache.index_ttl", minimum=0),
            client_max_age=int(_seconds(raw, "pypicache.client_max_age", minimum=0)),
            upstream_connect_timeout=_seconds(raw, "pypicache.upstream_connect_timeout"),
            upstream_timeout=_seconds(raw, "pypicache.upstream_timeout"),
            upstream_retries=_count(raw, "pypicache.upstream_retries"),
            upstream_allowed_networks=_networks(raw, "pypicache.upstream_allowed_networks"),
            migrate_on_start=_bool(raw, "pypicache.migrate_on_start"),
            read_auth=_bool(raw, "pypicache.read_auth"),
            log_format=_choice(raw, "pypicache.log_format", ("text", "json")),
            allow_overwrite=_bool(raw, "pypicache.allow_overwrite"),
            max_upload_size=_count(raw, "pypicache.max_upload_size"),
            max_page_bytes=_count(raw, "pypicache.max_page_bytes"),
            page_cache_bytes=_count(raw, "pypicache.page_cache_bytes"),
            cache_max_bytes=_count(raw, "pypicache.cache_max_bytes"),
            gc_interval=_seconds(raw, "pypicache.gc_interval"),
            session_secret=raw["pypicache.session_secret"].strip(),
            chart_interval=_seconds(raw, "pypicache.chart_interval"),
            s3_bucket=bucket,
            s3_prefix=prefix,
            s3_endpoint_url=_endpoint_url(raw["pypicache.s3_endpoint_url"]),
            s3_region=_region(raw["pypicache.s3_region"]),
            storage_redirect=redirect,
        )

    @property
    def follow_lease(self) -> float:
        """How long a follower's lease lasts unrenewed before another process takes over."""
        return 3 * self.follow_interval + 5

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
    def index_dir(self) -> Path:
        return self.data_dir / "index"

    def prepare_data_dir(self) -> None:
        local_blobs = () if self.s3_bucket else (self.blob_dir,)  # in the bucket otherwise
        for path in (self.data_dir, *local_blobs, self.tmp_dir, self.index_dir):
            path.mkdir(parents=True, exist_ok=True)


def _upstream_url(value: str) -> str | None:
    value = value.strip()
    if value.lower() == "none":
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https", "file") or (
        parts.scheme != "file" and not parts.netloc
    ):
        raise SettingsError(
            "pypicache.upstream_url: expected an http(s):// or file:// URL or 'none', "
            f"got {value!r}"
        )
    if parts.username or parts.password:
        # Credentials would end up in logs and the admin page; take them from netrc instead.
        raise SettingsError("pypicache.upstream_url: must not contain credentials")
    return value if value.endswith("/") else value + "/"


_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_BUCKET_RESERVED_STARTS = ("xn--", "sthree-", "amzn-s3-demo-")
_BUCKET_RESERVED_ENDS = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
_REGION = re.compile(r"[a-z0-9][a-z0-9-]*[a-z0-9]")


def _storage(value: str) -> tuple[str | None, str]:
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


def _endpoint_url(value: str) -> str | None:
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


def _region(value: str) -> str | None:
    value = value.strip()
    if not value:
        return None
    if not _REGION.fullmatch(value):
        raise SettingsError(f"pypicache.s3_region: expected a region name, got {value!r}")
    return value


def _changelog_url(value: str, upstream: str | None) -> str | None:
    value = value.strip()
    if value.lower() == "none":
        return None
    if value:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise SettingsError(
                f"pypicache.changelog_url: expected an http(s):// URL or 'none', got {value!r}"
            )
        return value
    if upstream is None or urlsplit(upstream).scheme == "file":
        return None
    parts = urlsplit(upstream)
    # PyPI's layout: the XML-RPC changelog lives at /pypi on the index host.
    return urlunsplit((parts.scheme, parts.netloc, "/pypi", "", ""))


def _seconds(raw: Mapping[str, str], key: str, minimum: float = 0.001) -> float:
    try:
        value = float(raw[key])
    except ValueError:
        raise SettingsError(f"{key}: expected a number of seconds, got {raw[key]!r}") from None
    if not value >= minimum or value == float("inf"):
        raise SettingsError(f"{key}: must be a number >= {minimum:g}, got {raw[key]!r}")
    return value


def _count(raw: Mapping[str, str], key: str) -> int:
    try:
        value = int(raw[key])
    except ValueError:
        raise SettingsError(f"{key}: expected a whole number, got {raw[key]!r}") from None
    if value < 0:
        raise SettingsError(f"{key}: must not be negative, got {raw[key]!r}")
    return value


def _networks(raw: Mapping[str, str], key: str) -> tuple[IPNetwork, ...]:
    try:
        return parse_networks(raw[key])
    except ValueError as exc:
        raise SettingsError(f"{key}: {exc}") from None


def _choice(raw: Mapping[str, str], key: str, choices: tuple[str, ...]) -> str:
    value = raw[key].strip().lower()
    if value not in choices:
        raise SettingsError(f"{key}: expected one of {', '.join(choices)}, got {raw[key]!r}")
    return value


def _bool(raw: Mapping[str, str], key: str) -> bool:
    value = raw[key].strip().lower()
    if value in ("true", "yes", "on", "1"):
        return True
    if value in ("false", "no", "off", "0"):
        return False
    raise SettingsError(f"{key}: expected true or false, got {raw[key]!r}")
