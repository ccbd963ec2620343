"""The domain objects of one process, built once from the settings; no web framework here."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from pypicache.auth.accounts import Accounts
from pypicache.cache.blobs import Blobs
from pypicache.cache.claims import FillClaims
from pypicache.cache.files import FileCache
from pypicache.cache.fill import FillRegistry
from pypicache.cache.fill import Source as Fetch
from pypicache.cache.index import IndexService
from pypicache.cache.indexes import Indexes, private_source
from pypicache.cache.keyedlocks import KeyedLocks
from pypicache.cache.ledger import FileLedger
from pypicache.cache.projectlist import DatabaseProjects, ProjectList
from pypicache.cache.provenance import ProvenanceCache
from pypicache.cache.quarantine import Quarantine
from pypicache.cache.retention import CountingLedger, Evictor, Retention, UsageLog
from pypicache.cache.router import Router, Source
from pypicache.cache.watcher import ChangeWatcher
from pypicache.db import Database
from pypicache.follower.changelog import XmlRpcChangelog
from pypicache.follower.follower import Follower
from pypicache.models import PRIVATE_SOURCE
from pypicache.ops.history import History
from pypicache.ops.metrics import Metrics
from pypicache.ops.reports import Reports
from pypicache.policy.guard import Guard
from pypicache.policy.held import KINDS as HELD_KINDS
from pypicache.policy.held import HeldFiles
from pypicache.policy.rules import Rules
from pypicache.policy.snapshot import Snapshots
from pypicache.private.packages import PrivatePackages
from pypicache.settings import Settings
from pypicache.storage.local import BlobStore, make_store
from pypicache.upstream.client import UpstreamClient
from pypicache.upstream.routing import Upstream


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
    clients: tuple[UpstreamClient, ...]  # one per upstream with a URL
    claims: FillClaims
    index: Router  # the index main (/simple/): its private projects, then the upstreams
    indexes: Indexes  # main and the other named indexes
    project_list: ProjectList
    upstream_lists: dict[str, ProjectList]  # /u/<name>/simple/, each made when first asked
    private: PrivatePackages
    accounts: Accounts
    reports: Reports
    history: History
    watcher: ChangeWatcher  # other processes' page changes end this one's copies
    followers: tuple[Follower, ...]  # one per upstream that can tell what changed
    evictor: Evictor | None
    guard: Guard  # the supply-chain rules, applied when answering
    held: HeldFiles  # what the rules hold back now (the admin page, the metric)
    snapshots: Snapshots  # /snapshot/<time>/: the pages the guard serves, as of a time
    provenance: ProvenanceCache  # files' PEP 740 provenance, fetched once, kept
    index_lists: dict[str, tuple[Router, ProjectList]] = field(default_factory=dict)
    _lists_lock: threading.Lock = field(default_factory=threading.Lock)

    def project_list_of(self, view: Router) -> ProjectList:
        """The /i/<index>/simple/ list: the names of its private projects and its bases'."""
        if view is self.index:
            return self.project_list
        with self._lists_lock:
            found = self.index_lists.get(view.name)
            if found is None or found[0] is not view:  # made anew when its bases changed
                below, upstreams = view.reachable(None)
                sources = [view.private.name, *(v.private.name for v in below)]
                sources += [u.name for u in upstreams]
                listing = ProjectList(
                    self.settings.index_dir / "i" / view.name,
                    [(u.name, u.index.upstream) for u in upstreams],
                    DatabaseProjects(self.database, sources),
                    ttl=self.settings.index_ttl,
                )
                found = self.index_lists[view.name] = (view, listing)
            return found[1]

    def start(self) -> None:
        # The changelog followers: a thread per upstream, led by one process of the deployment.
        for follower in self.followers:
            follower.start()
        # Retention: evicts the least recently used cached files over cache_max_bytes.
        if self.evictor is not None:
            self.evictor.start()
        # Samples for the dashboard's charts.
        self.history.start()
        self.watcher.start()

    def close(self) -> None:
        for follower in self.followers:
            follower.stop()
        if self.evictor is not None:
            self.evictor.stop()
        self.history.stop()
        self.watcher.stop()
        self.indexes.stop()
        self.index.stop()
        self.claims.stop()
        for client in self.clients:
            client.close()
        self.database.dispose()


def build_services(settings: Settings) -> Services:
    """The object graph; nothing runs until ``Services.start``."""
    database = Database.from_url(settings.database_url)
    metrics = Metrics()
    metrics.watch_database(database, settings.upstreams[0].name)
    clients = {
        upstream.name: _client(settings, upstream.url, metrics)
        for upstream in settings.upstreams
        if upstream.url is not None
    }
    store = make_store(settings)
    # Retention only with a limit: without one, nobody needs to know what was used when.
    usage = UsageLog(database) if settings.cache_max_bytes else None
    # One lock per project name and one set of claims, shared by pages, fills and uploads.
    locks = KeyedLocks()
    claims = FillClaims(database)
    blobs = Blobs(database, store, Quarantine(store, settings.quarantine_dir))
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

    def source(name: str, index: IndexService, fetch: Callable[[str], Fetch | None]) -> Source:
        # Cache fills: one download per missing blob, recorded in the files' rows; with a
        # limit, each fill's size goes to the evictor too, which wakes when it crosses it.
        ledger = FileLedger(database, index, claims)
        fills = FillRegistry(
            fetch,
            store,
            CountingLedger(ledger, evictor) if evictor else ledger,
            claims,
            settings.upstream_wait,
        )
        record_use = usage.touch if usage else None
        return Source(name, index, FileCache(name, index, store, fills, record_use), fills)

    upstreams = []
    for upstream in settings.upstreams:
        client = clients.get(upstream.name)
        index = IndexService(settings, database, upstream.name, client, locks, claims, blobs)
        upstreams.append(source(upstream.name, index, lambda _project, c=client: c))
    router: Router

    def merge_from(project: str) -> UpstreamClient | None:
        return router.merge_from(project)

    private_index = IndexService(
        settings, database, PRIVATE_SOURCE, None, locks, claims, blobs, merge_from=merge_from
    )
    router = Router(
        source(PRIVATE_SOURCE, private_index, merge_from),
        upstreams,
        settings.routes,
        settings.merge,
        merge_cache_bytes=settings.page_cache_bytes // 4,
    )
    first = settings.upstreams[0].name

    def private_of(index: str) -> Source:
        """The private projects of another index: pages, files and fills of their own."""
        name = private_source(index)
        pages = IndexService(
            settings, database, name, None, locks, claims, blobs, merge_from=merge_from
        )
        return source(name, pages, merge_from)

    indexes = Indexes(database, router, private_of, settings.routes)
    project_list = ProjectList(
        settings.index_dir,
        [(u.name, clients.get(u.name)) for u in settings.upstreams],
        DatabaseProjects(database),
        ttl=settings.index_ttl,
    )
    guard = Guard(
        settings, Rules(database), indexes.cooldown, cache_bytes=settings.page_cache_bytes // 4
    )
    held = HeldFiles(database, guard, indexes, settings)
    metrics.watch_held(held.counts, HELD_KINDS)
    return Services(
        settings=settings,
        database=database,
        metrics=metrics,
        store=store,
        clients=tuple(clients.values()),
        claims=claims,
        index=router,
        indexes=indexes,
        project_list=project_list,
        upstream_lists={
            u.name: ProjectList(
                settings.index_dir / "u" / u.name,
                [(u.name, clients.get(u.name))],
                DatabaseProjects(database, [u.name]),
                ttl=settings.index_ttl,
            )
            for u in settings.upstreams
        },
        private=PrivatePackages(settings, database, indexes, blobs, store, locks),
        accounts=Accounts(database),
        # What the admin page shows: queries, and the samples its charts draw.
        reports=Reports(database, project_list, [s.name for s in router.sources]),
        history=History(database, metrics, settings.chart_interval, first),
        watcher=ChangeWatcher(database, indexes.forget),
        followers=tuple(
            follower
            for upstream in settings.upstreams
            if (follower := _follower(settings, database, metrics, upstream, router)) is not None
        ),
        evictor=evictor,
        guard=guard,
        held=held,
        snapshots=Snapshots(cache_bytes=settings.page_cache_bytes // 8),
        provenance=ProvenanceCache(database, locks),
    )


def _client(settings: Settings, url: str, metrics: Metrics) -> UpstreamClient:
    return UpstreamClient(
        url,
        connect_timeout=settings.upstream_connect_timeout,
        read_timeout=settings.upstream_timeout,
        retries=settings.upstream_retries,
        metrics=metrics,
        allowed_networks=settings.upstream_allowed_networks,
    )


def _follower(
    settings: Settings, database: Database, metrics: Metrics, upstream: Upstream, router: Router
) -> Follower | None:
    """A changelog follower of an http(s) upstream; it finds out itself how that upstream
    tells what changed (XML-RPC, JSON serials, or nothing: revalidation by page_ttl)."""
    index = router.upstream(upstream.name).index
    client = index.upstream
    if client is None or client.is_local or settings.follow_method == "off":
        return None
    changelog = (
        XmlRpcChangelog(
            upstream.changelog_url,
            connect_timeout=settings.upstream_connect_timeout,
            read_timeout=settings.upstream_timeout,
            metrics=metrics,
        )
        if upstream.changelog_url
        else None
    )
    return Follower(settings, database, index, client, changelog)
