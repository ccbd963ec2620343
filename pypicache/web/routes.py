"""The index's URLs: simple API, files, uploads, operations (the admin page adds its own)."""

from pyramid.config import Configurator


def includeme(config: Configurator) -> None:
    config.add_route("health", "/health")
    config.add_route("status", "/api/status")
    config.add_route("metrics", "/metrics")
    config.add_route("simple_index", "/simple/")
    config.add_route("simple_project", "/simple/{project}/")
    # A file's PEP 740 provenance: the file's URL and ".provenance" (before the file's route).
    config.add_route("file_provenance", "/packages/{project}/{filename}.provenance")
    # The filename is the last path segment, as pip and uv expect (they take it from the URL).
    config.add_route("file", "/packages/{project}/{filename}")
    # One upstream alone, through the cache (uv's explicit indexes, pinned sources).
    config.add_route("upstream_index", "/u/{upstream}/simple/")
    config.add_route("upstream_project", "/u/{upstream}/simple/{project}/")
    config.add_route(
        "upstream_provenance", "/u/{upstream}/packages/{project}/{filename}.provenance"
    )
    config.add_route("upstream_file", "/u/{upstream}/packages/{project}/{filename}")
    # A named index: its private projects over its bases; /simple/ is the index main.
    config.add_route("index_index", "/i/{index}/simple/")
    config.add_route("index_project", "/i/{index}/simple/{project}/")
    config.add_route("index_provenance", "/i/{index}/packages/{project}/{filename}.provenance")
    config.add_route("index_file", "/i/{index}/packages/{project}/{filename}")
    config.add_route("index_upload", "/i/{index}/legacy/")
    # Snapshots: an index as it was at an RFC 3339 time (files uploaded at or before it).
    config.add_route("snapshot_index", "/snapshot/{time}/simple/")
    config.add_route("snapshot_project", "/snapshot/{time}/simple/{project}/")
    config.add_route("snapshot_file", "/snapshot/{time}/packages/{project}/{filename}")
    config.add_route("index_snapshot_index", "/i/{index}/snapshot/{time}/simple/")
    config.add_route("index_snapshot_project", "/i/{index}/snapshot/{time}/simple/{project}/")
    config.add_route(
        "index_snapshot_file", "/i/{index}/snapshot/{time}/packages/{project}/{filename}"
    )
    # Chaining: this index's changelog (XML-RPC, as PyPI's) and the legacy JSON API.
    config.add_route("xmlrpc", "/pypi", request_method="POST")
    config.add_route("legacy_json", "/pypi/{project}/json")
    # Uploads: PyPI's URL, the same without the slash, and pypiserver's "/" (twine
    # refuses any redirect, so each one answers directly).
    config.add_route("upload", "/legacy/")
    config.add_route("upload_legacy_no_slash", "/legacy")
    config.add_route("upload_root", "/", request_method="POST")
