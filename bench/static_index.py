"""A pre-rendered static copy of pypicache's pages and files, and nginx to serve it.

Layout (the URL paths pypicache uses, so its relative links resolve the same way):

    ROOT/simple/<project>/index.html   the HTML rendering
    ROOT/simple/<project>/index.json   the PEP 691 JSON rendering
    ROOT/packages/<project>/<filename>            every file the JSON page lists
    ROOT/packages/<project>/<filename>.metadata   its core metadata, when advertised

nginx picks ``index.json`` or ``index.html`` by the Accept header (a ``map``), with the
content type pip and uv expect, and serves files as application/octet-stream.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import requests

JSON_TYPE = "application/vnd.pypi.simple.v1+json"
UV_ACCEPT = f"{JSON_TYPE}, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01"
HTML_ACCEPT = "text/html"
TIMEOUT = (5, 120)


@dataclass(frozen=True)
class StaticCopy:
    root: Path
    projects: int
    files: int
    metadata_files: int
    bytes: int


def _get(session: requests.Session, url: str, accept: str | None = None) -> bytes:
    headers = {"Accept": accept} if accept else {}
    response = session.get(url, headers=headers, timeout=TIMEOUT)
    response.raise_for_status()
    return response.content


def build_static_copy(index_url: str, projects: Iterable[str], root: Path) -> StaticCopy:
    """Fetch every page (both renderings), file and metadata file of ``projects`` once."""
    n_projects = n_files = n_metadata = total = 0
    with requests.Session() as session:
        for project in projects:
            page_url = f"{index_url}/simple/{project}/"
            page_dir = root / "simple" / project
            page_dir.mkdir(parents=True, exist_ok=True)
            html = _get(session, page_url, HTML_ACCEPT)
            body = _get(session, page_url, UV_ACCEPT)
            (page_dir / "index.html").write_bytes(html)
            (page_dir / "index.json").write_bytes(body)
            n_projects += 1
            total += len(html) + len(body)
            for entry in json.loads(body)["files"]:
                file_url = urljoin(page_url, entry["url"])
                path = unquote(urlsplit(file_url).path)
                if not path.startswith("/packages/") or ".." in Path(path).parts:
                    raise ValueError(f"unexpected file URL {file_url} on {page_url}")
                target = root / path.lstrip("/")
                target.parent.mkdir(parents=True, exist_ok=True)
                content = _get(session, file_url)
                target.write_bytes(content)
                n_files += 1
                total += len(content)
                if entry.get("core-metadata"):
                    metadata = _get(session, file_url + ".metadata")
                    target.with_name(target.name + ".metadata").write_bytes(metadata)
                    n_metadata += 1
                    total += len(metadata)
    return StaticCopy(root, n_projects, n_files, n_metadata, total)


def nginx_path() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )


def write_nginx_config(prefix: Path, root: Path, port: int) -> Path:
    """A self-contained config: no daemon, every log and temp path under ``prefix``."""
    prefix.mkdir(parents=True, exist_ok=True)
    # As root nginx would drop its workers to `nobody`; keep them as us so they can read ROOT.
    user = f"user {pwd.getpwuid(os.geteuid()).pw_name};" if os.geteuid() == 0 else ""
    config = f"""\
{user}
daemon off;
master_process on;
worker_processes auto;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;

events {{
    worker_connections 1024;
}}

http {{
    access_log {prefix}/access.log combined buffer=256k flush=5s;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;

    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 300s;
    keepalive_requests 10000000;
    etag on;

    map $http_accept $simple_index {{
        default index.html;
        "~application/vnd\\.pypi\\.simple\\.v1\\+json" index.json;
    }}

    server {{
        listen 127.0.0.1:{port};
        server_name localhost;
        root {root};

        location = /health {{
            default_type text/plain;
            return 200 "ok\\n";
        }}

        location /simple/ {{
            types {{
                text/html html;
                {JSON_TYPE} json;
            }}
            charset utf-8;
            charset_types text/html;
            add_header Vary Accept;
            add_header Cache-Control "max-age=60, public";
            try_files $uri$simple_index =404;
        }}

        location /packages/ {{
            types {{ }}
            default_type application/octet-stream;
            add_header Cache-Control "max-age=365000000, immutable, public";
        }}
    }}
}}
"""
    path = prefix / "nginx.conf"
    path.write_text(config)
    return path
