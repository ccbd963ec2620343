"""The domain objects of one process, built once from the settings; no web framework here."""

from __future__ import annotations

from dataclasses import dataclass

from pypicache.auth.accounts import Accounts
from pypicache.cache.blobs import Blobs
from pypicache.cache.claims import FillClaims
from pypicache.cache.files import FileCache
from pypicache.cache.fill import FillRegistry
from pypicache.cache.index import IndexService
from pypicache.cache.keyedlocks import KeyedLocks
from pypicache.cache.ledger import FileLedger
from pypicache.cache.projectlist import DatabaseProjects, ProjectList
from pypicache.cache.retention import CountingLedger, Evictor, Retention, UsageLog
from pypicache.db import Database
from pypicache.follower.changelog import XmlRpcChangelog
from pypicache.follower.follower import Follower
from pypicache.ops.history import History
from pypicache.ops.metrics import Metrics
from pypicache.ops.reports import Reports
from pypicache.private.packages import PrivatePackages
from pypicache.settings import Settings
from pypicache.storage.local import BlobStore, make_store
from pypicache.upstream.client import UpstreamClient


@dataclass(frozen=True)
class Services:
    """Everything a request, a background thread or a command works with.

    It owns the background threads: ``start`` starts them, ``close`` stops them and every
    download, and lets go of the database.
    """

    settings: Settings
    database: Database
    metrics: Metrics
    store: BlobStore
    upstream: UpstreamClient | None
    claims: FillClaims
    index: IndexService
    fills: FillRegistry
    files: FileCache
    project_list: ProjectList
    private: PrivatePackages
    accounts: Accounts
    reports: Reports
    history: History
    follower: Follower | None
    evictor: Evictor | None

    def start(self) -> None:
        # The changelog follower: one thread, led by one process of the deployment.
        if self.follower is not None:
            self.follower.start()
        # Retention: evicts the least recently used cached files over cache_max_bytes.
        if self.evictor is not None:
            self.evictor.start()
        # Samples for the dashboard's charts.
        self.history.start()

    def close(self) -> None:
        if self.follower is not None:
            self.follower.stop()
        if self.evictor is not None:
            self.evictor.stop()
        self.history.stop()
        self.index.stop()
        self.fills.stop()
        self.claims.stop()
        if self.upstream is not None:
            self.upstream.close()
        self.database.dispose()


def build_services(settings: Settings) -> Services:
    """The object graph; nothing runs until ``Services.start``."""
    database = Database.from_url(settings.database_url)
    metrics = Metrics()
    metrics.watch_database(database)
    upstream = (
        UpstreamClient(
            settings.upstream_url,
            connect_timeout=settings.upstream_connect_timeout,
            read_timeout=settings.upstream_timeout,
            retries=settings.upstream_retries,
            metrics=metrics,
            allowed_networks=settings.upstream_allowed_networks,
        )
        if settings.upstream_url
        else None
    )
    store = make_store(settings)
    # Retention only with a limit: without one, nobody needs to know what was used when.
    usage = UsageLog(database) if settings.cache_max_bytes else None
    # One lock per project name and one set of claims, shared by pages, fills and uploads.
    locks = KeyedLocks()
    claims = FillClaims(database)
    blobs = Blobs(database, store)
    index = IndexService(settings, database, upstream, locks, claims, blobs)
    evictor = (
        Evictor(
            Retention(database, store, settings.cache_max_bytes),
            usage,
            settings.gc_interval,
            claims,
        )
        if usage
        else None
    )
    # Cache fills: one download per missing blob, recorded in the files' rows; with a
    # limit, each fill's size goes to the evictor too, which wakes when it crosses it.
    ledger = FileLedger(database, index, claims)
    fills = FillRegistry(
        upstream,
        store,
        CountingLedger(ledger, evictor) if evictor else ledger,
        claims,
        settings.upstream_wait,
    )
    project_list = ProjectList(
        settings.index_dir, upstream, DatabaseProjects(database), ttl=settings.index_ttl
    )
    return Services(
        settings=settings,
        database=database,
        metrics=metrics,
        store=store,
        upstream=upstream,
        claims=claims,
        index=index,
        fills=fills,
        files=FileCache(index, store, fills, record_use=usage.touch if usage else None),
        project_list=project_list,
        private=PrivatePackages(settings, database, index, blobs, store, locks, upstream),
        accounts=Accounts(database),
        # What the admin page shows: queries, and the samples its charts draw.
        reports=Reports(database, project_list),
        history=History(database, metrics, settings.chart_interval),
        follower=_follower(settings, database, metrics, index, upstream),
        evictor=evictor,
    )


def _follower(
    settings: Settings,
    database: Database,
    metrics: Metrics,
    index: IndexService,
    upstream: UpstreamClient | None,
) -> Follower | None:
    """A changelog follower where the upstream can tell what changed (http(s) upstreams)."""
    if upstream is None or upstream.is_local or settings.follow_method == "off":
        return None
    changelog = (
        XmlRpcChangelog(
            settings.changelog_url,
            connect_timeout=settings.upstream_connect_timeout,
            read_timeout=settings.upstream_timeout,
            metrics=metrics,
        )
        if settings.changelog_url
        else None
    )
    return Follower(settings, database, index, upstream, changelog)
