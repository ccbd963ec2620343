"""Builds the domain objects from the settings and offers them to requests."""

from __future__ import annotations

from pyramid.config import Configurator
from pyramid.request import Request

from pypicache.cache.claims import FillClaims
from pypicache.cache.files import FileCache
from pypicache.cache.index import IndexService
from pypicache.cache.keyedlocks import KeyedLocks
from pypicache.cache.retention import Evictor, Retention, UsageLog
from pypicache.db import Database
from pypicache.follower.changelog import XmlRpcChangelog
from pypicache.follower.follower import Follower
from pypicache.ops.history import History
from pypicache.ops.metrics import Metrics
from pypicache.ops.reports import Reports
from pypicache.private.packages import PrivatePackages
from pypicache.settings import Settings
from pypicache.storage.local import make_store
from pypicache.upstream.client import UpstreamClient


def includeme(config: Configurator) -> None:
    settings: Settings = config.registry["pypicache.settings"]
    metrics = Metrics()
    database = config.registry["database"]
    metrics.watch_database(database)
    config.registry["metrics"] = metrics
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
    service = IndexService(
        settings,
        database,
        store,
        upstream,
        locks,
        claims,
        record_use=usage.touch if usage else None,
    )
    config.registry["index_service"] = service
    config.registry["evictor"] = (
        Evictor(
            Retention(database, store, settings.cache_max_bytes),
            usage,
            settings.gc_interval,
            claims,
        )
        if usage
        else None
    )
    private = PrivatePackages(settings, database, service, store, locks, upstream)
    config.registry["follower"] = _follower(settings, config, service, upstream)
    # What the admin page shows: queries, and the samples its charts draw.
    reports = Reports(database, service.project_list)
    config.registry["history"] = History(database, metrics, settings.chart_interval)

    def request_database(request: Request) -> Database:
        return database

    def index(request: Request) -> IndexService:
        return service

    def files(request: Request) -> FileCache:
        return service.files

    def app_settings(request: Request) -> Settings:
        return settings

    def private_packages(request: Request) -> PrivatePackages:
        return private

    def request_metrics(request: Request) -> Metrics:
        return metrics

    def request_reports(request: Request) -> Reports:
        return reports

    config.add_request_method(request_database, "database", reify=True)
    config.add_request_method(index, reify=True)
    config.add_request_method(files, reify=True)
    config.add_request_method(request_reports, "reports", reify=True)
    config.add_request_method(request_metrics, "metrics", reify=True)
    config.add_request_method(private_packages, "private", reify=True)
    config.add_request_method(app_settings, reify=True)


def _follower(
    settings: Settings, config: Configurator, service: IndexService, upstream: UpstreamClient | None
) -> Follower | None:
    """A changelog follower where the upstream can tell what changed (http(s) upstreams)."""
    if upstream is None or upstream.is_local or settings.follow_method == "off":
        return None
    changelog = (
        XmlRpcChangelog(
            settings.changelog_url,
            connect_timeout=settings.upstream_connect_timeout,
            read_timeout=settings.upstream_timeout,
            metrics=config.registry["metrics"],
        )
        if settings.changelog_url
        else None
    )
    return Follower(settings, config.registry["database"], service, upstream, changelog)
